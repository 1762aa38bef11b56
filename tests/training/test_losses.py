import jax.numpy as jnp
import numpy as np

from nofe_jax.training import losses
from nofe_jax.training.loop import reduce_metrics


def test_topk_correct_by_hand():
    logits = jnp.array([[0.1, 0.5, 0.2, 0.9, 0.0, 0.3],
                        [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    labels = jnp.array([2, 0])
    # label 2 has rank 3 in row 0 (0.9, 0.5, 0.3 above it).
    np.testing.assert_array_equal(losses.topk_correct(logits, labels, 1), [0, 1])
    np.testing.assert_array_equal(losses.topk_correct(logits, labels, 3), [0, 1])
    np.testing.assert_array_equal(losses.topk_correct(logits, labels, 4), [1, 1])
    # k larger than the number of outputs counts everything.
    np.testing.assert_array_equal(losses.topk_correct(logits[:, :2], jnp.array([1, 0]), 5), [1, 1])


def test_masked_sums_and_per_class_average():
    correct = jnp.array([1.0, 0.0, 1.0, 1.0])
    labels = jnp.array([0, 0, 1, 2])
    mask = jnp.array([1.0, 1.0, 1.0, 0.0])  # the last example is padding
    total, count = losses.summed(correct, mask)
    assert float(total) == 2 and float(count) == 3
    per_class = losses.per_class_sums(correct, labels, mask, 3)
    reduced = reduce_metrics({'acc': (total, count), 'pc': per_class})
    assert reduced['acc'] == 2 / 3
    # class 0: 1/2, class 1: 1/1, class 2 unseen (only padding) -> mean of 0.5 and 1.
    assert reduced['pc'] == 0.75
