"""Caffe-style SGD and multipliers against the update rule written out by hand."""
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from nofe_jax.training import optim
from experiments.configs import common


def _config(**kw):
    c = common.optim_config()
    c.update(kw)
    return c


def test_multiplier_rules_first_match_wins_default_is_one():
    params = {'trunk': {'conv1': {'kernel': 0, 'bias': 0}},
              'head': {'ip1': {'kernel': 0, 'bias': 0}}}
    lr, decay = optim.multiplier_trees(params, [('head/ip1/kernel', 1, 250),
                                                ('bias$', 2, 0)])
    assert decay['head']['ip1']['kernel'] == 250 and lr['head']['ip1']['kernel'] == 1
    assert lr['trunk']['conv1']['bias'] == 2 and decay['trunk']['conv1']['bias'] == 0
    assert lr['trunk']['conv1']['kernel'] == 1 and decay['trunk']['conv1']['kernel'] == 1


def test_caffe_sgd_matches_hand_rule_across_an_lr_drop():
    # v <- mu v + lr lr_mult (g + wd decay_mult w); w <- w - v, with lr 0.1 then 0.01.
    config = _config(name='caffe_sgd', schedule='piecewise', lr=0.1, boundary_lrs=(0.01,),
                     boundaries=('2 steps',), momentum=0.9, weight_decay=0.5,
                     multipliers=(('b', 2.0, 0.0),))
    params = {'a': jnp.array([1.0, -2.0]), 'b': jnp.array([3.0])}
    schedule = optim.learning_rate_schedule(config, total_steps=4, steps_per_epoch=4, batch_size=1)
    tx = optim.create_optimizer(config, params, schedule)
    state = tx.init(params)
    w = {k: np.asarray(v, np.float64) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in w.items()}
    mult = {'a': (1.0, 1.0), 'b': (2.0, 0.0)}
    for step in range(4):
        grads = {'a': jnp.array([0.3, 0.1]) * (step + 1), 'b': jnp.array([-0.2])}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        lr = 0.1 if step < 2 else 0.01
        for k in w:
            lm, dm = mult[k]
            v[k] = 0.9 * v[k] + lr * lm * (np.asarray(grads[k]) + 0.5 * dm * w[k])
            w[k] = w[k] - v[k]
        for k in w:
            np.testing.assert_allclose(params[k], w[k], rtol=1e-5, atol=1e-6)


def test_schedules_and_warmup():
    c = _config(schedule='cosine', lr=1.0, warmup='2 steps')
    s = optim.learning_rate_schedule(c, total_steps=12, steps_per_epoch=4, batch_size=1)
    assert float(s(0)) == 0.0 and float(s(1)) == pytest.approx(0.5)
    assert float(s(2)) == pytest.approx(1.0) and float(s(12)) == pytest.approx(0.0, abs=1e-6)
    p = _config(schedule='piecewise', lr=0.1, boundary_lrs=(0.01, 0.001),
                boundaries=('1 epoch', '8 steps'))
    s = optim.learning_rate_schedule(p, total_steps=12, steps_per_epoch=4, batch_size=1)
    assert [round(float(s(i)), 6) for i in (0, 3, 4, 7, 8, 11)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]


def test_unknown_optimizer_and_bad_piecewise_fail_clearly():
    with pytest.raises(ValueError, match='optim.name'):
        optim.create_optimizer(_config(name='lbfgs'), {'a': jnp.zeros(1)}, optax.constant_schedule(1.))
    with pytest.raises(ValueError, match='boundary_lrs needs one rate per entry'):
        optim.learning_rate_schedule(_config(schedule='piecewise', boundary_lrs=(),
                                             boundaries=('1 epoch',)),
                                     total_steps=4, steps_per_epoch=2, batch_size=1)
    assert isinstance(_config(), ml_collections.ConfigDict)


def test_the_last_layer_mask_marks_each_heads_classifier():
    leaf = {'kernel': 0, 'bias': 0}
    flat = {'trunk': {'conv1': leaf}, 'head': {'fc6': leaf, 'fc7': leaf}}
    assert optim.last_layer_mask(flat) == {'trunk': {'conv1': {'kernel': False, 'bias': False}},
                                           'head': {'fc6': {'kernel': False, 'bias': False},
                                                    'fc7': {'kernel': True, 'bias': True}}}
    stacked = {'base': {'trunk': {'conv1': leaf}, 'head': {'ip1': {**leaf, 'w0': 0}}}}
    assert optim.last_layer_mask(stacked)['base']['head']['ip1'] == {'kernel': True, 'bias': True, 'w0': True}


@pytest.mark.parametrize('name', ['caffe_sgd', 'sgd', 'adamw'])
def test_last_layer_only_trains_the_classifier_alone_then_every_layer_without_a_momentum_burst(name):
    config = _config(name=name, lr=0.1, momentum=0.9, weight_decay=0.1)
    params = {'trunk': {'conv1': {'kernel': jnp.ones(3)}}, 'head': {'fc6': {'kernel': jnp.ones(2)},
                                                                    'fc7': {'kernel': jnp.ones(2)}}}
    grads = {'trunk': {'conv1': {'kernel': jnp.full(3, 0.5)}},
             'head': {'fc6': {'kernel': jnp.full(2, 0.5)}, 'fc7': {'kernel': jnp.full(2, 0.5)}}}
    schedule = optax.constant_schedule(0.1)

    def trajectory(last_layer_steps, steps):
        tx = optim.create_optimizer(config, params, schedule, last_layer_steps=last_layer_steps)
        state, current, seen = tx.init(params), params, [params]
        for _ in range(steps):
            updates, state = tx.update(grads, state, current)
            current = optax.apply_updates(current, updates)
            seen.append(current)
        return seen

    warm = trajectory(2, 3)
    for held in (warm[1], warm[2]):  # phase one: only the classifier moves
        np.testing.assert_array_equal(held['trunk']['conv1']['kernel'], params['trunk']['conv1']['kernel'])
        np.testing.assert_array_equal(held['head']['fc6']['kernel'], params['head']['fc6']['kernel'])
    assert not np.array_equal(warm[2]['head']['fc7']['kernel'], params['head']['fc7']['kernel'])
    # Phase two's first step on a held layer is a first step: nothing accumulated while it was held
    # (Adam's bias correction counts every step, so its first step there is smaller, never larger).
    first = trajectory(0, 1)[1]
    for layer in ('trunk/conv1', 'head/fc6'):
        block, layer_name = layer.split('/')
        moved = params[block][layer_name]['kernel'] - warm[3][block][layer_name]['kernel']
        expected = params[block][layer_name]['kernel'] - first[block][layer_name]['kernel']
        if name == 'adamw':
            assert np.all(np.abs(moved) <= np.abs(expected)) and np.all(np.abs(moved) > 0)
        else:
            np.testing.assert_allclose(moved, expected, rtol=1e-5)
