"""Tests that kill mutmut mutants of steproute/capabilities.py (see docs/architecture.md, "Mutation testing")."""

from __future__ import annotations
