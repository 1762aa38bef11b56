"""The flat base model's options: none beyond the shared ones (model, data), which the run's
fingerprint covers (``training.run.SHARED_FINGERPRINT_FIELDS``). Imports no jax."""
from nofe_jax.methods.method import Method

METHOD = Method(name='base', stage_blocks=('',), recipe_module='nofe_jax.methods.flat.recipe')
