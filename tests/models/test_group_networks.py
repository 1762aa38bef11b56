"""Group layouts of stacked task-group networks: slot tables, targets, masking, scatter to classes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nofe_jax.grouping import layout as group_layout_lib
from nofe_jax.models import experts, group_networks


def test_overlapping_groups_by_hand():
    layout = group_layout_lib.group_layout([[3, 0], [0, 1, 2], [4]], num_classes=5, not_in_group=True)
    np.testing.assert_array_equal(layout.slot_classes, [[0, 3, 0], [0, 1, 2], [4, 0, 0]])
    np.testing.assert_array_equal(layout.slot_mask, [[1, 1, 0], [1, 1, 1], [1, 0, 0]])
    assert (layout.num_groups, layout.m_max, layout.num_outputs) == (3, 3, 4)
    np.testing.assert_array_equal(layout.sizes, [2, 3, 1])
    np.testing.assert_array_equal(layout.membership(5), [[1, 1, 0], [0, 1, 0], [0, 1, 0],
                                                         [1, 0, 0], [0, 0, 1]])
    # class 0 is slot 0 of groups 0 and 1; elsewhere the not-in-group output, index m_max = 3
    np.testing.assert_array_equal(layout.class_targets(5), [[0, 0, 3], [3, 1, 3], [3, 2, 3],
                                                            [1, 3, 3], [3, 3, 0]])
    without = group_layout_lib.group_layout([[3, 0], [0, 1, 2], [4]], num_classes=5)
    assert without.num_outputs == 3
    assert without.class_targets(5)[1].tolist() == [-1, 1, -1]


def test_a_partition_scatters_exactly_as_the_nofe_gathers():
    """Disjoint groups without a not-in-group output are the NofE's expert layout."""
    class_to_specialty = np.array([2, 0, 1, 2, 0, 2, 1])
    expert = experts.expert_layout(class_to_specialty)
    groups = [np.flatnonzero(class_to_specialty == k) for k in range(3)]
    layout = group_layout_lib.group_layout(groups, num_classes=7)
    assert layout.m_max == expert.c_max
    logits = jax.random.normal(jax.random.key(0), (4, 3, layout.m_max))
    np.testing.assert_array_equal(
        group_networks.scatter_to_classes(logits, layout.slot_classes, layout.slot_mask, 7),
        experts.gather_class_logits(logits, jnp.asarray(expert.class_slots)))


def test_a_class_in_two_groups_gets_the_sum_and_padded_slots_add_nothing():
    layout = group_layout_lib.group_layout([[0, 1], [1]], num_classes=3)
    values = jnp.array([[[1.0, 2.0], [10.0, 100.0]]])  # group 1's second slot is padding
    np.testing.assert_array_equal(
        group_networks.scatter_to_classes(values, layout.slot_classes, layout.slot_mask, 3), [[1.0, 12.0, 0.0]])


def test_masked_padded_slots_get_no_probability_and_not_in_group_is_kept():
    layout = group_layout_lib.group_layout([[0, 1], [2]], num_classes=3, not_in_group=True)
    logits = jnp.zeros((2, layout.num_groups, layout.num_outputs))
    probs = jax.nn.softmax(group_networks.mask_padded_slots(logits, jnp.asarray(layout.slot_mask)))
    np.testing.assert_allclose(probs[0], [[1 / 3, 1 / 3, 1 / 3], [0.5, 0.0, 0.5]], atol=1e-7)


@pytest.mark.parametrize('groups, match', [([[0], []], 'needs a class'), ([[0, 3]], r'\[0, 3\)'),
                                           ([], 'needs a class')])
def test_bad_groups_are_refused(groups, match):
    with pytest.raises(ValueError, match=match):
        group_layout_lib.group_layout(groups, num_classes=3)
