"""experiments.compare_runs: one Markdown row per run, read from a (hand-written, fake) summary.json."""
import json

from experiments import compare_runs


def test_row_of_a_nofe_run_with_groupings(tmp_path):
    summary = {'recipe': 'nofe', 'model': 'tiny_cnn',
               'final': {'test/top1': 0.6847, 'test/specialty_top1': 0.8133,
                         'test/within_specialty_top1': 0.8418},
               'wall_time_s': 444.0,
               'specialty_history': [{'moved': 0, 'skipped': True}, {'moved': 52, 'skipped': False}],
               'specialty_nmi': {'left_item': 0.387}, 'random_partition_nmi': {'left_item': 0.218},
               'health_warnings': ['nofe: training loss ...']}
    (tmp_path / 'summary.json').write_text(json.dumps(summary))
    assert compare_runs.summary_row(str(tmp_path)) == (
        f'| {tmp_path.name} | nofe | tiny_cnn | 68.47% | 81.33% | 84.18% | — | — | — | 7.4 min | s, 52 '
        '| left_item 0.387 (0.218) | 1 warning(s) |')


def test_row_of_a_flat_run(tmp_path):
    (tmp_path / 'summary.json').write_text(json.dumps({'final': {'test/top1': 0.5}, 'wall_time_s': 60}))
    assert compare_runs.summary_row(str(tmp_path)) == (
        f'| {tmp_path.name} | — | — | 50.00% | — | — | — | — | — | 1.0 min | — | — | none |')


def test_rows_of_dmde_and_deepme_show_their_own_accuracies(tmp_path):
    """DMDE: the bases' in-group / not-in-group accuracy; DeepME: the bases' in-group and the gate's."""
    dmde = {'recipe': 'dmde', 'model': 'alexnet_c100', 'final': {'test/top1': 0.64}, 'wall_time_s': 120,
            'stages': {'bases': {'final': {'test/top1': 0.7, 'test/in_group_top1': 0.8125,
                                           'test/not_in_group_top1': 0.905}},
                       'fusion': {'final': {'test/top1': 0.64}}}}
    deepme = {'recipe': 'deepme', 'model': 'tiny_cnn', 'final': {'test/top1': 0.65, 'test/gate_top1': 0.9},
              'wall_time_s': 120, 'stages': {'bases': {'final': {'test/in_group_top1': 0.75}}}}
    rows = []
    for name, summary in (('dmde', dmde), ('deepme', deepme)):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'summary.json').write_text(json.dumps(summary))
        rows.append(compare_runs.summary_row(str(tmp_path / name)))
    assert rows[0] == '| dmde | dmde | alexnet_c100 | 64.00% | — | — | 81.25% | 90.50% | — | 2.0 min | — | — | none |'
    assert rows[1] == '| deepme | deepme | tiny_cnn | 65.00% | — | — | 75.00% | — | 90.00% | 2.0 min | — | — | none |'
    assert compare_runs.HEADER.count('|') == rows[0].count('|') * 2  # header + separator, same columns


def test_wall_time_of_a_resumed_run_counts_every_run(tmp_path):
    summary = {'final': {'test/top1': 0.5}, 'wall_time_s': 60, 'total_wall_time_s': 300, 'restarts': 2}
    (tmp_path / 'summary.json').write_text(json.dumps(summary))
    assert '| 5.0 min (3 runs) |' in compare_runs.summary_row(str(tmp_path))
