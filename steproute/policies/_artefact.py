"""Artefacts of learned policies: one zip file holding ``meta.json`` and ``arrays.npz``.

No pickle: loading an artefact runs no code from it, whatever its origin, and does not depend
on the scikit-learn version that trained it. ``meta.json`` says which policy the artefact is
for, the tier labels (model names, cheap to strong), the threshold and how it was trained.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

__all__ = ["FORMAT", "MAX_ARRAY_BYTES", "MAX_FILE_BYTES", "MAX_META_BYTES", "MEMBER_KINDS", "Artefact", "ArtefactError", "built",
           "load_artefact", "member_artefacts", "pack_strings", "save_artefact", "unpack_strings"]

T = TypeVar("T")
FORMAT = 1
MAX_FILE_BYTES = 256 << 20
"""An artefact file larger than this (256 MiB) is refused unread."""
MAX_META_BYTES = 16 << 20
"""``meta.json`` may decompress to 16 MiB at most."""
MAX_ARRAY_BYTES = 512 << 20
"""The arrays together may decompress to 512 MiB at most (declared sizes, checked before reading)."""


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
    """``classifier``, ``semantic``, ``cascade`` or ``irt``."""
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
    """Read an artefact; ``policy`` checks it is the kind expected.

    Only a regular file is opened (never a FIFO, a device or a directory); the file, its
    ``meta.json`` and the arrays once decompressed are bounded (:data:`MAX_FILE_BYTES`,
    :data:`MAX_META_BYTES`, :data:`MAX_ARRAY_BYTES`), and every array is checked against the
    shape its policy needs. Anything else is an :class:`ArtefactError` naming the file.

    Example:
        >>> load_artefact("answer.steproute", "classifier").labels  # doctest: +SKIP
        ('openai/gpt-4o-mini', 'openai/gpt-4o')
    """
    name = os.fspath(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ArtefactError(f"{name}: no such artefact file") from None
    except OSError as exc:
        raise ArtefactError(f"{name}: cannot read the artefact ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ArtefactError(f"{name}: not a regular file (a directory, device or pipe); give an artefact file")
    if info.st_size > MAX_FILE_BYTES:
        raise ArtefactError(f"{name}: the file is larger than {MAX_FILE_BYTES >> 20} MiB, the artefact limit")
    try:
        with open(path, "rb") as handle, zipfile.ZipFile(handle) as zf:
            meta = _meta(_member(zf, "meta.json", MAX_META_BYTES))
            arrays = _arrays(_member(zf, "arrays.npz", MAX_FILE_BYTES))
    except ArtefactError as exc:
        raise ArtefactError(f"{name}: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError, RuntimeError,
            NotImplementedError) as exc:
        raise ArtefactError(f"{name}: not a steproute artefact ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT:
        raise ArtefactError(f"{name}: artefact format {_said(meta.get('format'))}, this steproute reads {FORMAT}")
    kind = meta.pop("policy", None)
    meta.pop("format", None)
    if policy is not None and kind != policy:
        raise ArtefactError(f"{name}: a {_said(kind)} artefact, not a {policy!r} one")
    try:
        _check(kind, meta, arrays)
    except ArtefactError as exc:
        raise ArtefactError(f"{name}: {exc}") from None
    return Artefact(kind, meta, arrays)


def _said(value: object) -> str:
    """A value read from an artefact, as an error shows it: short ones only."""
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__}"


def built(path: str | os.PathLike[str], build: Callable[[], T]) -> T:
    """``build()`` (a policy made from a loaded artefact), any error it raises on the artefact's
    content turned into an :class:`ArtefactError` naming the file.

    Example:
        >>> built("a.steproute", lambda: 1)
        1
    """
    try:
        return build()
    except ArtefactError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as exc:
        what = f"lacks {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise ArtefactError(f"{os.fspath(path)}: the artefact does not fit its policy ({what})") from None


def _member(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ArtefactError(f"no {name} inside: not a steproute artefact") from None
    if info.file_size > limit:
        raise ArtefactError(f"{name} is larger than {limit >> 20} MiB once decompressed, the artefact limit")
    with zf.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:  # pragma: no cover - zipfile stops at the declared size
        raise ArtefactError(f"{name} is larger than {limit >> 20} MiB once decompressed, the artefact limit")
    return data


def _meta(data: bytes) -> dict[str, Any]:
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ArtefactError("meta.json is not JSON (UTF-8)") from None
    if not isinstance(meta, dict):
        raise ArtefactError("meta.json is not a JSON object")
    return meta


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``: each member's declared size checked before it is read, each
    ``.npy`` header checked against the data it has, no pickled objects."""
    arrays: dict[str, np.ndarray] = {}
    total = 0
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            key = info.filename.removesuffix(".npy")
            total += info.file_size
            if total > MAX_ARRAY_BYTES:
                raise ArtefactError(f"arrays.npz is larger than {MAX_ARRAY_BYTES >> 20} MiB once decompressed, "
                                    "the artefact limit")
            with zf.open(info) as member:
                raw = member.read(info.file_size + 1)
            arrays[key] = _npy(key, raw)
    return arrays


def _npy(key: str, raw: bytes) -> np.ndarray:
    fp = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(fp)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(fp)
        if dtype.hasobject:
            raise ArtefactError(f"array {key!r} holds Python objects (pickles are never loaded)")
        if int(np.prod(shape, dtype=object)) * dtype.itemsize > len(raw) - fp.tell():
            raise ArtefactError(f"array {key!r}: its header claims more data than it holds")
        fp.seek(0)
        return np.lib.format.read_array(fp, allow_pickle=False)
    except ArtefactError:
        raise
    except (ValueError, TypeError, EOFError, OverflowError) as exc:
        raise ArtefactError(f"array {key!r} is not a NumPy array ({exc})") from None


_NUMBER = (int, float)
_REQUIRED: dict[str, tuple[tuple[str, ...], dict[str, type | tuple[type, ...]]]] = {
    "classifier": (("terms", "idf", "steps", "hand_mean", "hand_scale", "coef", "intercept"),
                   {"embedding_dim": int, "encoder": str}),
    "semantic": (("embeddings", "quality", "step_ids", "steps"),
                 {"neighbours": int, "temperature": _NUMBER, "prior_weight": _NUMBER, "same_step_bonus": _NUMBER,
                  "encoder": str}),
    "cascade": (("mean", "scale", "coef", "intercept"), {}),
    "knn": (("references", "quality", "step_ids", "steps", "step_mean", "global_mean", "hand_mean", "hand_scale"),
            {"embedding_dim": int, "k": int, "weighting": str, "prior_strength": _NUMBER, "context_weight": _NUMBER,
             "hand_weight": _NUMBER, "step_penalty": _NUMBER, "distance_floor": _NUMBER, "encoder": str}),
    "ensemble": ((), {"members": list}),
    "irt": (("terms", "idf", "steps", "hand_mean", "hand_scale", "coef", "intercept", "difficulty", "difficulty_intercept",
             "ability", "discrimination"), {"embedding_dim": int, "encoder": str}),
    "cascade_routing": (("costs", "pre_x", "pre_y", "post_x", "post_y", "post_mix"), {"lambda": _NUMBER, "kappa": _NUMBER}),
}


def _check(kind: Any, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """That the artefact holds what its policy reads, with consistent shapes."""
    labels, threshold = meta.get("labels"), meta.get("threshold")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ArtefactError("meta.json: 'labels' must be a list of model names")
    if isinstance(threshold, bool) or not isinstance(threshold, _NUMBER) or not math.isfinite(threshold):
        raise ArtefactError("meta.json: 'threshold' must be a number")
    if kind not in _REQUIRED:
        return
    names, fields = _REQUIRED[kind]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ArtefactError(f"arrays.npz lacks {', '.join(missing)} (needed by a {kind} artefact)")
    for n in names:
        if arrays[n].dtype.kind not in "biuf":
            raise ArtefactError(f"array {n!r} is not numeric")
    for field, types in fields.items():
        value = meta.get(field)
        if isinstance(value, bool) or not isinstance(value, types):
            raise ArtefactError(f"meta.json: {field!r} is missing or of the wrong type")
        if isinstance(value, float) and not math.isfinite(value):
            raise ArtefactError(f"meta.json: {field!r} must be finite")
    try:
        _SHAPES[kind](meta, arrays, len(labels))
    except UnicodeDecodeError:
        raise ArtefactError("a packed string array is not UTF-8") from None


def _shape(ok: bool, what: str) -> None:
    if not ok:
        raise ArtefactError(f"arrays of inconsistent shapes: {what}")


def _classifier_shapes(meta: Mapping[str, Any], a: Mapping[str, np.ndarray], tiers: int) -> None:
    v, s = len(unpack_strings(a["terms"])), len(unpack_strings(a["steps"]))
    d, h = meta["embedding_dim"], a["hand_mean"].size
    _shape(d >= 0 and all(a[n].ndim == 1 for n in ("terms", "steps", "idf", "hand_mean", "hand_scale", "intercept")),
           "terms, steps, idf, hand_mean, hand_scale and intercept must be vectors")
    _shape(a["idf"].size == v and a["hand_scale"].size == h, "idf must have one weight a term, hand_scale one a feature")
    _shape(a["coef"].shape == (tiers, v + 2 * d + h + s), f"coef must be {tiers} × {v + 2 * d + h + s}")
    _shape(a["intercept"].size == tiers, f"intercept must have {tiers} values")


def _semantic_shapes(meta: Mapping[str, Any], a: Mapping[str, np.ndarray], tiers: int) -> None:
    e, q = a["embeddings"], a["quality"]
    _shape(e.ndim == 2 and e.shape[0] >= 1, "embeddings must be references × dimensions")
    _shape(q.shape == (e.shape[0], tiers), f"quality must be references × {tiers} tiers")
    _shape(a["step_ids"].shape == (e.shape[0],) and a["steps"].ndim == 1, "step_ids must have one step a reference")
    _shape(meta["neighbours"] >= 1 and meta["temperature"] > 0, "neighbours must be 1 or more, temperature above 0")
    unpack_strings(a["steps"])


def _cascade_shapes(meta: Mapping[str, Any], a: Mapping[str, np.ndarray], tiers: int) -> None:
    n = a["mean"].size
    _shape(all(a[k].ndim == 1 and a[k].size == n for k in ("mean", "scale", "coef")) and a["intercept"].size >= 1,
           "mean, scale and coef must be vectors of one length, intercept one value")


def _knn_shapes(meta: Mapping[str, Any], a: Mapping[str, np.ndarray], tiers: int) -> None:
    r, d = a["references"], meta["embedding_dim"]
    _shape(r.ndim == 2 and r.shape[0] >= 1 and d >= 1, "references must be rows × features")
    h = r.shape[1] - 2 * d
    _shape(h >= 0 and a["hand_mean"].shape == (h,) and a["hand_scale"].shape == (h,),
           f"references must have 2 × embedding_dim ({2 * d}) columns plus one a text measure (hand_mean, hand_scale)")
    _shape(a["quality"].shape == (r.shape[0], tiers), f"quality must be references × {tiers} tiers")
    steps = len(unpack_strings(a["steps"]))
    _shape(a["step_ids"].shape == (r.shape[0],), "step_ids must have one step a reference")
    _shape(a["step_ids"].size == 0 or (0 <= a["step_ids"].min() and a["step_ids"].max() < steps),
           "step_ids must index steps")
    _shape(a["step_mean"].shape == (steps, tiers) and a["global_mean"].shape == (tiers,),
           f"step_mean must be steps × {tiers} tiers, global_mean {tiers} values")
    if meta["k"] < 1:
        raise ArtefactError("meta.json: 'k' must be 1 or more")
    if meta["weighting"] not in ("uniform", "distance"):
        raise ArtefactError("meta.json: 'weighting' must be 'uniform' or 'distance'")
    if meta["prior_strength"] < 0 or meta["distance_floor"] <= 0:
        raise ArtefactError("meta.json: 'prior_strength' must be 0 or more and 'distance_floor' above 0")


MEMBER_KINDS = ("classifier", "semantic", "knn")
"""What an ensemble may bundle."""


def member_artefacts(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[tuple[float, Artefact]]:
    """An ``ensemble`` artefact's members, with their weights: member ``i``'s arrays are stored as ``m<i>.<name>``.

    Example:
        >>> member_artefacts({"labels": ["a", "b"], "members": [{"policy": "x", "weight": 1, "meta": {}}]},
        ...                  {"m0.v": np.zeros(1)})[0][1].arrays["v"].tolist()
        [0.0]
    """
    out = []
    for i, member in enumerate(meta["members"]):
        prefix = f"m{i}."
        inner = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        out.append((float(member["weight"]), Artefact(member["policy"], {**member["meta"], "labels": meta["labels"],
                                                                         "threshold": 0.0}, inner)))
    return out


def _ensemble_shapes(meta: Mapping[str, Any], a: Mapping[str, np.ndarray], tiers: int) -> None:
    members = meta["members"]
    if not members:
        raise ArtefactError("meta.json: 'members' must list one member or more")
    for i, member in enumerate(members):
        where = f"meta.json: members[{i}]"
        if not isinstance(member, dict) or not isinstance(member.get("meta"), dict):
            raise ArtefactError(f"{where} must be an object with 'policy', 'weight' and 'meta'")
        if member.get("policy") not in MEMBER_KINDS:
            raise ArtefactError(f"{where}.policy must be one of {', '.join(MEMBER_KINDS)}")
        weight = member.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, _NUMBER) or not math.isfinite(weight) or weight < 0:
            raise ArtefactError(f"{where}.weight must be a number, 0 or more")
    if sum(float(m["weight"]) for m in members) <= 0:
        raise ArtefactError("meta.json: the members' weights must not all be 0")
    for i, (_, member) in enumerate(member_artefacts(meta, a)):
        try:
            _check(member.policy, dict(member.meta), member.arrays)
        except ArtefactError as exc:
            raise ArtefactError(f"members[{i}] ({member.policy}): {exc}") from None


def _irt_shapes(meta: Mapping[str, Any], a: Mapping[str, np.ndarray], tiers: int) -> None:
    _classifier_shapes(meta, a, tiers)
    _shape(a["difficulty"].ndim == 1 and a["difficulty"].size == a["coef"].shape[1],
           f"difficulty must have one weight a feature ({a['coef'].shape[1]})")
    _shape(a["difficulty_intercept"].size == 1, "difficulty_intercept must be one value")
    _shape(a["ability"].size == tiers and a["discrimination"].size == tiers,
           f"ability and discrimination must have {tiers} values")


def _cascade_routing_shapes(meta: Mapping[str, Any], a: Mapping[str, np.ndarray], tiers: int) -> None:
    """Costs and calibrators per tier, then the embedded classifier and answer scorer as their own kinds."""
    _shape(a["costs"].shape == (tiers,), f"costs must have {tiers} values")
    _shape(a["pre_x"].ndim == 2 and a["pre_x"].shape[0] == tiers and a["pre_y"].shape == a["pre_x"].shape,
           f"pre_x and pre_y must be {tiers} × knots")
    _shape(a["post_x"].ndim == 2 and a["post_x"].shape[0] == tiers - 1 and a["post_y"].shape == a["post_x"].shape,
           f"post_x and post_y must be {tiers - 1} × knots")
    _shape(a["post_mix"].shape == (tiers - 1, 3), f"post_mix must be {tiers - 1} × 3")
    for name, kind in (("classifier", "classifier"), ("scorer", "cascade")):
        part = meta.get(name)
        if not isinstance(part, dict):
            raise ArtefactError(f"meta.json: {name!r} is missing or of the wrong type")
        try:
            _check(kind, dict(part), {k.partition(".")[2]: v for k, v in a.items() if k.startswith(name + ".")})
        except ArtefactError as exc:
            raise ArtefactError(f"its {name}: {exc}") from None


_SHAPES = {"classifier": _classifier_shapes, "semantic": _semantic_shapes, "cascade": _cascade_shapes,
           "knn": _knn_shapes, "ensemble": _ensemble_shapes, "irt": _irt_shapes,
           "cascade_routing": _cascade_routing_shapes}
