r"""Flat CIFAR-100 base models matched to the NofE's depth and/or size (NofE paper, Table 4).

The paper asks whether the NofE's gain is just its extra capacity: it trains the flat base
model made deeper (as deep as the NofE), wider (as many parameters as the NofE) and both.
Here, against the K=10 NofE (c_max = 10, C = 100):
  deeper        base + K = 10 times the conv layers (or residual blocks) of one expert branch
                (model.extra_layers; width unchanged). The paper, Sec. 4.1: "we add to the
                original base network K = 10 times the number of convolutional layers (or
                residual blocks) contained in one branch"; its count lands on the NofE's
  wider         channels (and hidden FCs) x model.width_multiplier, the multiple of 0.01 whose
                parameter count is closest to the NofE's (registry.param_matched_overrides)
  deeper_wider  one branch's layers added, then widened to the NofE's count (Table 4)

  python -m experiments.run \
      --config=experiments/configs/cifar100_param_matched.py:model=alexnet_c100,variant=wider \
      --workdir=/tmp/c100_wider --config.data.data_dir=$HOME/tensorflow_datasets
  python -m experiments.describe \
      --config=experiments/configs/cifar100_param_matched.py:model=alexnet_c100,variant=wider

Arguments: model=alexnet_c100 | alexnet_quick_c100 | vgg11_c100 | nin_c100 | resnet56_c100
(default alexnet_c100); variant=deeper | wider | deeper_wider (default wider); smoke (as in
cifar100_base.py). Everything else (data, release preprocessing, Caffe SGD solver) is
cifar100_base.py's; the multiplier is computed once here from the arguments (shape passes
only, under 5 s) and stored as a plain value, so command-line overrides stay in effect.

Measured with experiments.describe; C = 100, NofE K = 10. Total parameters (+n: extra_layers,
xm: width_multiplier):
  model               base         deeper            wider                deeper_wider             NofE
  alexnet_c100          181,828    1,206,468 (+10)   1,129,336 (x3.21)    1,132,955 (+1, x2.24)    1,129,668
  alexnet_quick_c100    151,428    1,176,068 (+10)   1,272,729 (x2.96)    1,273,204 (+1, x2.26)    1,274,948
  vgg11_c100          7,672,996   19,474,596 (+20)  22,042,508 (x1.70)   21,969,424 (+2, x1.58)   22,053,028
  nin_c100              984,356    4,674,596 (+10)   4,662,919 (x2.20)    4,678,319 (+1, x1.87)    4,674,596
  resnet56_c100      13,650,596   25,457,316 (+10)  25,618,012 (x1.37)   25,414,247 (+1, x1.31)   25,457,316
(extra_layers counts conv layers for AlexNet-C100/Quick and VGG11, (conv, cccp) pairs for NIN and
residual blocks for ResNet56: one branch is 1, 1, 2, 1 and 1 of them.)
Forward MFLOPs per image (XLA's cost analysis: a multiply-add counts 2, zero padding skipped):
  model               base     deeper     wider     deeper_wider     NofE
  alexnet_c100          21.0     37.1      181.3        100.0          37.0
  alexnet_quick_c100    20.8     36.9      155.5        100.5          37.1
  vgg11_c100           413.1    675.4     1190.4       1090.4         680.6
  nin_c100             257.2    472.8     1189.8        943.1         472.8
  resnet56_c100       2757.3   3704.8     5179.4       4899.6        3704.9
ResNet56 totals include its frozen identity projections (40,960 weights at x1.0). Every
widened count is within 0.7% of the NofE's; matching parameters by width costs 2.5-5x the NofE's
FLOPs. The deeper base has the NofE's parameters and FLOPs up to its K-way fan-out (equal for
NIN and ResNet56, within 8% for AlexNet-C100/Quick and 12% for VGG11): K branches' layers in
a row cost what K branches side by side cost.
Paper: Table 4's accuracies are not quoted here; for reference the base
models get 54.04 (AlexNet-C100) / 73.52 (ResNet56-C100) and the K=10 NofE 56.24 / 76.24.
Measured accuracy here: not run (CIFAR-100 is not obtainable on the offline machines this
project is developed on); expected runtime: about the base config's times the FLOPs ratio.
"""
from experiments.configs import cifar100_base, common
from nofe_jax.models import registry

NUM_CLASSES = 100
NUM_EXPERTS = 10  # the NofE the baselines are matched to


@common.rejects_unread_args
def get_config(arg: str | None = None):
    args = common.parse_args(arg, {'model': 'alexnet_c100', 'variant': 'wider', 'smoke': False})
    config = cifar100_base.get_config(f'model={args["model"]}' + (',smoke' if args['smoke'] else ''))
    overrides = registry.param_matched_overrides(args['model'], NUM_CLASSES, NUM_EXPERTS, args['variant'])
    config.model.width_multiplier = float(overrides['width_multiplier'])
    config.model.extra_layers = int(overrides['extra_layers'])
    return config
