"""What the methods with task groups (DMDE, DeepME) share: the hook that recomputes each group's
visual-similarity Laplacian (the numpy math is ``grouping.layout``'s), the WordNet similarity of
the classes, copying trained base networks into a model over them, and the groups' reports."""
import os
from collections.abc import Sequence

import numpy as np

from nofe_jax import reporting, validation
from nofe_jax.data import pipeline
from nofe_jax.grouping import semantic, task_groups
from nofe_jax.grouping.layout import GroupLayout, group_classes, group_laplacians
from nofe_jax.training import loop
from nofe_jax.training import run as run_lib

BASES = r'^groups/'  # the base networks' parameters inside a model over them
# A class table whose class names are WordNet ids (an ImageNet-style image folder): LCH is
# computed from WordNet itself.
WNID_TABLE = 'wnid'
PRINTED_NAMES_PER_GROUP = 12


def make_similarity_update(run: run_lib.Run, layout: GroupLayout, every: str,
                           subset_size: int) -> loop.Hook:
    """The bases' hook: features of a random training subset -> each group's visual Laplacian."""
    num_train = len(run.dataset.train)

    def update(ctx: loop.HookContext):
        indices = pipeline.random_subset(num_train, min(subset_size, num_train), ctx.rng)
        predicted = ctx.predict(indices, ('features',))
        labels = predicted['label']
        features = predicted['features'].reshape(labels.size, layout.num_groups, -1)
        laplacians = group_laplacians(features, labels, layout)
        # tr(L) = sum of the off-diagonal similarities: how strongly the classes are pulled together.
        ctx.log({'similarity/mean_trace': float(np.mean(np.trace(laplacians, axis1=1, axis2=2)))})
        return {'laplacian': laplacians}

    return loop.Hook('similarity_update', every, update)


def copy_bases(bases_variables: dict):
    """An ``init_variables`` hook: the trained base networks replace the model's fresh ones."""
    def init(fresh: dict) -> dict:
        out = {collection: dict(tree) for collection, tree in fresh.items()}
        for collection, tree in bases_variables.items():
            out.setdefault(collection, {})['groups'] = tree
        return out
    return init


def lr_multiplier(pattern: str, lr_mult: float) -> tuple:
    """The optimiser rule for the parameters matching ``pattern``: ``lr_mult`` times the stage's
    rate, and no weight decay when frozen (0)."""
    return (pattern, lr_mult, 1.0 if lr_mult else 0.0)


def wordnet_similarity(class_names: Sequence[str], field: str) -> np.ndarray:
    """[C, C] LCH similarity of classes named by WordNet ids ('n02084071'), from WordNet 3.0
    (``field``: the config field that chose them, for the error)."""
    wordnet = semantic.prepare_wordnet()
    try:
        synsets = [semantic.synset_of(name, wordnet) for name in class_names]
    except Exception as e:  # nltk raises WordNetError / ValueError for a name it cannot resolve
        raise validation.ConfigError(f"{field}='{WNID_TABLE}' needs WordNet ids as class names: {e}") from e
    return semantic.lch_similarity_matrix(synsets, wordnet)


def print_groups(title: str, groups: Sequence[np.ndarray], class_names: Sequence[str]) -> list[list[str]]:
    """Prints the task groups by class name; returns them."""
    members = [[class_names[c] for c in g] for g in groups]
    reporting.log(title)
    for g, group in enumerate(members):
        more = len(group) - PRINTED_NAMES_PER_GROUP
        reporting.log(f'  {g}: {", ".join(group[:PRINTED_NAMES_PER_GROUP])}'
                      + (f' (+{more} more)' if more > 0 else ''))
    return members


def write_group_reports(run: run_lib.Run, groups: Sequence[np.ndarray], members: list[list[str]],
                        **extra) -> dict:
    """groups.json (``extra``, the groups by class name, coverage) and groups.png; returns the
    coverage."""
    coverage = task_groups.group_membership_report(groups, run.dataset.num_classes)
    reporting.write_json(os.path.join(run.workdir, 'groups.json'), {**extra, 'groups': members, **coverage})
    reporting.plot_group_membership(os.path.join(run.workdir, 'groups.png'), groups,
                                    run.dataset.class_names)
    return coverage


def report_similarities(run: run_lib.Run, layout: GroupLayout, laplacians: np.ndarray) -> None:
    """similarities.png: each group's visual similarity of the last update (S_ab = -L_ab, a != b)."""
    sims, names = [], []
    for g in range(layout.num_groups):
        classes = group_classes(layout, g)
        sims.append(-laplacians[g, :classes.size, :classes.size] * (1 - np.eye(classes.size)))
        names.append([run.dataset.class_names[c] for c in classes])
    reporting.plot_group_similarities(os.path.join(run.workdir, 'similarities.png'), sims, names)
