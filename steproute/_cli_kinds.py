"""Which kind of steproute file a path holds, and which command takes it: so a command given
the wrong kind of file says what the file is and which command to run instead."""

from __future__ import annotations

import json
import os
import re
import stat

__all__ = ["SNIFF_BYTES", "kind_of", "wrong_kind"]

SNIFF_BYTES = 65536
"""At most this much of a file is read to tell its kind (only regular files are opened)."""

WHAT = {
    "decision log": "a decision log",
    "rows": "rows of the evaluation format",
    "artefact": "a trained artefact",
    "config": "a steproute configuration",
    "folder": "a folder",
}

_NEXT = {
    "decision log": "steproute report {p} summarises it, steproute drift {p} checks it for drift, steproute replay "
                    "{p} --config C re-decides it under another configuration, and steproute train --data {p} learns "
                    "from its rated and shadowed decisions",
    "rows": "steproute eval --data {p} --policy POLICY replays a policy over them, and "
            "steproute train --data {p} --out FILE learns one",
    "artefact": "steproute eval --policy {p} --data ROWS replays it, and a steproute.yaml names it as artefact:",
    "config": "steproute check {p} validates it",
    "folder": "steproute convert {p} --out rows.jsonl reads RouteLLM results from a folder",
}

_TYPE = re.compile(r'^\s*\{.*?"type"\s*:\s*"(decision|feedback)"')
_OUTCOMES = re.compile(r'^\s*\{.*?"outcomes"\s*:\s*\{')
_TIERS = re.compile(r"(?m)^(tiers\s*:|\[tiers[.\]])")


def kind_of(path: str | os.PathLike[str]) -> str | None:
    """``"decision log"``, ``"rows"``, ``"artefact"``, ``"config"``, ``"folder"``, or ``None``
    when the path is none of these (or cannot be read, or is not a regular file: a FIFO or a
    device is never opened). Reads at most :data:`SNIFF_BYTES`.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
        >>> _ = path.write_text('{"type": "decision", "id": "d-1"}\\n')
        >>> kind_of(path)
        'decision log'
    """
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            return "folder"
        if not stat.S_ISREG(mode):
            return None
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return "artefact"
    text = head.decode("utf-8", errors="replace")
    first = next((line for line in text.splitlines() if line.strip()), "")
    if first.lstrip().startswith("{"):
        return _json_kind(first)
    return "config" if _TIERS.search(text) else None


def _json_kind(line: str) -> str | None:
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):  # cut at SNIFF_BYTES, or not JSON: judge by its opening
        if _TYPE.match(line):
            return "decision log"
        return "rows" if _OUTCOMES.match(line) else None
    if not isinstance(entry, dict):
        return None
    if entry.get("type") in ("decision", "feedback") and "id" in entry:
        return "decision log"
    if "outcomes" in entry:
        return "rows"
    return "config" if "tiers" in entry else None


def wrong_kind(path: str, wanted: str | tuple[str, ...], option: str = "") -> str | None:
    """One line saying what ``path`` is and which command takes it, when it is a steproute
    file of another kind than ``wanted``; ``None`` otherwise (the caller reads it as usual).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
        >>> _ = path.write_text('{"type": "decision", "id": "d-1"}\\n')
        >>> wrong_kind(str(path), "rows", "--data ").endswith(
        ...     f"is a decision log, not rows of the evaluation format; convert it first: "
        ...     f"steproute convert --from log {path} --out rows.jsonl")
        True
    """
    wanted = (wanted,) if isinstance(wanted, str) else wanted
    found = kind_of(path)
    if found is None or found in wanted:
        return None
    if found == "decision log" and "rows" in wanted:
        step = f"convert it first: steproute convert --from log {path} --out rows.jsonl"
    else:
        step = _NEXT[found].format(p=path)
    expected = " or ".join(WHAT[w] for w in wanted)
    return f"{option}{path} is {WHAT[found]}, not {expected}; {step}"
