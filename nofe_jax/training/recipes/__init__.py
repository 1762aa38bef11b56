"""One module per method; ``RECIPES`` maps ``config.recipe`` to its entry point."""
from collections.abc import Callable

import ml_collections

from nofe_jax.training.recipes import base, nofe

RECIPES: dict[str, Callable[[ml_collections.ConfigDict, str], dict]] = {
    'base': base.train_and_evaluate,
    'nofe': nofe.train_and_evaluate,
}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the recipe named by ``config.recipe``; returns its summary."""
    if config.recipe not in RECIPES:
        raise ValueError(f'Unknown recipe {config.recipe!r}; choose one of {sorted(RECIPES)}.')
    return RECIPES[config.recipe](config, workdir)
