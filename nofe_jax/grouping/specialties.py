"""Class -> specialty assignments (NofE): learned from count matrices, or fixed baselines.

Every assigner returns an int32 vector `l` of length C with values in [0, K).
Count matrices are C x K: counts[i, j] = images of class i the generalist
puts in specialty j (raw counts, see `confusion.count_matrix`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sps

from nofe_jax import paths, validation
from nofe_jax.grouping import clustering

ELASSO_MAX_SWEEPS = 100
BALANCED_KMEANS_MAX_ITERS = 50
# elasso's lam is stated for the paper's |S| = 10,000 images; other subset sizes scale it.
ELASSO_REFERENCE_SUBSET_SIZE = 10_000


def check_num_groups(num_classes: int, num_groups: int) -> None:
    """Raises ValueError unless 1 <= num_groups <= num_classes (``validation.fits_classes``)."""
    if not validation.fits_classes(num_groups, num_classes):
        raise ValueError(
            f'num_groups (K) must be between 1 and the number of classes C={num_classes}, '
            f'got K={num_groups}. Choose K <= C (the paper uses K in {{2, 5, 10, 20, 50}} '
            'for C=100), or check that the count matrix is C x K, not K x C.')


def _check_counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim != 2:
        raise ValueError(f'counts must be a C x K matrix, got shape {counts.shape}.')
    if not np.all(np.isfinite(counts)):
        raise ValueError('counts contains NaN or inf.')
    check_num_groups(counts.shape[0], counts.shape[1])
    return counts


def _check_assignment(assignment: np.ndarray, num_groups: int) -> np.ndarray:
    assignment = np.asarray(assignment)
    if assignment.ndim != 1 or not np.issubdtype(assignment.dtype, np.integer):
        raise ValueError(f'assignment must be a 1-D integer vector, got {assignment.dtype} {assignment.shape}.')
    if assignment.size and (assignment.min() < 0 or assignment.max() >= num_groups):
        raise ValueError(f'assignment values must lie in [0, {num_groups}), '
                         f'got [{assignment.min()}, {assignment.max()}].')
    return assignment


def _check_lam(lam: float) -> None:
    if not lam >= 0:
        raise ValueError(f'elasso lam must be >= 0, got {lam}.')


def balanced_sizes(num_classes: int, num_groups: int) -> tuple[int, int, int]:
    """(floor(C/K), ceil(C/K), C mod K): the sizes a balanced partition uses, and how many are larger."""
    check_num_groups(num_classes, num_groups)
    small, num_large = divmod(num_classes, num_groups)
    return small, small + (num_large > 0), num_large


def specialty_sizes(assignment: np.ndarray, num_groups: int) -> np.ndarray:
    """int64[K]: number of classes in each specialty."""
    assignment = _check_assignment(assignment, num_groups)
    return np.bincount(assignment, minlength=num_groups)


def matched_count(counts: np.ndarray, assignment: np.ndarray) -> float:
    """sum_i counts[i, l(i)]: images the generalist puts in their class's specialty."""
    counts = np.asarray(counts)
    assignment = _check_assignment(assignment, counts.shape[1])
    return counts[np.arange(counts.shape[0]), assignment].sum().item()


def describe_change(old: np.ndarray, new: np.ndarray, num_groups: int) -> dict[str, Any]:
    """{'moved': classes whose specialty changed, 'sizes': new specialty sizes}."""
    old = _check_assignment(old, num_groups)
    new = _check_assignment(new, num_groups)
    if old.shape != new.shape:
        raise ValueError(f'old and new assignments differ in length: {old.shape} vs {new.shape}.')
    return {'moved': int(np.sum(old != new)),
            'sizes': specialty_sizes(new, num_groups).tolist()}


def specialty_kappa(counts: np.ndarray, assignment: np.ndarray) -> float:
    """Cohen's kappa between each image's true specialty l(class) and the generalist's prediction.

    0 for a generalist at chance (whatever the specialty sizes), 1 when every
    image lands in its class's specialty; read from the C x K count matrix.
    """
    counts, assignment, total, true_share, predicted_share = _specialty_shares(counts, assignment)
    if total == 0:
        return 0.0
    observed = matched_count(counts, assignment) / total
    expected = float(true_share @ predicted_share)
    return float((observed - expected) / (1.0 - expected)) if expected < 1.0 else 0.0


def _specialty_shares(counts: np.ndarray, assignment: np.ndarray):
    """(counts as float, assignment, |S|, true and predicted specialty shares) of a C x K count
    matrix: the margins both kappa and its null spread read (zero shares for an empty S)."""
    counts = _check_counts(counts).astype(np.float64)
    assignment = _check_assignment(assignment, counts.shape[1])
    total = counts.sum()
    true_share = np.bincount(assignment, weights=counts.sum(axis=1), minlength=counts.shape[1]) / max(total, 1)
    return counts, assignment, total, true_share, counts.sum(axis=0) / max(total, 1)


def specialty_kappa_null_std(counts: np.ndarray, assignment: np.ndarray) -> float:
    """The standard deviation of `specialty_kappa` over S's images when the generalist's predictions
    carry no information about the true specialties (the same margins; Fleiss, Cohen & Everitt
    1969): sqrt(p_e + p_e^2 - sum_k t_k q_k (t_k + q_k)) / ((1 - p_e) sqrt(n)), t and q the true and
    predicted specialty shares, p_e = t . q. It shrinks like 1/sqrt(|S|): 1/sqrt(|S| (K-1)) for
    uniform shares, 0.0075 at |S| = 2,000 and K = 10.
    """
    _, _, total, true_share, predicted_share = _specialty_shares(counts, assignment)
    expected = float(true_share @ predicted_share)
    if total == 0 or expected >= 1.0:
        return float('inf')
    variance = expected + expected ** 2 - float(np.sum(true_share * predicted_share * (true_share + predicted_share)))
    return float(np.sqrt(max(variance, 0.0) / total) / (1.0 - expected))


def with_stay_bonus(counts: np.ndarray, assignment: np.ndarray, margin: float) -> np.ndarray:
    """counts + margin * sqrt(row total) on each class's current specialty.

    A class then leaves its specialty only when another holds more of its
    images by more than `margin` times the noise of a count difference
    (sd <= sqrt(row total) for two Poisson counts), so counts at noise level
    never reshuffle the map; 0 disables it.
    """
    counts = _check_counts(counts).astype(np.float64)
    assignment = _check_assignment(assignment, counts.shape[1])
    if margin < 0:
        raise ValueError(f'margin must be >= 0, got {margin}.')
    boosted = counts.copy()
    boosted[np.arange(counts.shape[0]), assignment] += margin * np.sqrt(counts.sum(axis=1))
    return boosted


def scaled_elasso_lam(lam: float, subset_size: int) -> float:
    """elasso's lam for a subset of `subset_size` images, `lam` being stated for |S| = 10,000.

    The cost -sum(M * F) grows with |S| while sqrt(sum n_j^2) does not, so lam
    scales with |S| to keep the same trade-off on any data set.
    """
    _check_lam(lam)
    return lam * subset_size / ELASSO_REFERENCE_SUBSET_SIZE


def partition_nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information (arithmetic mean of entropies) of two labelings of the same items."""
    # Imported here: scikit-learn takes ~2 s to import, and only runs with true groupings ask.
    from sklearn.metrics import normalized_mutual_info_score
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f'labelings must be 1-D of one length, got {a.shape} and {b.shape}.')
    return float(normalized_mutual_info_score(a, b, average_method='arithmetic'))


def greedy(counts: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """l(i) = argmax_j counts[i, j] (the imbalanced baseline); ties go to the lowest index.

    `rng` is unused; it is accepted so every assigner has the same signature.
    """
    del rng
    counts = _check_counts(counts)
    return np.argmax(counts, axis=1).astype(np.int32)


def fully_balanced(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The release's FULLY_BALANCED greedy pass under floor/ceil(C/K) capacities.

    Classes are visited in a fresh random order drawn from `rng`; each takes
    the specialty with the highest count among those not yet full. A
    specialty holds floor(C/K) classes, and may grow to ceil(C/K) only while
    fewer than C mod K specialties have, so exactly C mod K end up larger.
    Tie rule (as the release's stable sort): among equal counts the highest
    specialty index is tried first, so all-zero rows fill specialties from
    the top. Given the class order the result is deterministic.
    """
    # Signed, so negating a count cannot wrap (an unsigned -9 is huge).
    counts = _check_counts(counts).astype(np.float64)
    num_classes, num_groups = counts.shape
    small, _, num_large = balanced_sizes(num_classes, num_groups)
    sizes = np.zeros(num_groups, dtype=np.int64)
    assignment = np.empty(num_classes, dtype=np.int32)
    # lexsort: primary key count (descending), secondary index (descending).
    preference_keys = -np.arange(num_groups)
    for i in rng.permutation(num_classes):
        large_left = num_large - np.sum(sizes > small)
        for j in np.lexsort((preference_keys, -counts[i])):
            if sizes[j] < small or (sizes[j] == small and large_left > 0):
                assignment[i] = j
                sizes[j] += 1
                break
    return assignment


def elasso_objective(counts: np.ndarray, assignment: np.ndarray, lam: float) -> float:
    """lam * sqrt(sum_j n_j^2) - sum_i counts[i, l(i)] (exclusive-lasso cost; lower is better)."""
    counts = np.asarray(counts, dtype=np.float64)
    sizes = specialty_sizes(assignment, counts.shape[1])
    return float(lam * np.sqrt(np.sum(sizes.astype(np.float64) ** 2)) - matched_count(counts, assignment))


def elasso_sweep(counts: np.ndarray, assignment: np.ndarray, lam: float,
                 rng: np.random.Generator) -> np.ndarray:
    """One coordinate-descent sweep: rows in random order, each moved to its best specialty.

    With the other rows fixed, row i costs -counts[i, k] + lam * sqrt(S + 2 n_k + 1)
    (n_k = size of k without i, S = sum_k n_k^2). A row stays where it is
    when that is among the best (so the cost strictly falls whenever a row
    moves and repeated sweeps terminate); otherwise ties go to the lowest k,
    as in the release.
    """
    _check_lam(lam)
    counts = _check_counts(counts).astype(np.float64)
    num_classes, num_groups = counts.shape
    assignment = _check_assignment(assignment, num_groups).astype(np.int32).copy()
    sizes = np.bincount(assignment, minlength=num_groups).astype(np.float64)
    order = rng.permutation(num_classes)
    # Rows that stay leave the sizes as they were, so a block of rows is decided
    # at once up to its first mover, which is applied before the next block.
    start, block = 0, 1
    while start < num_classes:
        rows = order[start:start + block]
        first = _first_elasso_move(counts[rows], assignment[rows], sizes, lam)
        if first is None:
            start, block = start + rows.size, 2 * block
            continue
        row, best = rows[first[0]], first[1]
        sizes[assignment[row]] -= 1
        sizes[best] += 1
        assignment[row] = best
        start, block = start + first[0] + 1, max(2 * first[0], 1)
    return assignment


def _first_elasso_move(counts: np.ndarray, current: np.ndarray, sizes: np.ndarray,
                       lam: float) -> tuple[int, int] | None:
    """(position, new specialty) of the first of these rows that elasso_sweep moves, or None.

    Each row is decided against `sizes` as elasso_sweep would if it came next.
    """
    rows = np.arange(current.size)
    without = sizes - (np.arange(sizes.size) == current[:, None])  # [n, K] sizes without the row
    sum_sq = np.sum(sizes ** 2) - 2 * sizes[current] + 1  # exact: sizes are integers
    cost = -counts + lam * np.sqrt(sum_sq[:, None] + 2 * without + 1)
    best = np.argmin(cost, axis=1)
    moves = np.flatnonzero(cost[rows, current] > cost[rows, best])
    return (int(moves[0]), int(best[moves[0]])) if moves.size else None


def elasso(counts: np.ndarray, rng: np.random.Generator, lam: float,
           sweeps: int | None = None, init: np.ndarray | None = None) -> np.ndarray:
    """Exclusive-lasso specialties: minimise lam*sqrt(sum_j n_j^2) - sum(M*F) by coordinate descent.

    `lam` scales with the counts: with raw counts of about 100-200 images per
    class, lam=1000 is a real trade-off and lam=1 is plain argmax. `init` is
    the current map (the release starts from it); None starts from `greedy`.
    `sweeps=None` sweeps until no row changes (at most ELASSO_MAX_SWEEPS);
    the release does `sweeps=1`. Specialties may end up empty.
    """
    _check_lam(lam)
    counts = _check_counts(counts)
    assignment = greedy(counts) if init is None else _check_assignment(init, counts.shape[1])
    if assignment.shape[0] != counts.shape[0]:
        raise ValueError(f'init has {assignment.shape[0]} classes, counts has {counts.shape[0]}.')
    if sweeps is not None and sweeps < 1:
        raise ValueError(f'sweeps must be >= 1 or None (until convergence), got {sweeps}.')
    for _ in range(ELASSO_MAX_SWEEPS if sweeps is None else sweeps):
        updated = elasso_sweep(counts, assignment, lam, rng)
        converged = np.array_equal(updated, assignment)
        assignment = updated
        if converged:  # A sweep that moves nothing will never move anything.
            break
    return assignment.astype(np.int32)


def optimal_balanced(counts: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """The exact maximiser of matched count under fully_balanced's size constraint.

    A min-cost flow from C classes into K specialties (floor(C/K) each, plus
    one extra slot in C mod K of them), solved on a K + 1 node graph so that
    it scales with C * K rather than C^2: every class starts in its best
    specialty under balancing prices (an optimal map for the sizes it has),
    then successive shortest paths move the remaining excess along the
    cheapest chains of class moves. `rng` is unused (the solver is
    deterministic); it keeps the signature uniform.
    """
    del rng
    counts = _check_counts(counts).astype(np.float64)
    num_classes, num_groups = counts.shape
    small, _, num_large = balanced_sizes(num_classes, num_groups)
    prices, assignment = _balancing_prices(counts, small)
    sizes = np.bincount(assignment, minlength=num_groups)
    # The extra slots go to the dearest specialties, so moving one to a cheaper
    # specialty is never a negative cycle: the start is optimal for its imbalances.
    has_extra = np.zeros(num_groups, dtype=bool)
    has_extra[np.lexsort((-sizes, -prices))[:num_large]] = True
    # Node num_groups is the pool of extra slots: a -> pool takes one, pool -> b gives b's back.
    pool = num_groups
    cost = np.full((num_groups + 1, num_groups + 1), np.inf)
    for g in range(num_groups):
        cost[g, :pool] = _cheapest_moves(counts, assignment, g)
    tolerance = 1e-9 * (1.0 + np.abs(counts).max())  # float counts (stay bonus): rounding is no cycle
    while np.any(imbalance := sizes - small - has_extra):
        cost[:pool, pool] = np.where(has_extra, np.inf, 0.0)
        cost[pool, :pool] = np.where(has_extra, 0.0, np.inf)
        path = _shortest_path(cost, np.append(imbalance > 0, False), np.append(imbalance < 0, False),
                              tolerance)
        edges = list(zip(path, path[1:]))
        moves = [(a, b, _tied_movers(counts, assignment, a, b, cost[a, b])) for a, b in edges
                 if pool not in (a, b)]
        # Path lengths never fall between augmentations, so as long as every
        # step has another class at the same loss the path is still shortest.
        amount = 1 if pool in path else min(imbalance[path[0]], -imbalance[path[-1]],
                                             *(movers.size for _, _, movers in moves))
        for a, b in edges:
            if b == pool:
                has_extra[a] = True
            elif a == pool:
                has_extra[b] = False
        for a, b, movers in moves:
            assignment[movers[:amount]] = b
            sizes[a] -= amount
            sizes[b] += amount
        for g in {g for a, b, _ in moves for g in (a, b)}:
            cost[g, :pool] = _cheapest_moves(counts, assignment, g)
    return assignment.astype(np.int32)


def _best_with_rotated_ties(values: np.ndarray) -> np.ndarray:
    """argmax of each row; row i breaks ties by the first maximum at or after column i mod K.

    Any tied choice is optimal; rotating it spreads rows that tie everywhere
    evenly instead of piling them on column 0.
    """
    num_rows, num_cols = values.shape
    tied = values == values.max(axis=1, keepdims=True)
    rank = (np.arange(num_cols)[None, :] - np.arange(num_rows)[:, None]) % num_cols
    return np.argmin(np.where(tied, rank, num_cols), axis=1)


def _overflow(assignment: np.ndarray, num_groups: int, capacity: int) -> int:
    return int(np.maximum(np.bincount(assignment, minlength=num_groups) - capacity, 0).sum())


def _balancing_prices(counts: np.ndarray, small: int) -> tuple[np.ndarray, np.ndarray]:
    """(prices[K], map): each class in a best specialty of counts - prices, and few over ceil(C/K).

    Repeatedly raises the price of the fullest specialty until only ceil(C/K)
    of its classes still prefer it, the others moving to their next best.
    Stops when that no longer reduces the overflow (specialties that tie for
    the same classes need a joint rise, which the shortest paths then do).
    """
    num_groups = counts.shape[1]
    prices = np.zeros(num_groups)
    assignment = _best_with_rotated_ties(counts)
    overflow = _overflow(assignment, num_groups, small + 1)
    while overflow:
        group = int(np.argmax(np.bincount(assignment, minlength=num_groups)))
        members = np.flatnonzero(assignment == group)
        values = counts[members] - prices  # [m, K]
        values[:, group] = -np.inf
        alternative = _best_with_rotated_ties(values)
        # The price of `group` at which each member becomes indifferent to its alternative.
        threshold = counts[members, group] - values[np.arange(members.size), alternative]
        order = np.argsort(-threshold, kind='stable')
        leaving = order[small + 1:]
        moved = assignment.copy()
        moved[members[leaving]] = alternative[leaving]
        moved_overflow = _overflow(moved, num_groups, small + 1)
        if moved_overflow >= overflow:
            break
        prices[group] = threshold[order[small + 1]]
        assignment, overflow = moved, moved_overflow
    return prices, assignment


def _cheapest_moves(counts: np.ndarray, assignment: np.ndarray, group: int) -> np.ndarray:
    """[K]: the least matched count lost by moving one class of `group` to each specialty."""
    members = np.flatnonzero(assignment == group)
    if members.size == 0:
        return np.full(counts.shape[1], np.inf)
    loss = np.min(counts[members, group][:, None] - counts[members], axis=0)
    loss[group] = np.inf
    return loss


def _tied_movers(counts: np.ndarray, assignment: np.ndarray, a: int, b: int, loss: float) -> np.ndarray:
    """Classes of specialty a whose move to b loses exactly `loss`."""
    members = np.flatnonzero(assignment == a)
    return members[counts[members, a] - counts[members, b] == loss]


def _shortest_path(cost: np.ndarray, sources: np.ndarray, sinks: np.ndarray, tolerance: float) -> list[int]:
    """Nodes of a cheapest path from any source to any sink (Bellman-Ford; `cost` has no negative cycle)."""
    num_nodes = cost.shape[0]
    dist = np.where(sources, 0.0, np.inf)
    parent = np.full(num_nodes, -1)
    nodes = np.arange(num_nodes)
    for _ in range(num_nodes):
        via = np.argmin(dist[:, None] + cost, axis=0)
        through = dist[via] + cost[via, nodes]
        shorter = through < dist - tolerance
        if not shorter.any():
            break
        dist[shorter] = through[shorter]
        parent[shorter] = via[shorter]
    node = int(np.argmin(np.where(sinks, dist, np.inf)))
    path = [node]
    while parent[node] >= 0:
        node = int(parent[node])
        path.append(node)
    return path[::-1]


def random_balanced(num_classes: int, num_groups: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random balanced partition (sizes floor/ceil(C/K); which specialties are larger is random too)."""
    check_num_groups(num_classes, num_groups)
    relabel = rng.permutation(num_groups)
    return rng.permutation(relabel[np.arange(num_classes) % num_groups]).astype(np.int32)


def shuffled_partition(assignment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``assignment`` with its classes permuted at random: every specialty keeps its size, and
    which classes share one is left to chance (the control for a learned partition)."""
    return rng.permutation(np.asarray(assignment)).astype(np.int32)


def spectral_specialties(confusion: np.ndarray | sps.sparray, num_groups: int, rng: np.random.Generator,
                         balanced: bool = False) -> np.ndarray:
    """Spectral clustering of the symmetrised, row-normalised C x C confusion matrix (paper's baseline).

    Rows are normalised first so every class weighs the same whatever its
    number of images; the diagonal (correct predictions) is dropped as it
    says nothing about which classes go together. `balanced=False` keeps
    k-means' sizes (the paper's baseline); `balanced=True` assigns the
    spectral embedding under fully_balanced's floor/ceil(C/K) capacities.
    Above clustering.DENSE_EIGH_MAX_POINTS classes (or for a scipy.sparse
    confusion) the affinity is sparse, each class keeping its
    clustering.SPARSE_NEIGHBORS most confused classes; a confusion counted
    from a subset S has fewer than that per row, so nothing is lost.
    """
    if not sps.issparse(confusion):
        confusion = np.asarray(confusion)
    num_classes = _check_confusion(confusion)
    check_num_groups(num_classes, num_groups)
    if sps.issparse(confusion) or num_classes > clustering.DENSE_EIGH_MAX_POINTS:
        affinity = _sparse_confusion_affinity(confusion)
    else:
        confusion = np.asarray(confusion, dtype=np.float64)
        row_sums = confusion.sum(axis=1, keepdims=True)
        rates = np.divide(confusion, row_sums, out=np.zeros_like(confusion), where=row_sums > 0)
        affinity = (rates + rates.T) / 2
        np.fill_diagonal(affinity, 0.0)
    if not balanced:
        return clustering.spectral_clustering(affinity, num_groups, rng).astype(np.int32)
    embedding = clustering.spectral_embedding(affinity, num_groups)
    return balanced_kmeans(embedding, clustering.kmeans(embedding, num_groups, rng), num_groups)


def _check_confusion(confusion: np.ndarray | sps.sparray) -> int:
    """C, after checking that `confusion` is C x C with finite entries (a NaN row is refused, not zeroed)."""
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f'confusion must be a C x C matrix, got shape {confusion.shape}.')
    if sps.issparse(confusion):
        coo = sps.coo_array(confusion)
        bad = coo.row[~np.isfinite(coo.data)]
    elif np.issubdtype(np.asarray(confusion).dtype, np.inexact):
        bad = np.flatnonzero(~np.all(np.isfinite(confusion), axis=1))
    else:  # integers are always finite; checking would copy a C x C array
        bad = np.array([], dtype=np.int64)
    if bad.size:
        raise ValueError(f'confusion row {int(bad.min())} contains NaN or inf; '
                         'a class with undefined counts cannot be placed.')
    return confusion.shape[0]


def _sparse_confusion_affinity(confusion: np.ndarray | sps.sparray) -> sps.csr_array:
    """The dense path's affinity (rates + rates^T) / 2, off-diagonal, built sparse."""
    confusion = sps.csr_array(confusion, dtype=np.float64)
    row_sums = np.asarray(confusion.sum(axis=1)).ravel()
    inverse = np.divide(1.0, row_sums, out=np.zeros_like(row_sums), where=row_sums > 0)
    rates = sps.csr_array(sps.diags_array(inverse) @ confusion)
    rates.setdiag(0.0)
    rates.eliminate_zeros()
    return clustering.knn_sparsify(rates, clustering.SPARSE_NEIGHBORS)


def balanced_kmeans(points: np.ndarray, labels: np.ndarray, num_groups: int) -> np.ndarray:
    """Lloyd's iterations from `labels` whose assignment step is `optimal_balanced` (sizes floor/ceil(n/K)).

    Each step assigns the points to the centres with the least total squared
    distance under the capacities, so the cost never increases; stops when
    nothing moves (at most BALANCED_KMEANS_MAX_ITERS steps).
    """
    points = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels)
    for _ in range(BALANCED_KMEANS_MAX_ITERS):
        centers = np.stack([points[labels == k].mean(axis=0) if np.any(labels == k)
                            else np.zeros(points.shape[1]) for k in range(num_groups)])
        updated = optimal_balanced(-clustering.squared_distances(points, centers))
        if np.array_equal(updated, labels):
            break
        labels = updated
    return labels.astype(np.int32)


def wordnet_specialties(class_synsets: Sequence[Any], num_groups: int) -> np.ndarray:
    """Cut the classes' WordNet hypernym tree into exactly K branches (the paper's ImageNet baseline).

    Each class uses its longest hypernym path (root -> class; the first such
    path on ties), and the paths form a prefix tree. Rule to reach exactly K:
    take the deepest cut with at most K branches; while there are fewer than
    K groups, split the largest group (first in class order on ties) at the
    next depth where its classes diverge; when that gives more parts than
    needed, keep the largest parts (ties: first in class order) and merge the
    rest into one group. Group ids follow the first class of each group.
    """
    num_classes = len(class_synsets)
    check_num_groups(num_classes, num_groups)
    paths = [tuple(max(synset.hypernym_paths(), key=len)) for synset in class_synsets]
    if len(set(paths)) < num_groups:
        raise ValueError(f'Only {len(set(paths))} distinct synsets among the classes; '
                         f'cannot form K={num_groups} WordNet groups.')
    max_depth = max(len(path) for path in paths)
    depth = max((d for d in range(max_depth) if len(_branches(paths, range(num_classes), d)) <= num_groups),
                default=None)
    if depth is None:
        raise ValueError(f'The classes\' synsets have more than K={num_groups} distinct roots; '
                         'use noun synsets (one WordNet root) or a larger K.')
    groups = [(depth, members) for members in _branches(paths, range(num_classes), depth)]
    while len(groups) < num_groups:
        splittable = [g for g in groups if len({paths[i] for i in g[1]}) > 1]
        depth, members = max(splittable, key=lambda g: (len(g[1]), -g[1][0]))
        groups.remove((depth, members))
        parts = _branches(paths, members, depth + 1)
        while len(parts) == 1:  # Single-child chain: descend until the classes diverge.
            depth += 1
            parts = _branches(paths, members, depth + 1)
        needed = num_groups - len(groups)
        if len(parts) > needed:
            parts.sort(key=lambda p: (-len(p), p[0]))
            parts = parts[:needed - 1] + [sorted(i for p in parts[needed - 1:] for i in p)]
        groups.extend((depth + 1, part) for part in parts)
    assignment = np.empty(num_classes, dtype=np.int32)
    for group_id, (_, members) in enumerate(sorted(groups, key=lambda g: g[1][0])):
        assignment[members] = group_id
    return assignment


def _branches(paths: Sequence[tuple], members: Sequence[int], depth: int) -> list[list[int]]:
    """Members grouped by their path prefix down to `depth` (a shorter path is its own branch)."""
    branches: dict[tuple, list[int]] = {}
    for i in members:
        branches.setdefault(paths[i][:depth + 1], []).append(i)
    return list(branches.values())


def save_partition(path: str | os.PathLike, assignment: np.ndarray) -> None:
    """Writes one specialty id per line, class by class (the release's mapping-file layout)."""
    assignment = np.asarray(assignment)
    _check_assignment(assignment, int(assignment.max(initial=0)) + 1)
    with open(path, 'w') as f:
        f.write(''.join(f'{int(k)}\n' for k in assignment))


def load_partition(path: str | os.PathLike, num_classes: int, num_groups: int | None = None) -> np.ndarray:
    """Reads a class -> specialty map: one id per line, or the release's one-line digit string (K <= 10)."""
    with open(paths.expand(path)) as f:
        lines = [line.strip() for line in f if line.strip()]
    if len(lines) == 1 and len(lines[0]) == num_classes and lines[0].isdigit():
        tokens = list(lines[0])
    else:
        tokens = lines
    if len(tokens) != num_classes:
        raise ValueError(f'{path}: expected {num_classes} specialty ids (one per line, one per class), '
                         f'found {len(tokens)}.')
    bad = [(n + 1, t) for n, t in enumerate(tokens) if not t.isdigit()]
    if bad:
        raise ValueError(f'{path}: entry {bad[0][0]} is {bad[0][1]!r}, not a non-negative integer specialty id.')
    assignment = np.array([int(t) for t in tokens], dtype=np.int32)
    if num_groups is not None:
        check_num_groups(num_classes, num_groups)
        if assignment.max() >= num_groups:
            raise ValueError(f'{path}: specialty id {assignment.max()} is out of range for K={num_groups}.')
    return assignment


Assigner = Callable[..., np.ndarray]

ASSIGNERS: dict[str, Assigner] = {
    'fully_balanced': fully_balanced,
    'elasso': elasso,
    'greedy': greedy,
    'optimal_balanced': optimal_balanced,
}


def assign(method: str, counts: np.ndarray, rng: np.random.Generator, **options: Any) -> np.ndarray:
    """Runs the count-matrix assigner `method` (a key of ASSIGNERS) with its options (e.g. lam for elasso)."""
    if method not in ASSIGNERS:
        raise ValueError(f'Unknown specialty method {method!r}; valid: {sorted(ASSIGNERS)}.')
    return ASSIGNERS[method](counts, rng, **options)
