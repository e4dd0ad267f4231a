"""Reference checks: generation rows (see addp_mm/verify/core.py)."""
