"""reporting: the run log behind a resumed run's total wall time, and what the learning-curve
legend says each stage's accuracy measures."""
import json

import matplotlib.figure

from nofe_jax import reporting


def test_run_log_counts_every_process_run_of_a_workdir(tmp_path):
    first = reporting.RunLog(str(tmp_path))
    first.update()
    assert first.restarts == 0
    second = reporting.RunLog(str(tmp_path))
    runs = reporting.read_runs(str(tmp_path))
    assert second.restarts == 1 and len(runs) == 2
    assert second.total_wall_time_s == sum(r['wall_time_s'] for r in runs) >= runs[0]['wall_time_s'] > 0


def test_learning_curve_legend_says_what_each_top1_measures(tmp_path, monkeypatch):
    records = [{'step': 10, 'stage': stage, 'epoch': 1.0, 'train/loss': 1.0, 'test/top1': 0.5}
               for stage in ('generalist', 'nofe')]
    (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, 'savefig', lambda fig, *a, **k: saved.append(fig))
    reporting.plot_learning_curves(str(tmp_path), str(tmp_path / 'curves.png'),
                                   {'generalist': 'specialty top-1 (5-way)', 'nofe': 'top-1 (10-way)'})
    legend = [t.get_text() for t in saved[0].axes[1].get_legend().get_texts()]
    assert legend == ['generalist: specialty top-1 (5-way)', 'nofe: top-1 (10-way)']


def test_progress_rate_leaves_out_excluded_time_and_eta_covers_later_stages(capsys, monkeypatch):
    clock = iter([0.0, 0.0, 10.0, 30.0])  # created and clock started at 0 s, reports at 10 and 30 s
    monkeypatch.setattr(reporting.time, 'perf_counter', lambda: next(clock))
    progress = reporting.Progress(total_steps=40, batch_size=10, stage='s', later_examples=600)
    progress.start_clock(step=1)
    progress.report(11, 0.5, {'loss': 1.0})  # 100 images in 10 s
    progress.exclude(10.0)  # e.g. an evaluation
    rate = progress.report(21, 1.0, {'loss': 1.0})  # 100 images in 20 s, 10 of them evaluating
    assert rate == 10.0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith('10.0 img/s ETA 01:29')  # (29 steps * 10 + 600) / 10
    assert lines[1].endswith('10.0 img/s ETA 01:19')  # (19 steps * 10 + 600) / 10


def test_log_prints_on_process_zero_only(capsys, monkeypatch):
    reporting.log('from process 0')
    monkeypatch.setattr(reporting, 'is_writer', lambda: False)
    reporting.log('from another process')
    assert capsys.readouterr().out == 'from process 0\n'
