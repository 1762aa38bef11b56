r"""Writes docs/config_reference.md: every config field, its default and what it means.

  python -m experiments.config_reference > docs/config_reference.md

The fields and defaults come from the configs themselves (``common.get_config()`` and the blocks
``common.add_nofe`` / ``add_dmde`` / ``add_deepme`` add); each description is the comment beside
the field where it is set (``experiments/configs/common.py``), or, for a field set without a
comment, the line in ``_UNCOMMENTED`` below. tests/test_config_reference.py fails when the
committed page differs from what this prints, or when a field has no description.
"""
from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Iterator

import ml_collections

from experiments.configs import common
from nofe_jax.models import names

# Descriptions of the fields common.py sets without a comment beside them (dotted paths as in
# the tables below, with <stage> for any stage's train/optim block).
_UNCOMMENTED = {
    'seed': 'seed of the run: initialisation, data order, subsets, random partitions',
    'model.name': 'base model: ' + ' | '.join(names.MODEL_NAMES),
    'data.train_split': 'tfds: the split to train on',
    'data.test_split': 'tfds: the split to evaluate on',
    'data.synthetic_shape': 'synthetic: image shape (H, W, C)',
    'data.synthetic_classes': 'synthetic: number of classes',
    'data.synthetic_train_size': 'synthetic: training images',
    'data.synthetic_test_size': 'synthetic: test images',
    'data.seed': 'seed of the synthetic data',
    'data.preprocess.resize': 'resize to this square size before cropping (0 = keep)',
    '<stage>.train.log_every': 'period of the training log line and metrics.jsonl entry',
    '<stage>.train.eval_every': 'period of the test-set evaluation',
    '<stage>.train.checkpoint_every': 'period of the orbax checkpoint',
    '<stage>.train.keep_checkpoints': 'checkpoints kept per stage (older ones are deleted)',
    '<stage>.optim.warmup': 'linear warm-up from 0 to lr over this duration',
    '<stage>.optim.momentum': 'SGD momentum',
    '<stage>.optim.nesterov': 'Nesterov momentum (sgd)',
    '<stage>.optim.weight_decay': 'L2 weight decay (caffe_sgd, sgd) or decoupled decay (adamw)',
    'distributed.coordinator_address': 'multi-host: address:port of process 0 (jax.distributed)',
    'distributed.num_processes': 'multi-host: number of processes (0 or 1: one process; > 1 without '
                                 'an address: JAX finds its peers, e.g. on TPU pods)',
    'distributed.process_id': "multi-host: this process's id, with coordinator_address",
}

# Where each block's fields are set, with their comments.
_SOURCES: dict[str, Callable[..., object]] = {
    '': common.get_config,
    'data': common.data_config,
    '<stage>.train': common.train_config,
    '<stage>.optim': common.optim_config,
    'nofe': common.nofe_config,
    'dmde': common.dmde_config,
    'deepme': common.deepme_config,
}

# The recipes and the function that turns a base config into one.
_RECIPES: dict[str, Callable[[ml_collections.ConfigDict], None] | None] = {
    'base': None,
    'nofe': common.add_nofe,
    'dmde': common.add_dmde,
    'deepme': common.add_deepme,
}

_FIELD = re.compile(r'^\s*(?:config\.)?(\w+)\s*=\s*(.*?)\s*(?:#\s?(.*))?$')
_COMMENT_ONLY = re.compile(r'^\s*#\s?(.*)$')
_OPENS_BLOCK = re.compile(r'(?:dict|ConfigDict)\($|\(dict\($')


def _source_fields(function: Callable[..., object], prefix: str) -> dict[str, str]:
    """{dotted field: comment ('' if none)} for the fields ``function``'s source sets, in source
    order. A comment line indented deeper than the field before it continues that field's
    comment; one at a field's indentation describes the field that follows it. Nested
    dict(...) blocks give dotted names."""
    fields: dict[str, str] = {}
    stack: list[str] = [prefix] if prefix else []
    last, last_indent, leading = None, 0, ''
    for line in inspect.getsource(function).splitlines():
        indent = len(line) - len(line.lstrip())
        only = _COMMENT_ONLY.match(line)
        if only:
            text = only.group(1).strip()
            if last is not None and indent > last_indent:
                fields[last] = (fields[last] + ' ' + text).strip()
            else:
                leading = (leading + ' ' + text).strip()
            continue
        field = _FIELD.match(line)
        if field and not line.lstrip().startswith(('def ', 'return', 'del ')):
            name, value, comment = field.groups()
            path = '.'.join(stack + [name])
            text = ' '.join(filter(None, [leading, (comment or '').strip()]))
            leading = ''
            if _OPENS_BLOCK.search(value.split('#')[0].rstrip()):
                stack.append(name)
                last = None
                continue
            fields[path] = text
            last, last_indent = path, indent
            continue
        if line.strip().startswith(')') and len(stack) > (1 if prefix else 0):
            stack.pop()
        last, leading = None, ''
    return fields


def source_order() -> list[str]:
    """Every dotted field (with <stage> for stage blocks) in the order the sources set it."""
    order: list[str] = []
    for prefix, function in _SOURCES.items():
        order += [path for path in _source_fields(function, prefix) if path not in order]
    return order


def descriptions() -> dict[str, str]:
    """{dotted field (with <stage> for stage blocks): description}."""
    found: dict[str, str] = {}
    for prefix, function in _SOURCES.items():
        found.update({path: text for path, text in _source_fields(function, prefix).items() if text})
    for path, text in _UNCOMMENTED.items():
        found.setdefault(path, text)
    return found


def _fields(config: ml_collections.ConfigDict, prefix: str = '') -> Iterator[tuple[str, object]]:
    for key in config:
        value = config[key]
        path = f'{prefix}{key}'
        if isinstance(value, ml_collections.ConfigDict):
            yield from _fields(value, path + '.')
        else:
            yield path, value


def _format(value: object) -> str:
    if isinstance(value, float):
        text = repr(value) if len(repr(value)) <= 8 else f'{value:.6g}'
    elif isinstance(value, tuple):
        text = '(' + ', '.join(_format(v).strip('`') for v in value) + (',)' if len(value) == 1 else ')')
    else:
        text = repr(value)
    return f'`{text}`'


def _stages(config: ml_collections.ConfigDict) -> list[str]:
    return [key for key in config if isinstance(config[key], ml_collections.ConfigDict)
            and 'train' in config[key] and 'optim' in config[key]]


def recipe_config(recipe: str) -> ml_collections.ConfigDict:
    config = common.get_config()
    if _RECIPES[recipe] is not None:
        _RECIPES[recipe](config)
    return config


def _generic(path: str, stages: list[str]) -> str:
    """``generalist.train.duration`` -> ``<stage>.train.duration``; top-level train/optim too."""
    head, _, rest = path.partition('.')
    if head in stages:
        return f'<stage>.{rest}'
    if head in ('train', 'optim'):
        return f'<stage>.{path}'
    return path


def _table(rows: list[tuple[str, object]], described: dict[str, str], stages: list[str],
           missing: list[str]) -> list[str]:
    order = source_order()

    def rank(row: tuple[str, object]) -> tuple[float, str]:
        generic = _generic(row[0], stages) if not row[0].startswith('<stage>') else row[0]
        if generic in order:
            return order.index(generic), ''
        # Set on one line with its siblings: beside the first field of its block that was found.
        parent = generic.rpartition('.')[0] + '.'
        siblings = [i for i, path in enumerate(order) if path.startswith(parent)]
        return (siblings[0] + 0.5 if siblings else len(order)), row[0]

    lines = ['| field | default | description |', '|---|---|---|']
    for path, value in sorted(rows, key=rank):
        text = described.get(_generic(path, stages))
        if not text:
            missing.append(path)
            text = ''
        lines.append(f'| `{path}` | {_format(value)} | {text.replace("|", chr(92) + "|")} |')
    return lines


def render() -> tuple[str, list[str]]:
    """The page, and the fields that have no description."""
    described = descriptions()
    missing: list[str] = []
    base = recipe_config('base')
    stage_names = {recipe: _stages(recipe_config(recipe)) for recipe in _RECIPES}
    out = [
        '# Config reference',
        '',
        '<!-- Generated by `python -m experiments.config_reference > docs/config_reference.md`;',
        '     tests/test_config_reference.py fails when this page is stale. Do not edit by hand. -->',
        '',
        'Every field a config can set, with the default every config starts from',
        '(`experiments/configs/common.py`) and what it means. Paper configs override some defaults;',
        'the values a run used are in its `WORKDIR/config.json`. Override any field on the command',
        "line: `--config.<field>=<value>`, e.g. `--config.nofe.num_experts=20` or",
        "`--config.experts.train.duration='5 epochs'`.",
        '',
        'Durations are strings with a unit: `\'30 epochs\'`, `\'500 steps\'`, `\'10000 examples\'`.',
        'A period of `\'0 steps\'` acts only at the end of the stage.',
        '',
        '## Every config',
        '',
    ]
    common_rows = [(p, v) for p, v in _fields(base) if not p.startswith(('train.', 'optim.'))]
    out += _table(common_rows, described, [], missing)
    out += [
        '',
        '## Stages: `<stage>.train` and `<stage>.optim`',
        '',
        'Each stage of a recipe has its own `train` (how long and how often) and `optim` (optimiser',
        'and schedule) block. The stages per `recipe`:',
        '',
        '| recipe | stages |',
        '|---|---|',
    ]
    for recipe, names in stage_names.items():
        shown = ', '.join(f'`{n}`' for n in names) if names else '(top level: `train`, `optim`)'
        out.append(f'| `{recipe}` | {shown} |')
    out += ['', "E.g. `--config.generalist.optim.lr=0.01` on a NofE config,",
            "`--config.train.duration='3 epochs'` on a base config.", '']
    stage_rows = [(p.replace('train.', '<stage>.train.', 1) if p.startswith('train.') else
                   p.replace('optim.', '<stage>.optim.', 1), v)
                  for p, v in _fields(base) if p.startswith(('train.', 'optim.'))]
    out += _table(stage_rows, described, [], missing)
    titles = {'nofe': 'Network of Experts', 'dmde': 'Deep Mixture of Diverse Experts', 'deepme': 'DeepME'}
    for recipe, title in titles.items():
        config = recipe_config(recipe)
        out += ['', f'## `{recipe}.*`: {title} (`recipe={recipe!r}`)', '',
                'See [methods.md](methods.md) for what these options do.', '']
        rows = [(p, v) for p, v in _fields(config[recipe], f'{recipe}.')]
        out += _table(rows, described, stage_names[recipe], missing)
    return '\n'.join(out) + '\n', missing


def main() -> None:
    page, missing = render()
    sys.stdout.write(page)
    if missing:
        sys.stderr.write('fields without a description: ' + ', '.join(missing) + '\n')
        sys.exit(1)


if __name__ == '__main__':
    main()
