"""Tests that kill mutmut mutants of steproute/latency.py (see docs/architecture.md, "Mutation testing")."""

from __future__ import annotations
