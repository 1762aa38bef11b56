r"""A Markdown table of finished runs, one row per workdir, from their summary.json files.

  python -m experiments.compare_runs /tmp/fp_base /tmp/fp_nofe /tmp/fp_random

Columns: recipe, model, test top-1, each recipe's own accuracies (NofE: specialty and
within-specialty; DMDE: its base networks' in-group and not-in-group accuracy; DeepME: its base
networks' in-group accuracy and the gate's, the share of images whose largest gate weight is on a
group holding their class; '—' where a recipe has none), wall time (of
all the runs of a resumed workdir, with their count), classes moved per specialty update
('s' marks an update skipped at chance), the NMI of the final specialties with every known
grouping of the classes (random balanced partitions' in brackets), and any health warning.
"""
import json
import os
from collections.abc import Sequence

from absl import app


def _percent(final: dict, key: str) -> str:
    value = final.get(key)
    return '—' if value is None else f'{100 * value:.2f}%'


def _wall_time(summary: dict) -> str:
    """The time of every run of the workdir (summaries before runs.json: of the last run only)."""
    restarts = summary.get('restarts', 0)
    minutes = summary.get('total_wall_time_s', summary['wall_time_s']) / 60
    return f'{minutes:.1f} min' + (f' ({restarts + 1} runs)' if restarts else '')


def _bases(summary: dict, key: str) -> str:
    """A test accuracy of the first stage of DMDE and DeepME (their stacked base networks)."""
    return _percent(summary.get('stages', {}).get('bases', {}).get('final') or {}, key)


def summary_row(workdir: str) -> str:
    """One Markdown row for the run in ``workdir``."""
    with open(os.path.join(workdir, 'summary.json')) as f:
        summary = json.load(f)
    final = summary['final']
    moved = ', '.join('s' if h.get('skipped') else str(h['moved'])
                      for h in summary.get('specialty_history', [])) or '—'
    nmi = '; '.join(f'{name} {value:.3f} ({summary["random_partition_nmi"][name]:.3f})'
                    for name, value in summary.get('specialty_nmi', {}).items()) or '—'
    warnings = len(summary.get('health_warnings', []))
    cells = [os.path.basename(os.path.normpath(workdir)), summary.get('recipe', '—'),
             summary.get('model', '—'), _percent(final, 'test/top1'),
             _percent(final, 'test/specialty_top1'), _percent(final, 'test/within_specialty_top1'),
             _bases(summary, 'test/in_group_top1'), _bases(summary, 'test/not_in_group_top1'),
             _percent(final, 'test/gate_top1'), _wall_time(summary), moved, nmi,
             f'{warnings} warning(s)' if warnings else 'none']
    return '| ' + ' | '.join(cells) + ' |'


HEADER = ('| run | recipe | model | test top-1 | specialty acc | within-specialty | in-group acc (bases) '
          '| not-in-group acc (bases) | gate acc | wall time | classes moved per update '
          '| NMI with true groupings (random) | health |\n' + '|---' * 13 + '|')


def main(argv: Sequence[str]) -> None:
    workdirs = argv[1:]
    if not workdirs:
        raise app.UsageError('Name one or more run workdirs (each holding a summary.json).')
    missing = [w for w in workdirs if not os.path.isfile(os.path.join(w, 'summary.json'))]
    if missing:
        raise app.UsageError(f'No summary.json (unfinished run?) in: {", ".join(missing)}')
    print(HEADER)
    for workdir in workdirs:
        print(summary_row(workdir))


if __name__ == '__main__':
    app.run(main)
