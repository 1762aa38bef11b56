r"""Network of Experts on Fashion-MNIST (real data, offline) — the project's real-data check.

  python -m experiments.run --config=experiments/configs/fashion_mnist_nofe.py:k=2 --workdir=/tmp/fm_k2
  python -m experiments.run --config=experiments/configs/fashion_mnist_nofe.py:k=5,balance=elasso \
      --workdir=/tmp/fm_k5_elasso

Arguments: k (default 2), balance=fully_balanced|elasso|greedy|optimal_balanced,
specialties=learned|random|spectral|wordnet, init=generalist|scratch,
model=tiny_cnn|alexnet_c100, subset=train|holdout (where the counts come from),
head=base|branch, branch_init=release|msra and pad (see fashion_pairs.py),
generalist_epochs (2), expert_epochs (4), smoke.
The generalist re-learns the specialties every half epoch from the end of its
first epoch (`update_warmup='1 epoch'`, the schedule measured below, when the warm-up
was 50,000 images), from its predictions on a random 10,000-image training
subset (the paper's choice; elasso's lam=1000 is stated for that |S|). Compare
with fashion_mnist_base.py:epochs=6 (same total epochs). Measured on 2 CPU
cores (docs/results.md, "Fashion-MNIST"): test top-1 91.49% at K=2 and 91.77% at K=5 (6-7 min
each) against the flat model's 91.22%; the specialties never moved from their
random start (the generalist fits them within the warm-up). alexnet_c100 with pad=2:
NofE 90.46% (experts at lr 0.02 warmed up over their first epoch, the default here; 89.69% at
0.01, 88.50% at the flat model's 0.005) vs flat 90.16% (docs/results.md). No paper number.
"""
from experiments.configs import common, fashion_mnist_base

# alexnet_c100's experts start from a trained trunk with fresh, deeper layers and underfit at
# the flat model's 0.005 (NofE 88.50%); at 0.01 they reach 89.69%; at 0.02 they never leave
# chance unless the rate warms up over the first epoch: then 90.46% (docs/results.md).
EXPERT_SOLVERS = {'alexnet_c100': {'lr': 0.02, 'warmup': '1 epoch'}}


@common.rejects_unread_args
def get_config(arg: str | None = None):
    args = common.parse_args(arg, {'k': 2, 'balance': 'fully_balanced', 'specialties': 'learned',
                                   'init': 'generalist', 'subset': 'train', 'head': 'base',
                                   'branch_init': 'release', 'pad': 0, 'generalist_epochs': 2,
                                   'expert_epochs': 4, 'model': 'tiny_cnn', 'smoke': False})
    model = fashion_mnist_base.checked_model(args['model'], 'fashion_mnist_nofe.py')
    config = common.get_config()
    fashion_mnist_base.configure_data(config, model, args['pad'])
    common.add_nofe(config)
    config.nofe.update(num_experts=args['k'], balance=args['balance'],
                       specialties=args['specialties'], init=args['init'],
                       subset_source=args['subset'], generalist_head=args['head'],
                       branch_init=args['branch_init'], update_every='0.5 epochs',
                       update_warmup='1 epoch')
    fashion_mnist_base.configure_stage(config.generalist, args['generalist_epochs'], model)
    fashion_mnist_base.configure_stage(config.experts, args['expert_epochs'], model)
    config.experts.optim.update(EXPERT_SOLVERS.get(model, {}))
    if args['smoke']:
        common.make_smoke(config, image_shape=(28, 28, 1), num_classes=10,
                          stage_names=('generalist', 'experts'))
        config.nofe.subset_size = 500
    return config
