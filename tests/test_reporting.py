"""reporting: the run log behind a resumed run's total wall time, and what the learning-curve
legend says each stage's accuracy measures."""
import json
import time

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


def test_run_log_total_is_never_below_this_runs_wall_time(tmp_path):
    reporting.RunLog(str(tmp_path)).update()
    later = reporting.RunLog(str(tmp_path), start=time.perf_counter() - 5.0)
    wall = later.update()  # one reading of the clock for both numbers (training.run.finish)
    assert wall >= 5.0 and later.total_wall_time_s >= wall
    assert later.total_wall_time_s == sum(r['wall_time_s'] for r in reporting.read_runs(str(tmp_path)))


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


def test_learning_curves_put_the_stages_one_after_another():
    records = [
        {'step': 5, 'stage': 'generalist', 'epoch': 0.5, 'train/loss': 2.0},
        {'step': 10, 'stage': 'generalist', 'epoch': 1.0, 'train/loss': 1.5},
        {'step': 10, 'stage': 'generalist', 'epoch': 1.0, 'test/loss': 1.6, 'test/top1': 0.4},
        {'step': 10, 'stage': 'generalist', 'epoch': 1.0, 'specialties/moved': 2},  # a hook's
        {'step': 20, 'stage': 'generalist', 'epoch': 2.0, 'train/loss': 1.0},
        {'step': 20, 'stage': 'generalist', 'epoch': 2.0, 'test/loss': 1.1, 'test/top1': 0.6},
        {'step': 8, 'stage': 'nofe', 'epoch': 0.5, 'train/loss': 0.9},
        {'step': 16, 'stage': 'nofe', 'epoch': 1.0, 'train/loss': 0.5},
        {'step': 8, 'stage': 'nofe', 'epoch': 0.5, 'train/loss': 0.8},  # logged again after a resume
        {'step': 16, 'stage': 'nofe', 'epoch': 1.0, 'test/loss': 0.6, 'test/top1': 0.8},
        {'step': 4, 'stage': 'third', 'epoch': 0.25, 'train/loss': 0.4},
    ]
    generalist, nofe, third = reporting.learning_curve_series(records)
    assert (generalist.stage, generalist.offset) == ('generalist', 0.0)
    assert generalist.train_loss == ([0.5, 1.0, 2.0], [2.0, 1.5, 1.0])
    assert generalist.test_top1 == ([1.0, 2.0], [0.4, 0.6])
    assert (nofe.stage, nofe.offset) == ('nofe', 2.0)  # after the generalist's 2 epochs
    assert nofe.train_loss == ([2.5, 3.0], [0.8, 0.5])  # one point a step, the last record's
    assert nofe.test_loss == ([3.0], [0.6]) and nofe.test_top1 == ([3.0], [0.8])
    assert third.offset == 3.0 and third.train_loss == ([3.25], [0.4])


def test_learning_curves_mark_each_stage_start_on_a_log_loss_axis(tmp_path, monkeypatch):
    records = [{'step': s, 'stage': stage, 'epoch': s / 10, 'train/loss': 1.0 / s, 'test/top1': 0.5}
               for stage in ('generalist', 'nofe') for s in (10, 20)]
    (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, 'savefig', lambda fig, *a, **k: saved.append(fig))
    reporting.plot_learning_curves(str(tmp_path), str(tmp_path / 'curves.png'), {})
    ax_loss, ax_acc = saved[0].axes
    assert ax_loss.get_yscale() == 'log'
    for ax in (ax_loss, ax_acc):
        assert [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ':'] == [2.0]
        assert [t.get_text() for t in ax.texts] == ['generalist', 'nofe']
    assert list(ax_acc.get_lines()[1].get_xdata()) == [3.0, 4.0] and ax_acc.get_lines()[1].get_marker() == 'o'


def test_a_stage_of_no_steps_is_one_evaluation_without_a_training_curve(tmp_path, monkeypatch):
    records = [{'step': 10, 'stage': 'bases', 'epoch': 2.0, 'train/loss': 1.0},
               {'step': 10, 'stage': 'bases', 'epoch': 2.0, 'test/loss': 1.2, 'test/top1': 0.3},
               {'step': 0, 'stage': 'fusion', 'epoch': 0.0, 'test/loss': 3.0, 'test/top1': 0.31}]
    (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, 'savefig', lambda fig, *a, **k: saved.append(fig))
    reporting.plot_learning_curves(str(tmp_path), str(tmp_path / 'curves.png'), {})
    ax_loss, ax_acc = saved[0].axes
    assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == [
        'bases: train', 'bases: test', 'fusion: test']
    assert list(ax_acc.get_lines()[1].get_xdata()) == [2.0]  # evaluated where the bases ended
