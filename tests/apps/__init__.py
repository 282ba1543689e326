"""Third-party-style apps that steproute's tests route without editing them (see conftest.py)."""
