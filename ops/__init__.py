"""Ops tooling: the ``fulfil`` command line (orders, payouts, reconciliation, replay, demo)."""
