"""The methods, one package each (``flat``, ``nofe``, ``dmde``, ``deepme``), and their one registry.

A method's package holds its recipe (``recipe.py``: its stages), its tasks (``task.py``), the
models only it uses (``model.py``) and its options (``options.py``: defaults, checks, the fields
its checkpoints fit only; no jax). ``METHODS`` maps ``config.recipe`` to each one's ``Method``
record; adding a method is one package and one line here (docs/development.md).

This module imports no jax: ``validate`` checks a config in well under a second, and
``train_and_evaluate`` imports the recipe only when it runs.
"""
import ml_collections

from nofe_jax import validation
from nofe_jax.methods.deepme import options as deepme
from nofe_jax.methods.dmde import options as dmde
from nofe_jax.methods.flat import options as flat
from nofe_jax.methods.method import Method
from nofe_jax.methods.nofe import options as nofe
from nofe_jax.training import config_checks

METHODS: dict[str, Method] = {method.name: method for method in (
    flat.METHOD,
    nofe.METHOD,
    dmde.METHOD,
    deepme.METHOD,
)}

__all__ = ['METHODS', 'Method', 'config_problems', 'validate', 'train_and_evaluate']


def config_problems(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
    """Every problem of ``config`` and ``workdir`` found without reading data or building a model."""
    problem = validation.choice_problem('recipe', config.recipe, tuple(METHODS))
    if problem:
        return [problem]
    return config_checks.config_problems(config, workdir, METHODS[config.recipe])


def validate(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Raises ``validation.ConfigError`` listing every problem of ``config`` and ``workdir``."""
    validation.raise_problems(config_problems(config, workdir))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Validates ``config``, then runs the recipe of the method it names; returns its summary."""
    validate(config, workdir)
    return METHODS[config.recipe].recipe().train_and_evaluate(config, workdir)
