"""Flax linen models: base CNNs split into trunk and head, expert branches, the Network of Experts, registry."""
