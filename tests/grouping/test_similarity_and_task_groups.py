"""Tests for nofe_jax.grouping.similarity and task_groups."""

import numpy as np
import pytest

from nofe_jax.grouping import clustering, similarity, task_groups


def test_class_mean_cosine_equals_pairwise_mean():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 5))
    labels = rng.integers(0, 4, size=30)
    classes = np.array([3, 0, 2])
    sim = similarity.class_mean_cosine_similarity(features, labels, classes)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    for a, ca in enumerate(classes):
        for b, cb in enumerate(classes):
            pairwise = unit[labels == ca] @ unit[labels == cb].T
            assert sim[a, b] == pytest.approx(pairwise.mean())


def test_similarity_missing_class_raises():
    with pytest.raises(ValueError, match=r'No examples of classes \[7\]'):
        similarity.class_mean_cosine_similarity(np.ones((3, 2)), np.array([0, 1, 1]), np.array([0, 7]))


def test_rbf_similarity_prefers_same_class():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = np.array([[0, 0], [5, 0], [0, 5]])[labels] + 0.3 * rng.normal(size=(60, 2))
    sim = similarity.rbf_similarity(features, labels, np.arange(3), gamma=0.5, num_pairs=50, rng=rng)
    np.testing.assert_allclose(sim, sim.T)
    assert np.all(np.diag(sim) > 0.5) and np.all(sim[~np.eye(3, dtype=bool)] < 0.01)


def test_laplacian():
    s = np.array([[1.0, 2.0], [2.0, 0.0]])
    lap = similarity.laplacian(s)
    np.testing.assert_allclose(lap, [[2.0, -2.0], [-2.0, 2.0]])
    np.testing.assert_allclose(lap.sum(axis=1), 0.0)


@pytest.mark.parametrize('num_classes,group_size,overlap', [
    (20, 5, 0.0), (23, 5, 0.0), (20, 6, 0.5), (23, 8, 0.5), (7756, 970, 0.5), (7756, 970, 0.0),
    (30, 9, 2 / 3), (100, 10, 0.1), (100, 10, 0.3), (100, 25, 0.4), (23, 7, 0.2), (7756, 970, 0.3),
    (10, 10, 0.9),
])
def test_tree_guided_windows_cover_every_class_with_consecutive_windows(num_classes, group_size, overlap):
    order = np.random.default_rng(0).permutation(num_classes)
    windows = task_groups.tree_guided_windows(order, group_size, overlap)
    repeats = 1 / (1 - overlap)
    coverage = np.bincount(np.concatenate(windows), minlength=num_classes)
    assert set(coverage.tolist()) <= {int(np.floor(repeats + 1e-9)), int(np.ceil(repeats - 1e-9))}
    assert coverage.min() >= 1
    sizes = [len(w) for w in windows]
    assert max(sizes) <= group_size and max(sizes) - min(sizes) <= 1
    stride = group_size * (1 - overlap)
    if abs(num_classes / stride - round(num_classes / stride)) < 1e-9:  # the stride divides C
        assert sizes == [group_size] * len(windows)
    for window in windows:  # Consecutive in the order (cyclically).
        positions = np.argsort(order)[window]
        assert np.all(np.diff(positions) % num_classes == 1)


@pytest.mark.parametrize('num_classes,group_size', [(20, 5), (23, 5), (7756, 970), (10, 3)])
def test_tree_guided_windows_at_overlap_0_partition_and_at_half_cover_twice(num_classes, group_size):
    order = np.arange(num_classes)
    np.testing.assert_array_equal(np.sort(np.concatenate(task_groups.tree_guided_windows(order, group_size, 0.0))),
                                  order)
    halves = task_groups.tree_guided_windows(order, group_size, 0.5)
    assert np.all(np.bincount(np.concatenate(halves), minlength=num_classes) == 2)


def test_tree_guided_windows_at_fractional_overlaps_by_hand():
    # Windows of 5 moved by 4 over 12 classes: the last one wraps onto class 0.
    windows = task_groups.tree_guided_windows(np.arange(12), 5, 0.2)
    assert [w.tolist() for w in windows] == [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8], [8, 9, 10, 11, 0]]
    # A stride of 3 does not divide 10: 4 windows start 2.5 apart (rounded down), each spanning
    # 2.5 / 0.6 = 4.17 classes (end rounded down).
    windows = task_groups.tree_guided_windows(np.arange(10), 5, 0.4)
    assert [w.tolist() for w in windows] == [[0, 1, 2, 3], [2, 3, 4, 5], [5, 6, 7, 8], [7, 8, 9, 0]]


def test_tree_guided_windows_paper_counts():
    assert len(task_groups.tree_guided_windows(np.arange(7756), 970, 0.0)) == 8
    assert len(task_groups.tree_guided_windows(np.arange(7756), 970, 0.5)) == 16


def test_tree_guided_windows_need_a_stride_of_one_class():
    with pytest.raises(ValueError, match=r'group_size \* \(1 - overlap\) must be at least 1'):
        task_groups.tree_guided_windows(np.arange(10), 4, 0.8)


def test_ssc_groups_cover_every_class():
    rng = np.random.default_rng(0)
    memberships = rng.dirichlet(np.ones(6) * 0.3, size=40)
    groups = task_groups.ssc_groups(memberships, delta=0.9)
    report = task_groups.group_membership_report(groups, 40)
    assert report['uncovered'] == [] and report['min_coverage'] >= 1
    # Every class is in the group of its argmax and in every group above delta.
    full = task_groups.ssc_groups(memberships, delta=0.2)
    assert len(full) == 6  # No group is empty, so group t is column t.
    for c in range(40):
        wanted = set(np.flatnonzero(memberships[c] >= 0.2)) | {int(np.argmax(memberships[c]))}
        holding = {t for t, g in enumerate(full) if c in g}
        assert holding == wanted
    assert task_groups.group_membership_report(full, 40)['in_two_or_more'] > 0


def test_ssc_from_soft_spectral_clustering():
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(3), 6)
    affinity = np.where(truth[:, None] == truth[None, :], 1.0, 0.1)
    memberships = clustering.soft_spectral_clustering(affinity, 3, rng)
    groups = task_groups.ssc_groups(memberships, delta=0.3)
    assert sorted(len(g) for g in groups) == [6, 6, 6]


def test_ssc_groups_put_bridging_classes_in_both_blocks_groups():
    # 8 blocks of 15 classes, plus 6 classes with full affinity to two blocks each.
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(8), 15)
    bridges = [(0, 1), (2, 3), (4, 5), (6, 7), (1, 6), (3, 4)]
    links = np.concatenate([truth[:, None] == np.arange(8)[None, :],
                            [np.isin(np.arange(8), pair) for pair in bridges]]).astype(np.float64)
    affinity = np.maximum(links @ links.T, 0.02) + 0.02 * rng.random((126, 126))
    affinity = (affinity + affinity.T) / 2
    perm = rng.permutation(126)
    memberships = clustering.soft_spectral_clustering(affinity[np.ix_(perm, perm)], 8, rng)
    memberships = memberships[np.argsort(perm)]  # back to the planted order
    np.testing.assert_allclose(memberships.sum(axis=1), 1.0)
    groups = task_groups.ssc_groups(memberships, delta=0.2)
    holding = [{t for t, g in enumerate(groups) if c in g} for c in range(126)]
    # Block-pure classes: exactly one group, the same for the whole block, a different one per block.
    assert all(len(h) == 1 for h in holding[:120])
    block_group = [holding[15 * b].copy().pop() for b in range(8)]
    assert len(set(block_group)) == 8
    assert all(holding[c] == {block_group[truth[c]]} for c in range(120))
    # Bridging classes: in both of their blocks' groups and no other.
    for c, (a, b) in zip(range(120, 126), bridges):
        assert holding[c] == {block_group[a], block_group[b]}, (c, memberships[c])
    report = task_groups.group_membership_report(groups, 126)
    assert report['in_two_or_more'] == 6 and report['uncovered'] == []
    expected_sizes = 15 + np.bincount(np.ravel(bridges), minlength=8)  # each block's 15 + its bridges
    assert report['sizes'] == [expected_sizes[block_group.index(t)] for t in range(8)]
    # A higher threshold keeps only the argmax: every class in exactly one group.
    assert task_groups.group_membership_report(task_groups.ssc_groups(memberships, 0.5), 126)['max_coverage'] == 1


def test_grouping_never_imports_jax():
    import subprocess
    import sys
    code = ('import sys, nofe_jax.grouping.specialties, nofe_jax.grouping.semantic, '
            'nofe_jax.grouping.confusion, nofe_jax.grouping.similarity, nofe_jax.grouping.task_groups, '
            'nofe_jax.grouping.ontology; '
            'assert "jax" not in sys.modules, "grouping imported jax"; '
            'assert "matplotlib" not in sys.modules, "grouping imported matplotlib"')
    subprocess.run([sys.executable, '-c', code], check=True)
