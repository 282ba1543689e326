"""Embeddings for training: each distinct text encoded once per run, and kept on disk across runs.

Training reads every row's embeddings several times (each cross-validation fold, then the final
fit), and a transformer encoder takes milliseconds a text, so :func:`embed_texts` encodes each
distinct text once and the callers slice the result. With a cache directory, each vector is
also stored under the sha256 of the encoder's id and the text, so a later run on the same rows
(another target, another ``--folds``, another policy) reads them instead of encoding again.

The cache is a folder of shard files, one per run that encoded something new, each written to
a temporary name and renamed into place. A shard is trusted only when its header, its size
and the sha256 of its payload all check: a partial or damaged shard is deleted and its texts
are encoded again (and stored in a new shard). Deleting the folder is always safe.

Example:
    >>> import tempfile
    >>> from steproute.policies.features import get_encoder
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     first = embed_texts(get_encoder(), ["Is Mars red?", "", "Is Mars red?"], cache=tmp)
    ...     again = embed_texts(get_encoder(), ["Is Mars red?"], cache=tmp)
    >>> first.shape, bool((first[0] == first[2]).all()), bool((again[0] == first[0]).all())
    ((3, 256), True, True)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EmbeddingCache", "default_cache_dir", "embed_texts", "encoder_id"]

_MAGIC = b"steproute-embeddings 1\n"
_MAX_SHARDS = 8
"""More shards than this after a run are merged into one."""
_BATCH = 256
"""Texts per call to the encoder: the unit of progress."""


def default_cache_dir() -> Path:
    """``embeddings/`` in steproute's per-machine cache (``$STEPROUTE_CACHE_DIR`` or ``~/.cache/steproute``)."""
    from steproute.local import cache_dir

    return cache_dir() / "embeddings"


def encoder_id(encoder: Any) -> str:
    """The encoder's name and the version of the package its weights come from (if it names one).

    Example:
        >>> from steproute.policies.features import get_encoder
        >>> encoder_id(get_encoder()).startswith("wordllama-l2-256@")
        True
    """
    package = getattr(encoder, "package", None)
    if not package:
        return str(encoder.name)
    try:
        return f"{encoder.name}@{metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return str(encoder.name)


class EmbeddingCache:
    """Vectors of one encoder by content hash, in shard files under ``root/<encoder id>/``."""

    def __init__(self, root: str | os.PathLike[str], encoder: str, dim: int) -> None:
        self.encoder, self.dim = encoder, dim
        self.folder = Path(root) / re.sub(r"[^A-Za-z0-9._@-]", "_", encoder)
        self.rebuilt: list[Path] = []
        """Shards found damaged (and deleted) by the last :meth:`load`."""

    def key(self, text: str) -> bytes:
        """sha256 of the encoder id and the text."""
        return hashlib.sha256(self.encoder.encode() + b"\0" + text.encode("utf-8", "surrogatepass")).digest()

    def load(self) -> tuple[dict[bytes, int], np.ndarray, list[Path]]:
        """``(row of each key, vectors, shards read)`` from every shard that checks."""
        index: dict[bytes, int] = {}
        blocks: list[np.ndarray] = []
        shards: list[Path] = []
        self.rebuilt = []
        for path in sorted(self.folder.glob("*.emb")) if self.folder.is_dir() else []:
            read = self._read(path)
            if read is None:
                self.rebuilt.append(path)
                path.unlink(missing_ok=True)
                continue
            keys, vectors = read
            base = sum(len(b) for b in blocks)
            for i, k in enumerate(keys):
                index.setdefault(k, base + i)
            blocks.append(vectors)
            shards.append(path)
        vectors = np.concatenate(blocks) if blocks else np.zeros((0, self.dim), dtype=np.float32)
        return index, vectors, shards

    def _read(self, path: Path) -> tuple[list[bytes], np.ndarray] | None:
        """A shard's keys and vectors, or ``None`` when anything about it does not check."""
        try:
            data = path.read_bytes()
            if not data.startswith(_MAGIC):
                return None
            end = data.index(b"\n", len(_MAGIC))
            head = json.loads(data[len(_MAGIC):end])
            payload = memoryview(data)[end + 1:]
            count, dim = int(head["count"]), int(head["dim"])
            if (head["encoder"] != self.encoder or dim != self.dim or count < 0
                    or len(payload) != count * (32 + 4 * dim)
                    or hashlib.sha256(payload).hexdigest() != head["sha256"]):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        keys = [bytes(payload[32 * i:32 * (i + 1)]) for i in range(count)]
        vectors = np.frombuffer(payload[32 * count:], dtype="<f4").reshape(count, dim).astype(np.float32)
        return keys, vectors

    def write(self, keys: Sequence[bytes], vectors: np.ndarray) -> Path:
        """Store ``vectors`` under ``keys`` in a new shard (written to a temporary file, then renamed)."""
        payload = b"".join(keys) + np.ascontiguousarray(vectors, dtype="<f4").tobytes()
        digest = hashlib.sha256(payload).hexdigest()
        head = json.dumps({"encoder": self.encoder, "dim": self.dim, "count": len(keys), "sha256": digest})
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{digest[:32]}.emb"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_MAGIC + head.encode() + b"\n")
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def compact(self, index: dict[bytes, int], vectors: np.ndarray, shards: Sequence[Path]) -> None:
        """Merge the shards read into one (the shards another process wrote meanwhile stay)."""
        keys = list(index)
        merged = self.write(keys, vectors[[index[k] for k in keys]])
        for path in shards:
            if path != merged:
                path.unlink(missing_ok=True)


def embed_texts(encoder: Any, texts: Sequence[str], *, cache: str | os.PathLike[str] | bool = False,
                progress: Callable[[str, int], Any] | None = None) -> np.ndarray:
    """``(len(texts), encoder.dim)`` float32 embeddings, each distinct text encoded once.

    ``cache``: ``True`` for :func:`default_cache_dir`, a folder, or ``False`` for none.
    ``progress(stage, total)`` (a tqdm-like factory) is told of each batch encoded.
    """
    distinct = list(dict.fromkeys(texts))
    store = None
    if cache:
        store = EmbeddingCache(default_cache_dir() if cache is True else cache, encoder_id(encoder), encoder.dim)
        index, known, shards = store.load()
        keys = [store.key(t) for t in distinct]
        todo = [i for i, k in enumerate(keys) if k not in index]
    else:
        todo = list(range(len(distinct)))
    fresh = np.zeros((len(todo), encoder.dim), dtype=np.float32)
    if todo:
        bar = progress(f"embedding {len(todo)} texts ({encoder.name})", len(todo)) if progress else None
        for start in range(0, len(todo), _BATCH):
            batch = [distinct[i] for i in todo[start:start + _BATCH]]
            fresh[start:start + len(batch)] = encoder.encode(batch)
            if bar:
                bar.update(len(batch))
        if bar:
            bar.close()
    if store is None:
        rows = fresh
    else:
        if todo:
            written = store.write([keys[i] for i in todo], fresh)
            base = len(known)
            for j, i in enumerate(todo):
                index.setdefault(keys[i], base + j)
            known = np.concatenate([known, fresh])
            shards = [*shards, written]
            if len(shards) > _MAX_SHARDS:
                store.compact(index, known, shards)
        rows = known[[index[k] for k in keys]] if keys else fresh
    position = {t: i for i, t in enumerate(distinct)}
    return rows[[position[t] for t in texts]] if len(texts) else np.zeros((0, encoder.dim), dtype=np.float32)
