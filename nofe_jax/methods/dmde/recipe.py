"""Recipe: Deep Mixture of Diverse Experts (Zhao et al., TPAMI 2019), as docs/methods.md reads it.

1. Ontology: the classes clustered into category nodes (semantic: spectral clustering of
   WordNet LCH; visual: of a flat model's class-mean feature similarity; coarse: the dataset's
   superclasses; random), then task groups = windows of ``group_size`` classes over the
   category-ordered classes, moved by ``group_size * (1 - overlap)``.
2. Stage ``bases``: one base network per group, all stacked on a leading axis and trained in one
   vmapped step, each with the group's classes + a not-in-group output (its images carry
   ``not_in_group_weight`` of the data term, half by default) and the multi-task softmax
   (w_k = w_0 + v_k, trace and visual-Laplacian terms; the Laplacians recomputed host-side every
   ``similarity_update_every``).
3. Stage ``fusion``: a stacking function of the networks' probabilities (Eq. 7 or Eq. 12), read as
   log Y, or their concatenated features (early fusion) feeds one N-way softmax; the bases are
   fine-tuned with it at a small multiple of the fusion's rate (``base_lr_mult``, 0: frozen).
Every stage checkpoints its state and grouping arrays (the Laplacians included), so a killed
run resumes inside either stage. Deviation: the Laplacians are zero until the first similarity
update (the paper starts S from the initial network's features); phi is clamped to
[0.01, 0.99] by default, not the paper's 1e-6, and the bases fine-tune at 0.01 of the fusion's
rate: on raw Y, Eq. 7's ratio (1 - phi) / phi has gradient -1 / phi^2, and on digits fine-tuning
at the full rate (or phi_eps 1e-6) threw every base network to chance within 20 steps. On log Y
(the default input) digits fine-tune at the full rate and at 1e-6 without collapse; the defaults
wait for the larger sets (docs/methods.md, "Fusion stage").
"""
import ml_collections
import numpy as np

from nofe_jax import reporting, validation
from nofe_jax.data import pipeline
from nofe_jax.grouping import ontology
from nofe_jax.grouping.layout import GroupLayout, class_similarity, group_layout
from nofe_jax.methods import group_stages
from nofe_jax.methods.dmde import options
from nofe_jax.methods.dmde.model import build_models, check_group_size, fusion_model, group_networks
from nofe_jax.methods.dmde.task import FusionTask
from nofe_jax.training import init_from, loop, tasks
from nofe_jax.training import run as run_lib

__all__ = ['build_models', 'train_and_evaluate']

def bases_stage(run: run_lib.Run, layout: GroupLayout) -> loop.Stage:
    """The G stacked base networks with their not-in-group outputs and multi-task softmax."""
    config, dmde = run.config, run.config.dmde
    num_classes = run.dataset.num_classes
    regularised = dmde.multitask
    task = tasks.GroupTask(layout.num_groups, layout.m_max, options.not_in_group_share(dmde, layout.m_max),
                           mu=dmde.mu, delta1=dmde.delta1 if regularised else 0.0,
                           delta2=dmde.delta2 if regularised else 0.0)
    learns_similarity = regularised and dmde.delta2 > 0
    return run_lib.started_from_init(run, loop.Stage(
        name='bases', model=group_networks(config, layout), task=task,
        train_config=config.bases.train, optim_config=config.bases.optim,
        grouping={'class_targets': layout.class_targets(num_classes), 'slot_mask': layout.slot_mask,
                  'laplacian': np.zeros((layout.num_groups, layout.m_max, layout.m_max), np.float32)},
        hooks=((group_stages.make_similarity_update(run, layout, dmde.similarity_update_every,
                                              dmde.similarity_subset_size),)
               if learns_similarity else ()),
        config_block='bases', meta={'num_groups': layout.num_groups, 'sizes': layout.sizes.tolist()}),
        # Fresh classifiers: from a same-class flat model's memorised columns the new not-in-group
        # output takes over the in-group images (docs/methods.md, "Start from a trained network").
        init_from.STACKED_GROUPS)


def fusion_stage(run: run_lib.Run, layout: GroupLayout, bases: loop.StageResult) -> loop.Stage:
    """The N-way softmax over the stacked bases, which it fine-tunes at ``base_lr_mult`` times its
    rate (0: frozen, so no weight decay either; their gradient is stopped too)."""
    config, dmde = run.config, run.config.dmde
    optim_config = ml_collections.ConfigDict(config.fusion.optim.to_dict())
    optim_config.multipliers = (group_stages.lr_multiplier(group_stages.BASES, dmde.base_lr_mult),
                                *optim_config.multipliers)
    return loop.Stage(
        name='fusion', model=fusion_model(config, layout, run.dataset.num_classes),
        task=FusionTask(run.dataset.num_classes),
        train_config=config.fusion.train, optim_config=optim_config,
        grouping={'slot_classes': layout.slot_classes, 'slot_mask': layout.slot_mask},
        init_variables=group_stages.copy_bases(bases.variables),
        config_block='fusion')


def visual_similarity(run: run_lib.Run, rng: np.random.Generator, stages: dict) -> np.ndarray:
    """[C, C] class-mean cosine similarity of a flat base model's features (trained first, on the
    bases' settings), on a random training subset: the visual tree's affinity."""
    config, num_classes = run.config, run.dataset.num_classes
    result = run_lib.run_stage(run, run_lib.flat_stage(run, 'visual_base', 'bases'))
    stages['visual_base'] = result
    num_train = len(run.dataset.train)
    predicted = result.predict(pipeline.random_subset(
        num_train, min(config.dmde.similarity_subset_size, num_train), rng), ('features',))
    return class_similarity(predicted['features'], predicted['label'], np.arange(num_classes))


def ontology_categories(run: run_lib.Run, rng: np.random.Generator, stages: dict) -> np.ndarray:
    """The category of every class under ``dmde.ontology`` (coarse: all the table's superclasses)."""
    dmde, dataset = run.config.dmde, run.dataset
    table = dmde.class_table or dataset.name
    if dmde.ontology == 'semantic' and table == group_stages.WNID_TABLE:
        return ontology.spectral_categories(group_stages.wordnet_similarity(dataset.class_names,
                                                                      'dmde.class_table'),
                                            dmde.num_categories, rng)
    visual = visual_similarity(run, rng, stages) if dmde.ontology == 'visual' else None
    try:
        return ontology.build_ontology(dmde.ontology, dataset.num_classes,
                                       None if dmde.ontology == 'coarse' else dmde.num_categories, rng,
                                       dataset=table, visual_similarity=visual)
    except ValueError as e:  # no table for these classes, or more categories than classes
        raise validation.ConfigError(f'dmde.ontology={dmde.ontology!r} with class table {table!r}: {e} '
                                     'Set --config.dmde.class_table or another ontology.') from e


def report_groups(run: run_lib.Run, categories: np.ndarray, windows: list[np.ndarray]) -> dict:
    """Prints the ontology and the task groups, writes groups.json and groups.png; returns the
    summary entries."""
    names, dmde = run.dataset.class_names, run.config.dmde
    reporting.log(f'ontology ({dmde.ontology}):')
    for line in ontology.ontology_lines(categories, names):
        reporting.log(f'  {line}')
    members = group_stages.print_groups(f'task groups (M={dmde.group_size}, overlap {dmde.overlap}):',
                                  windows, names)
    tree = ontology.category_members(categories, names)
    coverage = group_stages.write_group_reports(run, windows, members, ontology=tree)
    return {'categories': tree, 'task_groups': members, 'group_coverage': coverage}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Ontology -> task groups -> stacked base networks -> fused N-way classifier (config validated)."""
    dmde = config.dmde
    run = run_lib.prepare_run(config, workdir, options.METHOD)
    num_classes = run.dataset.num_classes
    check_group_size(dmde.group_size, num_classes)
    rng = np.random.default_rng(config.seed)
    stages: dict[str, loop.StageResult] = {}
    with run_lib.grouping_warnings_reported(run):
        categories = ontology_categories(run, rng, stages)
    windows = ontology.ontology_task_groups(categories, dmde.group_size, dmde.overlap)
    layout = group_layout(windows, num_classes, not_in_group=True)
    report = report_groups(run, categories, windows)
    stages['bases'] = run_lib.run_stage(run, bases_stage(run, layout))
    group_stages.report_similarities(run, layout, stages['bases'].grouping['laplacian'])
    stages['fusion'] = run_lib.run_stage(run, fusion_stage(run, layout, stages['bases']))
    return run_lib.finish(run, stages['fusion'].final, stages, **report)
