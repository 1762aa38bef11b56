"""Recipe: Deep Mixture of Diverse Experts (Zhao et al., TPAMI 2019), as spec/dmde.md reads it.

1. Ontology: the classes clustered into category nodes (semantic: spectral clustering of
   WordNet LCH; visual: of a flat model's class-mean feature similarity; coarse: the dataset's
   superclasses; random), then task groups = windows of ``group_size`` classes over the
   category-ordered classes, moved by ``group_size * (1 - overlap)``.
2. Stage ``bases``: one base network per group, all stacked on a leading axis and trained in one
   vmapped step, each with the group's classes + a not-in-group output and the multi-task softmax
   (w_k = w_0 + v_k, trace and visual-Laplacian terms; the Laplacians recomputed host-side every
   ``similarity_update_every``).
3. Stage ``fusion``: a stacking function of the networks' probabilities (Eq. 7 or Eq. 12) or their
   concatenated features (early fusion) feeds one N-way softmax; the bases are fine-tuned with it
   at a small multiple of the fusion's rate (``base_lr_mult``, 0: frozen).
Every stage checkpoints its state and grouping arrays (the Laplacians included), so a killed
run resumes inside either stage. Deviation: the Laplacians are zero until the first similarity
update (the spec starts S from the initial network's features); phi is clamped to
[0.01, 0.99] by default, not the spec's 1e-6, and the bases fine-tune at 0.01 of the fusion's
rate: Eq. 7's ratio (1 - phi) / phi has gradient -1 / phi^2, and on digits fine-tuning at the
full rate (or phi_eps 1e-6) threw every base network to chance within 20 steps (README).
"""
import jax
import ml_collections
import numpy as np

from nofe_jax import validation
from nofe_jax.data import pipeline
from nofe_jax.grouping import ontology, task_groups
from nofe_jax.models import mixture, registry
from nofe_jax.training import loop, tasks
from nofe_jax.training.recipes import common, groups

def group_networks(config: ml_collections.ConfigDict, layout: mixture.GroupLayout
                   ) -> mixture.GroupNetworks:
    """The stacked base networks over ``layout``: the config's base model, one per group."""
    base = registry.build_base(config.model.name, layout.num_outputs, **common.model_overrides(config))
    return mixture.GroupNetworks(base, layout.num_groups, layout.m_max,
                                 split_classifier=config.dmde.multitask)


def fusion_model(config: ml_collections.ConfigDict, layout: mixture.GroupLayout,
                 num_classes: int) -> mixture.StackedFusion:
    dc = config.dmde
    return mixture.StackedFusion(group_networks(config, layout), num_classes, fusion=dc.fusion,
                                 phi_eps=dc.phi_eps, lambda_overlap=dc.lambda_overlap,
                                 freeze_groups=dc.base_lr_mult == 0)


def balanced_layout(config: ml_collections.ConfigDict, num_classes: int) -> mixture.GroupLayout:
    """The layout of windows over the classes in label order (the shapes of any ontology's)."""
    windows = task_groups.tree_guided_windows(np.arange(num_classes), config.dmde.group_size,
                                              config.dmde.overlap)
    return mixture.group_layout(windows, num_classes, not_in_group=True)


def build_models(config: ml_collections.ConfigDict, num_classes: int) -> dict:
    """{name: (model, extra apply args)}: the stacked base networks and the fused network."""
    check_group_size(config.dmde.group_size, num_classes)
    layout = balanced_layout(config, num_classes)
    tables = (jax.ShapeDtypeStruct(layout.slot_classes.shape, np.int32),
              jax.ShapeDtypeStruct(layout.slot_mask.shape, np.bool_))
    return {'bases': (group_networks(config, layout), ()),
            'fusion': (fusion_model(config, layout, num_classes), tables)}


def check_group_size(group_size: int, num_classes: int) -> None:
    if not 1 <= group_size <= num_classes:
        raise validation.ConfigError(
            f'dmde.group_size={group_size} does not fit {num_classes} classes: choose 1 <= M <= '
            f'{num_classes} (--config.dmde.group_size=...).')


def bases_stage(run: common.Run, layout: mixture.GroupLayout) -> loop.Stage:
    """The G stacked base networks with their not-in-group outputs and multi-task softmax."""
    config, dc = run.config, run.config.dmde
    num_classes = run.dataset.num_classes
    nig_weight = dc.not_in_group_weight or 1.0 / (layout.m_max + 1)
    regularised = dc.multitask
    task = tasks.GroupTask(layout.num_groups, layout.m_max, nig_weight, mu=dc.mu,
                           delta1=dc.delta1 if regularised else 0.0,
                           delta2=dc.delta2 if regularised else 0.0)
    learns_similarity = regularised and dc.delta2 > 0
    return loop.Stage(
        name='bases', model=group_networks(config, layout), task=task,
        train_config=config.bases.train, optim_config=config.bases.optim,
        grouping={'class_targets': layout.class_targets(num_classes), 'slot_mask': layout.slot_mask,
                  'laplacian': np.zeros((layout.num_groups, layout.m_max, layout.m_max), np.float32)},
        hooks=((groups.make_similarity_update(run, layout, dc.similarity_update_every,
                                              dc.similarity_subset_size),)
               if learns_similarity else ()),
        config_block='bases', meta={'num_groups': layout.num_groups, 'sizes': layout.sizes.tolist()})


def fusion_stage(run: common.Run, layout: mixture.GroupLayout, bases: loop.StageResult) -> loop.Stage:
    """The N-way softmax over the stacked bases, which it fine-tunes at ``base_lr_mult`` times its
    rate (0: frozen, so no weight decay either; their gradient is stopped too)."""
    config, dc = run.config, run.config.dmde
    optim_config = ml_collections.ConfigDict(config.fusion.optim.to_dict())
    optim_config.multipliers = (groups.bases_multiplier(dc.base_lr_mult), *optim_config.multipliers)
    return loop.Stage(
        name='fusion', model=fusion_model(config, layout, run.dataset.num_classes),
        task=tasks.FusionTask(run.dataset.num_classes),
        train_config=config.fusion.train, optim_config=optim_config,
        grouping={'slot_classes': layout.slot_classes, 'slot_mask': layout.slot_mask},
        init_variables=groups.copy_bases({'params': bases.state.params, **bases.state.model_state}),
        config_block='fusion')


def visual_similarity(run: common.Run, rng: np.random.Generator, stages: dict) -> np.ndarray:
    """[C, C] class-mean cosine similarity of a flat base model's features (trained first, on the
    bases' settings), on a random training subset: the visual tree's affinity."""
    config, num_classes = run.config, run.dataset.num_classes
    stage = loop.Stage(name='visual_base',
                       model=registry.build_base(config.model.name, num_classes,
                                                 **common.model_overrides(config)),
                       task=tasks.ClassificationTask(num_classes),
                       train_config=config.bases.train, optim_config=config.bases.optim,
                       config_block='bases')
    result = common.run_stage(run, stage)
    stages['visual_base'] = result
    num_train = len(run.dataset.train)
    predicted = result.predict(pipeline.random_subset(
        num_train, min(config.dmde.similarity_subset_size, num_train), rng), ('features',))
    return groups.class_similarity(predicted['features'], predicted['label'], np.arange(num_classes))


def ontology_categories(run: common.Run, rng: np.random.Generator, stages: dict) -> np.ndarray:
    """The category of every class under ``dmde.ontology`` (coarse: all the table's superclasses)."""
    dc, dataset = run.config.dmde, run.dataset
    table = dc.class_table or dataset.name
    if dc.ontology == 'semantic' and table == groups.WNID_TABLE:
        return ontology.spectral_categories(groups.wordnet_similarity(dataset.class_names,
                                                                      'dmde.class_table'),
                                            dc.num_categories, rng)
    visual = visual_similarity(run, rng, stages) if dc.ontology == 'visual' else None
    try:
        return ontology.build_ontology(dc.ontology, dataset.num_classes,
                                       None if dc.ontology == 'coarse' else dc.num_categories, rng,
                                       dataset=table, visual_similarity=visual)
    except ValueError as e:  # no table for these classes, or more categories than classes
        raise validation.ConfigError(f'dmde.ontology={dc.ontology!r} with class table {table!r}: {e} '
                                     'Set --config.dmde.class_table or another ontology.') from e


def report_groups(run: common.Run, categories: np.ndarray, windows: list[np.ndarray]) -> dict:
    """Prints the ontology and the task groups, writes groups.json and groups.png; returns the
    summary entries."""
    names, dc = run.dataset.class_names, run.config.dmde
    print(f'ontology ({dc.ontology}):', flush=True)
    for line in ontology.ontology_lines(categories, names):
        print(f'  {line}', flush=True)
    members = groups.print_groups(f'task groups (M={dc.group_size}, overlap {dc.overlap}):',
                                  windows, names)
    tree = ontology.category_members(categories, names)
    coverage = groups.write_group_reports(run, windows, members, ontology=tree)
    return {'categories': tree, 'task_groups': members, 'group_coverage': coverage}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Ontology -> task groups -> stacked base networks -> fused N-way classifier (config validated)."""
    dc = config.dmde
    run = common.prepare_run(config, workdir)
    num_classes = run.dataset.num_classes
    check_group_size(dc.group_size, num_classes)
    rng = np.random.default_rng(config.seed)
    stages: dict[str, loop.StageResult] = {}
    categories = ontology_categories(run, rng, stages)
    windows = ontology.ontology_task_groups(categories, dc.group_size, dc.overlap)
    layout = mixture.group_layout(windows, num_classes, not_in_group=True)
    report = report_groups(run, categories, windows)
    stages['bases'] = common.run_stage(run, bases_stage(run, layout))
    groups.report_similarities(run, layout, stages['bases'].grouping['laplacian'])
    stages['fusion'] = common.run_stage(run, fusion_stage(run, layout, stages['bases']))
    return common.finish(run, stages['fusion'].final, stages, **report)
