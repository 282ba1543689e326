"""End-to-end fixtures: real llama.cpp servers with real local models on 127.0.0.1.

The first run on a machine builds llama-server and fetches the weights (``make test`` does it
beforehand with ``steproute local --prepare``); later runs reuse ~/.cache/steproute.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from steproute.local import LocalServers

ROOT = Path(__file__).resolve().parents[2]
collect_ignore = ["phoenix_launch.py"]  # runs inside Phoenix's own venv, never imported here


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.timeout(1800))  # the first test may pay the build


@pytest.fixture(scope="session")
def local_servers() -> Iterator[LocalServers]:
    with LocalServers() as servers:
        yield servers


@pytest.fixture(scope="session")
def quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "examples" / "quickstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["quickstart"] = module
    spec.loader.exec_module(module)
    return module
