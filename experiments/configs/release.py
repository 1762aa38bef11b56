"""Facts from the NofE authors' Caffe release, per CIFAR-100 base model.

Source: the authors' Caffe release, github.com/karim-ahmed/nofe-caffe at commit 5d3a73d
(the prototxts and solvers under nofe_examples/nofe_<model>/: layer tables, solvers, data
layers). Each entry gives the data layer, the per-blob lr/decay multipliers
and the solver of the generalist and of the NofE stage. Durations in steps
are Caffe iterations; epochs follow from the batch size.
The C-way base models are not in the release: their configs reuse the NofE
stage's solver (for AlexNet-C100/Quick that is exactly Caffe's cifar10_full /
cifar10_quick schedule).
"""
import ml_collections

# (regex over param paths, lr_mult, decay_mult); first match wins.
MULTIPLIERS = {
    # conv3 / conv4_expert have no param block (1/1); ip1 weights decay x250, ip1 bias not decayed.
    'alexnet_c100': (('conv[34]/bias$', 1.0, 1.0), ('ip1/kernel$', 1.0, 250.0),
                     ('ip1/bias$', 2.0, 0.0), ('bias$', 2.0, 1.0)),
    'alexnet_quick_c100': (('bias$', 2.0, 1.0),),
    'nin_c100': (('bias$', 2.0, 0.0),),
    'vgg11_c100': (('fc[123]/bias$', 2.0, 0.0), ('fc[12]/kernel$', 1.0, 2.0), ('bias$', 2.0, 1.0)),
    # Scale layers' gamma/beta and the FC bias are not decayed; lr 1 everywhere.
    'resnet56_c100': (('scale$', 1.0, 0.0), ('bias$', 1.0, 0.0)),
    'alexnet': (('bias$', 2.0, 0.0),),
}

# Data layers: per-pixel mean in BGR 0-255 (Caffe/OpenCV), crop/mirror per model.
_CAFFE_INPUT = dict(mean='per_pixel', std='none', scale=1.0, bgr=True, resize=0)
PREPROCESS = {
    'alexnet_c100': dict(_CAFFE_INPUT, pad=0, crop=0, flip=True, test_flip=False),
    'alexnet_quick_c100': dict(_CAFFE_INPUT, pad=0, crop=0, flip=True, test_flip=False),
    'nin_c100': dict(_CAFFE_INPUT, pad=0, crop=26, flip=True, test_flip=False),
    'vgg11_c100': dict(_CAFFE_INPUT, pad=4, crop=32, flip=True, test_flip=False),
    'resnet56_c100': dict(_CAFFE_INPUT, pad=0, crop=28, flip=True, test_flip=True),
}


def _solver(batch_size, weight_decay, lr_values, boundaries, duration, update_every=None):
    return dict(batch_size=batch_size, weight_decay=weight_decay, lr_values=lr_values,
                boundaries=boundaries, duration=duration, update_every=update_every)


# Generalist: constant lr while the specialties are re-learned (solver ClassClust).
GENERALIST = {
    'alexnet_c100': _solver(100, 0.004, (1e-3,), (), '60000 steps', '1 epoch'),
    'alexnet_quick_c100': _solver(100, 0.004, (1e-3,), (), '4000 steps', '2 epochs'),
    'nin_c100': _solver(128, 1e-4, (1e-2,), (), '92500 steps', '500 steps'),
    'vgg11_c100': _solver(128, 5e-4, (1e-2,), (), '60000 steps', '400 steps'),
    'resnet56_c100': _solver(128, 1e-4, (1e-2,), (), '25000 steps', '400 steps'),
}

# NofE stage: the release's lr drops by restart (boundaries are Caffe iterations).
NOFE = {
    'alexnet_c100': _solver(100, 0.004, (1e-3, 1e-4, 1e-5), ('60000 steps', '65000 steps'),
                            '70000 steps'),
    # The release's Quick NofE train layer has no mirror; one data config serves
    # both stages here, so it keeps the generalist's mirroring.
    'alexnet_quick_c100': _solver(100, 0.004, (1e-3, 1e-4), ('4000 steps',), '5000 steps'),
    # 4 GPUs x 32; the end of the lr3 stage is not recorded: 70,000 iterations assumed.
    'nin_c100': _solver(128, 1e-3, (1e-2, 1e-3, 1e-4, 1e-5),
                        ('49000 steps', '60000 steps', '65000 steps'), '70000 steps'),
    'vgg11_c100': _solver(128, 5e-4, (1e-2, 1e-3, 1e-4), ('120000 steps', '130000 steps'),
                          '140000 steps'),
    'resnet56_c100': _solver(64, 1e-4, (0.1, 0.01, 0.001), ('15000 steps', '22500 steps'),
                             '51000 steps'),
}

# The paper's CIFAR-100 test top-1 (%): (base, NofE K=10 fully_balanced).
PAPER_TOP1 = {
    'alexnet_c100': (54.04, 56.24),
    'alexnet_quick_c100': (37.94, 45.58),
    'vgg11_c100': (68.48, 69.27),
    'nin_c100': (64.73, 67.96),
    'resnet56_c100': (73.52, 76.24),
}


def apply_solver(train: ml_collections.ConfigDict, optim: ml_collections.ConfigDict,
                 solver: dict, model: str) -> None:
    """Writes a release solver into a stage's train and optim configs (Caffe SGD)."""
    train.batch_size = solver['batch_size']
    train.duration = solver['duration']
    optim.name = 'caffe_sgd'
    optim.momentum = 0.9
    optim.weight_decay = solver['weight_decay']
    optim.schedule = 'piecewise'
    optim.lr, *later = solver['lr_values']
    optim.boundary_lrs = tuple(later)
    optim.boundaries = solver['boundaries']
    optim.multipliers = MULTIPLIERS[model]
