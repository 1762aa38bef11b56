"""The ``Method`` record: everything the rest of the house needs to know of a method, jax-free.

Each method's ``options.py`` defines its ``METHOD``; ``nofe_jax.methods.METHODS`` lists them.
"""
import dataclasses
import importlib
import types
from collections.abc import Callable

import ml_collections


def _no_problems(config: ml_collections.ConfigDict) -> list[str]:
    del config
    return []


@dataclasses.dataclass(frozen=True)
class Method:
    """One method: the name a config gives it, the config blocks it reads, its option defaults
    and checks, the option fields its checkpoints fit only, and its recipe.

    Everything here is importable without jax, so a config is checked in well under a second;
    the recipe (jax, flax, optax, orbax) is imported only when the method runs.
    """
    name: str  # the value of ``config.recipe``
    # Config blocks holding one stage's train/optim each ('' = the top level's).
    stage_blocks: tuple[str, ...]
    # The full module path of the recipe: ``train_and_evaluate(config, workdir) -> summary`` and
    # ``build_models(config, num_classes) -> {name: (model, extra apply args)}``.
    recipe_module: str
    option_block: str = ''  # the block of the method's own options ('' = none)
    defaults: Callable[[], ml_collections.ConfigDict] | None = None  # that block's defaults
    # One line per problem of the options, found before any data is read.
    option_problems: Callable[[ml_collections.ConfigDict], list[str]] = _no_problems
    # Option fields (dotted paths) a stage's checkpoint fits only: they shape the grouping or the
    # networks. Resuming after changing one is refused, naming it (training.checkpoints).
    fingerprint_fields: tuple[str, ...] = ()
    # Stage blocks whose duration may be 0: the stage's model is whole at its start (e.g. DMDE's
    # fusion, the stacking function itself), and is then evaluated and saved as it starts.
    untrained_stage_blocks: tuple[str, ...] = ()

    @property
    def option_blocks(self) -> tuple[str, ...]:
        return (self.option_block,) if self.option_block else ()

    def top_level_blocks(self) -> tuple[str, ...]:
        """The top-level config fields this method reads beyond the shared ones."""
        return tuple(b for block in self.stage_blocks for b in ((block,) if block else ('train', 'optim'))
                     ) + self.option_blocks

    def recipe(self) -> types.ModuleType:
        """The recipe module (imports jax and the training machinery)."""
        # A full, literal module path per method (greppable), imported late only to keep
        # config checks free of jax.
        return importlib.import_module(self.recipe_module)
