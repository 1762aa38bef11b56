"""Recipe: Network of Experts (Ahmed, Baig, Torresani, ECCV 2016).

Stage 1 ``generalist``: the base CNN with a K-way head trained on specialty
labels l(y); every ``update_every`` it predicts a random subset S of the
training data, counts the C x K matrix M and recomputes l from M (host-side
numpy). Stage 2 ``nofe``: trunk (generalist weights) + K vmapped expert
branches + a parameter-free gather into one softmax over C.
Both stages checkpoint the specialty map and its history, so a killed run
resumes inside either stage.
"""
import dataclasses
import os

import ml_collections
import numpy as np

from nofe_jax import reporting, validation
from nofe_jax.data import pipeline
from nofe_jax.grouping import confusion, semantic, specialties
from nofe_jax.methods.nofe import options
from nofe_jax.methods.nofe.model import (build_models, check_num_experts, copy_generalist,
                                         generalist_model, nofe_model)
from nofe_jax.methods.nofe.task import ExpertTask
from nofe_jax.models import experts, registry
from nofe_jax.training import init_from, loop, tasks
from nofe_jax.training import run as run_lib

__all__ = ['build_models', 'train_and_evaluate']

COUNTED_SOURCES = ('learned', 'spectral')  # the sources that predict a subset S
# Seed the held-out S and the random-partition NMI reference apart from the run's other draws.
_HOLDOUT_STREAM, _RANDOM_NMI_STREAM, _SHUFFLE_STREAM = 7_331, 7_332, 7_333
RANDOM_NMI_DRAWS = 100
PRINTED_NAMES_PER_SPECIALTY = 12


def empty_specialties_warning(assignment: np.ndarray, num_experts: int, source: str) -> str | None:
    """A warning when a partition leaves some of the K specialties empty (their experts are dropped)."""
    sizes = np.bincount(assignment, minlength=num_experts)
    used = int(np.count_nonzero(sizes))
    if used == num_experts:
        return None
    return (f'the {source} specialties use {used} of K={num_experts} ids (sizes {sizes.tolist()}); '
            f'the network of experts has {used} experts, one per non-empty specialty.')


def specialty_accuracy(labels: np.ndarray, predicted: np.ndarray,
                       class_to_specialty: np.ndarray) -> float:
    """Fraction of examples the generalist puts in their class's specialty."""
    return float(np.mean(class_to_specialty[labels] == predicted)) if labels.size else float('nan')


def specialty_names(assignment: np.ndarray, class_names, num_experts: int) -> list[list[str]]:
    """Class names per specialty (empty specialties stay as empty lists)."""
    return [[class_names[c] for c in np.flatnonzero(assignment == k)] for k in range(num_experts)]


def _assign_options(nofe: ml_collections.ConfigDict, current: np.ndarray, subset_size: int) -> dict:
    if nofe.balance == 'elasso':
        return {'lam': specialties.scaled_elasso_lam(nofe.elasso_lam, subset_size),
                'sweeps': nofe.elasso_sweeps or None, 'init': current}
    return {}


@dataclasses.dataclass(frozen=True)
class CountSubsets:
    """Where the counts M come from: a fixed held-out S (never trained on in stage 1) or random draws."""
    num_train: int
    size: int
    holdout: np.ndarray | None  # sorted indices into the training split, or None: draw S per update

    @property
    def stage1_train_indices(self) -> np.ndarray | None:
        """The training examples stage 1 may train on (None: all of them)."""
        return None if self.holdout is None else np.setdiff1d(np.arange(self.num_train), self.holdout)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """The images S one update (or the spectral baseline) predicts."""
        return self.holdout if self.holdout is not None else pipeline.random_subset(
            self.num_train, self.size, rng)


def count_subsets(run: run_lib.Run) -> CountSubsets:
    """``nofe.subset_source``: 'holdout' sets aside a fixed random S of ``subset_size`` images.

    Only sources that count predictions (learned, spectral) set anything aside.
    """
    nofe, num_train = run.config.nofe, len(run.dataset.train)
    if nofe.subset_source == 'train' or nofe.specialties not in COUNTED_SOURCES:
        return CountSubsets(num_train, nofe.subset_size, None)
    if nofe.subset_size >= num_train:
        raise validation.ConfigError(
            f'nofe.subset_size={nofe.subset_size} leaves no training images for stage 1 with '
            f'subset_source=holdout ({num_train} training images); lower it.')
    holdout = pipeline.random_subset(num_train, nofe.subset_size,
                                     np.random.default_rng([_HOLDOUT_STREAM, run.config.seed]))
    return CountSubsets(num_train, nofe.subset_size, holdout)


def make_specialty_update(run: run_lib.Run, subsets: CountSubsets) -> loop.Hook:
    """The stage-1 hook: predict S, count M, reassign (unless M carries no signal), log, record."""
    nofe, num_classes = run.config.nofe, run.dataset.num_classes

    def update(ctx: loop.HookContext):
        current = ctx.grouping['class_to_specialty']
        predicted = ctx.predict(subsets.draw(ctx.rng))
        labels, predicted = predicted['label'], predicted['top1']
        counts = confusion.count_matrix(labels, predicted, num_classes, nofe.num_experts)
        kappa = specialties.specialty_kappa(counts, current)
        # Counts from a generalist at chance are noise: re-assigning from them reshuffles its
        # targets every update, and it never learns any (the alternation traps itself). "At
        # chance" is a test against S's sampling noise, not a fixed kappa: with 1,000 classes a
        # generalist's first kappa is small (0.06 on the tuples) yet far outside the noise, and
        # updating from it is what makes its specialties learnable.
        threshold = nofe.min_kappa_z * specialties.specialty_kappa_null_std(counts, current)
        skipped = kappa < threshold
        new = current if skipped else specialties.assign(
            nofe.balance, specialties.with_stay_bonus(counts, current, nofe.stay_margin), ctx.rng,
            **_assign_options(nofe, current, labels.size))
        change = specialties.describe_change(current, new, nofe.num_experts)
        accuracy = specialty_accuracy(labels, predicted, current)
        ctx.log({'specialties/moved': change['moved'],
                 'specialties/generalist_specialty_top1': accuracy,
                 'specialties/kappa': kappa, 'specialties/skipped': float(skipped),
                 'specialties/empty': sum(s == 0 for s in change['sizes'])})
        outcome = (f'skipped, the generalist is near chance on S (kappa {kappa:.3f} < '
                   f'{nofe.min_kappa_z} x its noise at chance = {threshold:.3f})' if skipped else
                   f'{change["moved"]} classes moved, sizes {change["sizes"]}')
        reporting.log(f'[generalist] specialty update at epoch {ctx.epoch:.2f}: {outcome}; '
                      f'specialty acc on S {accuracy:.4f}, kappa {kappa:.3f}')
        ctx.meta.setdefault('history', []).append({
            'step': ctx.step, 'epoch': ctx.epoch, 'moved': change['moved'],
            'sizes': change['sizes'], 'specialty_top1': accuracy, 'kappa': kappa,
            'skipped': bool(skipped), 'assignment': new.tolist(), 'counts': counts.tolist()})
        write_specialties_json(run, ctx.meta['history'])
        return {'class_to_specialty': new.astype(np.int32)}

    return loop.Hook('specialty_update', nofe.update_every, update, start=nofe.update_warmup)


HISTORY_SUMMARY_KEYS = ('step', 'epoch', 'moved', 'sizes', 'specialty_top1', 'kappa', 'skipped')


def write_specialties_json(run: run_lib.Run, history: list[dict]) -> None:
    """specialties.json: the class names of every specialty after every update (or of the fixed source)."""
    k = run.config.nofe.num_experts
    reporting.write_json(os.path.join(run.workdir, 'specialties.json'), [
        {**{key: h[key] for key in HISTORY_SUMMARY_KEYS if key in h},
         'source': run.config.nofe.specialties,
         'specialties': specialty_names(np.asarray(h['assignment']), run.dataset.class_names, k)}
        for h in history])


def report_partition(run: run_lib.Run, assignment: np.ndarray, history: list[dict]) -> dict:
    """Prints the partition, writes specialties.json/png; returns its summary entries (incl. NMI)."""
    nofe, dataset = run.config.nofe, run.dataset
    names = specialty_names(assignment, dataset.class_names, nofe.num_experts)
    reporting.log(f'specialties ({nofe.specialties}, K={nofe.num_experts}):')
    for k, members in enumerate(names):
        shown = ', '.join(members[:PRINTED_NAMES_PER_SPECIALTY]) or '(empty)'
        more = len(members) - PRINTED_NAMES_PER_SPECIALTY
        reporting.log(f'  {k}: {shown}' + (f' (+{more} more)' if more > 0 else ''))
    if not history:  # a fixed source: one entry, so every source leaves the same files
        write_specialties_json(run, [{'step': 0, 'epoch': 0.0, 'assignment': assignment.tolist()}])
    reporting.plot_specialties(os.path.join(run.workdir, 'specialties.png'), assignment,
                               dataset.class_names, nofe.num_experts,
                               np.asarray(history[-1]['counts']) if history else None)
    entries = {'specialties': [s for s in names if s]}
    if dataset.class_groupings:
        rng = np.random.default_rng([_RANDOM_NMI_STREAM, run.config.seed])
        entries['specialty_nmi'] = {
            name: specialties.partition_nmi(assignment, truth)
            for name, truth in dataset.class_groupings.items()}
        entries['random_partition_nmi'] = {
            name: float(np.mean([specialties.partition_nmi(
                specialties.random_balanced(dataset.num_classes, nofe.num_experts, rng), truth)
                for _ in range(RANDOM_NMI_DRAWS)]))
            for name, truth in dataset.class_groupings.items()}
        reporting.log('NMI of the specialties with ' + ', '.join(
            f'{name}: {value:.3f} (random balanced: {entries["random_partition_nmi"][name]:.3f})'
            for name, value in entries['specialty_nmi'].items()))
    return entries


def generalist_stage(run: run_lib.Run, initial: np.ndarray, learn: bool,
                     subsets: CountSubsets) -> loop.Stage:
    """The K-way generalist on specialty labels, started from ``init_from`` when set (its
    classifier fresh); re-assigns only when ``learn``."""
    config, nofe = run.config, run.config.nofe
    return run_lib.started_from_init(run, loop.Stage(
        name='generalist', model=generalist_model(config),
        task=tasks.ClassificationTask(nofe.num_experts, target_map='class_to_specialty',
                                      target_name='specialty'),
        train_config=config.generalist.train, optim_config=config.generalist.optim,
        grouping={'class_to_specialty': initial.astype(np.int32)},
        hooks=(make_specialty_update(run, subsets),) if learn else (),
        train_indices=subsets.stage1_train_indices, config_block='generalist'), init_from.RELABELLED)


def partition_from_file(run: run_lib.Run) -> np.ndarray:
    try:
        return specialties.load_partition(run.config.nofe.partition_file, run.dataset.num_classes)
    except ValueError as e:  # the number of ids does not match the classes of the data
        raise validation.ConfigError(f'nofe.partition_file: {e}') from e


def experts_partition(run: run_lib.Run, generalist: np.ndarray, from_file: np.ndarray | None
                      ) -> tuple[np.ndarray, dict]:
    """The partition the experts train on (``nofe.expert_partition``; ``from_file``: the
    partition file's, read before any training) and, when it is not the generalist's, the summary
    entry that keeps the generalist's."""
    choice = run.config.nofe.expert_partition
    if choice == 'generalist':
        return generalist, {}
    if choice == 'shuffled':
        # Its own stream: the generalist and every other draw stay those of the unshuffled run.
        partition = specialties.shuffled_partition(
            generalist, np.random.default_rng([_SHUFFLE_STREAM, run.config.seed]))
        reporting.log(f"experts on the generalist's partition with its classes shuffled "
                      f'({int(np.sum(partition != generalist))} of {len(generalist)} classes moved; same sizes)')
    else:
        partition = from_file
        reporting.log(f'experts on the partition of {run.config.nofe.partition_file}, not the generalist\'s')
    return partition, {'generalist_assignment': generalist.tolist()}


def fixed_specialties(run: run_lib.Run, rng: np.random.Generator, stages: dict,
                      subsets: CountSubsets) -> np.ndarray:
    """The partition of a non-learned specialty source."""
    nofe, num_classes = run.config.nofe, run.dataset.num_classes
    if nofe.specialties == 'random':
        return specialties.random_balanced(num_classes, nofe.num_experts, rng)
    if nofe.specialties == 'file':
        return partition_from_file(run)
    if nofe.specialties == 'wordnet':
        wordnet = semantic.prepare_wordnet()
        synsets = semantic.class_synsets(run.dataset.name, wordnet)
        return specialties.wordnet_specialties(synsets, nofe.num_experts)
    # spectral: a flat base model first, then its confusion on S.
    result = run_lib.run_stage(run, run_lib.flat_stage(run, 'spectral_base', 'generalist',
                                                       subsets.stage1_train_indices))
    stages['spectral_base'] = result
    predicted = result.predict(subsets.draw(rng))
    matrix = confusion.confusion_matrix(predicted['label'], predicted['top1'], num_classes)
    return specialties.spectral_specialties(matrix, nofe.num_experts, rng,
                                            balanced=nofe.spectral_balanced)


def nofe_stage(run: run_lib.Run, assignment: np.ndarray, init_from) -> tuple[loop.Stage, experts.ExpertLayout]:
    """Trunk + K stacked branches over the final partition (empty specialties dropped)."""
    config = run.config
    layout = experts.expert_layout(assignment)
    warm_layers = (registry.branch_hidden_layers(config.model.name)
                   if config.nofe.generalist_head == 'branch' else frozenset())
    # Named 'nofe' (checkpoints/nofe, metrics and summary.json's stages) though its config block is
    # 'experts': renaming it would leave every existing workdir's stage-2 checkpoints unread, and a
    # rerun would silently train the experts again from the start.
    stage = loop.Stage(
        name='nofe', model=nofe_model(config, layout), task=ExpertTask(run.dataset.num_classes),
        train_config=config.experts.train, optim_config=config.experts.optim,
        grouping={'class_slots': layout.class_slots,
                  'class_to_specialty': (layout.class_slots // layout.c_max).astype(np.int32)},
        init_variables=None if init_from is None else copy_generalist(init_from, warm_layers),
        config_block='experts',
        meta={'num_experts': layout.num_experts, 'sizes': [int(s) for s in layout.sizes]})
    return stage, layout


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Generalist (learning the specialties) then the network of experts (config validated)."""
    nofe = config.nofe
    run = run_lib.prepare_run(config, workdir, options.METHOD)
    num_classes = run.dataset.num_classes
    check_num_experts(nofe.num_experts, num_classes)
    rng = np.random.default_rng(config.seed)
    stages: dict[str, loop.StageResult] = {}
    learn = nofe.specialties == 'learned'
    subsets = count_subsets(run)
    with run_lib.grouping_warnings_reported(run):
        initial = (specialties.random_balanced(num_classes, nofe.num_experts, rng) if learn
                   else fixed_specialties(run, rng, stages, subsets))
        experts_file = partition_from_file(run) if nofe.expert_partition == 'file' else None
    assignment, history, generalist_variables = initial, [], None
    if learn or nofe.init == 'generalist':
        result = run_lib.run_stage(run, generalist_stage(run, initial, learn, subsets))
        stages['generalist'] = result
        assignment = np.asarray(result.grouping['class_to_specialty'])
        history = result.meta.get('history', [])
        generalist_variables = result.variables
    assignment, generalist_entry = experts_partition(run, assignment, experts_file)
    partition = report_partition(run, assignment, history)
    warning = empty_specialties_warning(assignment, nofe.num_experts, nofe.specialties)
    if warning:
        reporting.log(f'WARNING: {warning}')
    stage, layout = nofe_stage(run, assignment, generalist_variables if nofe.init == 'generalist' else None)
    result = run_lib.run_stage(run, stage)
    stages['nofe'] = result
    return run_lib.finish(run, result.final, stages, **partition, **generalist_entry,
                       num_experts=layout.num_experts, specialty_warnings=[warning] if warning else [],
                       specialty_sizes=[int(s) for s in layout.sizes],
                       specialty_history=[{k: h[k] for k in HISTORY_SUMMARY_KEYS if k in h}
                                          for h in history])
