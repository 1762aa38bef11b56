"""TrunkHeadModel: every base model's options reach its trunk or head."""

import pytest

from nofe_jax.models import registry
from nofe_jax.models.trunk_head import TrunkHeadModel, option_names


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_every_option_reaches_the_trunk_or_head(name):
    base = registry.get_model_spec(name).base
    assert issubclass(base, TrunkHeadModel)
    assert base.trunk_cls is registry.get_model_spec(name).trunk
    # An option neither part has would be silently ignored.
    assert option_names(base) <= option_names(base.trunk_cls) | option_names(base.head_cls)
