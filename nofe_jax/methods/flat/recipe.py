"""The flat method's recipe: a base CNN over all C classes (the papers' "base model" rows)."""
import ml_collections

from nofe_jax.methods.flat import options
from nofe_jax.models import registry
from nofe_jax.training import run as run_lib


def build_models(config: ml_collections.ConfigDict, num_classes: int) -> dict:
    """{name: (model, extra apply args)} of every model this recipe trains."""
    return {'base': (registry.build_base(config.model.name, num_classes,
                                         **run_lib.model_overrides(config)), ())}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the flat base model and returns the summary."""
    run = run_lib.prepare_run(config, workdir, options.METHOD)
    result = run_lib.run_stage(run, run_lib.flat_stage(run, 'base'))
    return run_lib.finish(run, result.final, {'base': result})
