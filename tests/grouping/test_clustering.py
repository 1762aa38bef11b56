"""Tests for nofe_jax.grouping.clustering."""

import numpy as np
import pytest
import scipy.sparse as sps

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


def test_sparse_lanczos_path_recovers_the_same_blocks(monkeypatch):
    rng = np.random.default_rng(0)
    affinity, truth = _planted_blocks(rng, [20, 35, 15, 30])
    inside = truth[:, None] == truth[None, :]
    affinity = np.where(inside | (rng.random(affinity.shape) < 0.05), affinity, 0.0)  # mostly zeros
    affinity = np.maximum(affinity, affinity.T)
    dense = clustering.spectral_clustering(affinity, 4, np.random.default_rng(1))
    monkeypatch.setattr(clustering, 'DENSE_EIGH_MAX_POINTS', 0)
    for given in (affinity, sps.csr_array(affinity)):
        embedding = clustering.spectral_embedding(given, 4)
        np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0)
        sparse = clustering.kmeans(embedding, 4, np.random.default_rng(1))
        assert _same_partition(sparse, dense) and _same_partition(sparse, truth)


def test_sparse_and_dense_embeddings_span_the_same_subspace(monkeypatch):
    affinity, _ = _planted_blocks(np.random.default_rng(3), [10, 12, 8], outside=0.3, noise=0.5)
    dense = clustering.spectral_embedding(affinity, 3)
    monkeypatch.setattr(clustering, 'DENSE_EIGH_MAX_POINTS', 0)
    sparse = clustering.spectral_embedding(sps.csr_array(affinity), 3)
    # Same rows up to one rotation: the least-squares map between them is orthogonal and exact.
    rotation, *_ = np.linalg.lstsq(sparse, dense, rcond=None)
    np.testing.assert_allclose(sparse @ rotation, dense, atol=1e-6)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-6)


def test_knn_sparsify_keeps_the_largest_entries_per_row():
    matrix = np.array([[0.0, 5.0, 1.0, 3.0],
                       [2.0, 0.0, 0.0, 0.0],
                       [4.0, 6.0, 0.0, 1.0],
                       [0.0, 0.0, 0.0, 0.0]])
    # Rows keep {1, 3}, {0}, {0, 1} (zeros dropped); then (A_k + A_k^T) / 2.
    kept = np.array([[0.0, 5.0, 0.0, 3.0],
                     [2.0, 0.0, 0.0, 0.0],
                     [4.0, 6.0, 0.0, 0.0],
                     [0.0, 0.0, 0.0, 0.0]])
    for given in (matrix, sps.csr_array(matrix)):
        np.testing.assert_allclose(clustering.knn_sparsify(given, 2).toarray(), (kept + kept.T) / 2)
    # Exact when no row has more non-zeros than the neighbours kept.
    np.testing.assert_allclose(clustering.knn_sparsify(matrix, 3).toarray(), (matrix + matrix.T) / 2)


def test_sparse_affinity_checked_like_a_dense_one():
    with pytest.raises(ValueError, match='symmetric'):
        clustering.spectral_embedding(sps.csr_array(np.array([[0.0, 1.0], [0.0, 0.0]])), 1)
    with pytest.raises(ValueError, match='non-negative'):
        clustering.spectral_embedding(sps.csr_array(np.array([[0.0, -1.0], [-1.0, 0.0]])), 1)
