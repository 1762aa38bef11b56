"""Data: random-access sources and numpy batch pipelines (no jax imports)."""
