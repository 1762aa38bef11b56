"""The NofE's options: defaults, checks (before any data is read; K <= C once it is) and the
fields its checkpoints fit only. Imports no jax."""
import os

import ml_collections

from nofe_jax import paths, validation
from nofe_jax.methods.method import Method
from nofe_jax.models import names
from nofe_jax.training.durations import duration_problem


def defaults() -> ml_collections.ConfigDict:
    """Network of Experts options and their defaults."""
    return ml_collections.ConfigDict(dict(
        num_experts=10,               # K
        specialties='learned',        # learned | spectral | random | wordnet | file
        balance='fully_balanced',     # fully_balanced | elasso | greedy | optimal_balanced
        elasso_lam=1000.0,            # stated for |S| = 10,000 (the paper's); scaled by |S| / 10,000
        elasso_sweeps=0,              # 0 = until no class moves (capped); the release does 1
        update_every='1 epoch',       # specialty re-assignment period of the generalist (> 0)
        update_warmup='0 epochs',     # no re-assignment before this; 0: the first update ends the
                                      # first period (the paper: after every epoch from the first)
        min_kappa_z=3.0,              # skip an update while the generalist's kappa on S is within this
                                      # many standard deviations of chance (no signal at this |S|)
        stay_margin=1.0,              # a class moves only if it gains > margin * sqrt(its count on S)
        subset_size=10000,            # |S|: training images predicted per update
        subset_source='train',        # train: a fresh random S per update (paper) | holdout: a fixed S
                                      # never trained on in stage 1 (also feeds spectral's confusion)
        spectral_balanced=False,      # spectral: False = plain spectral clustering (the paper's
                                      # Table 2) | True: clusters under fully_balanced's capacities
        partition_file='',            # specialties='file' or expert_partition='file': one specialty
                                      # id per class per line
        init='generalist',            # trunk of the NofE: generalist | scratch
        expert_partition='generalist',  # the experts' specialties: generalist (the partition it ended
                                      # with) | shuffled: its classes permuted at random (same sizes,
                                      # same trunk, no structure: the control for learned specialties)
                                      # | file: nofe.partition_file's (e.g. a known true grouping)
        generalist_head='base',       # base (release): the base model's head, experts start random |
                                      # branch: one expert branch, every expert starts from its layers
        branch_init='release',        # AlexNet-C100/Quick experts' fresh conv4: release N(0, 0.01^2) |
                                      # msra (He): keeps the trunk features' scale
        branch_width=0,               # channels of each expert branch's conv (tiny_cnn); 0: the model's own
    ))



SPECIALTY_SOURCES = ('learned', 'spectral', 'random', 'wordnet', 'file')
# The count-matrix assigners of grouping.specialties.ASSIGNERS (which imports scipy).
SPECIALTY_ASSIGNERS = ('fully_balanced', 'elasso', 'greedy', 'optimal_balanced')
SUBSET_SOURCES = ('train', 'holdout')
INITS = ('generalist', 'scratch')
EXPERT_PARTITIONS = ('generalist', 'shuffled', 'file')
LISTED_PARTITION_PROBLEMS = 5


def partition_entries(path: str) -> list[tuple[str, str]]:
    """(where, token) of every specialty id in a partition file, as ``specialties.load_partition`` reads it."""
    with open(path) as f:
        lines = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
    if len(lines) == 1 and len(lines[0][1]) > 1 and lines[0][1].isdigit():  # the release's digit string
        n, digits = lines[0]
        return [(f'character {i} of line {n}', d) for i, d in enumerate(digits, 1)]
    return [(f'line {n}', token) for n, token in lines]


def partition_file_problems(path: str, num_experts: int) -> list[str]:
    """Problems of a ``specialties=file`` partition file: missing, non-integer ids, ids outside [0, K)."""
    path = paths.expand(path)
    if not path or not os.path.isfile(path):
        return [f'nofe.partition_file={path!r} is not a file; nofe.specialties=file and '
                'nofe.expert_partition=file need one specialty id per class, one per line.']
    bad = [f'{where} of {path}: ' + (f'specialty {token} is outside [0, K={num_experts})'
                                     if token.isdigit() else
                                     f'{token!r} is not a specialty id (a non-negative integer)')
           for where, token in partition_entries(path)
           if not token.isdigit() or int(token) >= num_experts]
    more = len(bad) - LISTED_PARTITION_PROBLEMS
    return bad[:LISTED_PARTITION_PROBLEMS] + ([f'... and {more} more in {path}.'] if more > 0 else [])


def problems(config: ml_collections.ConfigDict) -> list[str]:
    """Problems of ``config.nofe`` found before any data is read (K <= C is checked once it is)."""
    options = config.nofe
    never = ('the specialties would never be re-learned; use nofe.specialties=random for a fixed '
             'random partition.')
    k_problem = validation.range_problem('nofe.num_experts', options.num_experts, low=1, integer=True)
    problems = [
        validation.choice_problem('nofe.specialties', options.specialties, SPECIALTY_SOURCES),
        validation.choice_problem('nofe.balance', options.balance, SPECIALTY_ASSIGNERS),
        validation.choice_problem('nofe.subset_source', options.subset_source, SUBSET_SOURCES),
        validation.choice_problem('nofe.init', options.init, INITS),
        validation.choice_problem('nofe.expert_partition', options.expert_partition, EXPERT_PARTITIONS),
        validation.choice_problem('nofe.generalist_head', options.generalist_head, names.GENERALIST_HEADS),
        validation.choice_problem('nofe.branch_init', options.branch_init, names.BRANCH_INITS),
        k_problem,
        validation.range_problem('nofe.min_kappa_z', options.min_kappa_z, low=0),
        validation.range_problem('nofe.stay_margin', options.stay_margin, low=0),
        validation.range_problem('nofe.elasso_lam', options.elasso_lam, low=0),
        validation.range_problem('nofe.elasso_sweeps', options.elasso_sweeps, low=0, integer=True),
        validation.range_problem('nofe.subset_size', options.subset_size, low=1, integer=True),
        validation.range_problem('nofe.branch_width', options.branch_width, low=0, integer=True),
        duration_problem('nofe.update_every', options.update_every,
                         zero=never if options.specialties == 'learned' else None),
        duration_problem('nofe.update_warmup', options.update_warmup),
    ]
    if options.branch_init != 'release' and config.model.name not in names.BRANCH_INIT_MODELS:
        problems.append(f'nofe.branch_init={options.branch_init!r} applies to the branches of '
                        f'{", ".join(names.BRANCH_INIT_MODELS)}; {config.model.name!r} keeps its fillers.')
    if options.branch_width and config.model.name not in names.BRANCH_WIDTH_MODELS:
        problems.append(f'nofe.branch_width={options.branch_width} applies to the branches of '
                        f'{", ".join(names.BRANCH_WIDTH_MODELS)}; {config.model.name!r} keeps its own.')
    if options.generalist_head == 'branch' and options.init != 'generalist':
        problems.append("nofe.generalist_head='branch' starts the experts from the generalist's branch, "
                        f"so it needs nofe.init='generalist' (got {options.init!r}).")
    if 'file' in (options.specialties, options.expert_partition) and k_problem is None:
        problems += partition_file_problems(options.partition_file, options.num_experts)
    return [p for p in problems if p]


METHOD = Method(
    name='nofe', stage_blocks=('generalist', 'experts'), recipe_module='nofe_jax.methods.nofe.recipe',
    option_block='nofe', defaults=defaults, option_problems=problems,
    # K, the heads and the branch width shape the networks; the source, its file, spectral's balance,
    # the shuffle and where the counts come from (a held-out S also changes what stage 1 trains on):
    # the specialty map.
    fingerprint_fields=('nofe.num_experts', 'nofe.generalist_head', 'nofe.branch_width', 'nofe.specialties',
                        'nofe.partition_file', 'nofe.spectral_balanced', 'nofe.expert_partition',
                        'nofe.subset_source', 'nofe.subset_size'))
