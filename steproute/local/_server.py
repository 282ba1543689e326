"""Running ``llama-server`` processes on 127.0.0.1, and always stopping them.

Each server is a child process bound to a free loopback port. It is stopped by the context
manager, by ``stop()``, at interpreter exit, and — on Linux — by the kernel when the process
that started it dies (``PR_SET_PDEATHSIG``), so a killed test run or a Ctrl-C leaves no orphan.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from steproute.errors import LocalModelError
from steproute.local._build import ensure_llama_server
from steproute.local._weights import LocalModel, ensure_weights, resolve_model

__all__ = ["DEFAULT_TIERS", "LocalServer", "LocalServers"]

DEFAULT_TIERS: Mapping[str, str] = {"fast": "smollm2-135m", "strong": "qwen2.5-coder-0.5b"}
"""The embedded default: SmolLM2-135M as the fast tier, Qwen2.5-Coder-0.5B as the strong one."""

_HOST = "127.0.0.1"
_LIVE: weakref.WeakSet[LocalServer] = weakref.WeakSet()


def _parent_death_signal() -> Any:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - no usable libc
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child, between fork and exec: C calls only
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


class LocalServer:
    """One ``llama-server`` serving one model on 127.0.0.1, OpenAI-compatible.

    Example:
        >>> with LocalServer("smollm2-135m") as server:     # doctest: +SKIP
        ...     server.base_url
        'http://127.0.0.1:40123/v1'
    """

    def __init__(
        self,
        model: LocalModel | str,
        *,
        alias: str | None = None,
        threads: int = 2,
        context_size: int = 8192,
        parallel: int = 2,
        extra_args: tuple[str, ...] = (),
        progress: bool = True,
    ) -> None:
        self.model = resolve_model(model)
        self.alias = alias or self.model.name
        self.threads = threads
        self.context_size = context_size
        self.parallel = parallel
        self.extra_args = extra_args
        self.progress = progress
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible endpoint, ``http://127.0.0.1:PORT/v1``."""
        if self.port is None:
            raise LocalModelError(f"the {self.alias} server is not running")
        return f"http://{_HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux)."""
        if self.pid is None:
            return 0
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def start(self, *, timeout: float = 180.0) -> LocalServer:
        """Build or fetch what is missing, start the server and wait until ``/health`` is OK."""
        if self.process is not None:
            return self
        binary = ensure_llama_server(progress=self.progress)
        weights = ensure_weights(self.model, progress=self.progress)
        started = time.monotonic()
        if self.progress:
            print(f"steproute: loading {self.model.title} as {self.alias!r} on {_HOST} ...", file=sys.stderr, flush=True)
        for _ in range(3):  # a free port can be taken between the check and the bind
            self.port = _free_port()
            fd, log = tempfile.mkstemp(prefix=f"llama-server-{self.alias}-", suffix=".log")
            self.log_path = Path(log)
            command = [
                str(binary), "--model", str(weights), "--alias", self.alias,
                "--host", _HOST, "--port", str(self.port),
                "--threads", str(self.threads), "--ctx-size", str(self.context_size),
                "--parallel", str(self.parallel), "--jinja", "--no-webui", *self.extra_args,
            ]
            with os.fdopen(fd, "wb") as log_file:
                self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                                stderr=subprocess.STDOUT, preexec_fn=_parent_death_signal())
            _LIVE.add(self)
            if self._wait_healthy(timeout):
                if self.progress:
                    print(f"steproute: {self.alias} ready at {self.base_url} in {time.monotonic() - started:.1f} s",
                          file=sys.stderr, flush=True)
                return self
            if self.process.poll() is None:  # alive but not healthy in time
                self.stop()
                raise LocalModelError(f"{self.alias}: llama-server was not healthy after {timeout:.0f} s; "
                                      f"log: {self.log_path}\n{self._log_tail()}")
            if "bind" not in self._log_tail().lower():
                break
        tail = self._log_tail()
        self.stop(keep_log=True)
        raise LocalModelError(f"{self.alias}: llama-server exited while starting; log: {self.log_path}\n{tail}")

    def _wait_healthy(self, timeout: float) -> bool:
        import httpx

        deadline = time.monotonic() + timeout
        assert self.process is not None
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"http://{_HOST}:{self.port}/health").status_code == 200:
                        return True
                time.sleep(0.1)
        return False

    def _log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(Path(self.log_path or "").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, *, keep_log: bool = False) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s). Safe to call twice."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _LIVE.discard(self)
        self.port = None
        if self.log_path is not None and not keep_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.base_url}" if self.port else "stopped"
        return f"LocalServer({self.model.name!r}, {state})"


class LocalServers:
    """One local server per tier, started together and stopped together.

    ``env()`` gives ``STEPROUTE_LOCAL_<TIER>_URL`` for each tier, which configs refer to as
    ``${STEPROUTE_LOCAL_FAST_URL}``; ``tiers_config()`` gives a ready ``tiers:`` mapping.

    Example:
        >>> with LocalServers() as local:                    # doctest: +SKIP
        ...     os.environ.update(local.env())
        ...     router = StepRouter.from_file("examples/steproute.yaml")
    """

    def __init__(self, tiers: Mapping[str, LocalModel | str] = DEFAULT_TIERS, **server_options: Any) -> None:
        if not tiers:
            raise ValueError("LocalServers needs at least one tier")
        self.servers: dict[str, LocalServer] = {
            tier: LocalServer(model, **server_options) for tier, model in tiers.items()
        }

    def start(self) -> LocalServers:
        """Start every server (building and fetching first if needed); on failure stop them all."""
        try:
            for server in self.servers.values():
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    def __enter__(self) -> LocalServers:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def __getitem__(self, tier: str) -> LocalServer:
        return self.servers[tier]

    def env(self) -> dict[str, str]:
        """Environment variables naming each tier's endpoint."""
        return {f"STEPROUTE_LOCAL_{tier.upper()}_URL": s.base_url for tier, s in self.servers.items()}

    def tiers_config(self) -> dict[str, Any]:
        """A ``tiers:`` mapping for :class:`~steproute.RouterConfig` (prices left to you)."""
        return {
            tier: {"models": [{"model": f"openai/{s.alias}", "api_base": s.base_url, "api_key": "local"}],
                   "tool_calling": "json"}
            for tier, s in self.servers.items()
        }

    def config_lines(self) -> str:
        """The ``tiers:`` block as YAML text, for printing."""
        import yaml

        return str(yaml.safe_dump({"tiers": self.tiers_config()}, sort_keys=False))


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()

