"""The rooms of the house (docs/development.md, "Where things live") and what each may import,
read from the source with ``ast``: grouping/ and data/ know nothing of jax; models/ nothing of
data or training; training/ no method; nothing in nofe_jax/ imports experiments/."""
import ast
import sys
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'nofe_jax'
JAX_FAMILY = ('jax', 'jaxlib', 'flax', 'optax', 'orbax', 'chex')

# room -> modules none of its files may import (a name or any submodule of it).
RULES = {
    'grouping': JAX_FAMILY,
    'data': JAX_FAMILY,
    'models': ('nofe_jax.data', 'nofe_jax.training'),
    'training': ('nofe_jax.methods',),
    '': ('experiments',),  # the whole library
}


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = '.'.join(path.relative_to(PACKAGE.parent).with_suffix('').parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f'{base}.{alias.name}' for alias in node.names)
    return found


def _violations(room: str, forbidden: tuple[str, ...]) -> list[str]:
    files = sorted((PACKAGE / room).rglob('*.py'))
    assert files, room
    return [f'{path.relative_to(PACKAGE.parent)} imports {module}'
            for path in files for module in sorted(imported_modules(path))
            if any(module == f or module.startswith(f'{f}.') for f in forbidden)]


@pytest.mark.parametrize('room', RULES)
def test_room_imports_nothing_it_must_not(room):
    assert _violations(room, RULES[room]) == []


def test_the_rule_sees_a_violation(tmp_path, monkeypatch):
    room = tmp_path / 'nofe_jax' / 'grouping'
    room.mkdir(parents=True)
    (room / 'bad.py').write_text('def f():\n    from jax import numpy\n    import flax.linen\n')
    monkeypatch.setattr(sys.modules[__name__], 'PACKAGE', tmp_path / 'nofe_jax')
    assert _violations('grouping', JAX_FAMILY) == ['nofe_jax/grouping/bad.py imports flax.linen',
                                                   'nofe_jax/grouping/bad.py imports jax',
                                                   'nofe_jax/grouping/bad.py imports jax.numpy']


def test_method_options_import_no_jax():
    """A method's options are read to check a config before jax loads."""
    for path in sorted(PACKAGE.glob('methods/*/options.py')) + [PACKAGE / 'methods' / '__init__.py',
                                                               PACKAGE / 'methods' / 'method.py']:
        jax_imports = [m for m in imported_modules(path)
                       if any(m == f or m.startswith(f'{f}.') for f in JAX_FAMILY)]
        assert jax_imports == [], path
