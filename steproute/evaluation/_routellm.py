"""Loaders for RouteLLM's per-query benchmark results (``../shared/data/routellm``).

Each benchmark becomes rows of the evaluation format. Costs are estimates: tokens are counted
at 4 characters each and priced per million tokens (RouteLLM's own figures by default: GPT-4
Turbo $20, Mixtral-class $0.90, input and output alike). Prompts RouteLLM lists as
contaminated are dropped and counted; rows with a value that is not a result are reported
with their file and line, never silently dropped.

Example:
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "mmlu_astronomy.csv").write_text("prompt,weak,strong\\nWhat is a star?,True,maybe\\n")
    >>> load = load_mmlu(d, models=("weak", "strong"))
    >>> load.problems
    ["mmlu_astronomy.csv line 2: strong must be True or False, got 'maybe'"]
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from steproute.evaluation._format import EvalRow, Loaded, Outcome

__all__ = ["DEFAULT_PRICES", "GPT4", "MIXTRAL", "load_gsm8k", "load_mmlu", "load_mt_bench", "load_routellm"]

GPT4 = "gpt-4-1106-preview"
MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
DEFAULT_PRICES: Mapping[str, float] = {MIXTRAL: 0.90, GPT4: 20.0}
"""USD per million tokens (input and output alike), as RouteLLM priced them."""
_MODELS = (MIXTRAL, GPT4)
CHARS_PER_TOKEN = 4


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def _cost(model: str, prices: Mapping[str, float], input_text: str, output_tokens: int) -> float:
    return (_tokens(input_text) + output_tokens) * prices.get(model, 0.0) / 1e6


def _contaminated(path: Path) -> set[str]:
    if not path.exists():
        return set()
    out = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.add(json.loads(line)["eval_prompt"].strip())
    return out


def _jsonl(path: Path, loaded: Loaded, check: Callable[[dict], None]) -> Iterator[dict]:
    """The JSON objects of a file that pass ``check``; each bad line becomes a problem with its number."""
    with open(path, encoding="utf-8") as fh:
        for line, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    raise ValueError(f"not a JSON object but {type(obj).__name__}")
                check(obj)
            except (json.JSONDecodeError, ValueError) as exc:
                loaded.problems.append(f"{path.name} line {line}: {exc}")
                continue
            yield obj


def _bool(value: str | None, column: str) -> float:
    if value in ("True", "true", "1"):
        return 1.0
    if value in ("False", "false", "0"):
        return 0.0
    raise ValueError(f"{column} must be True or False, got {str(value)[:30]!r}")


def _csv_rows(path: Path, models: Iterable[str], loaded: Loaded) -> Iterable[tuple[int, dict[str, str]]]:
    csv.field_size_limit(1 << 30)
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [m for m in models if m not in (reader.fieldnames or ())]
        if missing:
            loaded.problems.append(f"{path.name} line 1: no column for model(s) {', '.join(missing)} "
                                   f"(columns: {', '.join(reader.fieldnames or ())})")
            return
        line = 1
        for record in reader:
            yield line + 1, record
            line = reader.line_num


def _prompts(path: Path, models: Iterable[str], loaded: Loaded,
             dropped: set[str]) -> Iterable[tuple[int, int, dict[str, str], str]]:
    """``(index, line, record, prompt)`` of a results file's usable rows: contaminated prompts are
    counted and skipped, empty ones reported."""
    for index, (line, record) in enumerate(_csv_rows(path, models, loaded)):
        prompt = record.get("prompt") or ""
        if prompt.strip() in dropped:
            loaded.contaminated += 1
        elif not prompt.strip():
            loaded.problems.append(f"{path.name} line {line}: prompt is empty")
        else:
            yield index, line, record, prompt


def load_mmlu(directory: str | Path, *, models: tuple[str, ...] = _MODELS,
              prices: Mapping[str, float] = DEFAULT_PRICES) -> Loaded:
    """MMLU: one row per question of ``mmlu_<subject>.csv``; quality 1 when the model was right.

    The step is ``mmlu/<subject>``: each subject is a kind of request of the workload, as a
    named step is in an agent. Answers are one token.
    """
    directory = Path(directory)
    if (directory / "responses").is_dir():
        directory = directory / "responses"
    loaded = Loaded()
    dropped = _contaminated(directory.parent / "contaminated_prompts.jsonl")
    files = sorted(directory.glob("mmlu_*.csv"))
    if not files:
        loaded.problems.append(f"{directory}: no mmlu_<subject>.csv files")
    for path in files:
        subject = path.stem.removeprefix("mmlu_")
        for index, line, record, prompt in _prompts(path, models, loaded, dropped):
            try:
                outcomes = {m: Outcome(_bool(record.get(m), m), _cost(m, prices, prompt, 1)) for m in models}
            except ValueError as exc:
                loaded.problems.append(f"{path.name} line {line}: {exc}")
                continue
            loaded.rows.append(EvalRow(f"mmlu-{subject}-{index}", ({"role": "user", "content": prompt},), outcomes,
                                       step=f"mmlu/{subject}", meta={"subject": subject}))
    return loaded


def load_gsm8k(path: str | Path, *, models: tuple[str, ...] = _MODELS,
               prices: Mapping[str, float] = DEFAULT_PRICES) -> Loaded:
    """GSM8K: one row per problem, with each model's full answer text as ``response``."""
    path = Path(path)
    if path.is_dir():
        path = path / "gsm8k_responses.csv"
    loaded = Loaded()
    dropped = _contaminated(path.parent / "contaminated_prompts.jsonl")
    for index, line, record, prompt in _prompts(path, models, loaded, dropped):
        try:
            outcomes = {}
            for m in models:
                response = record.get(f"{m}_response")
                if response is None:
                    raise ValueError(f"no {m}_response column")
                outcomes[m] = Outcome(_bool(record.get(m), m), _cost(m, prices, prompt, _tokens(response)), response)
        except ValueError as exc:
            loaded.problems.append(f"{path.name} line {line}: {exc}")
            continue
        loaded.rows.append(EvalRow(f"gsm8k-{index}", ({"role": "user", "content": prompt},), outcomes, step="gsm8k"))
    return loaded


_ANSWER = re.compile(r"### Assistant A:\n(.*?)(?=\n\n### User:|\n\n<\|The End of Assistant A's Conversation)", re.S)


def load_mt_bench(directory: str | Path, *, models: tuple[str, ...] = _MODELS,
                  prices: Mapping[str, float] = DEFAULT_PRICES) -> Loaded:
    """MT-Bench: one row per (question, turn); quality is the GPT-4 judge's 1–10 score / 10.

    A second turn's conversation holds the first question, the strong model's first answer
    (as recorded in the judgement) and the second question.
    """
    directory = Path(directory)
    loaded = Loaded()

    def check_question(q: dict) -> None:
        turns = q.get("turns")
        if "question_id" not in q or not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise ValueError("needs question_id and a non-empty list of turns (strings)")

    questions = {q["question_id"]: q for q in _jsonl(directory / "question.jsonl", loaded, check_question)}
    dropped = _contaminated(directory / "contaminated_prompts.jsonl")
    grades: dict[tuple[int, int], dict[str, tuple[float, str]]] = {}

    def check_grade(j: dict) -> None:
        score = j.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 1 <= score <= 10:
            raise ValueError(f"score must be a number from 1 to 10, got {score!r}")
        if j.get("model") not in models:
            raise ValueError(f"unknown model {j.get('model')!r}")
        if j.get("question_id") not in questions:
            raise ValueError(f"question_id {j.get('question_id')!r} is not in question.jsonl")
        if j.get("turn") not in (1, 2):
            raise ValueError(f"turn must be 1 or 2, got {j.get('turn')!r}")

    for j in _jsonl(directory / "judgements.jsonl", loaded, check_grade):
        answers = _ANSWER.findall(j.get("user_prompt", ""))
        grades.setdefault((j["question_id"], j["turn"]), {})[j["model"]] = (j["score"] / 10.0, "\n\n".join(answers))
    for (qid, turn), by_model in sorted(grades.items()):
        q = questions[qid]
        if q["turns"][0].strip() in dropped:
            loaded.contaminated += 1
            continue
        missing = [m for m in models if m not in by_model]
        if missing:
            loaded.problems.append(f"judgements.jsonl: question {qid} turn {turn} has no grade for {', '.join(missing)}")
            continue
        if turn > len(q["turns"]):
            loaded.problems.append(f"judgements.jsonl: question {qid} has no turn {turn} in question.jsonl")
            continue
        messages: list[dict[str, str]] = [{"role": "user", "content": q["turns"][0]}]
        if turn == 2:
            first = grades.get((qid, 1), {}).get(models[-1], (0.0, ""))[1]
            messages += [{"role": "assistant", "content": first}, {"role": "user", "content": q["turns"][1]}]
        prompt = "\n".join(m["content"] for m in messages)
        outcomes = {m: Outcome(by_model[m][0], _cost(m, prices, prompt, _tokens(by_model[m][1].split("\n\n")[-1] or "x")))
                    for m in models}
        loaded.rows.append(EvalRow(f"mt_bench-{qid}-{turn}", tuple(messages), outcomes,
                                   step=f"mt_bench/{q.get('category', 'general')}",
                                   meta={"turn": turn, "category": q.get("category", "general")}))
    return loaded


def load_routellm(path: str | Path, benchmark: str | None = None, **kwargs) -> Loaded:
    """Any of the three, picked by ``benchmark`` (``mmlu``, ``gsm8k``, ``mt_bench``) or by the path's name."""
    path = Path(path)
    name = benchmark or next((b for b in ("mt_bench", "gsm8k", "mmlu") if b in str(path)), None)
    loaders = {"mmlu": load_mmlu, "gsm8k": load_gsm8k, "mt_bench": load_mt_bench}
    if name not in loaders:
        raise ValueError(f"cannot tell which benchmark {path} holds; pass one of {', '.join(loaders)}")
    return loaders[name](path, **kwargs)
