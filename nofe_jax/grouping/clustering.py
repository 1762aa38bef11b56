"""Spectral clustering (Ng-Jordan-Weiss), k-means and fuzzy c-means, in numpy."""

from __future__ import annotations

import numpy as np

KMEANS_RESTARTS = 10
KMEANS_MAX_ITERS = 300


def _check_affinity(affinity: np.ndarray) -> np.ndarray:
    affinity = np.asarray(affinity, dtype=np.float64)
    if affinity.ndim != 2 or affinity.shape[0] != affinity.shape[1]:
        raise ValueError(f'affinity must be a square matrix, got shape {affinity.shape}.')
    if not np.allclose(affinity, affinity.T):
        raise ValueError('affinity must be symmetric; symmetrise it first, e.g. (A + A.T) / 2.')
    if np.any(affinity < 0):
        raise ValueError('affinity must be non-negative.')
    return affinity


def _check_num_clusters(num_points: int, num_clusters: int) -> None:
    if not 1 <= num_clusters <= num_points:
        raise ValueError(f'num_clusters must be between 1 and the number of points ({num_points}), '
                         f'got {num_clusters}.')


def spectral_embedding(affinity: np.ndarray, dim: int) -> np.ndarray:
    """[n, dim] Ng-Jordan-Weiss embedding: top eigenvectors of D^-1/2 A D^-1/2, rows L2-normalised.

    A point with zero degree (no affinity to anything) embeds at the origin.
    """
    affinity = _check_affinity(affinity)
    _check_num_clusters(affinity.shape[0], dim)
    degree = affinity.sum(axis=1)
    inv_sqrt = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    normalised = inv_sqrt[:, None] * affinity * inv_sqrt[None, :]
    _, vectors = np.linalg.eigh(normalised)  # Ascending eigenvalues.
    embedding = vectors[:, ::-1][:, :dim]
    norms = np.linalg.norm(embedding, axis=1, keepdims=True)
    return np.divide(embedding, norms, out=np.zeros_like(embedding), where=norms > 0)


def kmeans(points: np.ndarray, num_clusters: int, rng: np.random.Generator,
           restarts: int = KMEANS_RESTARTS, max_iters: int = KMEANS_MAX_ITERS) -> np.ndarray:
    """int[n] labels of the best of `restarts` k-means++ / Lloyd runs (lowest inertia)."""
    points = np.asarray(points, dtype=np.float64)
    _check_num_clusters(points.shape[0], num_clusters)
    best_labels, best_inertia = None, np.inf
    for _ in range(restarts):
        labels, inertia = _lloyd(points, _kmeans_plus_plus(points, num_clusters, rng), max_iters)
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels


def _kmeans_plus_plus(points: np.ndarray, num_clusters: int, rng: np.random.Generator) -> np.ndarray:
    centers = [points[rng.integers(points.shape[0])]]
    for _ in range(1, num_clusters):
        dist = np.min(squared_distances(points, np.array(centers)), axis=1)
        total = dist.sum()
        # All points already coincide with a center: any choice is as good.
        probs = dist / total if total > 0 else None
        centers.append(points[rng.choice(points.shape[0], p=probs)])
    return np.array(centers)


def _lloyd(points: np.ndarray, centers: np.ndarray, max_iters: int) -> tuple[np.ndarray, float]:
    labels = np.argmin(squared_distances(points, centers), axis=1)
    for _ in range(max_iters):
        for k in range(centers.shape[0]):
            members = points[labels == k]
            if len(members):  # An empty cluster keeps its center.
                centers[k] = members.mean(axis=0)
        new_labels = np.argmin(squared_distances(points, centers), axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    inertia = float(np.sum((points - centers[labels]) ** 2))
    return labels, inertia


def squared_distances(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """[n, k] squared Euclidean distances, clipped at 0 against rounding."""
    sq = (np.sum(points ** 2, axis=1)[:, None] + np.sum(centers ** 2, axis=1)[None, :]
          - 2.0 * points @ centers.T)
    return np.maximum(sq, 0.0)


def spectral_clustering(affinity: np.ndarray, num_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """int[n] cluster labels: NJW embedding into `num_clusters` dims + k-means with restarts."""
    return kmeans(spectral_embedding(affinity, num_clusters), num_clusters, rng)


def fuzzy_objective(points: np.ndarray, memberships: np.ndarray, m: float = 2.0) -> float:
    """Fuzzy c-means cost sum_ij u_ij^m ||x_i - c_j||^2 with the optimal centers for these memberships."""
    points = np.asarray(points, dtype=np.float64)
    weights = np.asarray(memberships, dtype=np.float64) ** m
    centers = _fuzzy_centers(points, weights)
    return float(np.sum(weights * squared_distances(points, centers)))


def _fuzzy_centers(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (weights.T @ points) / weights.sum(axis=0)[:, None]


def _fuzzy_memberships(sq_dist: np.ndarray, m: float) -> np.ndarray:
    """Optimal memberships for fixed centers; a point on a center belongs to it (shared on ties)."""
    at_center = sq_dist <= 1e-12 * (1.0 + sq_dist.max())
    with np.errstate(divide='ignore'):
        inv = np.where(at_center, 0.0, sq_dist) ** (-1.0 / (m - 1.0))
    inv = np.where(at_center, 0.0, inv)
    hits = at_center.any(axis=1)
    inv[hits] = at_center[hits].astype(np.float64)
    return inv / inv.sum(axis=1, keepdims=True)


def fuzzy_c_means(points: np.ndarray, num_clusters: int, rng: np.random.Generator, m: float = 2.0,
                  iters: int = 300, tol: float = 1e-6) -> np.ndarray:
    """[n, T] fuzzy c-means memberships (rows sum to 1), from random Dirichlet memberships.

    Alternates optimal centers and optimal memberships, so the objective
    never increases; stops after `iters` or when no membership moves by more
    than `tol`.
    """
    points = np.asarray(points, dtype=np.float64)
    _check_num_clusters(points.shape[0], num_clusters)
    if m <= 1.0:
        raise ValueError(f'The fuzzifier m must be > 1, got {m}.')
    memberships = rng.dirichlet(np.ones(num_clusters), size=points.shape[0])
    for _ in range(iters):
        weights = memberships ** m
        centers = _fuzzy_centers(points, weights)
        updated = _fuzzy_memberships(squared_distances(points, centers), m)
        converged = np.max(np.abs(updated - memberships)) < tol
        memberships = updated
        if converged:
            break
    return memberships


def soft_spectral_clustering(affinity: np.ndarray, num_clusters: int, rng: np.random.Generator,
                             m: float = 2.0) -> np.ndarray:
    """[n, T] soft memberships (DeepME's SSC): NJW embedding into T dims + fuzzy c-means."""
    return fuzzy_c_means(spectral_embedding(affinity, num_clusters), num_clusters, rng, m=m)
