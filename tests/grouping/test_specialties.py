"""Tests for nofe_jax.grouping.specialties and confusion."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sps

from nofe_jax.grouping import clustering, confusion, specialties as sp


def _assert_partition(assignment, num_classes, num_groups):
    assert assignment.shape == (num_classes,)
    assert np.issubdtype(assignment.dtype, np.integer)
    assert assignment.min() >= 0 and assignment.max() < num_groups


def _assert_balanced(assignment, num_classes, num_groups):
    sizes = np.bincount(assignment, minlength=num_groups)
    small, num_large = divmod(num_classes, num_groups)
    assert sizes.min() >= small and sizes.max() <= small + 1
    assert np.sum(sizes == small + 1) == num_large


@pytest.mark.parametrize('num_classes,num_groups', [(100, 10), (23, 5), (7, 7), (10, 1), (11, 3)])
def test_every_assigner_returns_partition(num_classes, num_groups):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 30, size=(num_classes, num_groups))
    for method in sp.ASSIGNERS:
        options = {'lam': 100.0} if method == 'elasso' else {}
        _assert_partition(sp.assign(method, counts, rng, **options), num_classes, num_groups)
    for method in ('fully_balanced', 'optimal_balanced'):
        _assert_balanced(sp.assign(method, counts, rng), num_classes, num_groups)
    _assert_balanced(sp.random_balanced(num_classes, num_groups, rng), num_classes, num_groups)


def test_random_balanced_larger_specialties_vary():
    larger = {tuple(np.bincount(sp.random_balanced(11, 4, np.random.default_rng(s)), minlength=4))
              for s in range(20)}
    assert len(larger) > 1


def test_shuffled_partition_keeps_the_sizes_and_moves_the_classes():
    assignment = np.repeat(np.arange(5), [1, 2, 3, 4, 10])
    shuffled = sp.shuffled_partition(assignment, np.random.default_rng(0))
    _assert_partition(shuffled, 20, 5)
    np.testing.assert_array_equal(np.bincount(shuffled, minlength=5), [1, 2, 3, 4, 10])
    assert np.any(shuffled != assignment)


class _InOrder:
    """An rng stand-in that visits classes in order 0, 1, ... (fully_balanced only calls permutation)."""

    def permutation(self, n):
        return np.arange(n)


@pytest.mark.parametrize('counts,expected', [
    # C=6, K=3, capacity 2. Row 0 ties 0/1 -> 1 (highest index first); row 1
    # likewise -> 1, now full; row 2 all zero -> 2; row 3 -> 0; row 4 all
    # zero -> 2, now full; row 5 ties everywhere -> 0, the only one with room.
    ([[5, 5, 0], [5, 5, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0], [9, 9, 9]], [1, 1, 2, 0, 2, 0]),
    # C=7, K=3: one specialty may hold 3. Specialty 0 takes the larger slot,
    # so 1 then caps at 2 and the rest spill to 2.
    ([[9, 5, 1]] * 7, [0, 0, 0, 1, 1, 2, 2]),
    # C=5, K=2: 0 and 1 reach 2 each; the tie in row 4 gives 1 the larger slot.
    ([[9, 1], [8, 2], [1, 9], [2, 8], [5, 5]], [0, 0, 1, 1, 1]),
])
def test_fully_balanced_hand_computed(counts, expected):
    np.testing.assert_array_equal(sp.fully_balanced(np.array(counts), _InOrder()), expected)


def test_fully_balanced_visits_classes_in_rng_order():
    # Both classes want specialty 0 (capacity 1): whoever comes first gets it.
    counts = np.array([[5, 0], [5, 0]])
    for seed in range(6):
        first = np.random.default_rng(seed).permutation(2)[0]
        result = sp.fully_balanced(counts, np.random.default_rng(seed))
        assert result[first] == 0 and result[1 - first] == 1


def test_fully_balanced_deterministic_given_rng():
    counts = np.random.default_rng(1).integers(0, 5, size=(30, 4))
    a = sp.fully_balanced(counts, np.random.default_rng(7))
    b = sp.fully_balanced(counts, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def _brute_force_balanced(counts):
    num_classes, num_groups = counts.shape
    small, num_large = divmod(num_classes, num_groups)
    best = -np.inf
    for labels in itertools.product(range(num_groups), repeat=num_classes):
        sizes = np.bincount(labels, minlength=num_groups)
        if sizes.min() >= small and sizes.max() <= small + 1 and np.sum(sizes > small) == num_large:
            best = max(best, counts[np.arange(num_classes), labels].sum())
    return best


@pytest.mark.parametrize('num_classes,num_groups', [(6, 3), (7, 3), (5, 2)])
def test_optimal_balanced_matches_brute_force(num_classes, num_groups):
    rng = np.random.default_rng(num_classes)
    for _ in range(5):
        counts = rng.integers(0, 20, size=(num_classes, num_groups))
        result = sp.optimal_balanced(counts)
        _assert_balanced(result, num_classes, num_groups)
        assert sp.matched_count(counts, result) == _brute_force_balanced(counts)


def test_optimal_balanced_beats_fully_balanced():
    rng = np.random.default_rng(0)
    strictly = 0
    for trial in range(50):
        num_classes, num_groups = (30, 5) if trial % 2 else (23, 4)
        counts = rng.integers(0, 50, size=(num_classes, num_groups))
        opt = sp.matched_count(counts, sp.optimal_balanced(counts))
        greedy_pass = sp.matched_count(counts, sp.fully_balanced(counts, rng))
        assert opt >= greedy_pass
        strictly += opt > greedy_pass
    assert strictly > 0


def _elasso_costs_per_sweep(counts, lam, seed, num_sweeps):
    rng = np.random.default_rng(seed)
    assignment = sp.random_balanced(counts.shape[0], counts.shape[1], rng)
    costs = [sp.elasso_objective(counts, assignment, lam)]
    for _ in range(num_sweeps):
        assignment = sp.elasso_sweep(counts, assignment, lam, rng)
        costs.append(sp.elasso_objective(counts, assignment, lam))
    return costs


@pytest.mark.parametrize('lam', [0.0, 10.0, 1000.0, 1e5])
def test_elasso_objective_never_increases(lam):
    counts = np.random.default_rng(2).integers(0, 200, size=(40, 6))
    costs = _elasso_costs_per_sweep(counts, lam, seed=3, num_sweeps=8)
    assert all(b <= a + 1e-9 for a, b in zip(costs, costs[1:]))
    assert costs[-1] < costs[0]


def test_elasso_small_lambda_is_greedy():
    rng = np.random.default_rng(0)
    counts = rng.permuted(np.tile(np.arange(8) * 10, (25, 1)), axis=1)  # Unique argmax per row.
    init = sp.random_balanced(25, 8, rng)
    np.testing.assert_array_equal(sp.elasso(counts, rng, lam=1e-6, init=init), sp.greedy(counts))
    np.testing.assert_array_equal(sp.elasso(counts, rng, lam=1e-6), sp.greedy(counts))


def test_elasso_large_lambda_balances():
    counts = np.zeros((23, 4))
    counts[:, 0] = 100  # Everyone prefers specialty 0.
    result = sp.elasso(counts, np.random.default_rng(0), lam=1e6)
    sizes = np.bincount(result, minlength=4)
    assert sizes.max() - sizes.min() <= 1


def test_elasso_deterministic_and_default_converges():
    counts = np.random.default_rng(4).integers(0, 200, size=(50, 5))
    a = sp.elasso(counts, np.random.default_rng(9), lam=1000.0)
    b = sp.elasso(counts, np.random.default_rng(9), lam=1000.0)
    np.testing.assert_array_equal(a, b)
    # Converged: one more sweep moves nothing.
    np.testing.assert_array_equal(sp.elasso_sweep(counts, a, 1000.0, np.random.default_rng(1)), a)


def test_elasso_one_sweep_release_mode():
    counts = np.random.default_rng(4).integers(0, 200, size=(50, 5))
    init = sp.random_balanced(50, 5, np.random.default_rng(0))
    one = sp.elasso(counts, np.random.default_rng(2), lam=1000.0, sweeps=1, init=init)
    np.testing.assert_array_equal(one, sp.elasso_sweep(counts, init, 1000.0, np.random.default_rng(2)))


def test_elasso_objective_value():
    counts = np.array([[3, 1], [2, 4], [5, 0]])
    assignment = np.array([0, 1, 0])
    assert sp.elasso_objective(counts, assignment, 2.0) == pytest.approx(2.0 * np.sqrt(5) - 12)


def test_greedy_is_argmax():
    counts = np.array([[1, 5, 2], [7, 0, 7], [0, 0, 1]])
    np.testing.assert_array_equal(sp.greedy(counts), [1, 0, 2])


def test_spectral_specialties_recovers_blocks():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 5)
    confusion_counts = rng.integers(0, 2, size=(20, 20)) + 30 * (truth[:, None] == truth[None, :])
    labels = sp.spectral_specialties(confusion_counts, 4, rng)
    _assert_partition(labels, 20, 4)
    assert len({(t, l) for t, l in zip(truth, labels)}) == 4


@pytest.mark.parametrize('call', [
    lambda: sp.fully_balanced(np.ones((3, 5)), np.random.default_rng(0)),
    lambda: sp.optimal_balanced(np.ones((3, 5))),
    lambda: sp.random_balanced(3, 5, np.random.default_rng(0)),
    lambda: sp.random_balanced(3, 0, np.random.default_rng(0)),
])
def test_too_many_groups_raises(call):
    with pytest.raises(ValueError, match='Choose K <= C'):
        call()


def test_assign_unknown_method_lists_valid():
    with pytest.raises(ValueError, match='fully_balanced'):
        sp.assign('kmeans', np.ones((4, 2)), np.random.default_rng(0))


def test_describe_change_and_sizes():
    change = sp.describe_change(np.array([0, 1, 1, 2]), np.array([0, 2, 1, 2]), 3)
    assert change == {'moved': 1, 'sizes': [1, 1, 2]}
    np.testing.assert_array_equal(sp.specialty_sizes(np.array([2, 2, 0]), 4), [1, 0, 2, 0])


def test_partition_round_trip(tmp_path):
    assignment = sp.random_balanced(100, 20, np.random.default_rng(0))
    sp.save_partition(tmp_path / 'map.txt', assignment)
    np.testing.assert_array_equal(sp.load_partition(tmp_path / 'map.txt', 100, 20), assignment)
    assert (tmp_path / 'map.txt').read_text().splitlines()[:2] == [str(a) for a in assignment[:2]]


def test_load_release_digit_string(tmp_path):
    release = '9357591259259878476435612811844529678060943680355428928010291391142073367104706774522680170856363493'
    (tmp_path / 'random10.txt').write_text(release + '\n')
    loaded = sp.load_partition(tmp_path / 'random10.txt', 100, 10)
    assert loaded[0] == 9 and loaded[99] == 3
    np.testing.assert_array_equal(np.bincount(loaded), [10] * 10)


@pytest.mark.parametrize('text,message', [
    ('0\n1\n', 'expected 3 specialty ids'),
    ('0\n1\nx\n', "entry 3 is 'x'"),
    ('0\n-1\n2\n', "entry 2 is '-1'"),
    ('0\n1\n7\n', 'out of range for K=3'),
])
def test_load_partition_errors(tmp_path, text, message):
    (tmp_path / 'bad.txt').write_text(text)
    with pytest.raises(ValueError, match=message):
        sp.load_partition(tmp_path / 'bad.txt', 3, 3)


def test_count_matrix_and_mask():
    true = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([1, 1, 0, 1, 0, 1])
    counts = confusion.count_matrix(true, pred, 3, 2)
    np.testing.assert_array_equal(counts, [[0, 2], [1, 0], [1, 2]])
    assert counts.dtype == np.int64
    masked = confusion.count_matrix(true, pred, 3, 2, weights=np.array([1, 1, 1, 1, 1, 0]))
    np.testing.assert_array_equal(masked, [[0, 2], [1, 0], [1, 1]])
    np.testing.assert_array_equal(confusion.confusion_matrix(true, true, 3), np.diag([2, 1, 3]))
    with pytest.raises(ValueError, match=r'\[0, 2\)'):
        confusion.count_matrix(true, pred + 1, 3, 2)


def _memorised_confusion(truth, rng, diagonal=200):
    """Counts of a model that is right on most images and confuses classes only inside their block."""
    num = truth.size
    counts = rng.integers(0, 2, size=(num, num)) + 12 * (truth[:, None] == truth[None, :])
    return counts + diagonal * np.eye(num, dtype=counts.dtype)


@pytest.mark.parametrize('sizes', [[5, 5, 5, 5], [8, 3, 6, 3]])
def test_balanced_spectral_recovers_equal_blocks_and_balances_unequal_ones(sizes):
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    labels = sp.spectral_specialties(_memorised_confusion(truth, rng), 4, rng, balanced=True)
    _assert_partition(labels, 20, 4)
    assert sorted(np.bincount(labels, minlength=4)) == [5, 5, 5, 5]
    if len(set(sizes)) == 1:  # equal blocks: recovered exactly
        assert len({(t, l) for t, l in zip(truth, labels)}) == 4


def test_unbalanced_spectral_keeps_block_sizes():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), [8, 3, 6, 3])
    labels = sp.spectral_specialties(_memorised_confusion(truth, rng), 4, rng)
    assert sorted(np.bincount(labels, minlength=4)) == [3, 3, 6, 8]


def test_balanced_kmeans_cost_never_exceeds_its_start():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(30, 3))
    start = sp.optimal_balanced(-rng.random((30, 5)))
    labels = sp.balanced_kmeans(points, start, 5)
    def cost(l):
        return sum(((points[l == k] - points[l == k].mean(0)) ** 2).sum() for k in range(5))
    assert cost(labels) <= cost(start) + 1e-9
    assert sorted(np.bincount(labels)) == [6] * 5


def test_specialty_kappa_hand_computed():
    # 2 classes, K=2, map [0, 1]: 8 of 10 images land in their specialty.
    counts = np.array([[4, 1], [1, 4]])
    # observed 0.8, expected 0.5 * 0.5 + 0.5 * 0.5 = 0.5 -> kappa 0.6
    assert sp.specialty_kappa(counts, np.array([0, 1])) == pytest.approx(0.6)
    assert sp.specialty_kappa(counts, np.array([1, 0])) == pytest.approx(-0.6)
    assert sp.specialty_kappa(np.zeros((2, 2), int), np.array([0, 1])) == 0.0


def test_specialty_kappa_near_zero_for_a_generalist_at_chance():
    rng = np.random.default_rng(0)
    assignment = sp.random_balanced(100, 10, rng)
    counts = np.stack([rng.multinomial(100, np.full(10, 0.1)) for _ in range(100)])
    assert abs(sp.specialty_kappa(counts, assignment)) < 0.02


def test_kappa_null_std_hand_computed_for_uniform_shares():
    # 2 classes, K=2, 10 images, shares 1/2 both ways: p_e = 1/2, sum t q (t + q) = 2 * 1/4 * 1 = 1/2
    # -> sqrt(1/2 + 1/4 - 1/2) / (1/2 * sqrt(10)) = 1/sqrt(10) = 1/sqrt(n (K-1)).
    counts = np.array([[4, 1], [1, 4]])
    assert sp.specialty_kappa_null_std(counts, np.array([0, 1])) == pytest.approx(1 / np.sqrt(10))
    assert sp.specialty_kappa_null_std(np.zeros((2, 2), int), np.array([0, 1])) == np.inf


def test_kappa_null_std_is_the_spread_of_kappa_at_chance_and_separates_a_weak_signal():
    rng = np.random.default_rng(0)
    assignment = sp.random_balanced(1000, 10, rng)
    labels = np.repeat(np.arange(1000), 2)  # |S| = 2,000: two images per class, as on the tuples
    def counts_of(predicted):
        counts = np.zeros((1000, 10), np.int64)
        np.add.at(counts, (labels, predicted), 1)
        return counts
    at_chance = [counts_of(rng.integers(0, 10, labels.size)) for _ in range(300)]
    kappas = [sp.specialty_kappa(c, assignment) for c in at_chance]
    std = sp.specialty_kappa_null_std(at_chance[0], assignment)
    assert std == pytest.approx(1 / np.sqrt(2000 * 9), rel=0.05)
    assert np.std(kappas) == pytest.approx(std, rel=0.15)
    assert np.mean(np.array(kappas) > 3 * std) < 0.01  # the gate's false alarms at chance
    # A generalist right on 15% of S instead of 10% (kappa about 0.06, the tuples' first update)
    # is far outside the noise, though below a fixed 0.1.
    weak = np.where(rng.random(labels.size) < 0.056, assignment[labels], rng.integers(0, 10, labels.size))
    kappa = sp.specialty_kappa(counts_of(weak), assignment)
    assert 0.03 < kappa < 0.1 and kappa > 3 * std


def test_stay_bonus_keeps_the_map_under_noise_and_still_follows_signal():
    rng = np.random.default_rng(0)
    current = sp.random_balanced(100, 10, rng)
    # A generalist that learned the current map but is noisy: 30% of each class in its specialty.
    probs = np.full((100, 10), 0.7 / 9)
    probs[np.arange(100), current] = 0.3
    noisy = np.stack([rng.multinomial(100, p) for p in probs])
    for assigner in ('fully_balanced', 'optimal_balanced'):
        kept = sp.assign(assigner, sp.with_stay_bonus(noisy, current, 1.0), rng)
        assert np.array_equal(kept, current)
    # Two classes whose images clearly land in each other's specialty do swap.
    a, b = np.flatnonzero(current == 0)[0], np.flatnonzero(current == 1)[0]
    signal = noisy.copy()
    signal[a], signal[b] = 0, 0
    signal[a, 1], signal[b, 0] = 90, 90
    moved = sp.optimal_balanced(sp.with_stay_bonus(signal, current, 1.0))
    assert (moved[a], moved[b]) == (1, 0)
    assert np.sum(moved != current) == 2


def test_stay_bonus_values():
    counts = np.array([[9, 0], [16, 9]])
    boosted = sp.with_stay_bonus(counts, np.array([1, 0]), 2.0)
    assert boosted.tolist() == [[9, 6], [16 + 10, 9]]
    with pytest.raises(ValueError, match='margin'):
        sp.with_stay_bonus(counts, np.array([1, 0]), -1.0)


def test_elasso_lam_scales_with_the_subset_size():
    assert sp.scaled_elasso_lam(1000.0, 10_000) == 1000.0
    assert sp.scaled_elasso_lam(1000.0, 2_000) == 200.0
    # Same trade-off: counts from 5x fewer images with lam / 5 give the same specialties.
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 60, size=(30, 5)) * 5
    big = sp.elasso(counts, np.random.default_rng(1), lam=sp.scaled_elasso_lam(1000.0, 10_000))
    small = sp.elasso(counts // 5, np.random.default_rng(1), lam=sp.scaled_elasso_lam(1000.0, 2_000))
    assert np.array_equal(big, small)
    with pytest.raises(ValueError, match='lam'):
        sp.scaled_elasso_lam(-1.0, 100)


def test_partition_nmi():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert sp.partition_nmi(a, np.array([5, 5, 3, 3, 4, 4])) == pytest.approx(1.0)  # a relabelling
    assert sp.partition_nmi(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(0.0)
    # I = ln 2 - ... by hand: joint {(0,0):2,(1,0):1,(1,1):1}/4
    x, y = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])
    h = lambda p: -sum(q * np.log(q) for q in p)
    mutual = h([0.5, 0.5]) + h([0.75, 0.25]) - h([0.5, 0.25, 0.25])
    assert sp.partition_nmi(x, y) == pytest.approx(mutual / ((h([0.5, 0.5]) + h([0.75, 0.25])) / 2))


def _slot_assignment_optimal_balanced(counts):
    """The previous solver, kept as a reference: Hungarian on C x (K * ceil(C/K)) capacity slots."""
    from scipy.optimize import linear_sum_assignment
    counts = np.asarray(counts, dtype=np.float64)
    num_classes, num_groups = counts.shape
    small, large, _ = sp.balanced_sizes(num_classes, num_groups)
    slot_group = np.repeat(np.arange(num_groups), large)
    slot_rank = np.tile(np.arange(large), num_groups)
    bonus = 2.0 * np.abs(counts).sum() + 1.0
    rows, cols = linear_sum_assignment(counts[:, slot_group] + bonus * (slot_rank < small), maximize=True)
    assignment = np.empty(num_classes, dtype=np.int32)
    assignment[rows] = slot_group[cols]
    return assignment


@pytest.mark.parametrize('kind', ['few_values', 'wide_ints', 'floats', 'one_favourite', 'identical_rows'])
def test_optimal_balanced_matches_the_slot_solver(kind):
    rng = np.random.default_rng(len(kind))
    for _ in range(40):
        num_classes = int(rng.integers(2, 90))
        num_groups = int(rng.integers(1, min(num_classes, 12) + 1))
        shape = (num_classes, num_groups)
        counts = {'few_values': lambda: rng.integers(0, 3, size=shape),  # many ties
                  'wide_ints': lambda: rng.integers(0, 200, size=shape),
                  'floats': lambda: rng.normal(size=shape) * 30,  # negative too, as balanced_kmeans passes
                  'one_favourite': lambda: rng.integers(0, 5, size=shape) + 50 * (np.arange(num_groups) == 0),
                  'identical_rows': lambda: np.tile(rng.integers(0, 4, size=num_groups), (num_classes, 1)),
                  }[kind]()
        result = sp.optimal_balanced(counts)
        assert result.dtype == np.int32
        _assert_balanced(result, num_classes, num_groups)
        expected = sp.matched_count(counts, _slot_assignment_optimal_balanced(counts))
        assert sp.matched_count(counts, result) == pytest.approx(expected, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize('num_classes,num_groups', [(6, 3), (7, 3), (5, 2), (7, 4)])
def test_optimal_balanced_matches_brute_force_on_floats(num_classes, num_groups):
    rng = np.random.default_rng(num_classes * num_groups)
    for _ in range(5):
        counts = rng.random((num_classes, num_groups)) * 10
        result = sp.optimal_balanced(counts)
        _assert_balanced(result, num_classes, num_groups)
        assert sp.matched_count(counts, result) == pytest.approx(_brute_force_balanced(counts))


def test_optimal_balanced_scales_to_many_classes():
    # 5,000 classes that all prefer specialty 0 (the slot solver needs a 5,000 x 5,000 matrix here).
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 10, size=(5000, 7)) + 30 * (np.arange(7) == 0)
    result = sp.optimal_balanced(counts)
    _assert_balanced(result, 5000, 7)
    # Optimal: specialty 0 keeps the 715 classes that lose most by leaving it.
    assert np.sum(result == 0) == 715


def test_fully_balanced_unsigned_counts():
    counts = np.array([[0, 9], [0, 9], [7, 0], [7, 0]], np.uint32)
    result = sp.fully_balanced(counts, np.random.default_rng(0))
    assert sp.matched_count(counts, result) == 32
    np.testing.assert_array_equal(result, [1, 1, 0, 0])


def _loop_elasso_sweep(counts, assignment, lam, rng):
    """The previous row-by-row sweep, kept as a reference for the vectorised one."""
    counts = np.asarray(counts, dtype=np.float64)
    assignment = np.asarray(assignment).astype(np.int32).copy()
    sizes = np.bincount(assignment, minlength=counts.shape[1]).astype(np.float64)
    for i in rng.permutation(counts.shape[0]):
        current = assignment[i]
        sizes[current] -= 1
        cost = -counts[i] + lam * np.sqrt(np.sum(sizes ** 2) + 2 * sizes + 1)
        best = int(np.argmin(cost))
        if cost[current] <= cost[best]:
            best = current
        assignment[i] = best
        sizes[best] += 1
    return assignment


@pytest.mark.parametrize('lam', [0.0, 3.0, 100.0, 1000.0, 1e5])
def test_elasso_sweep_matches_the_row_by_row_sweep(lam):
    rng = np.random.default_rng(int(lam) % 97)
    for trial in range(10):
        num_classes, num_groups = int(rng.integers(1, 300)), int(rng.integers(1, 12))
        counts = rng.integers(0, 3 if trial % 2 else 200, size=(num_classes, num_groups))  # ties too
        assignment = rng.integers(0, num_groups, size=num_classes)
        for _ in range(3):  # successive sweeps, as elasso runs them
            seed = int(rng.integers(1 << 30))
            expected = _loop_elasso_sweep(counts, assignment, lam, np.random.default_rng(seed))
            result = sp.elasso_sweep(counts, assignment, lam, np.random.default_rng(seed))
            np.testing.assert_array_equal(result, expected)
            assignment = result


@pytest.mark.parametrize('call', [
    lambda: sp.elasso(np.ones((4, 2)), np.random.default_rng(0), lam=-1.0),
    lambda: sp.elasso_sweep(np.ones((4, 2)), np.zeros(4, int), -0.5, np.random.default_rng(0)),
    lambda: sp.elasso(np.ones((4, 2)), np.random.default_rng(0), lam=float('nan')),
])
def test_elasso_rejects_negative_lam(call):
    with pytest.raises(ValueError, match='lam must be >= 0'):
        call()


def test_spectral_specialties_rejects_a_nan_row():
    confusion = np.ones((6, 6))
    confusion[4, 2] = np.nan
    with pytest.raises(ValueError, match='row 4'):
        sp.spectral_specialties(confusion, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match='row 4'):
        sp.spectral_specialties(sps.csr_array(confusion), 2, np.random.default_rng(0))


def _same_partition(a, b):
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize('balanced', [False, True])
def test_spectral_specialties_sparse_path_matches_dense(balanced, monkeypatch):
    rng = np.random.default_rng(0)
    truth = rng.permutation(np.repeat(np.arange(5), 12))
    confusion = _memorised_confusion(truth, rng)
    dense = sp.spectral_specialties(confusion, 5, np.random.default_rng(1), balanced=balanced)
    monkeypatch.setattr(clustering, 'DENSE_EIGH_MAX_POINTS', 0)
    sparse = sp.spectral_specialties(confusion, 5, np.random.default_rng(1), balanced=balanced)
    from_sparse_input = sp.spectral_specialties(sps.csr_array(confusion), 5, np.random.default_rng(1),
                                                balanced=balanced)
    assert _same_partition(dense, truth)
    assert _same_partition(sparse, truth)
    assert _same_partition(from_sparse_input, truth)
