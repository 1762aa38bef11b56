"""Recipe: DeepME, an adaptive deep mixture with soft spectral clustering and a gate network, as
docs/methods.md ("DeepME") reads it.

1. Groups: soft spectral clustering (SSC) of the classes' semantic similarity (WordNet LCH) into
   ``num_groups`` clusters; a class joins every group with membership >= ``membership_threshold``
   and always its best one, so groups overlap. ``groups='random'`` (the NoSSC ablation) keeps
   the sizes and the overlap pattern and relabels the classes at random.
2. Stage ``bases``: one base network per group with the group's classes as outputs (no
   not-in-group output), stacked on a leading axis and trained in one vmapped step on the
   group's images (an image trains only the networks of the groups holding its class); loss
   mu CE + lambda1 tr(WW^T) + lambda2/2 tr(W L(Omega) W^T) + lambda3/2 tr(W L(Theta) W^T), Omega
   the visual similarity (recomputed every ``similarity_update_every``, as DMDE's), Theta the
   fixed semantic similarity restricted to the group.
3. Stage ``gate``: the gate network weighs the group networks per image, F(x) = sum_t phi_t f_t(x)
   with ||phi||_2 = 1, trained with Eq. 4 (gate-weighted base losses, consistency of the gate's
   per-class confidences between groups sharing a class, margin hinge); the bases frozen (the
   paper) or fine-tuned with it at ``base_lr_mult`` times its rate (end to end, the paper's
   future work); the flat model it reads with ``gate_input='shared'`` frozen or fine-tuned at
   ``shared_lr_mult``. ``gate='equal'`` is the NoGate ablation.
Both stages checkpoint their state and grouping arrays, so a killed run resumes inside either.
"""
import os

import ml_collections
import numpy as np

from nofe_jax import reporting, validation
from nofe_jax.data import pipeline
from nofe_jax.grouping import clustering, semantic, task_groups
from nofe_jax.grouping.layout import GroupLayout, group_layout, semantic_laplacians, shared_class_pairs
from nofe_jax.methods import group_stages
from nofe_jax.methods.deepme import options
from nofe_jax.methods.deepme.model import build_models, check_num_groups, gated_mixture, group_networks
from nofe_jax.methods.deepme.task import MixtureTask
from nofe_jax.training import init_from, loop, tasks
from nofe_jax.training import run as run_lib

__all__ = ['build_models', 'train_and_evaluate']

# The flat model the gate reads with gate_input='shared', inside the gate stage's variables.
SHARED_NETWORK = init_from.Fit(mount=('shared',))
SHARED_PARAMS = r'^shared/'


def semantic_similarity(run: run_lib.Run) -> np.ndarray:
    """[C, C] WordNet LCH of the classes (Theta), from the shipped table named by
    ``deepme.class_table`` (default: the dataset's name) or, 'wnid', from WordNet itself."""
    dataset, table = run.dataset, run.config.deepme.class_table or run.dataset.name
    if table == group_stages.WNID_TABLE:
        return group_stages.wordnet_similarity(dataset.class_names, 'deepme.class_table')
    try:
        theta = semantic.semantic_similarity(table)
    except ValueError as e:  # no shipped table under that name
        raise validation.ConfigError(f'deepme: no semantic class table {table!r} ({e}); set '
                                     f"--config.deepme.class_table (or '{group_stages.WNID_TABLE}').") from e
    if theta.shape != (dataset.num_classes,) * 2:
        raise validation.ConfigError(f'deepme.class_table {table!r} has {theta.shape[0]} classes, the data '
                                     f'{dataset.num_classes}; set --config.deepme.class_table.')
    return theta


def soft_groups(theta: np.ndarray, config: ml_collections.ConfigDict,
                rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """(groups, memberships [C, T]): SSC of Theta (diagonal dropped, negatives clipped), each
    class in every group with membership >= the threshold and in its best; for ``groups='random'``
    the same sizes over randomly relabelled classes."""
    deepme = config.deepme
    affinity = np.maximum(theta, 0.0) * (1.0 - np.eye(theta.shape[0]))
    memberships = clustering.soft_spectral_clustering(affinity, deepme.num_groups, rng,
                                                      m=deepme.fuzzifier or None)
    found = task_groups.ssc_groups(memberships, deepme.membership_threshold)
    if deepme.groups == 'random':
        found = task_groups.random_groups_like(found, theta.shape[0], rng)
    return found, memberships


def report_groups(run: run_lib.Run, found: list[np.ndarray], memberships: np.ndarray) -> dict:
    """Prints the groups, writes groups.json / groups.png; returns the summary entries."""
    deepme = run.config.deepme
    title = (f'groups ({deepme.groups}, T={deepme.num_groups}, threshold {deepme.membership_threshold}; '
             f'mean largest membership {memberships.max(axis=1).mean():.3f}):')
    members = group_stages.print_groups(title, found, run.dataset.class_names)
    coverage = group_stages.write_group_reports(run, found, members,
                                                memberships=np.round(memberships, 4).tolist())
    reporting.log(f'  sizes {coverage["sizes"]}, {coverage["in_two_or_more"]} classes in two or more '
                  'groups')
    return {'task_groups': members, 'group_coverage': coverage,
            'mean_largest_membership': float(memberships.max(axis=1).mean())}


def bases_stage(run: run_lib.Run, layout: GroupLayout, theta: np.ndarray) -> loop.Stage:
    """The T stacked base networks, each a softmax over its group's classes."""
    config, deepme = run.config, run.config.deepme
    task = tasks.GroupTask(layout.num_groups, layout.m_max, not_in_group_weight=0.0, mu=deepme.mu,
                           delta1=deepme.lambda1, delta2=deepme.lambda2, delta3=deepme.lambda3,
                           not_in_group=False)
    grouping = {'class_targets': layout.class_targets(run.dataset.num_classes),
                'slot_mask': layout.slot_mask,
                'laplacian': np.zeros((layout.num_groups, layout.m_max, layout.m_max), np.float32)}
    if deepme.lambda3:
        grouping['semantic_laplacian'] = semantic_laplacians(theta, layout)
    hooks = ((group_stages.make_similarity_update(run, layout, deepme.similarity_update_every,
                                            deepme.similarity_subset_size),) if deepme.lambda2 else ())
    stage = loop.Stage(name='bases', model=group_networks(config, layout), task=task,
                       train_config=config.bases.train, optim_config=config.bases.optim,
                       grouping=grouping, hooks=hooks, config_block='bases',
                       meta={'num_groups': layout.num_groups, 'sizes': layout.sizes.tolist()})
    return run_lib.started_from_init(run, stage, init_from.stacked_groups(
        layout.slot_classes, layout.slot_mask, run.dataset.num_classes))


def gate_stage(run: run_lib.Run, layout: GroupLayout, bases: loop.StageResult) -> loop.Stage:
    """The gated mixture over the trained bases, frozen or fine-tuned at ``base_lr_mult``."""
    config, deepme = run.config, run.config.deepme
    num_classes = run.dataset.num_classes
    optim_config = ml_collections.ConfigDict(config.gate.optim.to_dict())
    optim_config.multipliers = (group_stages.lr_multiplier(group_stages.BASES, deepme.base_lr_mult),
                                *optim_config.multipliers)
    copy_bases = init_variables = group_stages.copy_bases(bases.variables)
    fingerprint = {path: run_lib.config_value(config, path) for path in options.GATE_FIELDS}
    if options.reads_shared_network(deepme):
        optim_config.multipliers = (group_stages.lr_multiplier(SHARED_PARAMS, deepme.shared_lr_mult),
                                    *optim_config.multipliers)
        load_shared = init_from.loader(config.init_from, config.model.name, SHARED_NETWORK, 'gate')

        def init_variables(fresh: dict) -> dict:
            return load_shared(copy_bases(fresh))
        fingerprint['init_from'] = config.init_from
    pairs, pair_mask = shared_class_pairs(layout, num_classes)
    task = MixtureTask(num_classes, consistency_weight=deepme.consistency_weight, alpha=deepme.alpha,
                       beta=deepme.beta, mixture_ce_weight=deepme.mixture_ce)
    return loop.Stage(
        name='gate', model=gated_mixture(config, layout, num_classes), task=task,
        train_config=config.gate.train, optim_config=optim_config,
        grouping={'slot_classes': layout.slot_classes, 'slot_mask': layout.slot_mask,
                  'class_targets': layout.class_targets(num_classes), 'pairs': pairs,
                  'pair_mask': pair_mask},
        init_variables=init_variables, fingerprint=fingerprint,
        config_block='gate', meta={'shared_class_pairs': int(pair_mask.sum())})


def report_gate_weights(run: run_lib.Run, gate: loop.StageResult, rng: np.random.Generator) -> None:
    """gate_weights.png: the mean phi per true class over a random training subset."""
    num_train, num_classes = len(run.dataset.train), run.dataset.num_classes
    subset = pipeline.random_subset(num_train, min(run.config.deepme.similarity_subset_size, num_train), rng)
    predicted = gate.predict(subset, ('gate_weights',))
    phi, labels = predicted['gate_weights'], predicted['label']
    mean_phi = np.zeros((num_classes, phi.shape[1]))
    np.add.at(mean_phi, labels, phi)
    mean_phi /= np.maximum(np.bincount(labels, minlength=num_classes), 1)[:, None]
    reporting.plot_class_group_matrix(os.path.join(run.workdir, 'gate_weights.png'), mean_phi,
                                      run.dataset.class_names,
                                      f'mean gate weight phi per true class ({subset.size} training images)')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Semantic similarity -> SSC groups -> stacked base networks -> gated mixture (config validated)."""
    run = run_lib.prepare_run(config, workdir, options.METHOD)
    num_classes = run.dataset.num_classes
    check_num_groups(config.deepme.num_groups, num_classes)
    rng = np.random.default_rng(config.seed)
    theta = semantic_similarity(run)
    with run_lib.grouping_warnings_reported(run):
        found, memberships = soft_groups(theta, config, rng)
    layout = group_layout(found, num_classes)
    report = report_groups(run, found, memberships)
    stages: dict[str, loop.StageResult] = {}
    stages['bases'] = run_lib.run_stage(run, bases_stage(run, layout, theta))
    group_stages.report_similarities(run, layout, stages['bases'].grouping['laplacian'])
    stages['gate'] = run_lib.run_stage(run, gate_stage(run, layout, stages['bases']))
    report_gate_weights(run, stages['gate'], rng)
    return run_lib.finish(run, stages['gate'].final, stages, **report)
