"""The runner and every config: smoke variants run, overrides reach the code,
bad input fails fast with a message that says what to do, NofE resumes exactly."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from experiments.configs import (cifar100_base, cifar100_deepme, cifar100_dmde, cifar100_nofe,
                                 cifar100_param_matched, fashion_mnist_base, fashion_mnist_deepme,
                                 fashion_mnist_dmde, fashion_mnist_nofe, fashion_pairs, fashion_tuples,
                                 fashion_tuples_dmde, imagenet_nofe, quickstart)
from nofe_jax.data.sources import DatasetNotFoundError
from nofe_jax import methods
from nofe_jax.training import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMOKES = {
    'quickstart': (quickstart, 'smoke', False),
    'quickstart_base': (quickstart, 'smoke,base', False),
    'fashion_mnist_base': (fashion_mnist_base, 'smoke', True),
    'fashion_mnist_nofe': (fashion_mnist_nofe, 'smoke', True),
    'cifar100_base': (cifar100_base, 'smoke', True),
    'cifar100_nofe': (cifar100_nofe, 'smoke', True),
    'cifar100_param_matched': (cifar100_param_matched, 'smoke', True),
    'imagenet_nofe': (imagenet_nofe, 'smoke', True),
    'fashion_pairs': (fashion_pairs, 'smoke', True),
    'fashion_pairs_alexnet_base': (fashion_pairs, 'smoke,base,model=alexnet_c100', True),
    'fashion_tuples': (fashion_tuples, 'smoke', True),
    # The paper's Sec. 4.1 ablation on the benchmarks: learned specialties, NofE from random weights.
    'fashion_pairs_scratch': (fashion_pairs, 'smoke,init=scratch', True),
    'fashion_tuples_scratch': (fashion_tuples, 'smoke,init=scratch', True),
    'fashion_tuples_dmde': (fashion_tuples_dmde, 'smoke', True),
    'cifar100_dmde': (cifar100_dmde, 'smoke', True),
    'fashion_mnist_dmde': (fashion_mnist_dmde, 'smoke', True),
    'cifar100_deepme': (cifar100_deepme, 'smoke', True),
    'fashion_mnist_deepme': (fashion_mnist_deepme, 'smoke', True),
}


@pytest.fixture
def smoke_run(trained_run):
    """smoke_run(name) -> (summary, workdir) of SMOKES[name], trained once per session (conftest.py)."""
    def run(name):
        module, arg, _ = SMOKES[name]
        summary, workdir, _ = trained_run(module.get_config(arg))
        return summary, workdir
    return run


@pytest.mark.parametrize('name', sorted(SMOKES))
def test_every_config_smoke_variant_runs(name, smoke_run):
    summary, tmp_path = smoke_run(name)
    synthetic = SMOKES[name][2]
    on_disk = json.load(open(tmp_path / 'summary.json'))
    assert on_disk['final'] == summary['final']
    assert 0.0 <= summary['final']['test/top1'] <= 1.0
    assert {'test/top1', 'test/top5', 'test/per_class_top1'} <= set(summary['final'])
    assert summary['synthetic'] is synthetic
    assert len(summary['class_names']) == len(set(summary['class_names']))
    for artefact in ('config.json', 'metrics.jsonl', 'learning_curves.png'):
        assert (tmp_path / artefact).exists(), artefact
    assert glob.glob(str(tmp_path / 'tensorboard' / 'events.out.tfevents.*'))


def test_nofe_run_reports_specialties(smoke_run):
    summary, tmp_path = smoke_run('quickstart')
    partition = summary['specialties']
    names = sorted(c for group in partition for c in group)
    assert names == sorted(summary['class_names'])  # a partition of the classes by name
    assert summary['num_experts'] == len(partition) == 5
    final = summary['final']
    for key in ('test/specialty_top1', 'test/within_specialty_top1'):
        assert 0.0 <= final[key] <= 1.0
    # top1 = routed right x right within the specialty
    assert final['test/top1'] == pytest.approx(
        final['test/specialty_top1'] * final['test/within_specialty_top1'], abs=1e-6)
    updates = json.load(open(tmp_path / 'specialties.json'))
    assert len(updates) == len(summary['specialty_history']) >= 1
    assert all(sorted(sum(u['specialties'], [])) == names for u in updates)
    assert (tmp_path / 'specialties.png').exists()
    records = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
    assert any('specialties/moved' in r for r in records)


class Preempted(Exception):
    pass


def _two_epoch_quickstart():
    config = quickstart.get_config('smoke')
    for name in ('generalist', 'experts'):
        config[name].train.update(duration='2 epochs', checkpoint_every='1 epoch')
    return config


@pytest.fixture(scope='module')
def two_epoch_quickstart_summary(tmp_path_factory):
    """The uninterrupted run both resume tests compare with."""
    return methods.train_and_evaluate(_two_epoch_quickstart(), str(tmp_path_factory.mktemp('full')))


@pytest.mark.parametrize('stage', ['generalist', 'nofe'])
def test_nofe_resumes_inside_each_stage_exactly(stage, tmp_path, monkeypatch,
                                               two_epoch_quickstart_summary):
    config, full = _two_epoch_quickstart(), two_epoch_quickstart_summary

    original = checkpoints.StageCheckpoints.save
    def save(self, state, grouping, meta):
        original(self, state, grouping, meta)
        if self.directory.endswith(stage) and int(state.step) == 42:  # end of epoch 1
            self.wait()
            raise Preempted
    with monkeypatch.context() as m:
        m.setattr(checkpoints.StageCheckpoints, 'save', save)
        with pytest.raises(Preempted):
            methods.train_and_evaluate(config, str(tmp_path / 'cut'))
    resumed = methods.train_and_evaluate(config, str(tmp_path / 'cut'))
    assert resumed['final'] == full['final']
    assert resumed['specialties'] == full['specialties']
    assert resumed['specialty_history'] == full['specialty_history']


def _run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, '-m', 'experiments.run', *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_sigterm_saves_a_checkpoint_and_the_rerun_ends_like_an_uninterrupted_run(tmp_path, smoke_run):
    full, _ = smoke_run('quickstart')
    command = [sys.executable, '-m', 'experiments.run',
               '--config=experiments/configs/quickstart.py:smoke', f'--workdir={tmp_path / "cut"}']
    # Compiled afresh (not from the session's cache, tests/conftest.py) so the comparison with
    # `full` spans two compiles, as it does for a user.
    fresh = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE='false')
    cut = subprocess.Popen(command, cwd=REPO, env=fresh, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    for line in cut.stdout:
        if line.startswith('[generalist] epoch'):  # step 20 of 42: mid-epoch, mid-stage
            cut.send_signal(signal.SIGTERM)
            break
    _, err = cut.communicate(timeout=120)
    assert cut.returncode == 143, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith('[generalist] stopped by SIGTERM at step ') and last.endswith(
        'checkpoint saved; rerun the same command to resume.'), err[-3000:]
    assert 'Traceback' not in err
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert '[generalist] resumed from step ' in rerun.stdout
    summary = json.load(open(tmp_path / 'cut' / 'summary.json'))
    assert summary['final'] == full['final']
    assert summary['restarts'] == 1


def test_command_line_overrides_reach_the_code(tmp_path):
    out = _run_cli('--config=experiments/configs/quickstart.py:smoke,k=2',
                   f'--workdir={tmp_path}', '--config.experts.train.batch_size=16',
                   '--config.nofe.balance=optimal_balanced', timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.load(open(tmp_path / 'summary.json'))
    config = json.load(open(tmp_path / 'config.json'))
    assert summary['num_experts'] == 2 and len(summary['specialties']) == 2
    assert config['experts']['train']['batch_size'] == 16
    assert config['nofe']['balance'] == 'optimal_balanced'
    # 1 epoch of 1,347 digits at batch 16 = 84 steps in the NofE stage
    steps = [json.loads(l)['step'] for l in open(tmp_path / 'metrics.jsonl')
             if json.loads(l).get('stage') == 'nofe']
    assert max(steps) == 84


@pytest.mark.parametrize('override, message', [
    ('--config.model.name=resnet1000', 'resnet1000'),
    ('--config.nofe.num_experts=11', 'num_experts=11'),
    ('--config.nofe.specialties=oracle', 'oracle'),
])
def test_bad_input_fails_fast_and_says_what_to_do(override, message, tmp_path):
    start = time.perf_counter()
    out = _run_cli('--config=experiments/configs/quickstart.py:smoke', f'--workdir={tmp_path}',
                   override)
    assert out.returncode != 0
    assert message in out.stderr
    assert 'Traceback' not in out.stderr and len(out.stderr.strip().splitlines()) <= 2
    assert not glob.glob(str(tmp_path / 'checkpoints' / '*' / '*'))
    assert time.perf_counter() - start < 60  # process start + imports; the check itself is instant


def test_missing_cifar100_offline_fails_at_once(tmp_path):
    from nofe_jax.data import sources
    config = cifar100_nofe.get_config('model=alexnet_c100')
    config.data.data_dir = str(tmp_path)
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)):
        sources.load_dataset(config.data)
    assert time.perf_counter() - start < 10  # no download attempt, no network timeout (2 busy cores)



@pytest.mark.parametrize('source', ['random', 'spectral', 'wordnet', 'file'])
def test_fixed_specialty_sources_train_a_nofe(source, tmp_path, trained_run):
    """Table 2's alternatives: the partition is fixed; the NofE stage trains on it."""
    config = quickstart.get_config('smoke')
    config.nofe.specialties = source
    if source == 'file':
        (tmp_path / 'partition.txt').write_text('\n'.join(str(c % 5) for c in range(10)) + '\n')
        config.nofe.partition_file = str(tmp_path / 'partition.txt')
    summary = trained_run(config).summary  # random, spectral: the same runs as test_nofe_real_data's
    groups = summary['specialties']
    assert sorted(sum(groups, [])) == [str(d) for d in range(10)]
    assert summary['specialty_history'] == []  # nothing re-learned
    if source == 'file':
        assert sorted(map(sorted, groups)) == [['0', '5'], ['1', '6'], ['2', '7'], ['3', '8'], ['4', '9']]
    if source == 'spectral':
        assert 'spectral_base' in summary['stages']
    if source in ('random', 'file'):
        assert sorted(len(g) for g in groups) == [2] * 5


def test_nofe_from_scratch_skips_the_generalist_for_fixed_specialties(tmp_path):
    config = quickstart.get_config('smoke')
    config.nofe.update(specialties='random', init='scratch')
    summary = methods.train_and_evaluate(config, str(tmp_path))
    assert list(summary['stages']) == ['nofe']
