"""A caching proxy in front of the local llama.cpp servers, shared by every configuration of a run.

Configurations whose calls have identical inputs (same tier, same messages and parameters, all
at temperature 0) get the first answer again instead of computing it anew. A cached answer
keeps the latency measured when it was computed, so every call reports a real latency; the
proxy records one :class:`CallEvent` per call, in order, for the benchmark to sum.

With a ``store`` file the answers outlive the run: each new answer is appended to it as one JSON
line (key, status, body, latency) the moment it is computed, and the next run loads them first,
so a run that was stopped, or one that adds a configuration, computes only the calls no run has
made yet. ``namespace`` (the benchmark passes its models and llama.cpp threads) is part of every
key: answers from other models or settings are never served. A line that cannot be read (a run
killed mid-write) is skipped and counted in :attr:`CachingProxy.unreadable`.

Example:
    >>> cache_key("small", {"messages": [{"role": "user", "content": "2+2?"}], "temperature": 0}) == \\
    ...     cache_key("small", {"temperature": 0, "messages": [{"role": "user", "content": "2+2?"}]})
    True
    >>> cache_key("small", {"messages": []}) == cache_key("tiny", {"messages": []})
    False
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["CachingProxy", "CallEvent", "cache_key"]

_IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "logprobs"})
"""Request fields that do not change a temperature-0 answer: the proxy never streams, and it always
asks for token log-probabilities (a cascade's confidence signal reads them), so a call that asked
for them and one that did not share one cached answer."""


def cache_key(tier: str, body: Mapping[str, Any], namespace: str = "") -> str:
    """The cache key of one call: its tier and its request (messages and every parameter but
    those in ``_IGNORED``), as canonical JSON, hashed; ``namespace`` set apart."""
    kept = {k: v for k, v in body.items() if k not in _IGNORED and k != "model"}
    text = json.dumps({"namespace": namespace, "tier": tier, "request": kept}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CallEvent:
    """One model call as the proxy served it."""

    tier: str
    latency_s: float
    """Measured when the answer was computed (also for a cached answer)."""
    cached: bool
    prompt_tokens: int
    completion_tokens: int


@dataclass
class _Entry:
    status: int
    body: bytes
    latency_s: float
    earlier: bool = False
    """Read from the store: computed by an earlier run."""


class CachingProxy:
    """``http://127.0.0.1:PORT/<tier>/v1/...`` forwards to that tier's upstream, caching answers.

    ``upstreams`` maps a tier to its server's base URL (``http://127.0.0.1:PORT/v1``). Use
    :meth:`base_url` as the tier's ``api_base``. :attr:`events` lists every call served.
    """

    def __init__(self, upstreams: Mapping[str, str], *, timeout: float = 600.0,
                 store: str | os.PathLike[str] | None = None, namespace: str = "") -> None:
        self.upstreams = dict(upstreams)
        self.timeout = timeout
        self.namespace = namespace
        self.events: list[CallEvent] = []
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.store = Path(store) if store is not None else None
        self.loaded = 0
        """Answers read from :attr:`store` at start."""
        self.unreadable = 0
        """Lines of :attr:`store` that could not be read (skipped)."""
        self.from_earlier_runs = 0
        """Calls of this run answered from :attr:`store`'s earlier answers."""
        self._cut = False
        """The store's last line was cut off: the next line starts on a line of its own."""
        if self.store is not None and self.store.exists():
            self._load(self.store)
            self._cut = not self.store.read_bytes().endswith(b"\n") and self.store.stat().st_size > 0
        self._key_locks: dict[str, threading.Lock] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _load(self, path: Path) -> None:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    item = json.loads(line)
                    entry = _Entry(int(item["status"]), str(item["body"]).encode("utf-8"), float(item["latency_s"]), True)
                    key = str(item["key"])
                except (ValueError, KeyError, TypeError):
                    self.unreadable += 1
                    continue
                self._cache[key] = entry
                self.loaded += 1

    def _keep(self, key: str, entry: _Entry) -> None:
        self._cache[key] = entry
        if self.store is not None:
            line = json.dumps({"key": key, "status": entry.status, "body": entry.body.decode("utf-8"),
                               "latency_s": entry.latency_s}, ensure_ascii=False)
            with self._lock:
                self.store.parent.mkdir(parents=True, exist_ok=True)
                with self.store.open("a", encoding="utf-8") as out:
                    out.write(("\n" if self._cut else "") + line + "\n")
                self._cut = False

    def base_url(self, tier: str) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}/{tier}/v1"

    @property
    def hits(self) -> int:
        return sum(1 for e in self.events if e.cached)

    def start(self) -> CachingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, body = proxy._serve(self.path, self.rfile.read(length))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="agent-cache-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CachingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, path: str, raw: bytes) -> tuple[int, bytes]:
        tier, _, rest = path.lstrip("/").partition("/")
        upstream = self.upstreams.get(tier)
        if upstream is None or not rest.startswith("v1/"):
            return 404, json.dumps({"error": {"message": f"no tier {tier!r} behind this proxy"}}).encode()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return 400, b'{"error": {"message": "the request is not JSON"}}'
        body.pop("stream", None)
        body.pop("stream_options", None)
        body["logprobs"] = True
        key = cache_key(tier, body, self.namespace) + rest
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # the same request twice at once is computed once
            entry = self._cache.get(key)
            cached = entry is not None
            if entry is None:
                entry = self._forward(upstream.rstrip("/") + "/" + rest[len("v1/"):], body)
                if entry.status == 200:
                    self._keep(key, entry)
        usage = _usage(entry.body)
        with self._lock:
            self.from_earlier_runs += entry.earlier
            self.events.append(CallEvent(tier, entry.latency_s, cached, *usage))
        return entry.status, entry.body

    def _forward(self, url: str, body: Mapping[str, Any]) -> _Entry:
        request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                         headers={"Content-Type": "application/json"}, method="POST")
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        return _Entry(status, data, time.perf_counter() - started)


def _usage(body: bytes) -> tuple[int, int]:
    try:
        usage = json.loads(body).get("usage") or {}
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (ValueError, AttributeError):
        return 0, 0
