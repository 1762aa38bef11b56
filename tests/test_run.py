"""The runner and every config: smoke variants run, overrides reach the code,
bad input fails fast with a message that says what to do, NofE resumes exactly."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.configs import (cifar100_base, cifar100_deepme, cifar100_dmde, cifar100_nofe,
                                 cifar100_param_matched, fashion_mnist_base, fashion_mnist_deepme,
                                 fashion_mnist_dmde, fashion_mnist_nofe, fashion_pairs, fashion_tuples,
                                 fashion_tuples_dmde, imagenet_nofe, quickstart)
from nofe_jax.data.sources import DatasetNotFoundError
from nofe_jax import methods, validation
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


def test_shuffled_experts_keep_the_generalist_and_permute_its_partition(trained_run):
    """The learned-specialty control: the same generalist (bit for bit: the shuffle draws from its
    own stream), then experts over its partition with the classes permuted, sizes kept."""
    learned = trained_run(quickstart.get_config('smoke')).summary
    config = quickstart.get_config('smoke')
    config.nofe.expert_partition = 'shuffled'
    shuffled = trained_run(config).summary
    assert shuffled['stages']['generalist']['final'] == learned['stages']['generalist']['final']
    generalist = np.asarray(shuffled['generalist_assignment'])
    learned_groups = sorted(map(sorted, learned['specialties']))
    assert sorted(sorted(str(c) for c in np.flatnonzero(generalist == k))
                  for k in np.unique(generalist)) == learned_groups
    experts_groups = sorted(map(sorted, shuffled['specialties']))
    assert experts_groups != learned_groups
    assert sorted(map(len, experts_groups)) == sorted(map(len, learned_groups))


def test_experts_on_a_partition_file(tmp_path):
    """The oracle arm's experts take the file's partition, whatever the generalist's (here a fixed
    random one and no generalist training, to keep the test short)."""
    (tmp_path / 'partition.txt').write_text('\n'.join(str(c % 5) for c in range(10)) + '\n')
    config = quickstart.get_config('smoke')
    config.nofe.update(specialties='random', init='scratch', expert_partition='file',
                       partition_file=str(tmp_path / 'partition.txt'))
    summary = methods.train_and_evaluate(config, str(tmp_path / 'run'))
    assert sorted(map(sorted, summary['specialties'])) == [['0', '5'], ['1', '6'], ['2', '7'], ['3', '8'],
                                                           ['4', '9']]
    random_partition = np.asarray(summary['generalist_assignment'])
    assert sorted(np.bincount(random_partition)) == [2] * 5 and list(summary['stages']) == ['nofe']


def _snapshot(folder) -> dict:
    """Every file (its bytes) and folder below ``folder``; None when it does not exist."""
    if not os.path.exists(folder):
        return None
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder) + '/'] = None
        for name in files:
            with open(os.path.join(root, name), 'rb') as f:
                found[os.path.relpath(os.path.join(root, name), folder)] = f.read()
    return found


def _refused_starts(tmp_path):
    """(config, the error it is refused with at set-up, after validation passed)."""
    missing_data = cifar100_nofe.get_config('model=alexnet_c100')
    missing_data.data.data_dir = str(tmp_path / 'no_data_here')  # tfds: prepared? only at load
    too_many_experts = quickstart.get_config('smoke')
    too_many_experts.nofe.num_experts = 11  # K > C: known once the data is
    too_small_images = quickstart.get_config('smoke')
    too_small_images.model.name = 'alexnet'
    return [(missing_data, DatasetNotFoundError), (too_many_experts, validation.ConfigError),
            (too_small_images, validation.ConfigError)]


def test_a_refused_start_leaves_the_workdir_as_it_was(tmp_path, trained_run):
    finished = tmp_path / 'finished'
    shutil.copytree(trained_run(quickstart.get_config('smoke')).workdir, finished)
    (tmp_path / 'empty').mkdir()
    workdirs = [finished, tmp_path / 'empty', tmp_path / 'not_yet']
    before = {w: _snapshot(w) for w in workdirs}
    for config, error in _refused_starts(tmp_path):
        for workdir in workdirs:
            methods.validate(config, str(workdir))  # passes: the problem shows at set-up
            with pytest.raises(error):
                methods.train_and_evaluate(config, str(workdir))
            assert _snapshot(workdir) == before[workdir], (config.model.name, workdir)
    assert before[tmp_path / 'empty'] == {} and before[tmp_path / 'not_yet'] is None
    # The refusals are no restarts: the rerun counts the one run that trained before it.
    summary = methods.train_and_evaluate(quickstart.get_config('smoke'), str(finished))
    assert summary['restarts'] == 1 and len(json.load(open(finished / 'runs.json'))) == 2


def test_a_model_too_large_for_the_images_fails_before_any_work_in_one_line(tmp_path):
    config = quickstart.get_config()
    config.model.name = 'alexnet'  # ImageNet-sized, on 8x8 digits
    methods.validate(config, str(tmp_path / 'w'))
    start = time.perf_counter()
    with pytest.raises(validation.ConfigError) as refused:
        methods.train_and_evaluate(config, str(tmp_path / 'w'))
    message = str(refused.value)
    assert '\n' not in message
    assert message.startswith("model.name='alexnet' does not fit the data's 8x8x1 images")
    assert 'trunk/conv1' in message and '227x227x3' in message and 'preprocess.resize' in message
    assert time.perf_counter() - start < 30  # data + shape-only tracing; nothing compiled or trained
    assert not os.path.exists(tmp_path / 'w')


def test_summary_records_code_devices_command_and_parameters(smoke_run):
    summary, workdir = smoke_run('quickstart')
    assert summary['total_wall_time_s'] >= summary['wall_time_s'] > 0
    assert summary['command'] == sys.argv  # in-process: pytest's
    assert set(summary['versions']) == {'jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy',
                                        'nofe_jax'}
    assert all(isinstance(v, str) for v in summary['versions'].values())
    assert summary['devices']['backend'] == 'cpu' and summary['devices']['count'] >= 1
    assert summary['devices']['kind'] and summary['devices']['process_count'] == 1
    git = summary['git']
    assert git is None or (len(git['commit']) == 40 and isinstance(git['dirty'], bool))
    for stage in ('generalist', 'nofe'):
        counted = summary['stages'][stage]['parameters']
        assert 0 < counted['trainable'] <= counted['total']
    on_disk = json.load(open(workdir / 'summary.json'))
    assert on_disk['stages']['nofe']['parameters'] == summary['stages']['nofe']['parameters']
    assert on_disk['git'] == git and on_disk['command'] == summary['command']


def test_git_state_is_none_outside_a_git_checkout(tmp_path):
    from nofe_jax.training import run as run_lib
    assert run_lib.git_state(str(tmp_path)) is None
    if os.path.isdir(os.path.join(REPO, '.git')) or os.path.isfile(os.path.join(REPO, '.git')):
        state = run_lib.git_state(REPO)
        assert len(state['commit']) == 40 and isinstance(state['dirty'], bool)
