"""experiments.sweep: per-seed values aggregate to the right mean, std and paired differences;
a sweep of smoke runs skips finished runs and resumes a killed one."""
import glob
import json
import os

import numpy as np
import pytest

from experiments import sweep
from nofe_jax.models import layers
from nofe_jax.training import faults


def test_importing_it_beside_the_runner_and_describe_defines_no_flag_twice():
    import subprocess
    import sys
    for other in ('describe', 'run'):  # each defines --config and --workdir at import
        out = subprocess.run([sys.executable, '-c', f'from experiments import {other}, sweep'],
                             cwd=sweep.REPO, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]


def test_aggregate_hand_written_values():
    per_run = {'base': {0: {'test/top1': 0.60}, 1: {'test/top1': 0.62}, 2: {'test/top1': 0.64}},
               'nofe': {0: {'test/top1': 0.63}, 1: {'test/top1': 0.66}, 2: {'test/top1': 0.66}},
               'half': {1: {'test/top1': 0.70}}}
    result = sweep.aggregate(per_run, 'base')
    base, nofe = result['table']['base']['test/top1'], result['table']['nofe']['test/top1']
    assert base['mean'] == pytest.approx(0.62) and base['std'] == pytest.approx(0.02) and base['n'] == 3
    assert nofe['mean'] == pytest.approx(0.65) and nofe['std'] == pytest.approx(np.sqrt(0.0003))
    diff = result['differences']['nofe']['test/top1']  # per seed: 0.03, 0.04, 0.02
    assert diff['mean'] == pytest.approx(0.03) and diff['std'] == pytest.approx(0.01)
    assert diff['seeds'] == [0, 1, 2] and diff['counts']  # 0.03 > 2 x 0.01
    half = result['differences']['half']['test/top1']  # only seed 1 is paired: no std
    assert half['mean'] == pytest.approx(0.08) and half['std'] is None and not half['counts']
    assert result['table']['half']['test/top1']['std'] is None
    assert 'base' not in result['differences']


def test_a_difference_inside_twice_its_std_does_not_count():
    per_run = {'a': {0: {'m': 1.0}, 1: {'m': 2.0}}, 'b': {0: {'m': 1.5}, 1: {'m': 1.9}}}
    diff = sweep.aggregate(per_run, 'a')['differences']['b']['m']  # 0.5, -0.1
    assert diff['mean'] == pytest.approx(0.2) and diff['std'] == pytest.approx(np.std([0.5, -0.1], ddof=1))
    assert not diff['counts']


def test_report_has_one_paired_table_per_baseline(tmp_path):
    """--baseline='base;shuffled': the NofE against its flat model and against its own control."""
    top1 = {'base': [0.60, 0.62, 0.64], '': [0.66, 0.67, 0.70], 'shuffled': [0.65, 0.65, 0.66]}
    runs = sweep.plan(str(tmp_path), list(top1), 3)
    for run in runs:
        os.makedirs(run.workdir)
        with open(os.path.join(run.workdir, 'summary.json'), 'w') as f:
            json.dump({'final': {'test/top1': top1[run.variant][run.seed]}, 'wall_time_s': 60}, f)
    result = sweep.write_report(str(tmp_path), 'c.py', runs, 3, ['base', 'shuffled'], 'cmd',
                                machine_info={'cpu': 'x', 'cores': 2, 'jax_version': '0', 'jax_backend': 'cpu',
                                              'jax_devices': 1, 'host': 'h'})
    against_control = result['differences']['shuffled']['']['test/top1']  # 0.01, 0.02, 0.04
    assert against_control['mean'] == pytest.approx(0.07 / 3) and not against_control['counts']
    assert result['differences']['base']['']['test/top1']['mean'] == pytest.approx(0.17 / 3)
    assert set(result['differences']['base']) == {'', 'shuffled'}
    markdown = open(tmp_path / 'sweep.md').read()
    assert '## Paired difference against base' in markdown
    assert '## Paired difference against shuffled' in markdown
    assert '| default | 3 | 2.33 ± 1.53 |' in markdown


def test_run_metrics_take_every_recipes_numbers():
    summary = {'final': {'test/top1': 0.5, 'test/gate_top1': 0.9, 'test/per_class_top1': [0.1, 0.2]},
               'wall_time_s': 60, 'total_wall_time_s': 120,
               'stages': {'bases': {'final': {'test/in_group_top1': 0.8, 'test/not_in_group_top1': 0.7}}},
               'specialty_nmi': {'left_item': 0.4}, 'random_partition_nmi': {'left_item': 0.2}}
    assert sweep.run_metrics(summary) == {
        'test/top1': 0.5, 'test/gate_top1': 0.9, 'bases:test/in_group_top1': 0.8,
        'bases:test/not_in_group_top1': 0.7, 'nmi/left_item': 0.4, 'nmi_random/left_item': 0.2,
        'wall_time_min': 2.0}


def test_variants_slugs_and_config_arguments():
    assert sweep.variant_list('base; ;specialties=random,k=5') == ['base', '', 'specialties=random,k=5']
    assert sweep.variant_list('') == ['']
    with pytest.raises(ValueError, match='twice'):
        sweep.variant_list('a;a')
    assert sweep.slug('specialties=random,k=5') == 'specialties-random_k-5'
    assert sweep.slug('') == 'default'
    assert sweep.config_argument('/c.py:path=/x.npz', 'base') == '/c.py:path=/x.npz,base'
    assert sweep.config_argument('/c.py', '') == '/c.py'
    runs = sweep.plan('/w', ['a', ''], 2)
    assert [(r.variant, r.seed, r.workdir) for r in runs] == [
        ('a', 0, '/w/a/seed0'), ('', 0, '/w/default/seed0'),
        ('a', 1, '/w/a/seed1'), ('', 1, '/w/default/seed1')]


def test_seed_in_an_override_becomes_each_runs_seed():
    # Each seed starts from its own pretrained run: the paired protocol of a fine-tuning sweep.
    overrides = ['--config.init_from=/pre/seed{seed}', '--config.bases.num_epochs=3']
    commands = [sweep.run_command('/c.py', run, overrides) for run in sweep.plan('/w', [''], 2)]
    assert [c[-2:] for c in commands] == [
        ['--config.init_from=/pre/seed0', '--config.bases.num_epochs=3'],
        ['--config.init_from=/pre/seed1', '--config.bases.num_epochs=3']]
    assert [c[-3] for c in commands] == ['--config.seed=0', '--config.seed=1']


def test_eta_takes_each_remaining_runs_variant_mean():
    """A sweep of flat runs (4 and 6 min) and DeepME runs (50 min): the old ETA, remaining runs x
    the mean of all finished ones, said 2 x 20 = 40 min for one flat and one DeepME run left."""
    finished = {'ablation=flat': [4.0, 6.0], '': [50.0]}
    remaining = [sweep.Run('ablation=flat', 2, 'a'), sweep.Run('', 2, 'b'), sweep.Run('nossc', 2, 'c')]
    # flat 5 + DeepME 50 + an unseen variant at the mean of every finished run, 60 / 3 = 20
    assert sweep.eta_seconds(remaining, finished) == pytest.approx(60 * (5 + 50 + 20))
    assert sweep.eta_seconds(remaining, {}) == 0.0  # nothing finished: no estimate yet
    assert sweep.eta_seconds([], finished) == 0.0


def test_read_summary_refuses_an_incomplete_one(tmp_path):
    assert sweep.read_summary(str(tmp_path)) is None
    (tmp_path / 'summary.json').write_text('{"final": {"test/top1": 0.5}')  # cut short
    assert sweep.read_summary(str(tmp_path)) is None
    (tmp_path / 'summary.json').write_text('{"final": {}, "wall_time_s": 1}')
    assert sweep.read_summary(str(tmp_path)) is None
    (tmp_path / 'summary.json').write_text('{"final": {"test/top1": 0.5}, "wall_time_s": 1}')
    assert sweep.read_summary(str(tmp_path)) is not None


CONFIG = 'experiments/configs/quickstart.py:smoke,base'  # a flat smoke run
OVERRIDES = ('--config.train.checkpoint_every=10 steps',)


def test_a_variant_whose_config_fails_stops_the_sweep_before_any_training(tmp_path):
    workdir = tmp_path / 'sweep'
    with pytest.raises(sweep.SweepConfigError) as e:
        sweep.run_sweep(CONFIG, ['', 'k=3', 'nope=1'], 1, str(workdir), log=lambda *a, **k: None)
    quickstart = os.path.abspath(CONFIG.split(':')[0])
    assert str(e.value).splitlines() == [
        'no run started; fix these variants first:',
        f"  k=3 seed 0: --config={quickstart}:smoke,base,k=3 does not load: "
        "'smoke,base,k=3' sets k, which this variant does not use; drop it.",
        f"  nope=1 seed 0: --config={quickstart}:smoke,base,nope=1 does not load: "
        "Unknown config argument 'nope'; known: base, deepme, dmde, k, smoke."]
    assert not glob.glob(str(workdir / '*' / 'seed0' / 'summary.json'))


def test_sweep_skips_finished_runs_and_resumes_a_killed_one(tmp_path):
    """Seed 0 finishes; then seed 1 is SIGKILLed writing its step-20 checkpoint while seed 0 is
    skipped; the third call skips seed 0 again and resumes seed 1 from its checkpoint of step 10."""
    workdir, lines = str(tmp_path / 'sweep'), []
    log = lambda *a, **k: lines.append(a[0])  # noqa: E731
    first = sweep.run_sweep(CONFIG, [''], 1, workdir, overrides=OVERRIDES, log=log)
    assert first['finished'] == 1 and first['runs'][0]['status'] == 'finished'
    seed0 = os.path.join(workdir, 'default', 'seed0', 'summary.json')
    stamp = os.stat(seed0).st_mtime_ns
    assert any(line.startswith('[sweep] 1/1 done: default seed 0 test top-1') and 'ETA 0:00:00' in line
               for line in lines)

    killed_env = dict(os.environ, **{faults.ENV_VAR: 'checkpoint:2'})  # step 20's
    lines.clear()
    second = sweep.run_sweep(CONFIG, [''], 2, workdir, overrides=OVERRIDES, env=killed_env,
                             log=log)
    assert any(line.startswith('[sweep] skip default seed 0') for line in lines)
    assert [r['status'] for r in second['runs']] == ['finished', 'failed (exit -9)']
    seed1 = os.path.join(workdir, 'default', 'seed1')
    assert not os.path.exists(os.path.join(seed1, 'summary.json'))

    lines.clear()
    third = sweep.run_sweep(CONFIG, [''], 2, workdir, overrides=OVERRIDES, log=log)
    assert os.stat(seed0).st_mtime_ns == stamp  # never rerun
    assert any(line.startswith('[sweep] resume default seed 1') for line in lines)
    assert 'resumed from step 10' in open(os.path.join(seed1, 'sweep_run.log')).read()
    summary = json.load(open(os.path.join(seed1, 'summary.json')))
    assert summary['restarts'] == 1
    assert [r['status'] for r in third['runs']] == ['finished', 'finished']
    assert third['table']['']['test/top1']['n'] == 2
    on_disk = json.load(open(os.path.join(workdir, 'sweep.json')))
    assert on_disk['seeds_done'] == {'': 2} and on_disk['machine']['cores'] == os.cpu_count()
    assert on_disk['machine']['cpu_avx512'] == layers.cpu_has_avx512()  # it decides CPU lowerings
    markdown = open(os.path.join(workdir, 'sweep.md')).read()
    assert '| default | 2 |' in markdown and 'Machine:' in markdown
