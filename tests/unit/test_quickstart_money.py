"""The quickstart's money format (examples/quickstart.py): one readable format for every amount."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("quickstart_money", ROOT / "examples" / "quickstart.py")
assert spec is not None and spec.loader is not None
quickstart = importlib.util.module_from_spec(spec)
sys.modules["quickstart_money"] = quickstart
spec.loader.exec_module(quickstart)


@pytest.mark.parametrize(("amount", "text"), [
    (0.0000245, "$0.000025"),   # the README's rewrite step: no 7-decimal column
    (0.0000559, "$0.000056"),
    (0.00086, "$0.00086"),
    (0.0016146, "$0.0016"),
    (0.0037225, "$0.0037"),
    (0.0995, "$0.10"),          # rounding up does not add a digit
    (0.00000999, "$0.000010"),
    (1.6146, "$1.61"),
    (12.345, "$12.35"),
    (1234.5, "$1234.50"),
    (0, "$0.00"),
    (-0.0000245, "-$0.000025"),
])
def test_usd_has_two_significant_digits_and_at_least_two_decimals(amount, text):
    assert quickstart.usd(amount) == text


def test_usd_never_writes_scientific_notation():
    for exponent in range(-12, 4):
        text = quickstart.usd(1.5 * 10**exponent)
        assert "e" not in text.lower() and text.startswith("$"), text


def test_the_known_total_is_the_catalogues():
    assert f"{quickstart.shop_total(quickstart.KNOWN_ORDERS[quickstart.QUESTION]):.2f}" == "19.80"
    assert quickstart.check_expression("3 * 4.50 + 2 * 1.20 + 3.90", [(3, "notebook"), (2, "pen")]) is None
    assert quickstart.check_expression("3 * 4.50 + 2 * 1.20 + 3.90 + 3.90", [(3, "notebook"), (2, "pen")]) == (
        "it makes 23.70, the order lines make 19.80 (3 * 4.50 + 2 * 1.20 + 3.90)")
    assert quickstart.lines_expression([(10, "stapler")]) == "10 * 7.80"  # free shipping from 50 EUR
