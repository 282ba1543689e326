"""A caching proxy in front of the local llama.cpp servers, shared by every configuration of a run.

Configurations whose calls have identical inputs (same tier, same messages and parameters, all
at temperature 0) get the first answer again instead of computing it anew. A cached answer
keeps the latency measured when it was computed, so every call reports a real latency; the
proxy records one :class:`CallEvent` per call, in order, for the benchmark to sum.

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
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["CachingProxy", "CallEvent", "cache_key"]

_IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "logprobs"})
"""Request fields that do not change a temperature-0 answer: the proxy never streams, and it always
asks for token log-probabilities (a cascade's confidence signal reads them), so a call that asked
for them and one that did not share one cached answer."""


def cache_key(tier: str, body: Mapping[str, Any]) -> str:
    """The cache key of one call: its tier and its request (messages and every parameter but
    those in ``_IGNORED``), as canonical JSON, hashed."""
    kept = {k: v for k, v in body.items() if k not in _IGNORED and k != "model"}
    text = json.dumps({"tier": tier, "request": kept}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
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


class CachingProxy:
    """``http://127.0.0.1:PORT/<tier>/v1/...`` forwards to that tier's upstream, caching answers.

    ``upstreams`` maps a tier to its server's base URL (``http://127.0.0.1:PORT/v1``). Use
    :meth:`base_url` as the tier's ``api_base``. :attr:`events` lists every call served.
    """

    def __init__(self, upstreams: Mapping[str, str], *, timeout: float = 600.0) -> None:
        self.upstreams = dict(upstreams)
        self.timeout = timeout
        self.events: list[CallEvent] = []
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

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
        key = cache_key(tier, body) + rest
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # the same request twice at once is computed once
            entry = self._cache.get(key)
            cached = entry is not None
            if entry is None:
                entry = self._forward(upstream.rstrip("/") + "/" + rest[len("v1/"):], body)
                if entry.status == 200:
                    self._cache[key] = entry
        usage = _usage(entry.body)
        with self._lock:
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
