"""Defaults shared by every config: each field is set here once.

Paper configs override what they need; nothing here is computed from another
field (command-line overrides would leave it stale) — code derives.
Durations are strings with a unit: '30 epochs', '500 steps', '10000 examples'.
"""
import ml_collections


def data_config() -> ml_collections.ConfigDict:
    """Where images come from and how they are preprocessed."""
    return ml_collections.ConfigDict(dict(
        source='digits',          # tfds | idx | npz | image_folder | digits | synthetic
        name='',                  # tfds name: cifar100, imagenet2012, fashion_mnist, ...
        data_dir='',              # tfds data_dir / IDX folder / image-folder root ('' = default)
        path='',                  # .npz file
        image_size=0,             # image folders: resize to this square size (0 = keep)
        train_split='train',
        test_split='test',
        synthetic_shape=(32, 32, 3),
        synthetic_classes=10,
        synthetic_train_size=2048,
        synthetic_test_size=512,
        seed=0,
        preprocess=dict(
            mean='per_channel',   # none | per_channel | per_pixel (Caffe's mean image)
            std='none',           # none | per_channel
            scale=1.0 / 255.0,    # multiplier after mean subtraction (Caffe: 1.0)
            bgr=False,            # Caffe/OpenCV channel order
            pad=0,                # zero padding after mean subtraction, before cropping
            crop=0,               # random crop at train, centre crop at eval (0 = none)
            flip=False,           # random horizontal flip at train
            test_flip=False,      # random flip at eval too (the release's ResNet56)
            resize=0,
            ten_crop=False,       # eval on 4 corner + centre crops and mirrors (softmax averaged)
        ),
    ))


def train_config() -> ml_collections.ConfigDict:
    """How long and how often: one stage's loop settings.

    A period of 0 (e.g. '0 steps') logs, evaluates or checkpoints only at the end of the stage.
    """
    return ml_collections.ConfigDict(dict(
        duration='10 epochs',     # > 0
        batch_size=128,           # a positive multiple of the device count
        eval_batch_size=500,      # likewise
        log_every='50 steps',
        eval_every='1 epoch',
        checkpoint_every='1 epoch',
        keep_checkpoints=3,
    ))


def optim_config() -> ml_collections.ConfigDict:
    """Optimiser and learning-rate schedule of one stage."""
    return ml_collections.ConfigDict(dict(
        name='caffe_sgd',         # caffe_sgd | sgd | adamw
        lr=0.01,                  # the (peak) learning rate; >= 0 (0 freezes the stage)
        schedule='constant',      # constant | piecewise | cosine | exponential
        boundaries=(),            # piecewise: durations, e.g. ('60000 steps',)
        boundary_lrs=(),          # piecewise: the lr from each boundary on (lr before the first)
        final_lr=0.0,             # exponential: lr reached at the end
        warmup='0 steps',
        momentum=0.9,
        nesterov=False,
        weight_decay=0.0,
        # (regex over 'trunk/conv1/bias'-style paths, lr_mult, decay_mult); first match wins.
        multipliers=(),
    ))


def nofe_config() -> ml_collections.ConfigDict:
    """Network of Experts options (docs/methods.md, "Network of Experts")."""
    return ml_collections.ConfigDict(dict(
        num_experts=10,               # K
        specialties='learned',        # learned | spectral | random | wordnet | file
        balance='fully_balanced',     # fully_balanced | elasso | greedy | optimal_balanced
        elasso_lam=1000.0,            # stated for |S| = 10,000 (the paper's); scaled by |S| / 10,000
        elasso_sweeps=0,              # 0 = until no class moves (capped); the release does 1
        update_every='1 epoch',       # specialty re-assignment period of the generalist (> 0)
        update_warmup='50000 examples',  # no re-assignment before this (the release's first update)
        min_kappa=0.1,                # skip an update while the generalist's kappa on S is below this
        stay_margin=1.0,              # a class moves only if it gains > margin * sqrt(its count on S)
        subset_size=10000,            # |S|: training images predicted per update
        subset_source='train',        # train: a fresh random S per update (paper) | holdout: a fixed S
                                      # never trained on in stage 1 (also feeds spectral's confusion)
        spectral_balanced=True,       # spectral: clusters under fully_balanced's capacities
        partition_file='',            # specialties='file': one specialty id per class per line
        init='generalist',            # trunk of the NofE: generalist | scratch
        generalist_head='base',       # base (release): the base model's head, experts start random |
                                      # branch: one expert branch, every expert starts from its layers
        branch_init='release',        # AlexNet-C100/Quick experts' fresh conv4: release N(0, 0.01^2) |
                                      # msra (He): keeps the trunk features' scale
    ))


def add_nofe(config: ml_collections.ConfigDict) -> None:
    """Turns a base config into a NofE one: options + generalist and experts stages.

    The top-level train/optim blocks go: no NofE stage reads them, so an override such as
    --config.train.duration fails as unknown instead of being silently ignored.
    """
    config.recipe = 'nofe'
    config.nofe = nofe_config()
    config.generalist = ml_collections.ConfigDict({'train': train_config(), 'optim': optim_config()})
    config.experts = ml_collections.ConfigDict({'train': train_config(), 'optim': optim_config()})
    del config['train'], config['optim']


def dmde_config() -> ml_collections.ConfigDict:
    """Deep Mixture of Diverse Experts options (docs/methods.md, "Deep Mixture of Diverse Experts")."""
    return ml_collections.ConfigDict(dict(
        ontology='semantic',          # semantic (WordNet LCH) | visual (a flat model's features,
                                      # trained first) | coarse (the dataset's superclasses) | random
        num_categories=10,            # category nodes (coarse: the dataset's number)
        class_table='',               # the class -> synset / superclass table the semantic and
                                      # coarse ontologies read ('' = the dataset's name; 'wnid':
                                      # the class names are WordNet ids, read from WordNet)
        group_size=50,                # M: classes per task group
        overlap=0.5,                  # windows move by M * (1 - overlap); 1/(1-overlap) an integer
        not_in_group_weight=0.0,      # share of a group's data term on not-in-group images
                                      # (0: one class's share, 1 / (M + 1))
        multitask=True,               # w_k = w_0 + v_k with the trace and Laplacian terms |
                                      # False: a plain softmax per group (Table II's "no MT")
        mu=1.0,                       # weight of the cross-entropy
        delta1=1e-4,                  # weight of tr(W W^T)
        delta2=1e-3,                  # weight of tr(W L W^T) / 2 (L: visual-similarity Laplacian)
        similarity_update_every='1 epoch',  # S and L recomputed from the current networks
        similarity_subset_size=1000,  # training images whose features give S
        fusion='eq7',                 # eq7 (stacking, default) | stack2 (Eq. 12) | early (features)
        lambda_overlap=1.0,           # stack2's weight (in Eq. 7 it has no effect)
        phi_eps=0.01,                 # not-in-group probabilities clamped to [eps, 1 - eps]
                                      # (the paper's 1e-6: Eq. 7's ratio then wrecks fine-tuning,
                                      # docs/methods.md "Fusion stage")
        base_lr_mult=0.01,            # fusion stage: the bases' lr multiplier; 0 = frozen (eval
                                      # mode, no gradient, no decay)
    ))


def _add_two_stage_recipe(config: ml_collections.ConfigDict, recipe: str,
                          options: ml_collections.ConfigDict, stages: tuple[str, str]) -> None:
    """``recipe``'s options under ``config[recipe]`` and a train/optim block per stage; the
    top-level train/optim go (no stage reads them, so an override of them fails as unknown)."""
    config.recipe = recipe
    config[recipe] = options
    for stage in stages:
        config[stage] = ml_collections.ConfigDict({'train': train_config(), 'optim': optim_config()})
    del config['train'], config['optim']


def add_dmde(config: ml_collections.ConfigDict) -> None:
    """Turns a base config into a DMDE one: options + bases and fusion stages."""
    _add_two_stage_recipe(config, 'dmde', dmde_config(), ('bases', 'fusion'))


def deepme_config() -> ml_collections.ConfigDict:
    """DeepME options (docs/methods.md, "DeepME")."""
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
        gate_input='first',           # the gate MLP reads base network 0's features | all: every
                                      # base network's, concatenated
        gate_hidden=256,              # the gate MLP's hidden units
        consistency='l1',             # l1 (on confidences) | hamming (thresholded, no gradient)
        consistency_weight=1.0,       # weight of the consistency term of Eq. 4
        alpha=1.0,                    # weight of the margin hinge of Eq. 4
        beta=0.1,                     # its margin
        mixture_ce=1.0,               # weight of the mixture's cross-entropy added to Eq. 4 (0 =
                                      # Eq. 4 as written: its unit-L2 gate sticks at one group,
                                      # docs/methods.md "Gate stage")
        base_lr_mult=0.0,             # gate stage: the bases' lr multiplier; 0 = frozen (the
                                      # paper), > 0 = fine-tuned end to end (its future work)
    ))


def add_deepme(config: ml_collections.ConfigDict) -> None:
    """Turns a base config into a DeepME one: options + bases and gate stages."""
    _add_two_stage_recipe(config, 'deepme', deepme_config(), ('bases', 'gate'))


# DeepME configs' `ablation` argument: the paper's ablations of DeepME itself (flat and dmde, the
# other baselines, are those recipes' own configs on the same data and base model).
DEEPME_ABLATIONS = ('none', 'nossc', 'nogate', 'flat', 'dmde')
# The arguments every DeepME config takes (groups, T, is each config's own).
DEEPME_ARGS = {'threshold': 0.3, 'finetune': False, 'consistency': 'l1', 'gate_input': 'first',
               'ablation': 'none'}


def checked_ablation(ablation: str, config_name: str) -> str:
    if ablation not in DEEPME_ABLATIONS:
        raise ValueError(f'{config_name}: ablation must be one of {", ".join(DEEPME_ABLATIONS)}, '
                         f'not {ablation!r}.')
    return ablation


def configure_deepme(config: ml_collections.ConfigDict, args: dict, class_table: str, **options) -> None:
    """Turns a base config into a DeepME one from the DEEPME_ARGS (and ``groups``) of ``args``:
    finetune -> bases at 0.01 of the gate's rate; ablation nossc -> random groups of SSC's sizes,
    nogate -> equal gate weights 1 / sqrt(T)."""
    add_deepme(config)
    config.deepme.update(num_groups=args['groups'], membership_threshold=args['threshold'],
                         base_lr_mult=0.01 if args['finetune'] else 0.0,
                         consistency=args['consistency'], gate_input=args['gate_input'],
                         class_table=class_table, **options)
    if args['ablation'] == 'nossc':
        config.deepme.groups = 'random'
    elif args['ablation'] == 'nogate':
        config.deepme.gate = 'equal'


def get_config() -> ml_collections.ConfigDict:
    """A flat base model on digits: every field any recipe reads, with its default."""
    config = ml_collections.ConfigDict()
    config.recipe = 'base'        # base | nofe | dmde | deepme
    config.seed = 0
    config.model = ml_collections.ConfigDict(dict(
        name='tiny_cnn',
        dtype='float32',          # compute dtype: float32 | bfloat16
        width_multiplier=1.0,     # Table 4 baselines: scales the base model's channels / hidden FCs
        extra_layers=0,           # Table 4 baselines: expert-style layers appended to the trunk
    ))
    config.data = data_config()
    config.train = train_config()
    config.optim = optim_config()
    config.distributed = ml_collections.ConfigDict(dict(
        coordinator_address='', num_processes=0, process_id=-1))
    return config


def parse_args(arg: str | None, defaults: dict) -> dict:
    """``'k=10,model=nin_c100,smoke'`` -> dict; bare words become True; unknown keys fail."""
    values = dict(defaults)
    for item in filter(None, (arg or '').split(',')):
        key, _, value = item.partition('=')
        if key not in values:
            raise ValueError(f'Unknown config argument {key!r}; known: {", ".join(sorted(values))}.')
        default = values[key]
        if not value:
            values[key] = True
        elif isinstance(default, bool):
            values[key] = value.lower() in ('1', 'true', 'yes')
        elif isinstance(default, (int, float)):
            values[key] = type(default)(value)
        else:
            values[key] = value
    return values


_SMOKE_BATCH_SIZE = 32
_SMOKE_EVAL_BATCH_SIZE = 100


def make_smoke(config: ml_collections.ConfigDict, *, image_shape: tuple, num_classes: int,
               stage_names: tuple[str, ...] = ('',), train_size: int = 0, test_size: int = 0) -> None:
    """Shrinks a config to a one-minute CPU run on synthetic data of the real shape.

    ``stage_names`` lists the sub-configs holding ``train``/``optim`` ('' = top level). By
    default an epoch is 10 training steps and the test set one evaluation batch: a smoke run
    checks that every part of the config runs, not that it learns, and the test suite runs
    every config's smoke.
    """
    config.data.source = 'synthetic'
    config.data.synthetic_shape = image_shape
    config.data.synthetic_classes = num_classes
    config.data.synthetic_train_size = train_size or 10 * _SMOKE_BATCH_SIZE
    config.data.synthetic_test_size = test_size or _SMOKE_EVAL_BATCH_SIZE
    for name in stage_names:
        stage = config[name] if name else config
        stage.train.duration = '1 epochs' if name else '2 epochs'
        stage.train.batch_size = _SMOKE_BATCH_SIZE
        stage.train.eval_batch_size = _SMOKE_EVAL_BATCH_SIZE
        stage.train.log_every = '10 steps'
        stage.train.eval_every = '1 epoch'
        stage.train.checkpoint_every = '1 epoch'
        # Piecewise boundaries of a real solver lie beyond a 2-epoch run.
        stage.optim.boundaries = ()
        stage.optim.boundary_lrs = ()
    if 'nofe' in config:  # a one-epoch generalist still re-learns its specialties
        config.nofe.update_warmup = '0 steps'
