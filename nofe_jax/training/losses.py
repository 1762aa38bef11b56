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
    """tr(W W^T) of stacked class-weight matrices [G, d, M] (columns w_k), averaged over G."""
    return jnp.mean(jnp.sum(weights.astype(jnp.float32) ** 2, axis=(1, 2)))


def laplacian_penalty(weights: jax.Array, laplacians: jax.Array) -> jax.Array:
    """tr(W L W^T) = 1/2 sum_ab S_ab ||w_a - w_b||^2 of [G, d, M] weights and [G, M, M]
    Laplacians L = diag(S 1) - S, averaged over G: small when similar classes' weights agree."""
    weights = weights.astype(jnp.float32)
    return jnp.mean(jnp.einsum('gda,gab,gdb->g', weights, laplacians, weights))
