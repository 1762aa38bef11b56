"""The NofE's task: one softmax over C gathered from the K expert branches."""
import dataclasses

import jax.numpy as jnp

from nofe_jax.training.tasks import ClassificationTask


@dataclasses.dataclass(frozen=True)
class ExpertTask(ClassificationTask):
    """The NofE's softmax over C gathered from the K branches; adds routing metrics.

    specialty_top1: the argmax's specialty is the true specialty ("routed
    right"); within_specialty_top1: top-1 among the examples routed right
    ("expert right"), so top1 = specialty_top1 * within_specialty_top1.
    """

    def model_kwargs(self, grouping):
        return {'class_slots': grouping['class_slots']}

    def metrics(self, logits, out, targets, labels, grouping, mask):
        class_to_specialty = grouping['class_to_specialty']
        predicted = jnp.argmax(logits, axis=-1)
        routed = (class_to_specialty[predicted] == class_to_specialty[labels]).astype(jnp.float32)
        correct = (predicted == labels).astype(jnp.float32)
        return {**super().metrics(logits, out, targets, labels, grouping, mask),
                'specialty_top1': (jnp.sum(routed * mask), jnp.sum(mask)),
                'within_specialty_top1': (jnp.sum(correct * mask), jnp.sum(routed * mask))}
