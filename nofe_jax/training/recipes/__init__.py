"""One module per method; ``RECIPES`` maps ``config.recipe`` to it.

A recipe module defines ``train_and_evaluate(config, workdir) -> summary`` and
``build_models(config, num_classes) -> {name: (model, extra apply args)}``, the models it
trains (``experiments.describe`` counts and times them without training).
"""
import types

import ml_collections

from nofe_jax.training import config_checks
from nofe_jax.training.recipes import base, deepme, dmde, nofe

# What each recipe reads of a config, and its checks, are ``config_checks.RECIPE_CONFIGS``.
RECIPES: dict[str, types.ModuleType] = {'base': base, 'nofe': nofe, 'dmde': dmde, 'deepme': deepme}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Validates ``config``, then runs the recipe it names; returns its summary."""
    config_checks.validate(config, workdir)
    return RECIPES[config.recipe].train_and_evaluate(config, workdir)
