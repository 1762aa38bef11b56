"""Host-side numpy/scipy grouping: which classes go together. Never imports jax."""
