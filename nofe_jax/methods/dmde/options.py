"""DMDE's options: defaults, checks (before any data is read; M <= C once it is) and the fields
its checkpoints fit only. Imports no jax."""
import ml_collections

from nofe_jax import validation
from nofe_jax.grouping import ONTOLOGY_SOURCES
from nofe_jax.methods.method import Method
from nofe_jax.models import names
from nofe_jax.training.durations import duration_problem, parse_duration


def defaults() -> ml_collections.ConfigDict:
    """Deep Mixture of Diverse Experts options and their defaults."""
    return ml_collections.ConfigDict(dict(
        ontology='semantic',          # semantic (WordNet LCH) | visual (a flat model's features,
                                      # trained first) | coarse (the dataset's superclasses) | random
        num_categories=10,            # category nodes (coarse: the dataset's number)
        class_table='',               # the class -> synset / superclass table the semantic and
                                      # coarse ontologies read ('' = the dataset's name; 'wnid':
                                      # the class names are WordNet ids, read from WordNet)
        group_size=50,                # M: classes per task group
        overlap=0.5,                  # windows move by M * (1 - overlap), any value in [0, 1)
        not_in_group_weight=0.5,      # share of a group's data term on not-in-group images
                                      # (0: one class's share, 1 / (M + 1), which leaves the
                                      # not-in-group output near chance at large M)
        multitask=True,               # w_k = w_0 + v_k with the trace and Laplacian terms |
                                      # False: a plain softmax per group (Table II's "no MT")
        mu=1.0,                       # weight of the cross-entropy
        delta1=1e-4,                  # weight of tr(W W^T)
        delta2=1e-3,                  # weight of tr(W L W^T) / 2 (L: visual-similarity Laplacian)
        similarity_update_every='1 epoch',  # S and L recomputed from the current networks
        similarity_subset_size=1000,  # training images whose features give S
        fusion='eq7',                 # eq7 (stacking, default) | stack2 (Eq. 12, groups weighted by
                                      # 1 - phi, their belief the image is in them) | stack2_literal
                                      # (Eq. 12 as printed, weighted by phi) | early (features)
        fusion_input='log',           # log: the N x N layer reads log Y, so (identity at init) it
                                      # starts at Y / sum Y | raw: Y itself, starting at softmax(Y):
                                      # confident mistakes (docs/methods.md "Fusion stage")
        lambda_overlap=1.0,           # stack2's and stack2_literal's weight (no effect in Eq. 7)
        phi_eps=0.01,                 # not-in-group probabilities clamped to [eps, 1 - eps]
                                      # (the paper's 1e-6 wrecked fine-tuning on raw Y, not on
                                      # log Y; docs/methods.md "Fusion stage")
        base_lr_mult=0.01,            # fusion stage: the bases' lr multiplier; 0 = frozen (eval
                                      # mode, no gradient, no decay)
    ))



def not_in_group_share(options: ml_collections.ConfigDict, m_max: int) -> float:
    """The share of a group's data term on its not-in-group images: ``not_in_group_weight``, or
    with 0 one class's share of the m_max + 1 outputs."""
    return options.not_in_group_weight or 1.0 / (m_max + 1)


def problems(config: ml_collections.ConfigDict) -> list[str]:
    """Problems of ``config.dmde`` found before any data is read (M <= C is checked once it is)."""
    options = config.dmde
    group_problem = validation.range_problem('dmde.group_size', options.group_size, low=1, integer=True)
    overlap_problem = validation.range_problem('dmde.overlap', options.overlap, low=0, high=1, high_open=True)
    problems = [
        validation.choice_problem('dmde.ontology', options.ontology, ONTOLOGY_SOURCES),
        validation.choice_problem('dmde.fusion', options.fusion, names.FUSIONS),
        validation.choice_problem('dmde.fusion_input', options.fusion_input, names.FUSION_INPUTS),
        validation.range_problem('dmde.num_categories', options.num_categories, low=1, integer=True),
        group_problem, overlap_problem,
        validation.range_problem('dmde.not_in_group_weight', options.not_in_group_weight, low=0, high=1,
                                 high_open=True),
        validation.range_problem('dmde.mu', options.mu, low=0, low_open=True),
        validation.range_problem('dmde.delta1', options.delta1, low=0),
        validation.range_problem('dmde.delta2', options.delta2, low=0),
        validation.range_problem('dmde.similarity_subset_size', options.similarity_subset_size, low=1,
                                 integer=True),
        duration_problem('dmde.similarity_update_every', options.similarity_update_every,
                         zero=('the visual Laplacians would never be computed; set dmde.delta2=0 '
                               'to train without them.' if options.multitask and options.delta2 > 0 else None)),
        validation.range_problem('dmde.phi_eps', options.phi_eps, low=0, high=0.5, low_open=True,
                                 high_open=True),
        validation.range_problem('dmde.lambda_overlap', options.lambda_overlap, low=0, low_open=True),
        validation.range_problem('dmde.base_lr_mult', options.base_lr_mult, low=0),
    ]
    if not group_problem and not overlap_problem and options.group_size * (1.0 - options.overlap) < 1.0 - 1e-9:
        problems.append(f'dmde.group_size={options.group_size} at overlap {options.overlap} moves the windows '
                        'by less than one class: group_size * (1 - overlap) must be at least 1.')
    if options.fusion == 'early' and 'fusion' in config and _untrained(config.fusion.train.duration):
        problems.append('fusion.train.duration is zero with dmde.fusion=\'early\': early fusion\'s '
                        'N-way layer starts random and must train (a stacking function, eq7 or '
                        'stack2, may stay at its identity start).')
    return [p for p in problems if p]


def _untrained(duration) -> bool:
    """Whether a readable duration is zero (an unreadable one is reported by the stage checks)."""
    try:
        return parse_duration(duration)[0] == 0
    except ValueError:
        return False


METHOD = Method(
    name='dmde', stage_blocks=('bases', 'fusion'), recipe_module='nofe_jax.methods.dmde.recipe',
    option_block='dmde', defaults=defaults, option_problems=problems,
    # The ontology and the windows over it shape the groups; multitask, fusion and its input the
    # networks (the fusion layer's weights mean something else on log Y than on Y).
    fingerprint_fields=('dmde.ontology', 'dmde.num_categories', 'dmde.class_table',
                        'dmde.group_size', 'dmde.overlap', 'dmde.multitask', 'dmde.fusion',
                        'dmde.fusion_input'),
    # fusion.train.duration=0: the N x N layer keeps its identity start, so the classifier is the
    # stacking function's own normalised scores Y / sum Y (docs/methods.md, "Fusion stage").
    untrained_stage_blocks=('fusion',))
