"""DeepME's options: defaults, checks (before any data is read; T <= C once it is) and the fields
its checkpoints fit only. Imports no jax."""
import ml_collections

from nofe_jax import validation
from nofe_jax.grouping import DEEPME_GROUPINGS
from nofe_jax.methods.method import Method
from nofe_jax.models import names
from nofe_jax.training.durations import duration_problem


def defaults() -> ml_collections.ConfigDict:
    """DeepME options and their defaults."""
    return ml_collections.ConfigDict(dict(
        class_table='',               # the class -> synset table giving Theta ('' = the dataset's
                                      # name; 'wnid': the class names are WordNet ids)
        groups='ssc',                 # ssc (soft spectral clustering of Theta) | random (NoSSC:
                                      # the same sizes over randomly relabelled classes)
        num_groups=15,                # T (the paper's ImageNet-10K value)
        membership_threshold=0.3,     # delta: a class joins every group it has this membership in
        fuzzifier=0.0,                # fuzzy c-means m; 0 = the dimension-aware default
                                      # (clustering.default_fuzzifier; the textbook m=2 collapses)
        mu=1.0,                       # weight of the cross-entropy
        lambda1=1e-4,                 # weight of tr(W W^T)
        lambda2=1e-3,                 # weight of tr(W L(Omega) W^T) / 2 (visual, recomputed)
        lambda3=1e-3,                 # weight of tr(W L(Theta) W^T) / 2 (semantic, fixed)
        similarity_update_every='1 epoch',  # Omega recomputed from the current networks
        similarity_subset_size=1000,  # training images whose features give Omega
        gate='learned',               # learned (an MLP) | equal (NoGate: 1 / sqrt(T) each)
        gate_input='all',             # the gate MLP reads every base network's features,
                                      # concatenated | first: base network 0's (trained on one
                                      # group; routes worse, docs/methods.md "Gate stage") |
                                      # shared: those of init_from's flat model, kept frozen
        gate_hidden=256,              # the gate MLP's hidden units
        consistency_weight=1.0,       # weight of the consistency term of Eq. 4: the gate's mean
                                      # confidences per class agree between groups sharing it
        alpha=1.0,                    # weight of the margin hinge of Eq. 4
        beta=0.1,                     # its margin
        mixture_ce=1.0,               # weight of the mixture's cross-entropy added to Eq. 4 (0 =
                                      # Eq. 4 as written: its unit-L2 gate sticks at one group,
                                      # docs/methods.md "Gate stage")
        base_lr_mult=0.0,             # gate stage: the bases' lr multiplier; 0 = frozen (the
                                      # paper), > 0 = fine-tuned end to end (its future work)
        shared_lr_mult=0.0,           # gate stage, gate_input='shared': the flat model's lr
                                      # multiplier; 0 = frozen, > 0 = fine-tuned with the gate
                                      # (frozen features of memorised images cap the routing:
                                      # docs/methods.md "Gate stage")
    ))


def reads_shared_network(deepme: ml_collections.ConfigDict) -> bool:
    """Whether the gate reads a flat network of its own (the NoGate ablation reads nothing)."""
    return deepme.gate == 'learned' and deepme.gate_input == 'shared'


def problems(config: ml_collections.ConfigDict) -> list[str]:
    """Problems of ``config.deepme`` found before any data is read (T <= C is checked once it is)."""
    options = config.deepme
    problems = [
        validation.choice_problem('deepme.groups', options.groups, DEEPME_GROUPINGS),
        validation.choice_problem('deepme.gate', options.gate, names.GATES),
        validation.choice_problem('deepme.gate_input', options.gate_input, names.GATE_INPUTS),
        ("deepme.gate_input='shared' reads the trained flat model of init_from, which is not set; "
         "set --config.init_from or choose gate_input='all'."
         if reads_shared_network(options) and not config.init_from else None),
        validation.range_problem('deepme.num_groups', options.num_groups, low=2, integer=True),
        validation.range_problem('deepme.membership_threshold', options.membership_threshold, low=0,
                                 high=1, low_open=True),
        (validation.range_problem('deepme.fuzzifier', options.fuzzifier, low=1, low_open=True)
         if options.fuzzifier else None),
        validation.range_problem('deepme.mu', options.mu, low=0, low_open=True),
        *(validation.range_problem(f'deepme.{field}', options[field], low=0)
          for field in ('lambda1', 'lambda2', 'lambda3', 'consistency_weight', 'alpha', 'beta',
                        'mixture_ce', 'base_lr_mult', 'shared_lr_mult')),
        ("deepme.shared_lr_mult fine-tunes the flat model the gate reads with gate_input='shared' "
         f"(gate_input={options.gate_input!r}, gate={options.gate!r}); set it to 0 or gate_input='shared'."
         if options.shared_lr_mult and not reads_shared_network(options) else None),
        validation.range_problem('deepme.gate_hidden', options.gate_hidden, low=1, integer=True),
        validation.range_problem('deepme.similarity_subset_size', options.similarity_subset_size, low=1,
                                 integer=True),
        duration_problem('deepme.similarity_update_every', options.similarity_update_every,
                         zero=('the visual Laplacians would never be computed; set '
                               'deepme.lambda2=0 to train without them.' if options.lambda2 > 0 else None)),
    ]
    return [p for p in problems if p]


METHOD = Method(
    name='deepme', stage_blocks=('bases', 'gate'), recipe_module='nofe_jax.methods.deepme.recipe',
    option_block='deepme', defaults=defaults, option_problems=problems,
    # The clustering and its inputs shape the groups (every stage); GATE_FIELDS, the gate network
    # only (its stage's own fingerprint: trained bases may be reused under another gate).
    fingerprint_fields=('deepme.groups', 'deepme.num_groups', 'deepme.membership_threshold',
                        'deepme.fuzzifier', 'deepme.class_table'))
GATE_FIELDS = ('deepme.gate', 'deepme.gate_input', 'deepme.gate_hidden')
