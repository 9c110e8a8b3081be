"""Every side effect, one module per system it touches. All activities are idempotent."""
