"""DeepME's gate task, Eq. 4 (its bases train on ``tasks.GroupTask``, which DMDE shares)."""
import dataclasses

import jax
import jax.numpy as jnp

from nofe_jax.training import losses
from nofe_jax.training.tasks import PREDICTORS, ClassificationTask


@dataclasses.dataclass(frozen=True)
class MixtureTask(ClassificationTask):
    """DeepME's gated mixture over the T group networks (``model.GatedMixture``), Eq. 4:

      mean over images of  sum_t phi_t loss_t / sum_t phi_t^2            (gate-weighted base losses)
                         + alpha * max(P(wrong) - P(true) + beta, 0)      (margin on the mixture P)
      + consistency_weight * consistency of the batch     (the gate agrees on groups sharing a class)

    loss_t = -log p_t(true class), a group network giving 0 (the class is not in its group)
    floored at ``probability_floor``. With unit-L2 weights, part 1 has a local minimum at every
    one-hot gate (leaving e_t for a better group first raises sum_t phi_t loss_t), so a gate
    that starts sending an image to a group holding its class keeps it there; the mixture's own
    cross-entropy -log(F_y / sum F) (weight ``mixture_ce_weight``; 0 = Eq. 4 as written) pulls
    toward the groups that hold the class from anywhere. The consistency (Eq. 6-7,
    ``losses.gate_consistency``) compares the gate's mean confidences over each class's images
    in the batch, a batch estimate of the paper's means over the training set; it trains the
    gate (it reads no base network's output), so it has a gradient with the bases frozen.
    Grouping arrays: ``slot_classes``, ``slot_mask``, ``class_targets`` [C, T] (slot or -1),
    ``pairs`` / ``pair_mask`` (``grouping.layout.shared_class_pairs``). Metrics: the mixture's top-1/3/5,
    gate_top1 (phi's largest weight is on a group holding the true class); at evaluation, per
    group the in-group top-1 of its network (``group_top1``, the mean over groups).
    """
    consistency_weight: float = 1.0
    alpha: float = 1.0
    beta: float = 0.1
    mixture_ce_weight: float = 0.0
    probability_floor: float = 1e-6

    def model_kwargs(self, grouping):
        return {'slot_classes': grouping['slot_classes'], 'slot_mask': grouping['slot_mask']}

    def loss_terms(self, out, labels, grouping, mask) -> dict[str, jax.Array]:
        """The three parts of Eq. 4, [B] each: the consistency is the batch's (images weighted
        by ``mask``), the same for each of its images."""
        probs, phi = out['group_probs'], out['phi']
        true = losses.true_class_probability(probs, grouping['class_targets'][labels])
        group_losses = -jnp.log(jnp.maximum(true, self.probability_floor))
        consistency = losses.gate_consistency(out['gate_confidences'], labels, mask, grouping['pairs'],
                                              grouping['pair_mask'])
        return {'gated': losses.gate_weighted_loss(group_losses, phi),
                'consistency': jnp.broadcast_to(consistency, labels.shape),
                'hinge': losses.margin_hinge(out['mixture'], labels, self.beta)}

    def loss(self, logits, out, targets, params, grouping):
        del params
        terms = self.loss_terms(out, targets, grouping, jnp.ones(targets.shape, jnp.float32))
        return jnp.mean(terms['gated'] + self.consistency_weight * terms['consistency']
                        + self.alpha * terms['hinge']
                        + self.mixture_ce_weight * losses.cross_entropy(logits, targets))

    def metrics(self, logits, out, targets, labels, grouping, mask):
        terms = self.loss_terms(out, labels, grouping, mask)
        held = grouping['class_targets'][labels] >= 0  # [B, T]
        gate_right = jnp.take_along_axis(held, jnp.argmax(out['phi'], axis=-1)[:, None], axis=-1)[:, 0]
        return {**super().metrics(logits, out, targets, labels, grouping, mask),
                'top3': losses.summed(losses.topk_correct(logits, targets, 3), mask),
                'gate_top1': losses.summed(gate_right.astype(jnp.float32), mask),
                **{f'loss_{name}': losses.summed(value, mask) for name, value in terms.items()}}

    def evaluation_metrics(self, logits, out, targets, labels, grouping, mask):
        slots = grouping['class_targets'][labels]
        inside = (slots >= 0) * mask[:, None]
        correct = losses.topk_correct(out['group_probs'], jnp.maximum(slots, 0), 1)
        return {**super().evaluation_metrics(logits, out, targets, labels, grouping, mask),
                'group_top1': (jnp.sum(correct * inside, 0), jnp.sum(inside, 0))}

    def predictions(self, logits, out, grouping, names):
        """Adds 'gate_weights' [B, T] (phi) to the PREDICTORS."""
        return {name: out['phi'] if name == 'gate_weights' else PREDICTORS[name](logits, out)
                for name in names}
