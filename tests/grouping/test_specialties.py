"""Tests for nofe_jax.grouping.specialties and confusion."""

import itertools

import numpy as np
import pytest

from nofe_jax.grouping import confusion, specialties as sp


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
