"""What a config may name in models/, importable without flax (so a config is checked in a second).

``registry.MODELS`` and ``alexnet.BRANCH_INITS`` key their constructors and fillers by these
names; tests/models/test_registry.py keeps the two in step.
"""

MODEL_NAMES = ('alexnet_c100', 'alexnet_quick_c100', 'vgg11_c100', 'nin_c100', 'resnet56_c100',
               'alexnet', 'vgg16', 'tiny_cnn')
# The NofE generalist's head: the base model's classifier, or one expert branch on the base trunk.
GENERALIST_HEADS = ('base', 'branch')
# Fillers of the experts' fresh conv (`nofe.branch_init`) and the models whose branch takes one.
BRANCH_INITS = ('release', 'msra')
BRANCH_INIT_MODELS = ('alexnet_c100', 'alexnet_quick_c100')
# Models whose expert branch takes `nofe.branch_width` (its conv's channels: the experts' capacity).
BRANCH_WIDTH_MODELS = ('tiny_cnn',)
# DMDE's N-way classifier input (`dmde.fusion`, methods/dmde/model.py): stacking function Eq. 7,
# Eq. 12 (each group weighted by 1 - phi, or as printed by phi) of the group networks'
# probabilities, or their concatenated features (early fusion).
FUSIONS = ('eq7', 'stack2', 'stack2_literal', 'early')
# What a stacking function's class scores Y enter the N x N layer as (`dmde.fusion_input`):
# log Y (the identity then starts at Y / sum Y) or Y itself (softmax(Y): saturated).
FUSION_INPUTS = ('log', 'raw')
# DeepME's gate (`deepme.gate`, methods/deepme/model.py: GatedMixture): a learned MLP, or equal weights
# (the paper's NoGate ablation).
GATES = ('learned', 'equal')
# What the learned gate reads (`deepme.gate_input`, methods/deepme/model.py: GatedMixture): every
# base network's features, network 0's, or those of the trained flat model every base starts
# from (`init_from`), frozen beside the bases: the paper's "image representation".
GATE_INPUTS = ('all', 'first', 'shared')
