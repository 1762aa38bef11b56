"""Recipe: a flat base CNN over all C classes (the papers' "base model" rows)."""
import ml_collections

from nofe_jax.models import registry
from nofe_jax.training import loop, tasks
from nofe_jax.training.recipes import common


def build_models(config: ml_collections.ConfigDict, num_classes: int) -> dict:
    """{name: (model, extra apply args)} of every model this recipe trains."""
    return {'base': (registry.build_base(config.model.name, num_classes,
                                         **common.model_overrides(config)), ())}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the flat base model and returns the summary."""
    run = common.prepare_run(config, workdir)
    (model, _), = build_models(config, run.dataset.num_classes).values()
    stage = loop.Stage(name='base', model=model,
                       task=tasks.ClassificationTask(run.dataset.num_classes),
                       train_config=config.train, optim_config=config.optim)
    result = common.run_stage(run, stage)
    return common.finish(run, result.final, {'base': result})
