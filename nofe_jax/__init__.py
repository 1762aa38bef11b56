"""nofe_jax: class-grouped expert networks (NofE, DMDE, DeepME) in JAX/Flax."""
__version__ = "0.1.0"
