"""``steproute convert | train | eval | calibrate``: the offline side of the command line (their
arguments are in ``steproute._cli_parsers``)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from steproute._cli_rows import fail, one_line, read_data
from steproute._cli_train_output import print_blend, print_spread, trainers

__all__ = ["one_line", "run"]


def _progress(quiet: bool) -> Any:
    from tqdm import tqdm

    def bar(stage: str, total: int) -> Any:
        return tqdm(total=total, desc=stage, unit="", file=sys.stderr, disable=True if quiet else None, leave=False)

    return bar


_fail = fail


def _target(args: argparse.Namespace) -> Any:
    from steproute.evaluation import Target

    given = {k: getattr(args, k) for k in ("strong_share", "quality_floor", "quality_ratio") if getattr(args, k) is not None}
    return Target(**given) if given else None


def _convert(args: argparse.Namespace) -> int:
    from steproute.evaluation import from_decision_log, load_routellm, split_rows, write_rows

    if (args.holdout is None) != (args.holdout_out is None):
        return _fail("convert", "--holdout and --holdout-out go together")
    wrong = _convert_source(args.source, args.kind)
    if wrong:
        return _fail("convert", wrong)
    try:
        loaded = from_decision_log(args.source) if args.kind == "log" else load_routellm(args.source, args.benchmark)
    except (OSError, ValueError) as exc:
        return _fail("convert", str(exc))
    for problem in loaded.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not loaded.rows:
        return _fail("convert", f"{args.source}: no usable rows", 1)
    rows = loaded.rows
    if args.holdout is not None:
        rows, held = split_rows(rows, args.holdout, args.seed)
        print(f"wrote {write_rows(held, args.holdout_out)} held-out rows to {args.holdout_out}")
    print(f"wrote {write_rows(rows, args.out)} rows to {args.out}"
          + (f" ({loaded.contaminated} contaminated prompts dropped)" if loaded.contaminated else "")
          + (f"; {len(loaded.problems)} problem(s) reported above" if loaded.problems else ""))
    return 0


def _convert_source(source: str, kind: str) -> str | None:
    """What is wrong with SOURCE for ``--from KIND``, pointing at the right option or command."""
    from steproute._cli_kinds import kind_of

    found = kind_of(source)
    if found == "rows":
        return (f"{source} is already rows of the evaluation format; give it to steproute train --data {source} "
                f"or steproute eval --data {source}")
    if found == "decision log" and kind != "log":
        return f"{source} is a decision log; add --from log: steproute convert --from log {source} --out ROWS"
    if found == "folder" and kind == "log":
        return f"{source} is a folder, not a decision log; RouteLLM results are read without --from log"
    if found in ("artefact", "config"):
        return f"{source} is a {'trained artefact' if found == 'artefact' else 'steproute configuration'}, " \
               "not RouteLLM results or a decision log"
    return None


def _figures(summary: Any) -> list[tuple[str, str]]:
    s = summary
    out = [("rows", str(s.rows)), ("threshold", f"{s.threshold:.4g}"), ("quality", f"{s.quality:.4f}"),
           ("strong share", f"{s.strong_share:.1%}"), ("cost", f"${s.cost_usd:.4f}"), ("APGR", f"{s.apgr:.3f}"),
           ("CPT(50%)", f"{s.cpt50:.1%}"), ("CPT(80%)", f"{s.cpt80:.1%}")]
    if s.aiq is not None:
        out.append(("AIQ", f"{s.aiq:.4f}"))
    if getattr(s, "ece", None) is not None:
        out.append(("ECE (10 bins)", f"{s.ece:.4f}"))
    out += [("always cheapest", f"{s.weak_quality:.4f}  ${s.weak_cost_usd:.4f}"),
            ("always strongest", f"{s.strong_quality:.4f}  ${s.strong_cost_usd:.4f}"), ("oracle", f"{s.oracle_quality:.4f}")]
    return out


def _print_figures(title: str, summary: Any) -> None:
    from steproute._text_table import text_table

    print(title)
    print(text_table(["figure", "value"], _figures(summary)))


def _train(args: argparse.Namespace) -> int:
    from steproute.evaluation import models_by_cost

    rows, code = read_data(args.data, "train")
    if code:
        return code
    models = tuple(args.models.split(",")) if args.models else models_by_cost(rows)
    if len(models) < 2:
        return _fail("train", f"need outcomes of two or more models; the rows have {', '.join(models)}")
    refused = _folds_for(args, rows, models)
    if refused:
        return refused
    if args.policy == "cascade":
        return _train_cascade(args, rows, models)
    if args.policy == "cascade_routing":
        from steproute._cli_routing import train_routing

        return train_routing(args, rows, models, _trained)
    train = trainers()[args.policy]
    artefact = _trained(args, train, rows, models, encoder=args.encoder)
    if isinstance(artefact, int):
        return artefact
    cv = artefact.meta.get("cross_validation")
    if args.json:
        print(json.dumps({"artefact": args.out, "policy": artefact.policy, "models": list(models),
                          "threshold": artefact.threshold, "cross_validation": cv,
                          **({"blend": artefact.meta["blend"]} if "blend" in artefact.meta else {})}))
        return 0
    if "blend" in artefact.meta:
        print_blend(artefact.meta["blend"])
    print(f"wrote {args.out}: {artefact.policy} over {', '.join(models)} (cheap to strong), {len(rows)} rows, "
          f"threshold {artefact.threshold:.4g} for {artefact.meta['target']}")
    if cv:
        from steproute.evaluation import Summary

        figures = {k: (tuple(v) if k == "models" else v) for k, v in cv.items() if k not in ("folds", "thresholds")}
        _print_figures(f"{cv['folds']}-fold cross-validation (out-of-fold estimates):", Summary(**figures))  # type: ignore[arg-type]
        print_spread(cv["folds"], cv.get("thresholds"))
    return 0


def _folds_for(args: argparse.Namespace, rows: list, models: tuple[str, ...]) -> int:
    """Set ``args.folds`` (default 5; 0 for rows with one model's outcome each, said on stderr);
    the exit code when the rows cannot train this policy, else 0."""
    partial = sum(1 for r in rows if any(m not in r.outcomes for m in models))
    if not partial or any(all(m not in r.outcomes for r in rows) for m in models):
        args.folds = 5 if args.folds is None else args.folds
        return 0  # complete rows, or a model no row has (--models): the trainer names it
    why = (f"{partial} of {len(rows)} rows lack some model's outcome"
           + (" (they hold one model's outcome each, the model that answered, as rows converted from a decision "
              "log do)" if all(len(r.outcomes) == 1 for r in rows) else ""))
    if args.policy not in ("classifier", "irt"):
        return _fail("train", f"{why}; --policy {args.policy} needs every model's outcome on every row. "
                              "--policy classifier or irt learns from the calls each tier answered")
    if args.folds is not None and args.folds >= 2:
        return _fail("train", f"{why}; cross-validation replays every model on every row. Use --folds 0")
    if args.folds is None:
        print(f"note: cross-validation skipped (as with --folds 0): {why}; the threshold stays 0 until "
              "'steproute calibrate' sets it on rows with every model's outcome", file=sys.stderr)
    args.folds = 0
    return 0


def _trained(args: argparse.Namespace, train: Any, rows: list, models: tuple[str, ...], **extra: Any) -> Any:
    """Train with the command's folds, target and progress bar, and save the artefact; the
    artefact, or the exit code of a failure."""
    from steproute.policies._artefact import save_artefact

    kwargs: dict[str, Any] = {"folds": args.folds, "progress": _progress(args.json), **extra}
    if _target(args) is not None:
        kwargs["target"] = _target(args)
    try:
        artefact = train(rows, models, **kwargs)
    except (ValueError, ImportError) as exc:
        return _fail("train", str(exc))
    save_artefact(artefact, args.out)
    return artefact


def _train_cascade(args: argparse.Namespace, rows: list, models: tuple[str, ...]) -> int:
    from steproute.evaluation._cascade import train_cascade

    artefact = _trained(args, train_cascade, rows, models)
    if isinstance(artefact, int):
        return artefact
    cv = artefact.meta["cross_validation"]
    if args.json:
        print(json.dumps({"artefact": args.out, "policy": "cascade", "models": list(models),
                          "threshold": artefact.threshold, "cost_exponent": artefact.meta["cost_exponent"],
                          "cross_validation": cv}))
        return 0
    from steproute._text_table import text_table

    print(f"wrote {args.out}: cascade over {', '.join(models)} (cheap to strong), {len(rows)} rows, "
          f"threshold {artefact.threshold:.4g} for {artefact.meta['target']}")
    print(f"{cv['folds']}-fold cross-validation (out-of-fold scores):")
    print(text_table(["figure", "value"], [
        ("quality", f"{cv['quality']:.4f} ({cv['quality'] / cv['strong_quality']:.1%} of the strongest)"),
        ("cost", f"${cv['cost_usd']:.4f} ({cv['cost_usd'] / cv['strong_cost_usd']:.1%} of the strongest)"),
        ("escalation rate", f"{cv['escalation_rate']:.1%}"),
        ("cost weighting", f"{artefact.meta['cost_exponent']:g}")]))
    return 0


def _cascade_figures(result: Any) -> list[tuple[str, str]]:
    p = result.point
    return [("rows", str(result.rows)), ("threshold", f"{p.threshold:.4g}"),
            ("quality", f"{p.quality:.4f} ({result.quality_ratio:.1%} of the strongest)"),
            ("cost", f"${p.cost_usd:.4f} ({result.cost_ratio:.1%} of the strongest, cheap attempts included)"),
            ("escalation rate", f"{p.escalation_rate:.1%}"),
            ("always cheapest", f"{result.weak_quality:.4f}  ${result.weak_cost_usd:.4f}"),
            ("always strongest", f"{result.strong_quality:.4f}  ${result.strong_cost_usd:.4f}"),
            ("oracle cascade", f"{result.oracle.quality:.4f}  ${result.oracle.cost_usd:.4f}")]


def _cascade_result(args: argparse.Namespace, rows: list) -> Any:
    """A cascade to replay (an artefact of one, or a configuration whose step is one), else ``None``."""
    from steproute.evaluation._cascade import evaluate_cascade, replay_cascade
    from steproute.evaluation._evaluate import is_artefact
    from steproute.policies._artefact import load_artefact
    from steproute.policies.cascade import CascadePolicy

    path = Path(args.policy)
    if not path.exists():
        return None
    if is_artefact(path):
        artefact = load_artefact(path)
        if artefact.policy != "cascade":
            return None
        return evaluate_cascade(rows, artefact, threshold=args.threshold)
    from steproute.router import StepRouter

    router = StepRouter.from_file(path)
    steps = {args.step or r.step for r in rows}
    if len(steps) != 1:
        return None
    policy = router.policy_of(next(iter(steps)))
    if not isinstance(policy, CascadePolicy):
        return None
    tier_model = {t: router.deployments(t)[0].model for t in router.tiers}
    tier_model.update(_tier_models(args.model))
    return replay_cascade(rows, policy, [tier_model[t] for t in policy.tiers], step=args.step,
                          progress=_progress(args.json))


def _tier_models(specs: list[str] | None) -> dict[str, str]:
    out = {}
    for spec in specs or ():
        tier, sep, model = spec.partition("=")
        if not sep or not tier or not model:
            raise ValueError(f"--model expects TIER=MODEL, got {spec!r}")
        out[tier] = model
    return out


def _eval(args: argparse.Namespace) -> int:
    from steproute.errors import ConfigError
    from steproute.evaluation import evaluate
    from steproute.policies._artefact import ArtefactError

    if os.path.exists(args.policy) and not os.path.isfile(args.policy):
        return _fail("eval", f"--policy {args.policy}: not a regular file (a directory, device or pipe)")
    wrong = _policy_kind(args.policy)
    if wrong:
        return _fail("eval", wrong)
    rows, code = read_data(args.data, "eval")
    if code:
        return code
    try:
        from steproute._cli_routing import eval_routing

        routed = eval_routing(args, rows)
        if routed is not None:
            return routed
        cascade = _cascade_result(args, rows)
    except (ConfigError, ArtefactError) as exc:
        return _fail("eval", one_line(exc))
    except (OSError, ValueError) as exc:
        return _fail("eval", str(exc))
    if cascade is not None:
        if args.html:
            return _fail("eval", f"--html {args.html}: the explorer sweeps a classifier or semantic policy's "
                                 "threshold over tiers; for a cascade use --plot")
        return _print_cascade(args, cascade)
    try:
        result = evaluate(rows, args.policy, step=args.step, models=_tier_models(args.model),
                          threshold=args.threshold, progress=_progress(args.json))
    except (ConfigError, ArtefactError) as exc:
        return _fail("eval", one_line(exc))
    except (OSError, ValueError) as exc:
        return _fail("eval", str(exc))
    if args.html:
        if len(result.curve.points) < 2:
            return _fail("eval", f"--html {args.html}: {result.policy} has no threshold to sweep "
                                 "(classifier or semantic needed)")
        label = "--threshold" if args.threshold is not None else "the policy's threshold"
        code = _write_explorer("eval", args, result, result.summary.threshold, label)
        if code:
            return code
    if args.plot:
        from steproute.evaluation._plots import plot_evaluations

        plot_evaluations([result], args.plot, title=f"{Path(args.data).name}: {result.policy}")
    if _printed_json(args, result):
        return 0
    _print_figures(f"{result.policy} on {Path(args.data).name} (tiers {', '.join(result.tiers)}):", result.summary)
    if args.plot:
        print(f"wrote {args.plot}")
    if args.html:
        print(f"wrote {args.html}")
    return 0


def _write_explorer(command: str, args: argparse.Namespace, result: Any, threshold: float, label: str) -> int:
    """Write the threshold explorer page for ``--html``; the exit code of a failure, else 0."""
    from steproute.evaluation._explorer import explorer_data, write_explorer

    s = result.summary
    data = explorer_data(result.curve, tiers=result.tiers, rows=s.rows, strong_quality=s.strong_quality,
                         strong_cost_usd=s.strong_cost_usd, weak_quality=s.weak_quality, weak_cost_usd=s.weak_cost_usd,
                         marked_threshold=threshold, marked_label=label,
                         title=f"{Path(args.data).name}: {result.policy}")
    try:
        write_explorer(data, args.html)
    except OSError as exc:
        return _fail(command, f"cannot write --html {args.html}: {exc.strerror or type(exc).__name__}")
    return 0


def _policy_kind(path: str) -> str | None:
    from steproute._cli_kinds import kind_of

    found = kind_of(path)
    if found == "decision log":
        return (f"--policy {path} is a decision log; --policy takes an artefact from steproute train or a "
                f"steproute.yaml (train one: steproute convert --from log {path} --out rows.jsonl, then "
                "steproute train --data rows.jsonl)")
    if found == "rows":
        return (f"--policy {path} is rows of the evaluation format; --policy takes an artefact from steproute "
                "train or a steproute.yaml, and rows go to --data")
    return None


def _printed_json(args: argparse.Namespace, result: Any) -> bool:
    """With ``--json``: the result as one JSON object (with the plot's path), and ``True``."""
    if not args.json:
        return False
    out = result.to_json()
    if args.plot:
        out["plot"] = args.plot
    print(json.dumps(out))
    return True


def _print_cascade(args: argparse.Namespace, result: Any) -> int:
    if args.plot:
        from steproute.evaluation._cascade import plot_cascades

        plot_cascades([("cascade", result)], args.plot, title=f"{Path(args.data).name}: cascade")
    if _printed_json(args, result):
        return 0
    from steproute._text_table import text_table

    print(f"cascade on {Path(args.data).name} (models {', '.join(result.models)}):")
    print(text_table(["figure", "value"], _cascade_figures(result)))
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


_STEP_LINE = re.compile(r"^(\s*)([A-Za-z0-9_./-]+|\"[^\"]+\"|'[^']+'):\s*(#.*)?$")


def write_threshold(path: Path, step: str, threshold: float, key: str = "threshold") -> None:
    """Set ``steps.<step>.<key>`` (default ``threshold``) in a YAML file, keeping its comments and layout.

    The new file is validated before it replaces the old one (atomically)."""
    from steproute.config import load_config

    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    in_steps, step_indent, body_indent, start = False, None, None, None
    for i, line in enumerate(lines):
        if re.match(r"^steps:\s*(#.*)?$", line):
            in_steps = True
            continue
        if in_steps and line.strip() and not line.startswith((" ", "\t")):
            break
        m = _STEP_LINE.match(line) if in_steps else None
        if m and step_indent is None and m.group(2).strip("\"'") == step:
            step_indent, start = len(m.group(1)), i
            continue
        if start is not None and line.strip() and not line.lstrip().startswith("#"):
            indent = len(line) - len(line.lstrip())
            if step_indent is not None and indent <= step_indent:
                break
            body_indent = body_indent or indent
            if indent == body_indent and line.lstrip().startswith(f"{key}:"):
                lines[i] = f"{' ' * indent}{key}: {threshold:.6g}\n"
                break
    else:
        i = len(lines)
    if start is None or body_indent is None:
        raise ValueError(f"{path}: no block 'steps: {step}:' with its settings on their own lines")
    if not any(line.lstrip().startswith(f"{key}:") and (len(line) - len(line.lstrip())) == body_indent
               for line in lines[start + 1:i + 1]):
        lines.insert(start + 1, f"{' ' * body_indent}{key}: {threshold:.6g}\n")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text("".join(lines), encoding="utf-8")
        load_config(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _calibrate(args: argparse.Namespace) -> int:
    from steproute._cli_kinds import wrong_kind
    from steproute.errors import ConfigError
    from steproute.evaluation import Target, calibrate, evaluate

    wrong = wrong_kind(args.config, "config", "--config ")
    if wrong:
        return _fail("calibrate", wrong)
    rows, code = read_data(args.data, "calibrate")
    if code:
        return code
    target = _target(args) or Target(quality_ratio=0.95)
    try:
        from steproute._cli_routing import calibrate_routing_step

        routed = calibrate_routing_step(args, rows, target, _tier_models(args.model), write_threshold)
        if routed is not None:
            return routed
        result = evaluate(rows, args.config, step=args.step, models=_tier_models(args.model),
                          progress=_progress(args.json))
        if len(result.curve.points) < 2:
            return _fail("calibrate", f"step {args.step!r}: its policy has no threshold to calibrate "
                                      "(classifier or semantic needed)")
        point = calibrate(result.curve, target, result.summary.strong_quality)
    except ConfigError as exc:
        return _fail("calibrate", one_line(exc))
    except (OSError, ValueError) as exc:
        return _fail("calibrate", str(exc))
    from steproute.evaluation._threshold_cv import fold_thresholds

    steps = [args.step or r.step for r in rows]
    try:
        spread = fold_thresholds(result.scores, result.outcomes, target, folds=args.folds, steps=steps) \
            if args.folds >= 2 and result.scores is not None and result.outcomes is not None else None
    except ValueError as exc:
        return _fail("calibrate", str(exc))
    out = {"step": args.step, "target": target.describe(), "threshold": point.threshold, "quality": point.quality,
           "strong_share": point.strong_share, "cost_usd": point.cost_usd,
           "cross_validation": spread.to_json() if spread else None}
    if args.html:
        code = _write_explorer("calibrate", args, result, point.threshold, f"calibrated for {target.describe()}")
        if code:
            return code
        out["html"] = args.html
    if args.write:
        try:
            write_threshold(Path(args.config), args.step, point.threshold)
        except (ValueError, ConfigError, OSError) as exc:
            return _fail("calibrate", f"not written: {exc}")
        out["written"] = args.config
    if args.json:
        print(json.dumps(out))
    else:
        print(f"step {args.step}: threshold {point.threshold:.6g} for {target.describe()}: quality {point.quality:.4f}, "
              f"{point.strong_share:.1%} on stronger tiers, ${point.cost_usd:.4f}"
              + (f"; written to {args.config}" if args.write else " (use --write to save it)"))
        print_spread(args.folds, spread)
        if args.html:
            print(f"wrote {args.html}")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"convert": _convert, "train": _train, "eval": _eval, "calibrate": _calibrate}[args.command](args)
