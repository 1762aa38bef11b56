"""DeepME: the gate, the mixture and its loss terms, base networks without a not-in-group output,
the recipe (frozen / end-to-end bases, ablations, reports).

Model and loss calls run under jax.jit: eagerly, each op compiles on its own (hundreds of small
XLA programs per test).
"""
import copy
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import cifar100_deepme, fashion_mnist_deepme, quickstart
from nofe_jax import methods
from nofe_jax.grouping import clustering
from nofe_jax.grouping import layout as group_layout_lib
from nofe_jax.methods.deepme import model as deepme_model
from nofe_jax.methods.deepme import recipe as deepme_recipe
from nofe_jax.methods.deepme import task as deepme_task
from nofe_jax.models import group_networks, registry
from nofe_jax.training import losses, tasks

# Three groups over 5 classes: class 0 in groups 0 and 1, class 2 in groups 1 and 2.
GROUPS = [np.array([0, 1]), np.array([0, 2, 3]), np.array([2, 4])]


def _layout():
    return group_layout_lib.group_layout(GROUPS, 5)


def test_shared_class_pairs_by_hand():
    pairs, mask = group_layout_lib.shared_class_pairs(_layout(), 5)
    # (class, group, group): class 0 is in groups 0 and 1, class 2 in groups 1 and 2.
    assert sorted(map(tuple, pairs.tolist())) == [(0, 0, 1), (2, 1, 2)]
    assert mask.all()
    none, none_mask = group_layout_lib.shared_class_pairs(group_layout_lib.group_layout([[0, 1], [2, 3]], 4), 4)
    assert none.shape == (1, 3) and not none_mask.any()


def test_gate_weights_are_non_negative_with_unit_l2_norm():
    logits = np.asarray(jax.random.normal(jax.random.key(0), (7, 4))) * 5
    phi = np.asarray(jax.jit(deepme_model.gate_weights)(logits))
    np.testing.assert_allclose(np.sum(phi ** 2, axis=-1), 1.0, rtol=1e-6)
    assert float(phi.min()) >= 0
    # The order of the gate's logits is kept.
    np.testing.assert_array_equal(np.argsort(phi, axis=-1, stable=True), np.argsort(logits, axis=-1, stable=True))


def test_the_log_mixture_equals_the_mixture_and_does_not_underflow():
    layout = _layout()
    log_values = np.asarray(jax.random.normal(jax.random.key(6), (2, 3, 3))) * 3
    scatter = jax.jit(lambda v: group_networks.scatter_to_classes(jnp.exp(v), layout.slot_classes, layout.slot_mask, 5))
    log_scatter = jax.jit(lambda v: deepme_model.log_scatter_to_classes(v, layout.slot_classes, layout.slot_mask, 5))
    direct = np.asarray(scatter(log_values))
    np.testing.assert_allclose(log_scatter(log_values), np.log(direct), rtol=1e-5)
    # exp(-500) is 0 in float32; its log is still -500 + log(number of terms).
    tiny = log_scatter(log_values - 500)
    np.testing.assert_allclose(tiny, np.log(direct) - 500, rtol=1e-5)


def test_loss_terms_by_hand():
    # Two groups of two slots; the image's class is slot 1 of group 0 and absent from group 1.
    probs = jnp.array([[[0.2, 0.8], [0.6, 0.4]]])
    slots = jnp.array([[1, -1]])
    np.testing.assert_allclose(losses.true_class_probability(probs, slots), [[0.8, 0.0]])
    phi = jnp.array([[0.6, 0.8]])
    np.testing.assert_allclose(losses.gate_weighted_loss(jnp.array([[1.0, 3.0]]), phi),
                               [(0.6 * 1 + 0.8 * 3) / (0.36 + 0.64)], rtol=1e-6)
    # Margin met: true 0.7, best wrong 0.2, margin 0.1 -> 0; not met: 0.25 - 0.3 + 0.1.
    scores = jnp.array([[0.7, 0.2, 0.1], [0.3, 0.25, 0.2]])
    np.testing.assert_allclose(losses.margin_hinge(scores, jnp.array([0, 0]), 0.1), [0.0, 0.05], atol=1e-7)


def _grouping(layout):
    pairs, pair_mask = group_layout_lib.shared_class_pairs(layout, 5)
    return {'slot_classes': layout.slot_classes, 'slot_mask': layout.slot_mask,
            'class_targets': jnp.asarray(layout.class_targets(5)), 'pairs': pairs, 'pair_mask': pair_mask}


def _consistency(out, labels, grouping):
    """The consistency term as the task's loss sees it: the loss at consistency weight 1 minus at 0."""
    loss = lambda weight: deepme_task.MixtureTask(5, consistency_weight=weight).loss(
        out['mixture'], out, labels, {}, grouping)
    return loss(1.0) - loss(0.0)


def _out_with_gate_confidences(confidences, layout):
    """The mixture's outputs with the gate's confidences given; the bases uniform over their groups
    (the term must not read them)."""
    uniform = layout.slot_mask / layout.slot_mask.sum(-1, keepdims=True)
    probs = jnp.broadcast_to(uniform, (confidences.shape[0], *uniform.shape))
    phi = confidences / jnp.linalg.norm(confidences, axis=-1, keepdims=True)
    mixture = group_networks.scatter_to_classes(phi[..., None] * probs, layout.slot_classes, layout.slot_mask, 5)
    return {'group_probs': probs, 'phi': phi, 'gate_confidences': confidences, 'mixture': mixture}


def test_the_consistency_compares_the_gates_mean_confidences_per_shared_class_by_hand():
    # Eq. 6-7 on a batch: phi^j = the gate's softmax averaged over the batch's images of class j;
    # pairs (class 0: groups 0, 1) and (class 2: groups 1, 2).
    confidences = jnp.array([[0.5, 0.3, 0.2],   # class 0
                             [0.1, 0.7, 0.2],   # class 0: phi^0 = (0.3, 0.5, 0.2), |0.3 - 0.5| = 0.2
                             [0.2, 0.2, 0.6],   # class 2: phi^2 = (0.2, 0.2, 0.6), |0.2 - 0.6| = 0.4
                             [0.6, 0.2, 0.2]])  # class 4: in one group only
    layout = _layout()
    labels = jnp.array([0, 0, 2, 4])
    consistency = jax.jit(_consistency)
    value = consistency(_out_with_gate_confidences(confidences, layout), labels, _grouping(layout))
    np.testing.assert_allclose(value, (0.2 + 0.4) / 2, atol=1e-5)
    # Without an image of class 2 its pair is not estimated on this batch: the mean is over class 0's.
    keep = jnp.array([0, 1, 3])
    np.testing.assert_allclose(consistency(_out_with_gate_confidences(confidences[keep], layout), labels[keep],
                                           _grouping(layout)), 0.2, atol=1e-5)
    # A padded image (mask 0) does not move the class means the metric reports.
    padded = jnp.concatenate([confidences, jnp.array([[0.0, 0.0, 1.0]])])
    task = deepme_task.MixtureTask(5)
    out = _out_with_gate_confidences(padded, layout)
    metrics = jax.jit(task.metrics)(out['mixture'], out, jnp.array([0, 0, 2, 4, 0]), jnp.array([0, 0, 2, 4, 0]),
                                    _grouping(layout), jnp.array([1.0, 1, 1, 1, 0]))
    total, count = metrics['loss_consistency']
    np.testing.assert_allclose(total / count, 0.3, atol=1e-5)


def _consistency_gradients(layout, labels, seed):
    """(the consistency term, its gradient w.r.t. the mixture's params), bases frozen."""
    _, model = _mixture(layout=layout)
    x = jax.random.normal(jax.random.key(seed), (labels.size, 8, 8, 1))
    inputs = (x, layout.slot_classes, layout.slot_mask)
    variables = jax.jit(model.init, static_argnames='train')(jax.random.key(seed), *inputs, train=False)

    def term(params):
        _, out = model.apply({**variables, 'params': params}, *inputs, train=False)
        return _consistency(out, labels, _grouping(layout))

    return jax.jit(jax.value_and_grad(term))(variables['params'])


def _largest(tree) -> float:
    return max(float(np.abs(leaf).max()) for leaf in jax.tree.leaves(tree))


# The term's gradient is a difference of two losses' gradients: float32 rounding leaves ~1e-7.
ROUNDING = 1e-5


def test_the_consistency_trains_the_gate_with_frozen_bases():
    labels = jnp.array([0, 0, 0, 2, 2, 2, 1, 4])
    value, grads = _consistency_gradients(_layout(), labels, seed=7)
    assert float(value) > 0
    # The gate's output layer gets a gradient (0.92 at most here; reading the frozen bases'
    # probabilities, as the term once did, gave none: rounding only).
    assert _largest(grads['gate']) > 1e-2, 'no gradient into the gate'
    assert _largest(grads['groups']) == 0.0, 'the frozen bases moved'


def test_the_consistency_is_zero_when_no_group_shares_a_class():
    disjoint = group_layout_lib.group_layout([[0, 1], [2, 3], [4]], 5)
    value, grads = _consistency_gradients(disjoint, jnp.array([0, 1, 2, 3, 4, 0]), seed=8)
    assert float(value) == 0.0
    assert _largest(grads) < ROUNDING


def _mixture(gate='learned', freeze=True, layout=None):
    layout = layout or _layout()
    base = registry.build_base('tiny_cnn', layout.num_outputs)
    groups = group_networks.GroupNetworks(base, layout.num_groups, layout.m_max, split_classifier=False)
    return layout, deepme_model.GatedMixture(groups, 5, gate=gate, freeze_groups=freeze)


def _init_and_apply(model, layout, x, seed):
    """(logits, out) of the freshly initialised mixture."""
    inputs = (x, layout.slot_classes, layout.slot_mask)
    variables = jax.jit(model.init, static_argnames='train')(jax.random.key(seed), *inputs, train=False)
    return jax.jit(model.apply, static_argnames='train')(variables, *inputs, train=False)


@pytest.mark.parametrize('gate', ['learned', 'equal'])
def test_the_mixture_is_the_gate_weighted_sum_of_the_scattered_group_softmaxes(gate):
    layout, model = _mixture(gate)
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    logits, out = _init_and_apply(model, layout, x, seed=2)
    phi, group_logits = np.asarray(out['phi']), np.asarray(out['group_logits'])
    np.testing.assert_allclose(np.sum(phi ** 2, axis=-1), 1.0, rtol=1e-5)
    if gate == 'equal':
        np.testing.assert_allclose(phi, 3 ** -0.5, rtol=1e-6)
    expected = np.zeros((4, 5))
    for t, classes in enumerate(GROUPS):
        scores = group_logits[:, t, :classes.size]
        softmax = np.exp(scores - scores.max(-1, keepdims=True))
        softmax /= softmax.sum(-1, keepdims=True)
        expected[:, classes] += phi[:, t:t + 1] * softmax
    np.testing.assert_allclose(out['mixture'], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.exp(logits), expected / expected.sum(-1, keepdims=True), rtol=1e-4)


def test_the_mixture_task_loss_is_eq4_plus_the_mixture_cross_entropy():
    layout, model = _mixture()
    x = jax.random.normal(jax.random.key(3), (6, 8, 8, 1))
    labels = jnp.array([0, 1, 2, 3, 4, 0])
    logits, out = _init_and_apply(model, layout, x, seed=4)
    grouping = _grouping(layout)
    eq4 = deepme_task.MixtureTask(5, consistency_weight=0.5, alpha=2.0, beta=0.1, mixture_ce_weight=0.0)
    terms = jax.tree.map(np.asarray, jax.jit(eq4.loss_terms)(out, labels, grouping, jnp.ones(6)))
    eq4_loss = np.asarray(jax.jit(eq4.loss)(logits, out, labels, {}, grouping))
    np.testing.assert_allclose(eq4_loss,
                               np.mean(terms['gated'] + 0.5 * terms['consistency'] + 2.0 * terms['hinge']),
                               rtol=1e-6)
    with_ce = deepme_task.MixtureTask(5, consistency_weight=0.5, alpha=2.0, beta=0.1, mixture_ce_weight=1.0)
    np.testing.assert_allclose(np.asarray(jax.jit(with_ce.loss)(logits, out, labels, {}, grouping)) - eq4_loss,
                               np.mean(jax.jit(losses.cross_entropy)(logits, labels)), rtol=1e-5)
    # Part 1 by hand: an image's loss in a group not holding its class is -log(floor).
    slots = layout.class_targets(5)[np.asarray(labels)]
    true = np.where(slots >= 0, np.take_along_axis(np.asarray(out['group_probs']), np.maximum(slots, 0)[..., None],
                                                   -1)[..., 0], 0.0)
    group_losses = -np.log(np.maximum(true, eq4.probability_floor))
    phi = np.asarray(out['phi'])
    np.testing.assert_allclose(terms['gated'], (phi * group_losses).sum(-1) / (phi ** 2).sum(-1), rtol=1e-5)


def test_the_default_gate_reads_every_base_networks_features():
    layout = _layout()
    model = deepme_model.gated_mixture(quickstart.get_config('deepme'), layout, 5)
    x = jax.random.normal(jax.random.key(9), (4, 8, 8, 1))
    inputs = (x, layout.slot_classes, layout.slot_mask)
    variables = jax.jit(model.init, static_argnames='train')(jax.random.key(9), *inputs, train=False)
    gate_weights = jax.jit(lambda v: model.apply(v, *inputs, train=False)[1]['phi'])
    # Base network 2 changes, network 0 stays: a gate reading network 0 alone would not move.
    changed = {**variables['params'],
               'groups': jax.tree.map(lambda p: p.at[2].add(0.5), variables['params']['groups'])}
    moved = np.abs(gate_weights({**variables, 'params': changed}) - gate_weights(variables)).max()
    assert moved > 1e-3


def test_base_networks_without_not_in_group_train_only_on_their_groups_images():
    layout = _layout()
    task = tasks.GroupTask(3, layout.m_max, not_in_group_weight=0.0, not_in_group=False)
    assert task.num_targets == layout.m_max == 3
    labels = jnp.array([0, 1, 4])
    targets = np.asarray(jax.jit(task.targets)(labels, {'class_targets': jnp.asarray(layout.class_targets(5))}))
    np.testing.assert_array_equal(targets, [[0, 0, -1], [1, -1, -1], [-1, -1, 1]])
    logits = jax.random.normal(jax.random.key(5), (3, 3, 3))
    grouping = {'slot_mask': jnp.asarray(layout.slot_mask), 'laplacian': np.zeros((3, 3, 3), np.float32)}
    masked = np.asarray(jax.jit(group_networks.mask_padded_slots)(logits, grouping['slot_mask']))
    ce = lambda b, g: -np.asarray(jax.nn.log_softmax(masked[b, g]))[targets[b, g]]
    # Group 0 holds images 0 and 1, group 1 image 0, group 2 image 2: the mean of their means.
    expected = np.mean([(ce(0, 0) + ce(1, 0)) / 2, ce(0, 1), ce(2, 2)])
    data = jax.jit(task._data_term)(logits, targets, grouping, jnp.ones(3))
    np.testing.assert_allclose(data, expected, rtol=1e-5)
    metrics = jax.jit(task.metrics)(logits, {}, targets, labels, grouping, jnp.ones(3))
    assert float(metrics['top1'][1]) == 4 and 'not_in_group_top1' not in metrics


def test_semantic_laplacians_restrict_theta_to_each_group():
    theta = np.arange(25, dtype=float).reshape(5, 5)
    theta = (theta + theta.T) / 10
    laplacians = group_layout_lib.semantic_laplacians(theta, _layout())
    sub = theta[np.ix_([0, 2, 3], [0, 2, 3])] * (1 - np.eye(3))
    np.testing.assert_allclose(laplacians[1], np.diag(sub.sum(1)) - sub, rtol=1e-6)
    np.testing.assert_array_equal(laplacians[0, 2], 0)  # group 0 has two classes: slot 2 is padding


@pytest.fixture(scope='module')
def quickstart_deepme(tmp_path_factory):
    config = quickstart.get_config('smoke,deepme')
    workdir = tmp_path_factory.mktemp('deepme')
    return config, workdir, methods.train_and_evaluate(config, str(workdir))


def _final_params(workdir, stage):
    from experiments.benchmarks import kill_soak
    return kill_soak.outcome(workdir)['states'][stage]['params']


def test_the_quickstart_deepme_runs_and_reports(quickstart_deepme):
    _, workdir, summary = quickstart_deepme
    assert summary['recipe'] == 'deepme'
    assert {'test/top1', 'test/top3', 'test/per_class_top1', 'test/group_top1', 'test/gate_top1'} <= set(summary['final'])
    assert summary['stages']['bases']['final']['test/in_group_top1'] > 0.3
    report = json.load(open(workdir / 'groups.json'))
    assert sorted(set(c for g in report['groups'] for c in g)) == sorted(summary['class_names'])
    np.testing.assert_allclose(np.sum(report['memberships'], axis=1), 1.0, atol=1e-3)
    assert report['in_two_or_more'] == summary['group_coverage']['in_two_or_more']
    # WordNet makes the ten digits siblings: the similarity says nothing about 3 groups, and the
    # run says so (the split itself is reproducible, not meaningful, so nothing is asserted of it).
    (warning,) = summary['grouping_warnings']
    assert 'does not determine 3 groups' in warning and 'arbitrary' in warning
    for png in ('groups.png', 'similarities.png', 'gate_weights.png'):
        assert (workdir / png).exists(), png


def test_frozen_bases_stay_bit_identical_and_end_to_end_ones_change(quickstart_deepme):
    _, workdir, _ = quickstart_deepme
    bases = _final_params(workdir, 'bases')
    jax.tree.map(np.testing.assert_array_equal, bases, _final_params(workdir, 'gate')['groups'])
    config = quickstart.get_config('smoke,deepme')
    config.deepme.base_lr_mult = 0.1
    methods.train_and_evaluate(config, str(workdir / 'end_to_end'))
    tuned = _final_params(workdir / 'end_to_end', 'gate')['groups']
    # The same bases stage (same config and seed) trained first; the gate stage changed them.
    jax.tree.map(np.testing.assert_array_equal, bases, _final_params(workdir / 'end_to_end', 'bases'))
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(bases), jax.tree.leaves(tuned)))


def test_nossc_keeps_the_group_sizes_and_relabels_the_classes():
    from nofe_jax.grouping import task_groups
    found = [np.array([0, 1, 2]), np.array([2, 3]), np.array([4, 5, 6, 7])]
    shuffled = task_groups.random_groups_like(found, 8, np.random.default_rng(0))
    assert [g.size for g in shuffled] == [3, 2, 4]
    assert sorted(np.concatenate(shuffled).tolist()) != sorted(np.concatenate(found).tolist()) or \
        any(not np.array_equal(a, b) for a, b in zip(found, shuffled))
    # Overlap pattern kept: exactly one class in two groups.
    counts = np.bincount(np.concatenate(shuffled), minlength=8)
    assert sorted(counts.tolist()) == [1] * 7 + [2]


def test_ablations_are_config_values():
    assert fashion_mnist_deepme.get_config('ablation=nossc').deepme.groups == 'random'
    assert fashion_mnist_deepme.get_config('ablation=nogate').deepme.gate == 'equal'
    assert fashion_mnist_deepme.get_config('ablation=flat').recipe == 'base'
    dmde_config = fashion_mnist_deepme.get_config('ablation=dmde,base_epochs=3,gate_epochs=1')
    assert dmde_config.recipe == 'dmde' and dmde_config.bases.train.duration == '3 epochs'
    with pytest.raises(ValueError, match='ablation must be one of'):
        fashion_mnist_deepme.get_config('ablation=nothing')


def test_the_benchmarks_theta_reads_every_position_or_the_left_item():
    from experiments.configs import fashion_pairs_deepme, fashion_tuples_deepme
    assert fashion_tuples_deepme.get_config().deepme.class_table == 'fashion_tuples_left'
    assert fashion_tuples_deepme.get_config('theta=mean').deepme.class_table == 'fashion_tuples'
    assert fashion_pairs_deepme.get_config().deepme.class_table == 'fashion_pairs'
    assert fashion_pairs_deepme.get_config('theta=left').deepme.class_table == 'fashion_pairs_left'
    # groups of 100-300 classes: no semantic Laplacian on the tuples; the pairs' groups keep it
    assert fashion_tuples_deepme.get_config().deepme.lambda3 == 0.0
    assert fashion_pairs_deepme.get_config().deepme.lambda3 == 1e-3
    with pytest.raises(ValueError, match='theta must be one of mean, left'):
        fashion_tuples_deepme.get_config('theta=right')


def test_the_imagenet10k_gate_reads_the_pretrained_vgg16_whenever_the_bases_start_from_it():
    from experiments.configs import imagenet10k_deepme
    assert imagenet10k_deepme.get_config().deepme.gate_input == 'shared'
    assert imagenet10k_deepme.get_config('ablation=nogate').deepme.gate_input == 'shared'
    for from_scratch in ('ablation=scratch', 'smoke'):
        config = imagenet10k_deepme.get_config(from_scratch)
        assert (config.init_from, config.deepme.gate_input) == ('', 'all')
    config = imagenet10k_deepme.get_config('ablation=scratch,gate_input=shared')  # asked for: refused
    assert any(p.startswith("deepme.gate_input='shared' reads the trained flat model of init_from")
               for p in methods.config_problems(config, '/tmp/unused'))


def test_bad_deepme_settings_get_one_line_each():
    config = quickstart.get_config('deepme')
    config.deepme.update(gate='softmax', groups='kmeans', membership_threshold=0.0, fuzzifier=1.0,
                         gate_input='middle')
    problems = methods.config_problems(config, '/tmp/deepme_bad')
    for expected in ("deepme.gate='softmax'", "deepme.groups='kmeans'", 'deepme.membership_threshold=0.0',
                     'deepme.fuzzifier=1.0', "deepme.gate_input='middle'"):
        assert sum(expected in p for p in problems) == 1, (expected, problems)


def test_describe_lists_the_deepme_models():
    from experiments import describe
    config = cifar100_deepme.get_config()
    result = describe.describe(config)
    assert set(result) == {'bases', 'gate'}
    # T=10 even groups of 10 classes for the counts; each AlexNet-C100 base has 10 outputs.
    layout = deepme_model.even_layout(config, 100)
    assert (layout.num_groups, layout.m_max) == (10, 10)
    assert result['bases']['params'] == 10 * registry.base_parameter_count('alexnet_c100', 10)
    gate_input = 10 * 1024  # every base network's classifier input, concatenated
    gate = 2 * gate_input + gate_input * 256 + 256 + 256 * 10 + 10
    assert result['gate']['params'] == result['bases']['params'] + gate


def test_groups_from_a_structured_similarity_carry_no_warning(quickstart_deepme):
    config, _, _ = quickstart_deepme
    config = copy.deepcopy(config)
    config.deepme.num_groups = 2
    planted = np.kron(np.eye(2), np.ones((5, 5))) * 2.0 + 0.1  # two clear blocks of five digits
    with warnings.catch_warnings():
        warnings.simplefilter('error', clustering.ArbitrarySplitWarning)
        found, _ = deepme_recipe.soft_groups(planted, config, np.random.default_rng(0))
    assert sorted(map(list, found)) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
