"""Losses and the per-example quantities metrics are built from."""
import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy in float32, [B]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """1.0 where the label is among the k highest logits, labels' shape ([B], or [B, G] for
    logits [B, G, outputs]); k capped at #outputs."""
    k = min(k, logits.shape[-1])
    label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)
    # Rank = number of logits strictly above the label's; ties go to the label.
    rank = jnp.sum(logits > label_logit, axis=-1)
    return (rank < k).astype(jnp.float32)


def summed(values: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A (sum, count) metric pair over the unmasked examples."""
    return jnp.sum(values * mask), jnp.sum(mask)


def per_class_sums(correct: jax.Array, labels: jax.Array, mask: jax.Array,
                   num_classes: int) -> tuple[jax.Array, jax.Array]:
    """Per-class (correct, count) vectors, [C] each, for per-class average accuracy."""
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * mask[:, None]
    return correct @ onehot, jnp.sum(onehot, axis=0)


def trace_penalty(weights: jax.Array) -> jax.Array:
    """[G]: tr(W W^T) of each of the stacked class-weight matrices [G, d, M] (columns w_k)."""
    return jnp.sum(weights.astype(jnp.float32) ** 2, axis=(1, 2))


def laplacian_penalty(weights: jax.Array, laplacians: jax.Array) -> jax.Array:
    """tr(W L W^T) = 1/2 sum_ab S_ab ||w_a - w_b||^2 of [G, d, M] weights and [G, M, M]
    Laplacians L = diag(S 1) - S, [G], one per matrix: small when similar classes' weights agree."""
    weights = weights.astype(jnp.float32)
    return jnp.einsum('gda,gab,gdb->g', weights, laplacians, weights)


def true_class_probability(group_probs: jax.Array, slots: jax.Array) -> jax.Array:
    """[B, T]: each group network's probability of the image's class (``slots`` [B, T]: its slot
    in the group, -1 outside, where the network gives it 0)."""
    found = jnp.take_along_axis(group_probs, jnp.maximum(slots, 0)[..., None], axis=-1)[..., 0]
    return jnp.where(slots >= 0, found, 0.0)


def gate_weighted_loss(group_losses: jax.Array, phi: jax.Array) -> jax.Array:
    """DeepME Eq. 4, part 1, per image [B]: sum_t phi_t loss_t / sum_t phi_t^2."""
    return jnp.sum(phi * group_losses, axis=-1) / jnp.sum(phi ** 2, axis=-1)


def gate_consistency(confidences: jax.Array, labels: jax.Array, weights: jax.Array, pairs: jax.Array,
                     pair_mask: jax.Array) -> jax.Array:
    """DeepME Eq. 4, part 2 (Eq. 6-7), estimated on one batch, a scalar: the mean over the shared
    (class c, group t, group h) ``pairs`` whose class has images in the batch of
    |phi^c_t - phi^c_h|, phi^c [T] the mean of the gate's ``confidences`` [B, T] (its softmax over
    the groups) over the batch's images of class c (``weights`` [B]: 0 for padding). The paper
    names the distance Hamming; on real values it is this L1 distance. 0 where no shared class
    is in the batch."""
    in_class = (labels[None, :] == pairs[:, :1]) * weights  # [P, B]
    counts = jnp.sum(in_class, axis=-1)
    class_means = in_class @ confidences / jnp.where(counts > 0, counts, 1.0)[:, None]  # [P, T]
    rows = jnp.arange(pairs.shape[0])
    gaps = jnp.abs(class_means[rows, pairs[:, 1]] - class_means[rows, pairs[:, 2]])
    present = pair_mask & (counts > 0)
    return jnp.sum(gaps * present) / jnp.maximum(jnp.sum(present), 1)


def margin_hinge(scores: jax.Array, labels: jax.Array, margin: float) -> jax.Array:
    """DeepME Eq. 4, part 3, per image [B]: max(P(wrong) - P(true) + margin, 0), P(wrong) the
    highest-scoring wrong class."""
    true = jnp.take_along_axis(scores, labels[:, None], axis=-1)[:, 0]
    wrong = jnp.max(jnp.where(jax.nn.one_hot(labels, scores.shape[-1], dtype=bool), -jnp.inf, scores), axis=-1)
    return jnp.maximum(wrong - true + margin, 0.0)
