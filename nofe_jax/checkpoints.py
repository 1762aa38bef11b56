"""Orbax checkpoints of a training stage: train state + grouping arrays + progress.

One ``CheckpointManager`` per stage under ``<workdir>/checkpoints/<stage>``.
A checkpoint holds three items: ``state`` (params, model variables, optimiser
state, step, rng), ``grouping`` (the device arrays that change between epochs,
e.g. the class -> specialty map) and ``meta`` (JSON: epoch, history of
specialty updates, anything a recipe needs to continue exactly).
Orbax writes into a temporary folder and renames it when complete, so a run
killed mid-save leaves the previous checkpoint intact.
"""
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from nofe_jax.training.state import TrainState

_STATE_FIELDS = ('step', 'params', 'model_state', 'opt_state', 'rng')


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored."""


def _state_tree(state: TrainState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in _STATE_FIELDS}


def _abstract(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class StageCheckpoints:
    """Save/restore of one stage's train state, grouping arrays and metadata."""

    def __init__(self, workdir: str, stage: str, *, max_to_keep: int = 3):
        self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints', stage)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def save(self, state: TrainState, grouping: dict, meta: dict) -> None:
        """Saves asynchronously at ``state.step`` (overwrites nothing that exists)."""
        step = int(jax.device_get(state.step))
        if step in self._manager.all_steps():
            return
        items = {'state': ocp.args.StandardSave(_state_tree(state)),
                 'meta': ocp.args.JsonSave(meta)}
        if grouping:  # orbax refuses empty items
            items['grouping'] = ocp.args.StandardSave(grouping)
        self._manager.save(step, args=ocp.args.Composite(**items))

    def restore(self, template: TrainState, grouping_template: dict,
                step: int | None = None) -> tuple[TrainState, dict, dict]:
        """(state, grouping, meta) of ``step`` (default: latest), shaped like the templates."""
        step = self.latest_step() if step is None else step
        try:
            items = {'state': ocp.args.StandardRestore(_abstract(_state_tree(template))),
                     'meta': ocp.args.JsonRestore()}
            if grouping_template:
                items['grouping'] = ocp.args.StandardRestore(_abstract(grouping_template))
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax raises many types for unreadable files
            raise CheckpointError(
                f'Cannot restore the checkpoint at step {step} in {self.directory}: '
                f'{type(e).__name__}: {e}\nIf it is damaged, move the folder '
                f'{os.path.join(self.directory, str(step))} away to resume from the '
                'previous checkpoint, or start again with a new --workdir. Nothing '
                'was deleted.') from e
        state = template.replace(**restored['state'])
        grouping = dict(restored['grouping']) if grouping_template else {}
        return state, grouping, dict(restored['meta'])

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
