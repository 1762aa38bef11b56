"""docs/config_reference.md is what `python -m experiments.config_reference` prints: every config
field with its default and a description, so the page cannot go stale unnoticed."""
import os

from experiments import config_reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(REPO, 'docs', 'config_reference.md')


def test_every_field_has_a_description():
    _, missing = config_reference.render()
    assert not missing, f'fields without a comment in common.py or a line in _UNCOMMENTED: {missing}'


def test_committed_page_is_up_to_date():
    page, _ = config_reference.render()
    with open(PAGE, encoding='utf-8') as f:
        committed = f.read()
    assert committed == page, ('docs/config_reference.md is stale; regenerate it with '
                               '`python -m experiments.config_reference > docs/config_reference.md`')


def test_every_recipe_block_is_listed():
    page, _ = config_reference.render()
    for recipe in ('nofe', 'dmde', 'deepme'):
        config = config_reference.recipe_config(recipe)
        for key in config[recipe]:
            assert f'`{recipe}.{key}`' in page
    for stage in ('generalist', 'experts', 'bases', 'fusion', 'gate'):
        assert f'`{stage}`' in page
