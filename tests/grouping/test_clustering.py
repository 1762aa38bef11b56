"""Tests for nofe_jax.grouping.clustering."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sps
import threadpoolctl

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


def _reference_kmeans(points, num_clusters, rng, restarts=10):
    """The hand-written k-means the library used before scikit-learn's: best of `restarts`
    plain k-means++ starts refined by Lloyd."""
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centers = [points[rng.integers(len(points))]]
        for _ in range(1, num_clusters):
            dist = clustering.squared_distances(points, np.array(centers)).min(axis=1)
            centers.append(points[rng.choice(len(points), p=dist / dist.sum())])
        centers = np.array(centers)
        for _ in range(300):
            labels = np.argmin(clustering.squared_distances(points, centers), axis=1)
            centers = np.array([points[labels == k].mean(axis=0) if np.any(labels == k) else centers[k]
                                for k in range(num_clusters)])
        inertia = np.sum((points - centers[labels]) ** 2)
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


@pytest.mark.parametrize('sizes', [[6, 9, 4, 11, 5], [30, 30, 30], [3, 50, 12, 20]])
def test_kmeans_finds_the_planted_blocks_the_hand_written_one_found(sizes):
    rng = np.random.default_rng(sum(sizes))
    affinity, truth = _planted_blocks(rng, sizes)
    embedding = clustering.spectral_embedding(affinity, len(sizes))
    expected = _reference_kmeans(embedding, len(sizes), np.random.default_rng(0))
    assert _same_partition(expected, truth)
    assert _same_partition(clustering.kmeans(embedding, len(sizes), np.random.default_rng(0)), expected)


def test_canonical_labels_number_clusters_by_their_first_point():
    np.testing.assert_array_equal(clustering.canonical_labels(np.array([7, 3, 7, 9, 3])), [0, 1, 0, 2, 1])


def test_kmeans_numbers_equal_clusters_the_same_whatever_the_start():
    # Eight equal points and two others: k-means++ picks among equal candidates by rounding.
    points = np.array([[1.0, 0.0]] * 8 + [[0.0, 1.0], [0.0, -1.0]])
    for seed in range(5):
        np.testing.assert_array_equal(clustering.kmeans(points, 3, np.random.default_rng(seed)),
                                      [0] * 8 + [1, 2])


def test_kmeans_separated_clusters():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]])
    truth = np.repeat(np.arange(3), 20)
    points = centers[truth] + rng.normal(size=(60, 2))
    assert _same_partition(clustering.kmeans(points, 3, rng), truth)


@pytest.mark.parametrize('m', [2.0, None])
def test_fuzzy_c_means_rows_sum_to_one_and_objective_non_increasing(m):
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(c, 1.0, size=(15, 2)) for c in ([0, 0], [6, 0], [0, 6])])
    objective_m = clustering.default_fuzzifier(45, 2) if m is None else m
    costs = []
    for iters in range(1, 15):
        # Same seed -> same start, so `iters` iterations are a prefix of the run.
        memberships = clustering.fuzzy_c_means(points, 3, np.random.default_rng(5), m=m,
                                               iters=iters, tol=0.0)
        assert memberships.shape == (45, 3)
        np.testing.assert_allclose(memberships.sum(axis=1), 1.0)
        assert np.all(memberships >= 0)
        costs.append(clustering.fuzzy_objective(points, memberships, m=objective_m))
    assert all(b <= a + 1e-9 for a, b in zip(costs, costs[1:]))
    assert costs[-1] < costs[0]
    hard = np.argmax(memberships, axis=1)
    assert _same_partition(hard, np.repeat(np.arange(3), 15))


@pytest.mark.parametrize('m', [None, 1.01])
def test_fuzzy_c_means_objective_non_increasing_in_many_dimensions(m):
    # m near 1 (the default at 30 dimensions is 1.12): d^(-1/(m-1)) overflows at m = 1.01 for
    # points this close to their centers if computed directly; the memberships must stay finite
    # and the objective non-increasing.
    rng = np.random.default_rng(1)
    truth = rng.permutation(np.arange(300) % 30)
    points = np.eye(30)[truth] + 0.001 * rng.normal(size=(300, 30))  # squared distances ~3e-5
    objective_m = clustering.default_fuzzifier(300, 30) if m is None else m
    costs = []
    for iters in range(1, 6):
        memberships = clustering.fuzzy_c_means(points, 30, np.random.default_rng(2), m=m,
                                               iters=iters, tol=0.0)
        assert np.all(np.isfinite(memberships))
        np.testing.assert_allclose(memberships.sum(axis=1), 1.0)
        costs.append(clustering.fuzzy_objective(points, memberships, m=objective_m))
    assert np.all(np.isfinite(costs))
    assert all(b <= a * (1 + 1e-12) for a, b in zip(costs, costs[1:]))


def test_fuzzy_c_means_starts_from_smoothed_kmeans_labels():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(40, 5))
    start = clustering.fuzzy_c_means(points, 4, np.random.default_rng(7), iters=0)
    labels = clustering.kmeans(points, 4, np.random.default_rng(7))
    smoothing = clustering.FCM_START_SMOOTHING
    np.testing.assert_allclose(start, (1 - smoothing) * np.eye(4)[labels] + smoothing / 4)
    assert np.all(start > 0)


def test_fuzzy_c_means_deterministic_and_default_m():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 6))
    a = clustering.fuzzy_c_means(points, 5, np.random.default_rng(3))
    b = clustering.fuzzy_c_means(points, 5, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    explicit = clustering.fuzzy_c_means(points, 5, np.random.default_rng(3),
                                        m=clustering.default_fuzzifier(50, 6))
    np.testing.assert_array_equal(a, explicit)
    with pytest.raises(ValueError, match='must be > 1'):
        clustering.fuzzy_c_means(points, 5, rng, m=1.0)


def test_default_fuzzifier_is_schwaemmle_jensen():
    # m(N, D) = 1 + (1418/N + 22.05) D^-2 + (12.33/N + 0.243) D^(-0.0406 ln N - 0.1134),
    # at ImageNet-10K's 10,184 classes and T = 15 / 40 groups: not the textbook m = 2.
    assert round(clustering.default_fuzzifier(10_184, 15), 3) == 1.164
    assert round(clustering.default_fuzzifier(10_184, 40), 3) == 1.054
    assert clustering.default_fuzzifier(100, 12) == pytest.approx(
        1 + (14.18 + 22.05) / 144 + (0.1233 + 0.243) * 12 ** (-0.0406 * np.log(100) - 0.1134))
    values = [clustering.default_fuzzifier(10_184, d) for d in (15, 40, 100)]
    assert all(a > b > 1 for a, b in zip(values, values[1:]))
    # Few points or dimensions: the rule's m (19 for 10 classes in 3 dimensions) is capped at 2.
    assert clustering.default_fuzzifier(10, 3) == clustering.default_fuzzifier(10_184, 2) == 2.0
    with pytest.raises(ValueError, match='positive'):
        clustering.default_fuzzifier(0, 3)


@pytest.mark.parametrize('m', [2.0, None])
def test_soft_spectral_clustering_memberships(m):
    rng = np.random.default_rng(0)
    affinity, truth = _planted_blocks(rng, [5, 7, 6])
    memberships = clustering.soft_spectral_clustering(affinity, 3, rng, m=m)
    np.testing.assert_allclose(memberships.sum(axis=1), 1.0)
    assert _same_partition(np.argmax(memberships, axis=1), truth)


def test_soft_spectral_clustering_recovers_permuted_blocks():
    rng = np.random.default_rng(4)
    affinity, truth = _planted_blocks(rng, [12, 20, 9, 15, 17, 11, 14], outside=0.1, noise=0.3)
    perm = rng.permutation(len(truth))
    memberships = clustering.soft_spectral_clustering(affinity[np.ix_(perm, perm)], 7, rng)
    np.testing.assert_allclose(memberships.sum(axis=1), 1.0)
    assert np.all(memberships >= 0)
    assert _same_partition(np.argmax(memberships, axis=1), truth[perm])
    assert np.mean(np.max(memberships, axis=1)) > 0.9


def _sparse_planted_affinity(num_classes, num_blocks, seed, in_block=10, anywhere=20):
    """Sparse symmetric affinity: each class linked to `in_block` random classes of its block
    and `anywhere` random classes (so about two thirds of its links leave the block)."""
    rng = np.random.default_rng(seed)
    truth = rng.permutation(np.arange(num_classes) % num_blocks)
    members = np.argsort(truth, kind='stable')
    start = np.searchsorted(truth[members], truth)
    size = np.bincount(truth)[truth]
    same = members[start[:, None] + rng.integers(0, size[:, None], size=(num_classes, in_block))]
    other = rng.integers(0, num_classes, size=(num_classes, anywhere))
    cols = np.concatenate([same, other], axis=1).ravel()
    rows = np.repeat(np.arange(num_classes), in_block + anywhere)
    affinity = sps.csr_array((np.ones(cols.size), (rows, cols)), shape=(num_classes, num_classes))
    affinity = (affinity + affinity.T) / 2
    affinity.setdiag(0.0)
    affinity.eliminate_zeros()
    return affinity, truth


@pytest.mark.parametrize('num_groups', [15, 40])
def test_soft_spectral_clustering_default_is_not_degenerate_at_imagenet_10k_scale(num_groups):
    # C = 10,184 classes through the real (Lanczos) spectral embedding. From the same k-means start the
    # textbook m = 2 gives a mean largest membership of 0.57 at T = 15 and collapses at T = 40 (every
    # membership 1/T = 0.025); the default m gives 1.000 / 0.996, NMI 1.000 / 0.993.
    from nofe_jax.grouping import specialties
    affinity, truth = _sparse_planted_affinity(10_184, num_groups, seed=0)
    # One BLAS thread: the products are small, and on 2 cores shared with the other test worker
    # (or a training run) OpenBLAS's threads wait on each other, ~10x slower (2.6 s vs 27 s at T = 40).
    with threadpoolctl.threadpool_limits(1, user_api='blas'):
        memberships = clustering.soft_spectral_clustering(affinity, num_groups, np.random.default_rng(0))
    assert memberships.shape == (10_184, num_groups)
    np.testing.assert_allclose(memberships.sum(axis=1), 1.0)
    assert np.mean(np.max(memberships, axis=1)) > 0.9  # 1/T would be uniform
    assert specialties.partition_nmi(truth, np.argmax(memberships, axis=1)) > 0.95


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


def test_sparse_and_dense_embeddings_are_the_same(monkeypatch):
    affinity, _ = _planted_blocks(np.random.default_rng(3), [10, 12, 8], outside=0.3, noise=0.5)
    dense = clustering.spectral_embedding(affinity, 3)
    monkeypatch.setattr(clustering, 'DENSE_EIGH_MAX_POINTS', 0)
    np.testing.assert_allclose(clustering.spectral_embedding(sps.csr_array(affinity), 3), dense, atol=1e-6)


def _tied_affinity():
    """Three identical, disconnected 4-cliques plus a 5-clique: the normalised affinity's eigenvalue
    1 is 4-fold (one per component) and -1/3 is 9-fold, -1/4 4-fold."""
    blocks = [np.ones((4, 4))] * 3 + [np.ones((5, 5))]
    return sps.block_diag(blocks).toarray() - np.eye(17)


def _rotated_within_runs(values, vectors, rng):
    rotated = vectors.copy()
    for run in clustering.tied_eigenvalue_runs(values):
        q, _ = np.linalg.qr(rng.standard_normal((run.stop - run.start,) * 2))
        rotated[:, run] = vectors[:, run] @ q  # q orthogonal: the same eigenspace, another basis
    return rotated


def test_canonical_eigenbasis_is_the_same_for_any_basis_of_each_eigenspace():
    affinity = _tied_affinity()
    inv_sqrt = 1.0 / np.sqrt(affinity.sum(axis=1))
    values, vectors = np.linalg.eigh(inv_sqrt[:, None] * affinity * inv_sqrt[None, :])
    assert [r.stop - r.start for r in clustering.tied_eigenvalue_runs(values)] == [9, 4, 4]
    canonical = clustering.canonical_eigenbasis(values, vectors)
    np.testing.assert_allclose(canonical.T @ canonical, np.eye(17), atol=1e-10)
    for seed in range(3):
        rotated = _rotated_within_runs(values, vectors, np.random.default_rng(seed))
        assert not np.allclose(rotated, vectors)
        np.testing.assert_allclose(clustering.canonical_eigenbasis(values, rotated), canonical, atol=1e-10)


def test_canonical_eigenbasis_fixes_each_simple_eigenvectors_sign():
    values, vectors = np.linalg.eigh(_planted_blocks(np.random.default_rng(0), [3, 4])[0])
    flipped = vectors * np.where(np.arange(7) % 2, -1.0, 1.0)
    np.testing.assert_allclose(clustering.canonical_eigenbasis(values, flipped),
                               clustering.canonical_eigenbasis(values, vectors), atol=1e-12)


def test_embedding_of_an_eigenspace_cut_at_the_tie_does_not_depend_on_the_eigensolver(monkeypatch):
    # T=2 takes two of the four components' directions of eigenvalue 1: any two fit equally well.
    affinity = _tied_affinity()
    with pytest.warns(clustering.ArbitrarySplitWarning, match='eigenvalues 1 to 4 .* tie'):
        expected = clustering.spectral_embedding(affinity, 2)
    solver = np.linalg.eigh
    for seed in range(3):  # an eigensolver that returns another basis of each eigenspace
        def rotating_eigh(matrix, seed=seed):
            values, vectors = solver(matrix)
            return values, _rotated_within_runs(values, vectors, np.random.default_rng(seed))
        monkeypatch.setattr(np.linalg, 'eigh', rotating_eigh)
        with pytest.warns(clustering.ArbitrarySplitWarning):
            np.testing.assert_allclose(clustering.spectral_embedding(affinity, 2), expected, atol=1e-10)
    monkeypatch.setattr(np.linalg, 'eigh', solver)
    # A perturbation far below the eigengaps (1/3 here) moves nothing that matters.
    noise = 1e-11 * np.random.default_rng(0).random(affinity.shape)
    with pytest.warns(clustering.ArbitrarySplitWarning):
        np.testing.assert_allclose(clustering.spectral_embedding(affinity + noise + noise.T, 2), expected,
                                   atol=1e-8)
    with pytest.warns(clustering.ArbitrarySplitWarning):
        labels = clustering.spectral_clustering(affinity, 2, np.random.default_rng(0))
    assert len(set(labels.tolist())) == 2


def test_sparse_path_finds_the_whole_tie_and_embeds_like_the_dense_path(monkeypatch):
    affinity = _tied_affinity()
    with pytest.warns(clustering.ArbitrarySplitWarning):
        dense = clustering.spectral_embedding(affinity, 3)
    monkeypatch.setattr(clustering, 'DENSE_EIGH_MAX_POINTS', 0)
    monkeypatch.setattr(clustering, '_TIE_MARGIN', 1)  # 4 eigenpairs first: the 4-fold tie reaches the last
    with pytest.warns(clustering.ArbitrarySplitWarning, match='eigenvalues 1 to 4'):
        sparse = clustering.spectral_embedding(sps.csr_array(affinity), 3)
    np.testing.assert_allclose(sparse, dense, atol=1e-6)


def test_structure_at_t_gives_no_warning_and_a_structureless_similarity_warns():
    affinity, _ = _planted_blocks(np.random.default_rng(0), [5, 6, 7])
    with warnings.catch_warnings():
        warnings.simplefilter('error', clustering.ArbitrarySplitWarning)
        clustering.spectral_embedding(affinity, 3)
        clustering.spectral_embedding(_tied_affinity(), 4)  # the four components: no tie at T=4
    constant = np.ones((10, 10)) - np.eye(10)  # every pair equally similar (WordNet's ten digits)
    with pytest.warns(clustering.ArbitrarySplitWarning, match='does not determine 3 groups'):
        clustering.soft_spectral_clustering(constant, 3, np.random.default_rng(0))


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
