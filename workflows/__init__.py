"""Deterministic orchestration only: one module per workflow. No I/O here."""
