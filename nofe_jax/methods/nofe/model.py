"""The NofE's models, built from a config: the K-way generalist and the network of experts over a
layout (their modules live in ``models/``: every base CNN has its trunk, head and expert branch),
and the copy of the generalist's trunk (and branch) into the experts' start."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nofe_jax import validation
from nofe_jax.models import experts, registry
from nofe_jax.training import run as run_lib


def check_num_experts(num_experts: int, num_classes: int) -> None:
    """K must leave every specialty at least one class."""
    validation.check_fits_classes('nofe.num_experts', num_experts, num_classes, symbol='K')


def _branch_overrides(config: ml_collections.ConfigDict) -> dict:
    """Expert-branch constructor overrides from ``config.nofe`` (the release's fillers and the
    model's own width pass none)."""
    nofe = config.nofe
    return ({} if nofe.branch_init == 'release' else {'branch_init': nofe.branch_init}) | (
        {'branch_width': nofe.branch_width} if nofe.branch_width else {})


def generalist_model(config: ml_collections.ConfigDict):
    """The K-way generalist ``config`` trains (its head: ``nofe.generalist_head``)."""
    nofe = config.nofe
    branch = _branch_overrides(config) if nofe.generalist_head == 'branch' else {}
    return registry.generalist(config.model.name, nofe.num_experts, head=nofe.generalist_head,
                               **run_lib.model_overrides(config), **branch)


def nofe_model(config: ml_collections.ConfigDict, layout: experts.ExpertLayout):
    """The network of experts over ``layout``."""
    return registry.build_nofe(config.model.name, layout, **run_lib.model_overrides(config),
                               **_branch_overrides(config))


def build_models(config: ml_collections.ConfigDict, num_classes: int) -> dict:
    """{name: (model, extra apply args)} of the models this recipe trains: the K-way generalist and
    the network of experts over a balanced layout (c_max = ceil(C / K))."""
    check_num_experts(config.nofe.num_experts, num_classes)
    layout = experts.expert_layout(np.arange(num_classes) % config.nofe.num_experts)
    slots = jax.ShapeDtypeStruct(layout.class_slots.shape, jnp.int32)
    return {'generalist': (generalist_model(config), ()), 'nofe': (nofe_model(config, layout), (slots,))}


def copy_generalist(generalist_variables: dict, branch_layers: frozenset[str] = frozenset()):
    """An ``init_variables`` hook: the generalist's trunk replaces the fresh one, and each layer of
    its branch named in ``branch_layers`` (``generalist_head='branch'``) is copied into every expert."""
    def init(fresh: dict) -> dict:
        out = {collection: dict(tree) for collection, tree in fresh.items()}
        for collection, tree in generalist_variables.items():
            if 'trunk' in tree:
                out.setdefault(collection, {})['trunk'] = tree['trunk']
            shared = {layer: v for layer, v in tree.get('branch', {}).items() if layer in branch_layers}
            if shared:
                stacked = dict(out[collection]['experts']['branch'])
                for layer, variables in shared.items():
                    stacked[layer] = jax.tree.map(lambda g, f: jnp.broadcast_to(g, f.shape).astype(f.dtype),
                                                  variables, stacked[layer])
                out[collection]['experts'] = {**out[collection]['experts'], 'branch': stacked}
        return out
    return init
