"""DMDE's fusion task (its bases train on ``tasks.GroupTask``, which DeepME shares)."""
import dataclasses

from nofe_jax.training import losses
from nofe_jax.training.tasks import ClassificationTask


@dataclasses.dataclass(frozen=True)
class FusionTask(ClassificationTask):
    """DMDE stage 2: the N-way softmax over the stacked group networks; adds top-10."""

    def model_kwargs(self, grouping):
        return {'slot_classes': grouping['slot_classes'], 'slot_mask': grouping['slot_mask']}

    def metrics(self, logits, out, targets, labels, grouping, mask):
        return {**super().metrics(logits, out, targets, labels, grouping, mask),
                'top10': losses.summed(losses.topk_correct(logits, targets, 10), mask)}
