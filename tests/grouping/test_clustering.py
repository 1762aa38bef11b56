"""Tests for nofe_jax.grouping.clustering."""

import numpy as np
import pytest

from nofe_jax.grouping import clustering


def _planted_blocks(rng, sizes, inside=1.0, outside=0.05, noise=0.02):
    truth = np.repeat(np.arange(len(sizes)), sizes)
    affinity = np.where(truth[:, None] == truth[None, :], inside, outside)
    affinity = affinity + noise * rng.random(affinity.shape)
    return (affinity + affinity.T) / 2, truth


def _same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_spectral_clustering_recovers_planted_blocks():
    rng = np.random.default_rng(0)
    affinity, truth = _planted_blocks(rng, [6, 9, 4, 11, 5])
    perm = rng.permutation(len(truth))
    labels = clustering.spectral_clustering(affinity[np.ix_(perm, perm)], 5, rng)
    assert _same_partition(labels, truth[perm])


def test_spectral_clustering_deterministic_given_rng():
    affinity, _ = _planted_blocks(np.random.default_rng(1), [5, 5, 5], outside=0.4, noise=0.5)
    a = clustering.spectral_clustering(affinity, 3, np.random.default_rng(3))
    b = clustering.spectral_clustering(affinity, 3, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


def test_spectral_embedding_rows_unit_norm():
    affinity, _ = _planted_blocks(np.random.default_rng(2), [4, 4, 4])
    embedding = clustering.spectral_embedding(affinity, 3)
    assert embedding.shape == (12, 3)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0)


def test_spectral_rejects_asymmetric():
    with pytest.raises(ValueError, match='symmetric'):
        clustering.spectral_embedding(np.array([[0.0, 1.0], [0.0, 0.0]]), 1)


def test_kmeans_separated_clusters():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]])
    truth = np.repeat(np.arange(3), 20)
    points = centers[truth] + rng.normal(size=(60, 2))
    assert _same_partition(clustering.kmeans(points, 3, rng), truth)


def test_fuzzy_c_means_rows_sum_to_one_and_objective_non_increasing():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(c, 1.0, size=(15, 2)) for c in ([0, 0], [6, 0], [0, 6])])
    costs = []
    for iters in range(1, 15):
        # Same seed -> same start, so `iters` iterations are a prefix of the run.
        memberships = clustering.fuzzy_c_means(points, 3, np.random.default_rng(5), m=2.0,
                                               iters=iters, tol=0.0)
        assert memberships.shape == (45, 3)
        np.testing.assert_allclose(memberships.sum(axis=1), 1.0)
        assert np.all(memberships >= 0)
        costs.append(clustering.fuzzy_objective(points, memberships, m=2.0))
    assert all(b <= a + 1e-9 for a, b in zip(costs, costs[1:]))
    assert costs[-1] < costs[0]
    hard = np.argmax(memberships, axis=1)
    assert _same_partition(hard, np.repeat(np.arange(3), 15))


def test_soft_spectral_clustering_memberships():
    rng = np.random.default_rng(0)
    affinity, truth = _planted_blocks(rng, [5, 7, 6])
    memberships = clustering.soft_spectral_clustering(affinity, 3, rng, m=2.0)
    np.testing.assert_allclose(memberships.sum(axis=1), 1.0)
    assert _same_partition(np.argmax(memberships, axis=1), truth)
