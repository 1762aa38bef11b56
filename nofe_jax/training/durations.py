"""Durations in the units people think in, resolved to steps in one place.

A duration is a string such as ``'3 epochs'``, ``'0.2 epoch'``, ``'500 steps'``
or ``'10000 examples'`` (big_vision's ``*_epochs``/``*_steps``/``*_examples``
folded into one value so a command-line override can change the unit too).
"""

_UNITS = {
    'step': 'steps', 'steps': 'steps',
    'epoch': 'epochs', 'epochs': 'epochs',
    'example': 'examples', 'examples': 'examples',
    'image': 'examples', 'images': 'examples',
}


def parse_duration(duration: str) -> tuple[float, str]:
    """Splits ``'<number> <unit>'`` into (number, canonical unit)."""
    parts = str(duration).split()
    if len(parts) != 2 or parts[1].lower() not in _UNITS:
        raise ValueError(
                f'Cannot read duration {duration!r}: write "<number> <unit>" with unit '
                'one of steps, epochs, examples (e.g. "2 epochs", "500 steps").')
    try:
        amount = float(parts[0])
    except ValueError as e:
        raise ValueError(f'Cannot read the number in duration {duration!r}.') from e
    if amount < 0:
        raise ValueError(f'Duration {duration!r} is negative.')
    return amount, _UNITS[parts[1].lower()]


def duration_problem(field: str, duration, zero: str | None = None) -> str | None:
    """Why ``field=duration`` cannot be read, or is zero where ``zero`` says why 0 is refused; else None."""
    try:
        amount, _ = parse_duration(duration)
    except ValueError as e:
        return f'{field}: {e}'
    if amount == 0 and zero is not None:
        return f'{field}={duration!r} is zero: {zero}'
    return None


def to_steps(duration: str, *, steps_per_epoch: int, batch_size: int) -> int:
    """Number of optimiser steps in ``duration`` (0 means never/none)."""
    amount, unit = parse_duration(duration)
    if unit == 'steps':
        steps = amount
    elif unit == 'epochs':
        steps = amount * steps_per_epoch
    else:
        steps = amount / batch_size
    # Round to the nearest step, but never turn a positive duration into 0.
    return max(int(round(steps)), 1) if amount > 0 else 0


def is_time(step: int, every: int) -> bool:
    """True after ``step`` completed steps when a period of ``every`` ends."""
    return every > 0 and step > 0 and step % every == 0
