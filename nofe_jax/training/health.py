"""Is a stage learning? Warnings for a stage stuck at chance or collapsed onto a few outputs.

Pure functions of numbers the loop already has; each returns a one-line
warning naming what to check, or None. The loop prints them and records them
in the stage's metadata, so summary.json lists them.
"""
import math

import numpy as np

# A training loss at the end of the first epoch (or of a shorter stage) within this fraction of ln(outputs) has not left chance.
CHANCE_LOSS_TOLERANCE = 0.02
# Predictions spread over fewer than this fraction of the labels' effective number of classes.
COLLAPSE_RATIO = 0.1


def chance_loss_warning(loss: float, num_outputs: int, *, step: int, epoch: float) -> str | None:
    """A warning when ``loss`` (mean cross-entropy of the log period ending at ``step``, epoch
    ``epoch``) is still within 2% of ln(num_outputs), or above it (worse than a uniform guess);
    the warning names that step and epoch."""
    chance = math.log(num_outputs)
    if num_outputs < 2 or not loss >= (1.0 - CHANCE_LOSS_TOLERANCE) * chance:
        return None
    where = f'training loss {loss:.4f} at step {step} (epoch {epoch:.2f})'
    if loss > (1.0 + CHANCE_LOSS_TOLERANCE) * chance:
        return (f'{where} is above ln({num_outputs}) = {chance:.4f}, worse than a uniform guess: '
                'the stage is diverging or its outputs are saturated, confidently wrong. Check its '
                'learning rate and the scale of its inputs and initial outputs.')
    return (f'{where} is within {CHANCE_LOSS_TOLERANCE:.0%} of ln({num_outputs}) = {chance:.4f}: the '
            'stage has not started to learn. Check its learning rate and optimiser, the labels it '
            'trains on, and whether its model (e.g. an expert branch) can see the features it needs.')


def effective_classes(histogram: np.ndarray) -> float:
    """exp(entropy) of a histogram: how many classes it is spread over (1 to len)."""
    p = np.asarray(histogram, np.float64)
    p = p[p > 0] / p.sum() if p.sum() > 0 else np.ones(1)
    return float(np.exp(-np.sum(p * np.log(p))))


def collapse_warning(predicted: np.ndarray, true: np.ndarray) -> str | None:
    """A warning when test predictions spread over far fewer classes than the test labels."""
    spread, expected = effective_classes(predicted), effective_classes(true)
    if spread >= COLLAPSE_RATIO * expected:
        return None
    predicted = np.asarray(predicted)
    top = [int(o) for o in np.argsort(predicted)[::-1][:3] if predicted[o] > 0]
    share = float(np.sum(predicted[top]) / max(np.sum(predicted), 1))
    return (f'test predictions collapsed onto a few outputs: effectively {spread:.1f} of '
            f'{expected:.1f} classes ({share:.0%} of images go to outputs {top}). '
            'The stage is not discriminating; check its learning rate, its inputs and its labels.')
