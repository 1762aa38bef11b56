"""Defaults shared by every config: each field is set here once.

Each method's own options are set once with the method (``nofe_jax/methods/<name>/options.py``)
and added here by ``add_method``. Paper configs override what they need; nothing here is computed
from another field
(command-line overrides would leave it stale) — code derives.
Durations are strings with a unit: '30 epochs', '500 steps', '10000 examples'.
"""
import collections.abc
import contextvars
import functools
from collections.abc import Callable

import ml_collections

from nofe_jax import methods


def data_config() -> ml_collections.ConfigDict:
    """Where images come from and how they are preprocessed."""
    return ml_collections.ConfigDict(dict(
        source='digits',          # tfds | idx | npz | image_folder | digits | synthetic
        name='',                  # tfds name: cifar100, imagenet2012, fashion_mnist, ...
        data_dir='',              # tfds data_dir / IDX folder / image-folder root ('' = default)
        path='',                  # .npz file
        image_size=0,             # image folders: resize to this square size (0 = keep)
        num_workers=0,            # image folders / on-demand tfds: processes decoding and augmenting
                                  # batches (0 = one host thread, which 8 decoding threads feed);
                                  # about one per spare core on a host that has them (ImageNet: one
                                  # core does ~200 img/s); 0 on 2 cores, where workers measured
                                  # slower (benchmarks/input_pipeline.py --case=imagenet_like) and
                                  # start in seconds per epoch; in-memory data always uses the thread
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
        duration='10 epochs',     # > 0 (0 for DMDE's fusion: the stacking function itself)
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
        last_layer_only='0 steps',  # train only the classifier (the head's last layer) this long,
                                    # then every layer: a warm-up of a network started from a
                                    # trained one (DeepME's bases); the lr schedule runs through
        momentum=0.9,
        nesterov=False,
        weight_decay=0.0,
        # (regex over 'trunk/conv1/bias'-style paths, lr_mult, decay_mult); first match wins.
        multipliers=(),
    ))


# Each method's own options and their defaults live with the method (nofe_jax/methods/<name>/
# options.py), set there once; these name them for the configs.
nofe_config = methods.METHODS['nofe'].defaults      # Network of Experts
dmde_config = methods.METHODS['dmde'].defaults      # Deep Mixture of Diverse Experts
deepme_config = methods.METHODS['deepme'].defaults  # DeepME


def add_method(config: ml_collections.ConfigDict, name: str) -> None:
    """Turns a base config into one of method ``name``: its options + a train/optim block per
    stage. The top-level train/optim blocks go: no stage of the method reads them, so an override
    such as --config.train.duration fails as unknown instead of being silently ignored."""
    method = methods.METHODS[name]
    config.recipe = method.name
    if method.option_block:
        config[method.option_block] = method.defaults()
    for stage in method.stage_blocks:
        config[stage] = ml_collections.ConfigDict({'train': train_config(), 'optim': optim_config()})
    del config['train'], config['optim']


def add_nofe(config: ml_collections.ConfigDict) -> None:
    """Turns a base config into a NofE one: options + generalist and experts stages."""
    add_method(config, 'nofe')


def add_dmde(config: ml_collections.ConfigDict) -> None:
    """Turns a base config into a DMDE one: options + bases and fusion stages."""
    add_method(config, 'dmde')


def add_deepme(config: ml_collections.ConfigDict) -> None:
    """Turns a base config into a DeepME one: options + bases and gate stages."""
    add_method(config, 'deepme')


# DeepME configs' `ablation` argument: the paper's ablations of DeepME itself (flat and dmde, the
# other baselines, are those recipes' own configs on the same data and base model).
DEEPME_ABLATIONS = ('none', 'nossc', 'nogate', 'flat', 'dmde')
# The arguments every DeepME config takes (groups, T, is each config's own).
DEEPME_ARGS = {'threshold': 0.3, 'finetune': False, 'gate_input': 'all', 'ablation': 'none'}


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
                         base_lr_mult=0.01 if args['finetune'] else 0.0, gate_input=args['gate_input'],
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
    config.init_from = ''         # a trained flat model the networks start from: a flat run's
                                  # workdir, a checkpoint folder, or a .npz / .safetensors of ImageNet
                                  # weights in torchvision's names (alexnet, vgg16); layers that fit load, the
                                  # classifier is fresh where its outputs differ ('' = scratch;
                                  # docs/methods.md "Start from a trained network")
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


class ConfigArgs(collections.abc.Mapping):
    """A config's parsed arguments that remember which ones the config read."""

    def __init__(self, arg: str | None, values: dict, given: set[str]):
        self.arg, self._values, self._given, self._read = arg, values, given, set()

    def __getitem__(self, key: str):
        self._read.add(key)
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def unread(self) -> list[str]:
        """The arguments the user gave that the config never read."""
        return sorted(self._given - self._read)


# The ConfigArgs parsed inside the running ``rejects_unread_args`` get_config (None outside one).
_PARSED: contextvars.ContextVar[list[ConfigArgs] | None] = contextvars.ContextVar('parsed', default=None)


def parse_args(arg: str | None, defaults: dict) -> ConfigArgs:
    """``'k=10,model=nin_c100,smoke'`` -> ConfigArgs; bare words become True; unknown keys fail."""
    values, given = dict(defaults), set()
    for item in filter(None, (arg or '').split(',')):
        key, _, value = item.partition('=')
        if key not in values:
            raise ValueError(f'Unknown config argument {key!r}; known: {", ".join(sorted(values))}.')
        default = values[key]
        given.add(key)
        if not value:
            values[key] = True
        elif isinstance(default, bool):
            values[key] = value.lower() in ('1', 'true', 'yes')
        elif isinstance(default, (int, float)):
            values[key] = type(default)(value)
        else:
            values[key] = value
    args = ConfigArgs(arg, values, given)
    if (parsed := _PARSED.get()) is not None:
        parsed.append(args)
    return args


def rejects_unread_args(get_config: Callable) -> Callable:
    """A config's ``get_config`` that fails on an argument its chosen variant never reads (``base,k=5``:
    the flat model has no experts), instead of accepting it and ignoring it."""
    @functools.wraps(get_config)
    def checked(arg: str | None = None):
        parsed: list[ConfigArgs] = []
        token = _PARSED.set(parsed)
        try:
            config = get_config(arg)
        finally:
            _PARSED.reset(token)
        for args in parsed:
            if unread := args.unread():
                raise ValueError(f'{args.arg!r} sets {", ".join(unread)}, which this variant does not '
                                 f'use; drop {"it" if len(unread) == 1 else "them"}.')
        return config
    return checked


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


def make_large_image_smoke(config: ml_collections.ConfigDict, *, image_shape: tuple, num_classes: int,
                           stage_names: tuple[str, ...]) -> None:
    """``make_smoke`` for an ImageNet-sized model: 8 synthetic images per split in batches of 4,
    not resized, and from scratch (nothing was pretrained on synthetic images)."""
    make_smoke(config, image_shape=image_shape, num_classes=num_classes, stage_names=stage_names,
               train_size=8, test_size=8)
    config.data.image_size = 0
    config.init_from = ''
    for name in stage_names:
        (config[name] if name else config).train.update(batch_size=4, eval_batch_size=4)
