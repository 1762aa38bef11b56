import pytest

from nofe_jax.training import durations


@pytest.mark.parametrize('duration, expected', [
    ('3 epochs', 300), ('0.2 epoch', 20), ('500 steps', 500), ('1 step', 1),
    ('2560 examples', 20), ('0 steps', 0), ('0.001 epochs', 1),
])
def test_to_steps_resolves_every_unit(duration, expected):
    assert durations.to_steps(duration, steps_per_epoch=100, batch_size=128) == expected


@pytest.mark.parametrize('bad', ['3', 'three epochs', '2 fortnights', '-1 steps'])
def test_bad_durations_say_what_to_write(bad):
    with pytest.raises(ValueError, match='duration|Duration|number'):
        durations.to_steps(bad, steps_per_epoch=10, batch_size=1)


def test_is_time_fires_at_period_ends_only():
    fired = [s for s in range(0, 11) if durations.is_time(s, 5)]
    assert fired == [5, 10]
    assert not any(durations.is_time(s, 0) for s in range(10))
