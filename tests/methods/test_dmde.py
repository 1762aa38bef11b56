"""DMDE: the multi-task softmax's terms, stacking functions, stacked group networks, the recipe.

Model and loss calls run under jax.jit: eagerly, each op compiles on its own (hundreds of small
XLA programs per test).
"""
import functools
import json

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import cifar100_dmde, fashion_pairs, fashion_pairs_dmde, quickstart
from nofe_jax import methods
from nofe_jax.grouping import layout as group_layout_lib
from nofe_jax.methods import group_stages
from nofe_jax.methods.dmde import model as dmde_model
from nofe_jax.methods.dmde import options as dmde_options
from nofe_jax.models import group_networks, registry
from nofe_jax.training import losses, tasks


def _random_weights(rng, groups=2, dim=5, slots=4):
    return rng.normal(size=(groups, dim, slots))


def test_laplacian_trace_is_the_weighted_sum_of_squared_weight_differences():
    rng = np.random.default_rng(0)
    weights = _random_weights(rng)[0]  # [d, M]
    sim = rng.uniform(size=(4, 4))
    sim = (sim + sim.T) / 2
    laplacian = np.diag(sim.sum(1)) - sim
    pairs = 0.5 * sum(sim[a, b] * np.sum((weights[:, a] - weights[:, b]) ** 2)
                      for a in range(4) for b in range(4))
    np.testing.assert_allclose(np.trace(weights @ laplacian @ weights.T), pairs, rtol=1e-12)


def _group_params(weights, shared=None):
    """GroupNetworks-shaped params whose classifier kernel holds ``weights`` (+ a nig column)."""
    kernel = jnp.concatenate([weights, jnp.zeros(weights.shape[:2] + (1,))], axis=-1)
    layer = {'kernel': kernel, 'bias': jnp.zeros(kernel.shape[::2])}
    if shared is not None:
        layer[group_networks.SHARED_WEIGHT] = shared
    return {'base': {'trunk': {}, 'head': {'ip1': layer}}}


def test_group_loss_terms_and_the_laplacian_gradient_pulls_similar_classes_together():
    rng = np.random.default_rng(1)
    weights = _random_weights(rng).astype(np.float32)
    shared = rng.normal(size=(2, 5)).astype(np.float32)
    slot_mask = np.array([[True, True, True, False], [True, True, True, True]])
    effective = (weights + shared[..., None]) * slot_mask[:, None, :]
    class_weights = jax.jit(lambda w: group_networks.class_weights(_group_params(w, shared), slot_mask))
    np.testing.assert_allclose(class_weights(weights), effective, rtol=1e-6)
    sim = np.zeros((2, 4, 4))
    sim[:, 0, 1] = sim[:, 1, 0] = 1.0  # classes in slots 0 and 1 are similar
    grouping = {'slot_mask': slot_mask, 'laplacian': (np.diag(sim[0].sum(1)) - sim).astype(np.float32),
                'class_targets': np.zeros((6, 2), np.int32)}
    task = tasks.GroupTask(2, 4, 0.2, mu=0.0, delta1=0.0, delta2=1.0)
    logits = np.zeros((3, 2, 5), np.float32)
    targets = np.zeros((3, 2), np.int32)

    @functools.partial(jax.jit, static_argnums=0)
    def loss(task, w):
        return task.loss(logits, {}, targets, _group_params(w, shared), grouping)

    smooth = loss(task, weights)
    # tr(W L W^T) = 1/2 sum_ab S_ab ||w_a - w_b||^2 = ||w_0 - w_1||^2 here; the loss takes half of it.
    traces = [np.sum((effective[g, :, 0] - effective[g, :, 1]) ** 2) for g in range(2)]
    np.testing.assert_allclose(smooth, 0.5 * np.sum(traces), rtol=1e-5)
    grad = np.asarray(jax.jit(jax.grad(loss, argnums=1), static_argnums=0)(task, weights))
    stepped = weights - 0.1 * grad
    gap = lambda w: np.linalg.norm(w[:, :, 0] - w[:, :, 1], axis=1)
    assert np.all(gap(stepped) < gap(weights))
    np.testing.assert_array_equal(grad[:, :, 2:], 0.0)  # dissimilar classes are left alone
    trace_task = tasks.GroupTask(2, 4, 0.2, mu=0.0, delta1=1.0, delta2=0.0)
    np.testing.assert_allclose(loss(trace_task, weights),
                               np.sum(effective ** 2), rtol=1e-5)


def test_each_stacked_network_gets_the_gradient_it_would_get_trained_alone():
    """Stacking G networks must not scale their training: the stacked loss's gradient for group g
    (its logits and its class weights) equals that of a one-group task on g's slice. A mean over
    groups would give 1/G of it."""
    layout = group_layout_lib.group_layout([[0, 1], [1, 2, 3], [4]], num_classes=5, not_in_group=True)
    rng = np.random.default_rng(3)
    labels = jnp.array([0, 1, 2, 3, 4, 1])
    weights = rng.normal(size=(3, 5, layout.m_max)).astype(np.float32)
    shared = rng.normal(size=(3, 5)).astype(np.float32)
    sim = rng.uniform(size=(3, layout.m_max, layout.m_max)).astype(np.float32)
    sim = (sim + sim.transpose(0, 2, 1)) / 2
    grouping = {'class_targets': jnp.asarray(layout.class_targets(5)), 'slot_mask': jnp.asarray(layout.slot_mask),
                'laplacian': jnp.asarray(np.eye(layout.m_max) * sim.sum(2)[:, :, None] - sim)}
    logits = jnp.asarray(rng.normal(size=(6, 3, layout.m_max + 1)).astype(np.float32))

    def gradients(groups, logits, weights, shared, grouping):
        task = tasks.GroupTask(groups, layout.m_max, not_in_group_weight=0.3, delta1=0.01, delta2=0.1)
        targets = task.targets(labels, grouping)
        loss = lambda lg, w: task.loss(lg, {}, targets, _group_params(w, shared), grouping)  # noqa: E731
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(logits, weights)

    stacked = gradients(3, logits, weights, shared, grouping)
    for g in range(3):
        alone = gradients(1, logits[:, g:g + 1], weights[g:g + 1], shared[g:g + 1],
                          {name: value[:, g:g + 1] if name == 'class_targets' else value[g:g + 1]
                           for name, value in grouping.items()})
        np.testing.assert_allclose(stacked[0][:, g], alone[0][:, 0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(stacked[1][g], alone[1][0], rtol=1e-5, atol=1e-7)


def test_group_task_weights_not_in_group_examples_and_scores_per_group():
    """Two groups of slots {0: class 0, 1: class 1} and {0: class 2}; m_max = 2, nig = 2."""
    layout = group_layout_lib.group_layout([[0, 1], [2]], num_classes=3, not_in_group=True)
    grouping = {'class_targets': jnp.asarray(layout.class_targets(3)),
                'slot_mask': jnp.asarray(layout.slot_mask)}
    task = tasks.GroupTask(2, 2, not_in_group_weight=0.25)
    labels = jnp.array([0, 2])
    targets = jax.jit(task.targets)(labels, grouping)
    np.testing.assert_array_equal(targets, [[0, 2], [2, 0]])
    logits = jnp.array([[[5.0, 0.0, 0.0], [0.0, 0.0, 5.0]],     # both right
                        [[0.0, 5.0, 0.0], [0.0, 9.0, 0.0]]])    # group 0 wrong; group 1's pick is padding
    metrics = jax.jit(task.metrics)(logits, {}, targets, labels, grouping, jnp.ones(2))
    assert [float(x) for x in metrics['in_group_top1']] == [2.0, 2.0]   # padding masked: still right
    assert [float(x) for x in metrics['not_in_group_top1']] == [1.0, 2.0]
    assert [float(x) for x in metrics['top1']] == [3.0, 4.0]
    masked_ce = jax.jit(lambda logits: losses.cross_entropy(group_networks.mask_padded_slots(logits, grouping['slot_mask']),
                                                            targets))
    ce = np.asarray(masked_ce(logits))
    expected = np.mean([0.75 * ce[0, 0] + 0.25 * ce[1, 0], 0.75 * ce[1, 1] + 0.25 * ce[0, 1]])
    np.testing.assert_allclose(jax.jit(task._data_term)(logits, targets, grouping, jnp.ones(2)), expected,
                               rtol=1e-6)


def test_not_in_group_images_carry_half_of_a_groups_data_term_by_default():
    # Eq. 7 divides by the not-in-group probability: that output must be trained, not given one
    # class's share (1/51 at M=50 left it near chance on the pairs).
    defaults = dmde_options.defaults()
    assert dmde_options.not_in_group_share(defaults, 50) == 0.5
    defaults.not_in_group_weight = 0.0
    assert dmde_options.not_in_group_share(defaults, 50) == 1 / 51


def _stacked(probs, layout, stacking, eps=1e-6, lambda_overlap=1.0):
    """exp(log_stacked_scores) of probabilities [B, G, m_max + 1] (their log, -inf at 0)."""
    log_probs = jnp.log(jnp.asarray(probs))
    return jnp.exp(dmde_model.log_stacked_scores(log_probs, layout.slot_classes, layout.slot_mask, 3,
                                                 stacking, eps, lambda_overlap))


def test_stacking_functions_by_hand():
    """Classes 0, 1 in group 0; classes 1, 2 in group 1 (class 1 in both)."""
    layout = group_layout_lib.group_layout([[0, 1], [1, 2]], num_classes=3, not_in_group=True)
    probs = [[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]]  # [B, G, m_max + 1], last: not in group
    np.testing.assert_allclose(_stacked(probs, layout, 'eq7'),
                               [[0.5 * 4, 0.3 * 4 + 0.1 * 0.25, 0.1 * 0.25]], rtol=1e-5)
    # Eq. 12 as the text reads it: each group weighted by its belief that the image is in it.
    np.testing.assert_allclose(_stacked(probs, layout, 'stack2', lambda_overlap=0.5),
                               [[0.5 * 0.5 * 0.8, 0.5 * (0.3 * 0.8 + 0.1 * 0.2), 0.5 * 0.1 * 0.2]], rtol=1e-5)
    # As printed: by its belief that it is not.
    np.testing.assert_allclose(_stacked(probs, layout, 'stack2_literal', lambda_overlap=0.5),
                               [[0.5 * 0.5 * 0.2, 0.5 * (0.3 * 0.2 + 0.1 * 0.8), 0.5 * 0.1 * 0.8]], rtol=1e-5)
    clamped = _stacked([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], layout, 'eq7', eps=0.01)
    np.testing.assert_allclose(clamped, [[99.0, 0.0, 0.0]], rtol=1e-5)


def test_stack2_ranks_an_image_claimed_by_its_group_first():
    """Group 0 (classes 0, 1) is sure the image is its class 0; group 1 (classes 1, 2) is sure it
    is not in it but, forced to pick, says class 2. Eq. 12 as printed ranks class 2 first."""
    layout = group_layout_lib.group_layout([[0, 1], [1, 2]], num_classes=3, not_in_group=True)
    probs = [[[0.9, 0.05, 0.05], [0.02, 0.08, 0.9]]]
    assert int(jnp.argmax(_stacked(probs, layout, 'stack2'))) == 0
    assert int(jnp.argmax(_stacked(probs, layout, 'eq7'))) == 0
    assert int(jnp.argmax(_stacked(probs, layout, 'stack2_literal'))) == 2


class _GivenGroupLogits(flax.linen.Module):
    """Stands in for the group networks: the input *is* their logits [B, G, m_max + 1]."""

    @flax.linen.compact
    def __call__(self, x, *, train):
        return x, {'features': x}


@pytest.mark.parametrize('stacking', ['eq7', 'stack2', 'stack2_literal'])
def test_the_fusion_starts_at_the_stacking_rules_normalised_scores(stacking):
    """At initialisation the N-way softmax is Y / sum Y, so its cross-entropy is the stacking
    rule's own, e.g. log(ratio) for a confident mistake (on raw Y, a difference of ratios ~ 16)."""
    layout = group_layout_lib.group_layout([[0, 1], [1, 2]], num_classes=3, not_in_group=True)
    # An image of class 2: group 0 claims it for class 0 (phi 0.05), group 1 finds it (phi 0.3).
    probs = np.array([[[0.9, 0.05, 0.05], [0.1, 0.6, 0.3]]])
    fusion = dmde_model.StackedFusion(_GivenGroupLogits(), 3, fusion=stacking, phi_eps=0.01)
    logits = jnp.log(probs)
    tables = (jnp.asarray(layout.slot_classes), jnp.asarray(layout.slot_mask))
    variables = fusion.init(jax.random.key(0), logits, *tables, train=False)
    fused, _ = fusion.apply(variables, logits, *tables, train=False)
    scores = np.asarray(_stacked(probs, layout, stacking, eps=0.01))
    np.testing.assert_allclose(jax.nn.softmax(fused), scores / scores.sum(), rtol=1e-5)
    loss = float(losses.cross_entropy(fused, jnp.array([2]))[0])
    np.testing.assert_allclose(loss, np.log(scores.sum() / scores[0, 2]), rtol=1e-5)
    if stacking == 'eq7':  # Y = [17.1, 1.18, 1.4]: wrong, but not 15.7 nats sure of it
        assert loss < 3.0


def test_stacked_group_networks_equal_separately_built_ones_outputs_and_gradients():
    layout = group_layout_lib.group_layout([[0, 1, 2], [2, 3], [4]], num_classes=5, not_in_group=True)
    base = registry.build_base('tiny_cnn', layout.num_outputs)
    stacked = group_networks.GroupNetworks(base, layout.num_groups, layout.m_max)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    variables = jax.jit(lambda x: stacked.init(jax.random.key(1), x, train=False))(x)
    params = jax.tree.map(lambda p: np.asarray(p) + 0.01, variables['params'])  # a nonzero w_0

    def separate(params):
        outputs = []
        for g in range(layout.num_groups):
            one = jax.tree.map(lambda p: p[g], params['base'])
            layer = dict(one['head']['ip1'])
            shared = layer.pop(group_networks.SHARED_WEIGHT)
            layer['kernel'] = layer['kernel'].at[:, :layout.m_max].add(shared[:, None])
            one = {**one, 'head': {'ip1': layer}}
            outputs.append(base.apply({'params': one}, x, train=False)[0])
        return jnp.stack(outputs, axis=1)

    together = lambda p: stacked.apply({'params': p}, x, train=False)[0]
    np.testing.assert_allclose(jax.jit(together)(params), jax.jit(separate)(params), rtol=1e-5, atol=1e-6)
    loss = lambda f: lambda p: jnp.sum(jnp.sin(f(p)))
    grads = jax.jit(jax.grad(loss(together)))(params), jax.jit(jax.grad(loss(separate)))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), *grads)
    assert np.max(np.abs(grads[0]['base']['head']['ip1'][group_networks.SHARED_WEIGHT])) > 0


def _final_params(workdir, stage):
    from experiments.benchmarks import kill_soak
    return kill_soak.outcome(workdir)['states'][stage]['params']


def _smoke_config():
    """The quickstart's DMDE smoke with 3 base epochs: its not-in-group images carry half of each
    group's data term, so after the smoke's one epoch every base still answers not-in-group
    (in-group 0%, not-in-group 100%); 3 epochs measured 38% / 99%."""
    config = quickstart.get_config('smoke,dmde')
    config.bases.train.duration = '3 epochs'
    return config


@pytest.fixture(scope='module')
def quickstart_dmde(tmp_path_factory):
    config = _smoke_config()
    workdir = tmp_path_factory.mktemp('dmde')
    return config, workdir, methods.train_and_evaluate(config, str(workdir))


def test_the_quickstart_dmde_learns_and_reports(quickstart_dmde):
    _, workdir, summary = quickstart_dmde
    assert summary['recipe'] == 'dmde' and not summary['health_warnings']
    assert summary['final']['test/top1'] > 0.5 and 'test/top10' in summary['final']
    bases = summary['stages']['bases']['final']  # both above what a constant answer gets (0)
    assert bases['test/in_group_top1'] > 0.25 and bases['test/not_in_group_top1'] > 0.9
    groups = json.load(open(workdir / 'groups.json'))
    assert len(groups['groups']) == 5 and groups['min_coverage'] == groups['max_coverage'] == 2
    assert (workdir / 'groups.png').exists() and (workdir / 'similarities.png').exists()


def test_frozen_bases_stay_bit_identical_and_fine_tuned_ones_change(quickstart_dmde, tmp_path):
    config, workdir, _ = quickstart_dmde
    bases = _final_params(workdir, 'bases')
    fine_tuned = _final_params(workdir, 'fusion')['groups']
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(bases), jax.tree.leaves(fine_tuned)))
    frozen_config = _smoke_config()
    frozen_config.dmde.base_lr_mult = 0.0
    methods.train_and_evaluate(frozen_config, str(workdir / 'frozen'))
    frozen = _final_params(workdir / 'frozen', 'fusion')['groups']
    jax.tree.map(np.testing.assert_array_equal, bases, frozen)


def test_a_fusion_of_no_steps_is_the_stacking_function_on_the_bases(quickstart_dmde, tmp_path):
    """fusion.train.duration=0: the fused model is the bases as trained plus the identity N x N
    layer (whose softmax is Y / sum Y, test_the_fusion_starts_at_the_stacking_rules_normalised_scores),
    evaluated and saved at step 0; resuming it restores that state and its metrics."""
    import shutil
    _, workdir, _ = quickstart_dmde
    untrained = tmp_path / 'untrained'
    shutil.copytree(workdir / 'checkpoints' / 'bases', untrained / 'checkpoints' / 'bases')
    config = _smoke_config()
    config.fusion.train.duration = '0 steps'
    assert methods.config_problems(config, str(untrained)) == []
    summary = methods.train_and_evaluate(config, str(untrained))
    fused = _final_params(untrained, 'fusion')
    jax.tree.map(np.testing.assert_array_equal, _final_params(workdir, 'bases'), fused['groups'])
    np.testing.assert_array_equal(fused['fusion']['kernel'], np.eye(10, dtype=np.float32))
    np.testing.assert_array_equal(fused['fusion']['bias'], np.zeros(10, np.float32))
    assert summary['stages']['fusion']['final']['test/top1'] > 0.5
    assert methods.train_and_evaluate(config, str(untrained))['final'] == summary['final']


def test_only_a_stacking_fusion_may_train_no_steps():
    config = quickstart.get_config('dmde')
    config.fusion.train.duration = '0 epochs'
    assert methods.config_problems(config, '/tmp/dmde_untrained') == []
    config.dmde.fusion = 'early'
    assert methods.config_problems(config, '/tmp/dmde_untrained') == [
        "fusion.train.duration is zero with dmde.fusion='early': early fusion's N-way layer starts "
        "random and must train (a stacking function, eq7 or stack2, may stay at its identity start)."]
    config.dmde.fusion, config.bases.train.duration = 'eq7', '0 steps'
    assert methods.config_problems(config, '/tmp/dmde_untrained') == [
        "bases.train.duration='0 steps' is zero: a stage must train at least one step."]


def test_bad_dmde_settings_get_one_line_each():
    config = quickstart.get_config('dmde')
    config.dmde.update(overlap=0.8, fusion='late', ontology='wordnet')
    problems = methods.config_problems(config, '/tmp/dmde_bad')
    assert any("dmde.fusion='late'" in p for p in problems)
    assert any("dmde.ontology='wordnet'" in p for p in problems)
    assert any('group_size * (1 - overlap) must be at least 1' in p for p in problems)
    config.dmde.update(overlap=0.3, fusion='eq7', ontology='random')  # the paper's sweep: any overlap
    assert methods.config_problems(config, '/tmp/dmde_bad') == []


def test_describe_lists_the_dmde_models():
    from experiments import describe
    config = cifar100_dmde.get_config()
    result = describe.describe(config)
    assert set(result) == {'bases', 'fusion'}
    # M=25 at overlap 0.5: 8 windows of 25 classes moved by 12.5; each AlexNet-C100 base has
    # 25 + 1 outputs and its w_0 (1,024: the classifier's input); then the 100 x 100 fusion layer.
    layout = dmde_model.balanced_layout(config, 100)
    assert (layout.num_groups, layout.m_max) == (8, 25)
    one = registry.base_parameter_count('alexnet_c100', 26)
    assert result['bases']['params'] == 8 * (one + 1024)
    assert result['fusion']['params'] == result['bases']['params'] + 100 * 100 + 100


def test_a_visual_ontology_trains_a_flat_model_first(tmp_path):
    config = quickstart.get_config('smoke,dmde')
    config.dmde.ontology = 'visual'
    summary = methods.train_and_evaluate(config, str(tmp_path))
    assert list(summary['stages']) == ['visual_base', 'bases', 'fusion']
    assert sorted(c for category in summary['categories'] for c in category) == sorted(summary['class_names'])


def test_class_similarity_leaves_absent_classes_out():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sim = group_layout_lib.class_similarity(features, np.array([0, 1, 1]), np.array([0, 1, 5]))
    mean1 = (np.array([0.0, 1.0]) + np.array([1.0, 1.0]) / np.sqrt(2)) / 2  # class 1's unit features
    np.testing.assert_allclose(sim[:2, :2], [[1.0, mean1[0]], [mean1[0], mean1 @ mean1]], rtol=1e-6)
    np.testing.assert_array_equal(sim[2], 0.0)
    np.testing.assert_array_equal(sim[:, 2], 0.0)


def test_image_folders_named_by_wordnet_ids_get_a_semantic_ontology_from_wordnet():
    from nofe_jax import validation
    from nofe_jax.grouping import ontology
    names = ['n02084071', 'n02958343', 'n02121808', 'n04490091']  # dog, car, cat, truck
    lch = group_stages.wordnet_similarity(names, 'dmde.class_table')
    categories = ontology.spectral_categories(lch, 2, np.random.default_rng(0))
    assert categories[0] == categories[2] and categories[1] == categories[3] != categories[0]
    with pytest.raises(validation.ConfigError, match="class_table='wnid' needs WordNet ids"):
        group_stages.wordnet_similarity(['n02084071', 'not_a_wnid'], 'dmde.class_table')


@pytest.mark.parametrize('items', [2, 3])
def test_the_benchmarks_dmde_config_offers_their_flat_model_over_the_same_epochs(items):
    """`base`: a sweep tables DMDE against the very flat model of fashion_pairs.py / fashion_tuples.py."""
    dmde = fashion_pairs_dmde.tuples_dmde_config('base,base_epochs=5,fusion_epochs=3', items, 'c.py')
    flat = fashion_pairs.tuples_config('base,generalist_epochs=5,expert_epochs=3', items, 'c.py')
    assert dmde.to_json(sort_keys=True) == flat.to_json(sort_keys=True)
    assert dmde.train.duration == '8 epochs' and 'dmde' not in dmde
