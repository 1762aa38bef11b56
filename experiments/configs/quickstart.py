r"""Quickstart: a Network of Experts on scikit-learn's handwritten digits (real, offline).

  python -m experiments.run --config=experiments/configs/quickstart.py --workdir=/tmp/q

A tiny CNN generalist re-learns K=5 specialties every epoch (from the first
epoch on) from its predictions on 1,000 training images, then a trunk + 5
vmapped expert branches is trained end to end with one softmax over the 10
digits. Measured with the command above on 2 CPU cores: NofE test top-1 97.8%
(specialty accuracy 98.0%; one test image is 0.22 points, and another machine printed 98.0%),
about 20 s in all; the specialties stay at their random
start (the generalist fits them at once, so no class's counts beat its current
specialty by more than their noise). The flat model (`:base`) gets 98.9%: on
10 easy classes the experts do not pay off. No paper number: this config shows
the method end to end. `quickstart.py:smoke` is shorter still;
`quickstart.py:base` trains the flat tiny CNN instead; `quickstart.py:dmde` a Deep
Mixture of Diverse Experts (5 tiny CNNs on overlapping groups of 4 digits from a random
ontology, each with a not-in-group output, fused by the stacking function of Eq. 7): 97.33%
(bases in-group 94.89%, not-in-group 97.56%) in about two minutes on shared cores;
`quickstart.py:deepme` a DeepME (3 tiny CNNs on soft spectral clusters of the digits' WordNet
similarity, mixed per image by a learned gate): 96.7% (gate right for 98.0%) in about a minute.
Its groups mean nothing: WordNet makes the ten digits siblings, equally similar to each other,
so the clustering warns that its groups ({0}, {1}, {2..9}) are an arbitrary, reproducible split;
DeepME's groups carry structure on data with a class hierarchy (Fashion-MNIST, the pairs).
`--config.init_from=<the workdir of a quickstart.py:base run>` starts any of them from that flat
model, as the DMDE and DeepME papers start from a pretrained network: DMDE 98.9%, DeepME 99.6%
(docs/results.md, "Starting from the flat model").
"""
from experiments.configs import common


def _stage(stage, duration: str, lr: float) -> None:
    stage.train.update(duration=duration, batch_size=32, eval_batch_size=250,
                       log_every='20 steps', eval_every='5 epochs', checkpoint_every='5 epochs')
    stage.optim.update(name='sgd', lr=lr, schedule='cosine', weight_decay=1e-4)


@common.rejects_unread_args
def get_config(arg: str | None = None):
    args = common.parse_args(arg, {'smoke': False, 'base': False, 'dmde': False, 'deepme': False,
                                   'k': 5})
    config = common.get_config()
    config.model.name = 'tiny_cnn'
    config.data.source = 'digits'
    generalist_epochs, expert_epochs = ('1 epochs', '1 epochs') if args['smoke'] else ('10 epochs', '20 epochs')
    if args['base']:
        _stage(config, expert_epochs, 0.05)
        return config
    if args['dmde']:
        common.add_dmde(config)
        # Digits have no WordNet structure worth clustering (all ten are hyponyms of digit).
        config.dmde.update(ontology='random', num_categories=3, group_size=4, overlap=0.5,
                           similarity_subset_size=500)
        _stage(config.bases, generalist_epochs, 0.05)
        _stage(config.fusion, generalist_epochs, 0.01)
        return config
    if args['deepme']:
        common.add_deepme(config)
        config.deepme.update(num_groups=3, similarity_subset_size=500)
        _stage(config.bases, generalist_epochs, 0.05)
        _stage(config.gate, generalist_epochs, 0.01)
        return config
    common.add_nofe(config)
    config.nofe.num_experts = args['k']
    config.nofe.subset_size = 1000
    _stage(config.generalist, generalist_epochs, 0.05)
    _stage(config.experts, expert_epochs, 0.05)
    return config
