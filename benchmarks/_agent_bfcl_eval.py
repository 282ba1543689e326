"""bfcl-eval's own data loaders and checkers, imported without its model-handler dependencies.

The Berkeley Function Calling Leaderboard (BFCL, https://github.com/ShishirPatil/gorilla,
``berkeley-function-call-leaderboard``) ships as the ``bfcl-eval`` package under the Apache-2.0
licence; its questions, possible answers, multi-turn function docs and the executable multi-turn
environments (a file system, a trading bot, a travel API, ...) are all inside the wheel
(``bfcl_eval/data`` and ``bfcl_eval/eval_checker/multi_turn_eval/func_source_code``). Nothing is
downloaded at run time.

Installed with ``pip install --no-deps bfcl-eval==2026.3.23`` (``make bench-agent-deps``): its
declared requirements name every provider SDK it can benchmark (anthropic, cohere, mistralai,
google-genai, qwen-agent, boto3, sentence-transformers, faiss, pinned numpy 1.26.4, ...), none of
which its checkers use. What they do use is ``mpmath`` (the MathAPI environment) and ``filelock``
(its file loader), both already pinned in constraints.txt.

One module of the checker's import chain needs those SDKs: ``ast_checker`` imports
``bfcl_eval.constants.model_config`` for one flag, ``underscore_to_dot`` (whether the model's tool
names spell BFCL's dotted names, ``math.factorial``, as ``math_factorial``, as OpenAI-style tool names
must). Unless the real module is already imported, a stand-in module with that one entry is
registered before the import, for :data:`CHECKER_MODEL_NAME` (a BFCL FC model whose entry has
``underscore_to_dot=True``, so the real mapping gives the same answer). The checker functions
themselves are bfcl-eval's, unchanged.

bfcl-eval creates ``result/``, ``score/`` and ``.file_locks/`` under ``$BFCL_PROJECT_ROOT`` when
imported (by default next to site-packages); it is set to ``<steproute cache>/bfcl-eval`` unless
already set.

Example:
    >>> api = bfcl()                                                        # doctest: +SKIP
    >>> api.load_dataset_entry("simple_python")[0]["id"]                    # doctest: +SKIP
    'simple_python_0'
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from steproute.local import cache_dir

__all__ = ["BFCL_EVAL_VERSION", "CHECKER_MODEL_NAME", "BfclApi", "BfclEvalMissing", "bfcl"]

BFCL_EVAL_VERSION = "2026.3.23"
CHECKER_MODEL_NAME = "gpt-4.1-2025-04-14-FC"
"""The model name given to BFCL's checkers: an FC model of BFCL's catalogue with ``underscore_to_dot``."""

_MODEL_CONFIG = "bfcl_eval.constants.model_config"


class BfclEvalMissing(RuntimeError):
    """bfcl-eval is not installed (``make bench-agent-deps`` installs it)."""


@dataclass(frozen=True)
class BfclApi:
    """The parts of bfcl-eval this benchmark uses, all bfcl-eval's own functions."""

    load_dataset_entry: Callable[..., list[dict[str, Any]]]
    load_ground_truth_entry: Callable[[str], list[dict[str, Any]]]
    is_function_calling_format_output: Callable[[Any], bool]
    ast_checker: Callable[..., dict[str, Any]]
    python: Any  # bfcl_eval.constants.enums.Language.PYTHON
    multi_turn_checker: Callable[..., dict[str, Any]]
    execute_multi_turn_func_call: Callable[..., tuple[list[str], dict[str, Any]]]
    executed_instances: dict[str, Any]  # multi_turn_utils' globals(), where it keeps live environments
    gorilla_to_openapi: dict[str, str]


def _register_model_config_stand_in() -> None:
    if _MODEL_CONFIG in sys.modules:
        return
    stand_in = types.ModuleType(_MODEL_CONFIG)
    stand_in.__doc__ = "steproute's stand-in: the one ModelConfig flag BFCL's ast_checker reads (see _agent_bfcl_eval)."
    stand_in.MODEL_CONFIG_MAPPING = {  # type: ignore[attr-defined]
        CHECKER_MODEL_NAME.replace("_", "/"): types.SimpleNamespace(underscore_to_dot=True, is_fc_model=True),
    }
    sys.modules[_MODEL_CONFIG] = stand_in


@cache
def bfcl() -> BfclApi:
    """Import bfcl-eval's loaders and checkers once; :class:`BfclEvalMissing` if it is not installed."""
    os.environ.setdefault("BFCL_PROJECT_ROOT", str(cache_dir() / "bfcl-eval"))
    try:
        import bfcl_eval  # noqa: F401
    except ModuleNotFoundError as exc:
        raise BfclEvalMissing(
            f"the BFCL workload needs bfcl-eval=={BFCL_EVAL_VERSION}: run `make bench-agent-deps` "
            f"(pip install --no-deps bfcl-eval=={BFCL_EVAL_VERSION})") from exc
    _register_model_config_stand_in()
    try:
        from bfcl_eval import utils
        from bfcl_eval.constants.enums import Language
        from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
        from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
        from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_checker, multi_turn_utils
    except ModuleNotFoundError as exc:
        raise BfclEvalMissing(f"bfcl-eval's checkers need {exc.name!r}: run `make bench-agent-deps`") from exc
    return BfclApi(
        load_dataset_entry=utils.load_dataset_entry,
        load_ground_truth_entry=utils.load_ground_truth_entry,
        is_function_calling_format_output=utils.is_function_calling_format_output,
        ast_checker=ast_checker,
        python=Language.PYTHON,
        multi_turn_checker=multi_turn_checker.multi_turn_checker,
        execute_multi_turn_func_call=multi_turn_utils.execute_multi_turn_func_call,
        executed_instances=vars(multi_turn_utils),
        gorilla_to_openapi=dict(GORILLA_TO_OPENAPI),
    )
