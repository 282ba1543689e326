"""Artefacts of learned policies: one zip file holding ``meta.json`` and ``arrays.npz``.

No pickle: loading an artefact runs no code from it, whatever its origin, and does not depend
on the scikit-learn version that trained it. ``meta.json`` says which policy the artefact is
for, the tier labels (model names, cheap to strong), the threshold and how it was trained.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FORMAT", "Artefact", "ArtefactError", "load_artefact", "pack_strings", "save_artefact", "unpack_strings"]

FORMAT = 1


def pack_strings(strings: list[str]) -> np.ndarray:
    """Strings as one UTF-8 byte array (newline-separated): small, and quick to read back."""
    if any("\n" in s for s in strings):
        raise ValueError("strings to pack must not contain newlines")
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8)


def unpack_strings(packed: np.ndarray) -> list[str]:
    text = packed.tobytes().decode("utf-8")
    return text.split("\n") if text else []


class ArtefactError(ValueError):
    """An artefact file is missing, unreadable, or not what the config expects."""


@dataclass(frozen=True)
class Artefact:
    policy: str
    """``classifier`` or ``semantic``."""
    meta: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])


def save_artefact(artefact: Artefact, path: str | os.PathLike[str]) -> None:
    """Write atomically: a temporary file renamed into place, so a reader never sees half a file."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **dict(artefact.arrays))  # type: ignore[arg-type]
    tmp = f"{os.fspath(path)}.tmp-{os.getpid()}"
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("meta.json", json.dumps({"format": FORMAT, "policy": artefact.policy, **artefact.meta}, indent=1))
            zf.writestr("arrays.npz", buffer.getvalue())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_artefact(path: str | os.PathLike[str], policy: str | None = None) -> Artefact:
    """Read an artefact; ``policy`` checks it is the kind expected."""
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
            with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise ArtefactError(f"{os.fspath(path)}: no such artefact file") from None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ArtefactError(f"{os.fspath(path)}: not a steproute artefact ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ArtefactError(f"{os.fspath(path)}: artefact format {meta.get('format')!r}, this steproute reads {FORMAT}")
    kind = meta.pop("policy", None)
    meta.pop("format", None)
    if policy is not None and kind != policy:
        raise ArtefactError(f"{os.fspath(path)}: a {kind!r} artefact, not a {policy!r} one")
    for key in ("labels", "threshold"):
        if key not in meta:
            raise ArtefactError(f"{os.fspath(path)}: meta.json has no {key!r}")
    return Artefact(kind, meta, arrays)
