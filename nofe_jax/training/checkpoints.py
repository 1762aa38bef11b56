"""Orbax checkpoints of a training stage: train state + grouping arrays + progress.

One ``CheckpointManager`` per stage under ``<workdir>/checkpoints/<stage>``.
A checkpoint holds three items: ``state`` (params, model variables, optimiser
state, step, rng), ``grouping`` (the device arrays that change between epochs,
e.g. the class -> specialty map) and ``meta`` (JSON: epoch, history of
specialty updates, anything a recipe needs to continue exactly, and the
``fingerprint`` of the config fields the checkpoint only fits: model, K, classes,
data, stage).
Orbax writes into a temporary folder and renames it when complete, so a run
killed mid-save leaves the previous checkpoint intact. A checkpoint damaged
later (truncated or deleted files) is renamed ``<step>.damaged`` and the
previous one restored; nothing is ever deleted but by orbax's keep-N policy.
"""
import dataclasses
import itertools
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from nofe_jax.training.state import TrainState

_STATE_FIELDS = ('step', 'params', 'model_state', 'opt_state', 'rng')
# Not a step number, so orbax neither lists nor counts a folder renamed with it.
DAMAGED_SUFFIX = '.damaged'
_MAX_REASON_CHARS = 200


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored."""


def _state_tree(state: TrainState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in _STATE_FIELDS}


def _abstract(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _one_line(error: Exception) -> str:
    """The error's type and the first line of its message, shortened."""
    first = f'{type(error).__name__}: {error}'.splitlines()[0]
    return first if len(first) <= _MAX_REASON_CHARS else first[:_MAX_REASON_CHARS - 3] + '...'


@dataclasses.dataclass(frozen=True)
class Restored:
    """A restored checkpoint; ``set_aside`` has one line per damaged newer checkpoint skipped."""
    state: TrainState
    grouping: dict
    meta: dict
    set_aside: list[str]


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
                fingerprint: dict) -> Restored:
        """The newest checkpoint that restores, shaped like the templates; refuses other configs.

        Newer checkpoints that cannot be read are renamed ``<step>.damaged`` (orbax then ignores
        them) once an older one restores. If none restores, nothing is renamed: that is more
        often a code or environment change than damage, and starting over would hide it.
        """
        failures = []
        for step in reversed(self._manager.all_steps()):
            try:
                meta = dict(self._manager.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta'])
            except Exception as e:  # orbax raises many types for unreadable files
                failures.append((step, e))
                continue
            self._check_fingerprint(step, meta.get('fingerprint'), fingerprint)
            try:
                restored = self._manager.restore(
                    step, args=self._restore_args(template, grouping_template))
            except Exception as e:  # likewise
                failures.append((step, e))
                continue
            set_aside = [self._set_aside(bad, error, step) for bad, error in failures]
            grouping = dict(restored['grouping']) if grouping_template else {}
            return Restored(template.replace(**restored['state']), grouping, meta, set_aside)
        step, error = failures[0]
        raise CheckpointError(
            f'None of the {len(failures)} checkpoint(s) in {self.directory} can be restored '
            f'(step {step}: {_one_line(error)}). Nothing was renamed or deleted: if they are '
            'damaged, move the folder away to start this stage again, or use a new --workdir.')

    def _restore_args(self, template: TrainState, grouping_template: dict) -> ocp.args.Composite:
        items = {'state': ocp.args.StandardRestore(_abstract(_state_tree(template)))}
        if grouping_template:
            items['grouping'] = ocp.args.StandardRestore(_abstract(grouping_template))
        return ocp.args.Composite(**items)

    def _check_fingerprint(self, step: int, saved: dict | None, current: dict) -> None:
        if saved is None:  # written before checkpoints carried a fingerprint
            return
        differences = [f'{key}={saved[key]!r} there, {current[key]!r} now'
                       for key in current if key in saved and saved[key] != current[key]]
        if differences:
            raise CheckpointError(
                f'The checkpoint at step {step} in {self.directory} was written by a different '
                f'config ({"; ".join(differences)}): resume with the same values, or use a new '
                '--workdir.')

    def _set_aside(self, step: int, error: Exception, resumed_step: int) -> str:
        """Renames the damaged checkpoint ``step`` out of orbax's sight; says so in one line."""
        path = os.path.join(self.directory, str(step))
        multihost_utils.sync_global_devices(f'name damaged checkpoint {path}')  # same free name on all
        damaged = next(f'{path}{DAMAGED_SUFFIX}{n or ""}' for n in itertools.count()
                       if not os.path.exists(f'{path}{DAMAGED_SUFFIX}{n or ""}'))
        if jax.process_index() == 0:
            os.rename(path, damaged)
        multihost_utils.sync_global_devices(f'set aside checkpoint {path}')
        self._manager.reload()
        return (f'checkpoint step {step} is damaged ({_one_line(error)}); resuming from step '
                f'{resumed_step} instead; the damaged one is kept as {damaged}')

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
