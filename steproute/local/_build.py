"""Building llama.cpp's ``llama-server`` once per machine, from the source in a PyPI sdist.

The source is the llama.cpp tree vendored in ``llama-cpp-python``'s sdist (so set-up needs only
the package index, cmake and a C++ compiler). The binary goes to
``cache_dir()/llama.cpp-<version>/bin/llama-server`` with a ``build.json`` stamp holding its
size and sha256; a missing stamp or a binary that does not match it means a broken or partial
build, which is redone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from steproute.errors import LocalModelError
from steproute.local._cache import locked, pip_download, sha256_of

__all__ = ["LLAMA_CPP_PYTHON_VERSION", "build_is_valid", "ensure_llama_server"]

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
"""The ``llama-cpp-python`` sdist whose vendored llama.cpp is built."""

_CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
_PROGRESS = re.compile(r"\[\s*(\d+)/(\d+)\]")


def _install_dir(root: Path) -> Path:
    return root / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}"


def build_is_valid(install: Path) -> bool:
    """True when ``install`` holds a complete build: a binary that matches its stamp."""
    binary = install / "bin" / "llama-server"
    try:
        stamp = json.loads((install / "build.json").read_text())
        if binary.stat().st_size != stamp["size"] or not os.access(binary, os.X_OK):
            return False
        return bool(sha256_of(binary) == stamp["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_llama_server(*, rebuild: bool = False, progress: bool = True) -> Path:
    """Path of a working ``llama-server``; built into the cache on first use (about 5-10 min).

    ``$STEPROUTE_LLAMA_SERVER`` names a binary of your own instead (nothing is built).

    Raises:
        LocalModelError: cmake or a compiler is missing, or the build failed (the message
            gives the log file and its last lines).
    """
    explicit = os.environ.get("STEPROUTE_LLAMA_SERVER")
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LocalModelError(f"STEPROUTE_LLAMA_SERVER={explicit} is not an executable file")
        return path
    with locked("build") as root:
        install = _install_dir(root)
        if not rebuild and build_is_valid(install):
            return install / "bin" / "llama-server"
        for tool in ("cmake", "c++"):
            if shutil.which(tool) is None:
                raise LocalModelError(
                    f"building llama-server needs {tool!r} on PATH (Debian: apt-get install cmake g++)")
        shutil.rmtree(install, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
            work = Path(tmp)
            _say(progress, f"fetching llama.cpp source (llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} sdist)")
            (sdist,) = pip_download([f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"], work / "sdist", source=True)
            source = _extract_vendored_llama_cpp(sdist, work / "src")
            built = _cmake_build(source, work / "build", root / "build.log", progress=progress)
            staging = work / "install"
            (staging / "bin").mkdir(parents=True)
            binary = staging / "bin" / "llama-server"
            shutil.copy2(built, binary)
            version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False)
            if version.returncode != 0:
                raise LocalModelError(f"the freshly built llama-server does not run: {version.stderr.strip()[-400:]}")
            stamp = {"size": binary.stat().st_size, "sha256": sha256_of(binary),
                     "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION, "version": (version.stderr or version.stdout).strip()}
            (staging / "build.json").write_text(json.dumps(stamp, indent=2))
            os.replace(staging, install)
        return install / "bin" / "llama-server"


def _say(enabled: bool, text: str) -> None:
    if enabled:
        import sys

        print(f"steproute: {text}", file=sys.stderr, flush=True)


def _extract_vendored_llama_cpp(sdist: Path, dest: Path) -> Path:
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
        if not members:
            raise LocalModelError(f"{sdist.name} has no {prefix} directory")
        for m in members:
            if m.issym() or m.islnk() or ".." in Path(m.name).parts or m.name.startswith("/"):
                raise LocalModelError(f"{sdist.name}: refusing unsafe archive member {m.name}")
        if hasattr(tarfile, "data_filter"):
            archive.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Pythons without extraction filters; members checked above
            archive.extractall(dest, members=members)
    return dest / prefix


def _cmake_build(source: Path, build: Path, log_path: Path, *, progress: bool) -> Path:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    jobs = str(os.cpu_count() or 2)
    steps = [
        ["cmake", "-S", str(source), "-B", str(build), *generator, *_CMAKE_FLAGS],
        ["cmake", "--build", str(build), "--target", "llama-server", "--parallel", jobs],
    ]
    from tqdm.auto import tqdm

    with open(log_path, "w") as log, tqdm(desc="building llama-server", unit="step", disable=not progress,
                                          leave=False, mininterval=1.0) as bar:
        for command in steps:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                match = _PROGRESS.search(line)
                if match:
                    bar.total = int(match.group(2))
                    bar.n = int(match.group(1))
                    bar.refresh()
            if proc.wait() != 0:
                log.flush()
                tail = "\n".join(log_path.read_text().splitlines()[-15:])
                raise LocalModelError(f"building llama-server failed; full log: {log_path}\n{tail}")
    for candidate in (build / "bin" / "llama-server", build / "tools" / "server" / "llama-server"):
        if candidate.is_file():
            return candidate
    raise LocalModelError(f"the build finished but produced no llama-server binary; log: {log_path}")
