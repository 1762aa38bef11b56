"""One module per method; ``RECIPES`` maps ``config.recipe`` to its entry point."""
from collections.abc import Callable

import ml_collections

from nofe_jax.training import config_checks
from nofe_jax.training.recipes import base, nofe

# What each recipe reads of a config, and its checks, are ``config_checks.RECIPE_CONFIGS``.
RECIPES: dict[str, Callable[[ml_collections.ConfigDict, str], dict]] = {
    'base': base.train_and_evaluate,
    'nofe': nofe.train_and_evaluate,
}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Validates ``config``, then runs the recipe it names; returns its summary."""
    config_checks.validate(config, workdir)
    return RECIPES[config.recipe](config, workdir)
