"""Recipe: DeepME, an adaptive deep mixture with soft spectral clustering and a gate network, as
spec/deepme.md reads it.

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
   with ||phi||_2 = 1, trained with Eq. 4 (gate-weighted base losses, consistency between
   groups sharing a class, margin hinge); the bases frozen (the paper) or fine-tuned with it at
   ``base_lr_mult`` times its rate (end to end, the paper's future work). ``gate='equal'`` is
   the NoGate ablation.
Both stages checkpoint their state and grouping arrays, so a killed run resumes inside either.
"""
import os

import jax
import ml_collections
import numpy as np

from nofe_jax import reporting, validation
from nofe_jax.data import pipeline
from nofe_jax.grouping import clustering, semantic, task_groups
from nofe_jax.models import mixture, registry
from nofe_jax.training import loop, tasks
from nofe_jax.training.recipes import common, groups


def group_networks(config: ml_collections.ConfigDict, layout: mixture.GroupLayout
                   ) -> mixture.GroupNetworks:
    """The stacked base networks over ``layout``: the config's base model, one per group."""
    base = registry.build_base(config.model.name, layout.num_outputs, **common.model_overrides(config))
    return mixture.GroupNetworks(base, layout.num_groups, layout.m_max, split_classifier=False)


def gated_mixture(config: ml_collections.ConfigDict, layout: mixture.GroupLayout,
                  num_classes: int) -> mixture.GatedMixture:
    dc = config.deepme
    return mixture.GatedMixture(group_networks(config, layout), num_classes, gate=dc.gate,
                                gate_input=dc.gate_input, gate_hidden=dc.gate_hidden, freeze_groups=dc.base_lr_mult == 0)


def even_layout(config: ml_collections.ConfigDict, num_classes: int) -> mixture.GroupLayout:
    """``num_groups`` disjoint groups of about C / T classes: the shapes ``experiments.describe``
    counts (SSC's groups differ in size and overlap; the counts scale with the largest)."""
    return mixture.group_layout(np.array_split(np.arange(num_classes), config.deepme.num_groups),
                                num_classes)


def build_models(config: ml_collections.ConfigDict, num_classes: int) -> dict:
    """{name: (model, extra apply args)}: the stacked base networks and the gated mixture."""
    check_num_groups(config.deepme.num_groups, num_classes)
    layout = even_layout(config, num_classes)
    tables = (jax.ShapeDtypeStruct(layout.slot_classes.shape, np.int32),
              jax.ShapeDtypeStruct(layout.slot_mask.shape, np.bool_))
    return {'bases': (group_networks(config, layout), ()),
            'gate': (gated_mixture(config, layout, num_classes), tables)}


def check_num_groups(num_groups: int, num_classes: int) -> None:
    if not 2 <= num_groups <= num_classes:
        raise validation.ConfigError(
            f'deepme.num_groups={num_groups} does not fit {num_classes} classes: choose 2 <= T <= '
            f'{num_classes} (--config.deepme.num_groups=...).')


def semantic_similarity(run: common.Run) -> np.ndarray:
    """[C, C] WordNet LCH of the classes (Theta), from the shipped table named by
    ``deepme.class_table`` (default: the dataset's name) or, 'wnid', from WordNet itself."""
    dataset, table = run.dataset, run.config.deepme.class_table or run.dataset.name
    if table == groups.WNID_TABLE:
        return groups.wordnet_similarity(dataset.class_names, 'deepme.class_table')
    try:
        theta = semantic.semantic_similarity(table)
    except ValueError as e:  # no shipped table under that name
        raise validation.ConfigError(f'deepme: no semantic class table {table!r} ({e}); set '
                                     f"--config.deepme.class_table (or '{groups.WNID_TABLE}').") from e
    if theta.shape != (dataset.num_classes,) * 2:
        raise validation.ConfigError(f'deepme.class_table {table!r} has {theta.shape[0]} classes, the data '
                                     f'{dataset.num_classes}; set --config.deepme.class_table.')
    return theta


def soft_groups(theta: np.ndarray, config: ml_collections.ConfigDict,
                rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """(groups, memberships [C, T]): SSC of Theta (diagonal dropped, negatives clipped), each
    class in every group with membership >= the threshold and in its best; for ``groups='random'``
    the same sizes over randomly relabelled classes."""
    dc = config.deepme
    affinity = np.maximum(theta, 0.0) * (1.0 - np.eye(theta.shape[0]))
    memberships = clustering.soft_spectral_clustering(affinity, dc.num_groups, rng,
                                                      m=dc.fuzzifier or None)
    found = task_groups.ssc_groups(memberships, dc.membership_threshold)
    if dc.groups == 'random':
        found = task_groups.random_groups_like(found, theta.shape[0], rng)
    return found, memberships


def report_groups(run: common.Run, found: list[np.ndarray], memberships: np.ndarray) -> dict:
    """Prints the groups, writes groups.json / groups.png; returns the summary entries."""
    dc = run.config.deepme
    title = (f'groups ({dc.groups}, T={dc.num_groups}, threshold {dc.membership_threshold}; '
             f'mean largest membership {memberships.max(axis=1).mean():.3f}):')
    members = groups.print_groups(title, found, run.dataset.class_names)
    coverage = groups.write_group_reports(run, found, members,
                                          memberships=np.round(memberships, 4).tolist())
    print(f'  sizes {coverage["sizes"]}, {coverage["in_two_or_more"]} classes in two or more groups',
          flush=True)
    return {'task_groups': members, 'group_coverage': coverage,
            'mean_largest_membership': float(memberships.max(axis=1).mean())}


def bases_stage(run: common.Run, layout: mixture.GroupLayout, theta: np.ndarray) -> loop.Stage:
    """The T stacked base networks, each a softmax over its group's classes."""
    config, dc = run.config, run.config.deepme
    task = tasks.GroupTask(layout.num_groups, layout.m_max, not_in_group_weight=0.0, mu=dc.mu,
                           delta1=dc.lambda1, delta2=dc.lambda2, delta3=dc.lambda3,
                           not_in_group=False)
    grouping = {'class_targets': layout.class_targets(run.dataset.num_classes),
                'slot_mask': layout.slot_mask,
                'laplacian': np.zeros((layout.num_groups, layout.m_max, layout.m_max), np.float32)}
    if dc.lambda3:
        grouping['semantic_laplacian'] = groups.semantic_laplacians(theta, layout)
    hooks = ((groups.make_similarity_update(run, layout, dc.similarity_update_every,
                                            dc.similarity_subset_size),) if dc.lambda2 else ())
    return loop.Stage(name='bases', model=group_networks(config, layout), task=task,
                      train_config=config.bases.train, optim_config=config.bases.optim,
                      grouping=grouping, hooks=hooks, config_block='bases',
                      meta={'num_groups': layout.num_groups, 'sizes': layout.sizes.tolist()})


def gate_stage(run: common.Run, layout: mixture.GroupLayout, bases: loop.StageResult) -> loop.Stage:
    """The gated mixture over the trained bases, frozen or fine-tuned at ``base_lr_mult``."""
    config, dc = run.config, run.config.deepme
    num_classes = run.dataset.num_classes
    optim_config = ml_collections.ConfigDict(config.gate.optim.to_dict())
    optim_config.multipliers = (groups.bases_multiplier(dc.base_lr_mult), *optim_config.multipliers)
    pairs, pair_mask = mixture.shared_class_pairs(layout, num_classes)
    task = tasks.MixtureTask(num_classes, consistency=dc.consistency,
                             consistency_weight=dc.consistency_weight, alpha=dc.alpha, beta=dc.beta,
                             mixture_ce_weight=dc.mixture_ce)
    return loop.Stage(
        name='gate', model=gated_mixture(config, layout, num_classes), task=task,
        train_config=config.gate.train, optim_config=optim_config,
        grouping={'slot_classes': layout.slot_classes, 'slot_mask': layout.slot_mask,
                  'class_targets': layout.class_targets(num_classes), 'pairs': pairs,
                  'pair_mask': pair_mask},
        init_variables=groups.copy_bases({'params': bases.state.params, **bases.state.model_state}),
        config_block='gate', meta={'shared_class_pairs': int(pair_mask.sum())})


def report_gate_weights(run: common.Run, gate: loop.StageResult, rng: np.random.Generator) -> None:
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
    run = common.prepare_run(config, workdir)
    num_classes = run.dataset.num_classes
    check_num_groups(config.deepme.num_groups, num_classes)
    rng = np.random.default_rng(config.seed)
    theta = semantic_similarity(run)
    found, memberships = soft_groups(theta, config, rng)
    layout = mixture.group_layout(found, num_classes)
    report = report_groups(run, found, memberships)
    stages: dict[str, loop.StageResult] = {}
    stages['bases'] = common.run_stage(run, bases_stage(run, layout, theta))
    groups.report_similarities(run, layout, stages['bases'].grouping['laplacian'])
    stages['gate'] = common.run_stage(run, gate_stage(run, layout, stages['bases']))
    report_gate_weights(run, stages['gate'], rng)
    return common.finish(run, stages['gate'].final, stages, **report)
