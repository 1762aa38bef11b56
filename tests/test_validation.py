"""Bad input is refused before any data is read or model built: every problem at once, one line
each, naming the field; the workdir stays untouched. The CLI prints such errors without a traceback."""
import glob
import importlib
import json
import os
import pickle
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest

from experiments.configs import quickstart
from nofe_jax import validation
from nofe_jax.data import sources
from nofe_jax import methods
from nofe_jax.grouping import specialties
from nofe_jax.methods.nofe import options as nofe_options
from nofe_jax.methods.nofe import recipe as nofe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _refused(config, workdir, *messages):
    """methods.train_and_evaluate refuses ``config``, naming every message, before reading data
    or writing to the workdir."""
    no_data = AssertionError('data was read before the config was validated')
    with mock.patch.object(sources, 'load_dataset', side_effect=no_data), \
            pytest.raises(validation.ConfigError) as e:
        methods.train_and_evaluate(config, str(workdir))
    for message in messages:
        assert message in str(e.value)
    assert not os.path.exists(workdir) or not os.listdir(workdir)
    return str(e.value)


def _nofe(**nofe_fields):
    config = quickstart.get_config('smoke')
    config.nofe.update(nofe_fields)
    return config


def test_a_valid_config_has_no_problems(tmp_path):
    assert methods.config_problems(_nofe(), str(tmp_path / 'run')) == []
    assert methods.config_problems(quickstart.get_config('smoke,base'), str(tmp_path / 'run')) == []


def test_every_problem_is_reported_at_once_one_line_each(tmp_path):
    config = _nofe(balance='nonsense')
    config.generalist.optim.lr = -0.1
    config.experts.train.batch_size = -5
    config.generalist.train.duration = '0 steps'
    message = _refused(config, tmp_path / 'run', "nofe.balance='nonsense'", 'generalist.optim.lr=-0.1',
                       'experts.train.batch_size=-5', "generalist.train.duration='0 steps' is zero")
    assert len(message.splitlines()) == 4


def test_top_level_blocks_no_nofe_stage_reads_are_refused(tmp_path):
    config = _nofe()
    assert 'train' not in config and 'optim' not in config  # add_nofe drops them
    config.train = config.generalist.train
    _refused(config, tmp_path / 'run', 'config.train is not read by recipe', 'generalist.train',
             'experts.train')


@pytest.mark.parametrize('field, value, message', [
    ('batch_size', 0, 'batch_size must be a positive multiple of the device count'),
    ('eval_batch_size', -5, 'eval_batch_size must be a positive integer'),
    ('duration', 'abc', "Cannot read duration 'abc'"),
    ('duration', '0 steps', 'must train at least one step'),
])
def test_stage_loop_settings(field, value, message, tmp_path):
    config = _nofe()
    config.experts.train[field] = value
    _refused(config, tmp_path / 'run', f'experts.train.{field}', message)


def test_zero_periods_mean_at_the_end_and_are_accepted(tmp_path):
    config = _nofe()
    config.generalist.train.update(log_every='0 steps', eval_every='0 steps', checkpoint_every='0 steps')
    assert methods.config_problems(config, str(tmp_path / 'run')) == []


def test_zero_update_period_of_learned_specialties_is_refused(tmp_path):
    _refused(_nofe(update_every='0 steps'), tmp_path / 'run', 'nofe.update_every', 'never')
    assert methods.config_problems(_nofe(update_every='0 steps', specialties='random'),
                                   str(tmp_path / 'run')) == []


@pytest.mark.parametrize('field, value', [('lr', -0.1), ('momentum', 1.5), ('name', 'lbfgs'),
                                          ('schedule', 'linear')])
def test_optimiser_settings(field, value, tmp_path):
    config = _nofe()
    config.generalist.optim[field] = value
    _refused(config, tmp_path / 'run', f'generalist.optim.{field}=')


def test_partition_file_ids_outside_k_name_the_line(tmp_path):
    path = tmp_path / 'partition.txt'
    path.write_text('\n'.join(['0', '1', '2', '3', '4', '0', '9', '1', '2', '3']) + '\n')
    _refused(_nofe(specialties='file', partition_file=str(path)), tmp_path / 'run',
             f'line 7 of {path}: specialty 9 is outside [0, K=5)')
    _refused(_nofe(specialties='file', partition_file=str(tmp_path / 'absent.txt')),
             tmp_path / 'run', 'absent.txt')


def test_partition_file_using_fewer_ids_than_k_warns_with_sizes(tmp_path, capsys):
    path = tmp_path / 'partition.txt'
    path.write_text('\n'.join(str(c % 4) for c in range(10)) + '\n')
    config = _nofe(specialties='file', partition_file=str(path), init='scratch')
    summary = methods.train_and_evaluate(config, str(tmp_path / 'run'))
    warning = 'use 4 of K=5 ids (sizes [3, 3, 2, 2, 0])'
    assert warning in capsys.readouterr().out
    assert any(warning in w for w in summary['specialty_warnings'])
    assert summary['num_experts'] == 4
    assert nofe.empty_specialties_warning(np.arange(10) % 5, 5, 'file') is None


def test_partition_file_with_too_few_lines_for_the_data_is_a_config_error(tmp_path):
    path = tmp_path / 'partition.txt'
    path.write_text('0\n1\n2\n')
    config = _nofe(specialties='file', partition_file=str(path), init='scratch')
    with pytest.raises(validation.ConfigError, match='nofe.partition_file'):
        methods.train_and_evaluate(config, str(tmp_path / 'run'))


def test_npz_path_to_a_text_file(tmp_path):
    text = tmp_path / 'data.npz'
    text.write_text('not an archive\n')
    config = _nofe()
    config.data.update(source='npz', path=str(text))
    _refused(config, tmp_path / 'run', f'{text} is not an .npz archive with x_train/y_train/x_test/y_test')
    np.savez(tmp_path / 'partial.npz', x_train=np.zeros((2, 4, 4), np.uint8))
    config.data.path = str(tmp_path / 'partial.npz')
    _refused(config, tmp_path / 'run', 'lacks y_train, x_test, y_test')


def test_idx_with_an_explicit_empty_folder_never_falls_back(tmp_path):
    config = _nofe()
    config.data.update(source='idx', data_dir=str(tmp_path))
    message = _refused(config, tmp_path / 'run', str(tmp_path), 'train-images-idx3-ubyte')
    assert sources.DEFAULT_FASHION_MNIST_DIR not in message
    with pytest.raises(sources.DatasetNotFoundError, match=str(tmp_path)):
        sources.load_idx_dataset(str(tmp_path))


def test_unknown_tfds_name_is_one_line_with_the_closest_names(tmp_path):
    config = _nofe()
    config.data.update(source='tfds', name='cifar1000')
    message = _refused(config, tmp_path / 'run', "no dataset named 'cifar1000'", 'cifar100')
    assert len(message.splitlines()) == 1


def test_unknown_names_suggest_the_closest(tmp_path):
    config = _nofe()
    config.data.source = 'npzz'
    config.model.name = 'resnet1000'
    _refused(config, tmp_path / 'run', "data.source='npzz'", "model.name='resnet1000'")


def test_workdir_that_is_a_file(tmp_path):
    afile = tmp_path / 'afile'
    afile.write_text('x')
    for workdir, message in ((afile, 'exists and is not a folder'), (afile / 'sub', 'is a file')):
        problems = methods.config_problems(_nofe(), str(workdir))
        assert len(problems) == 1 and str(afile) in problems[0] and message in problems[0]
    assert afile.read_text() == 'x'


def test_unknown_field_names_the_closest_fields():
    nofe_config, base_config = _nofe(), quickstart.get_config('smoke,base')
    problem = validation.unknown_field_problem('train.duration', nofe_config)
    assert 'generalist.train.duration' in problem and 'experts.train.duration' in problem
    assert 'train.duration' in validation.unknown_field_problem('train.epochs', base_config)
    assert 'nofe.balance' in validation.unknown_field_problem('nofe.balanse', nofe_config)
    assert validation.unknown_field_problem('nofe.balance', nofe_config) is None


def _run_cli(*args, env=None):
    return subprocess.run([sys.executable, '-m', 'experiments.run',
                           '--config=experiments/configs/quickstart.py:smoke', *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})))


def test_cli_unknown_field_is_one_line_without_traceback(tmp_path):
    out = _run_cli(f'--workdir={tmp_path / "run"}', '--config.train.duration=abc')
    assert out.returncode != 0
    assert 'Traceback' not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: config field 'train.duration' does not exist; did you mean "
        "experts.train.duration or generalist.train.duration?"]
    assert not (tmp_path / 'run').exists()


def test_cli_config_error_without_traceback_unless_verbose(tmp_path):
    args = (f'--workdir={tmp_path / "run"}', '--config.nofe.balance=nonsense')
    out = _run_cli(*args)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: nofe.balance='nonsense' is not known; choose one of fully_balanced, elasso, greedy, "
        "optimal_balanced."]
    assert not (tmp_path / 'run').exists()
    verbose = _run_cli(*args, env={'NOFE_VERBOSE': '1'})
    assert verbose.returncode != 0 and 'Traceback' in verbose.stderr and 'ConfigError' in verbose.stderr


def test_branch_headed_generalist_needs_its_weights_copied(tmp_path):
    _refused(_nofe(generalist_head='branch', init='scratch'), tmp_path / 'run',
             "nofe.generalist_head='branch'", "nofe.init='generalist'")
    _refused(_nofe(generalist_head='hat'), tmp_path / 'run', "nofe.generalist_head='hat'")
    _refused(_nofe(expert_partition='random'), tmp_path / 'run', "nofe.expert_partition='random'",
             'generalist, shuffled')


def test_branch_init_is_refused_where_the_branch_has_no_such_filler(tmp_path):
    _refused(_nofe(branch_init='msra'), tmp_path / 'run', "nofe.branch_init='msra'", 'alexnet_c100',
             "'tiny_cnn' keeps its fillers")
    _refused(_nofe(branch_init='zeros'), tmp_path / 'run', "nofe.branch_init='zeros'")


def test_branch_width_is_refused_where_the_branch_has_no_width(tmp_path):
    config = _nofe(branch_width=4)
    config.model.name = 'alexnet_c100'
    _refused(config, tmp_path / 'run', 'nofe.branch_width=4 applies to the branches of tiny_cnn',
             "'alexnet_c100' keeps its own")
    _refused(_nofe(branch_width=-1), tmp_path / 'run', 'nofe.branch_width')


def test_the_checks_name_what_the_training_machinery_implements():
    assert nofe_options.SPECIALTY_ASSIGNERS == tuple(specialties.ASSIGNERS)
    for method in methods.METHODS.values():  # one record per method: its checks and its recipe
        assert callable(method.recipe().train_and_evaluate) and callable(method.recipe().build_models)


# The training machinery: seconds of imports that checking a config must not pay for.
TRAINING_MACHINERY = ('jax', 'flax', 'optax', 'orbax.checkpoint', 'tensorflow', 'matplotlib', 'scipy')


def _training_machinery_imported_by(code: str, *args: str) -> list[str]:
    """The TRAINING_MACHINERY modules a fresh interpreter has imported after running ``code``."""
    report = f'\nimport json, sys\nprint(json.dumps([m for m in {TRAINING_MACHINERY!r} if m in sys.modules]))'
    out = subprocess.run([sys.executable, '-c', code + report, *args], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_checking_every_shipped_config_imports_no_training_machinery(tmp_path):
    configs = [importlib.import_module(f'experiments.configs.{os.path.basename(path)[:-3]}')
               for path in sorted(glob.glob(os.path.join(REPO, 'experiments', 'configs', '*.py')))]
    # Built here: cifar100_param_matched sizes its model with the registry (flax) when it is loaded.
    configs = [module.get_config() for module in configs if hasattr(module, 'get_config')]
    configs.append(quickstart.get_config('smoke,base'))
    assert len(configs) >= 9
    (tmp_path / 'configs.pkl').write_bytes(pickle.dumps(configs))
    code = ('import pickle, sys\n'
            'from nofe_jax import methods\n'
            'for config in pickle.load(open(sys.argv[1], "rb")):\n'
            '    methods.config_problems(config, sys.argv[2])\n')
    assert _training_machinery_imported_by(code, str(tmp_path / 'configs.pkl'), str(tmp_path / 'run')) == []


@pytest.mark.parametrize('override, message', [
    ('--config.bogus=1', "config field 'bogus' does not exist"),
    ('--config.generalist.train.duration=abc', "Cannot read duration 'abc'"),
    ('--config.model.name=nope', "model.name='nope' is not known"),
    ('--config.experts.optim.lr=-1', 'experts.optim.lr=-1.0 must be >= 0.'),
    ('--config.nofe.balance=nope', "nofe.balance='nope' is not known"),
])
def test_cli_refuses_a_bad_flag_before_importing_the_training_machinery(override, message, tmp_path):
    code = ('import runpy, sys\n'
            'sys.argv = ["experiments.run", *sys.argv[1:]]\n'
            'try:\n'
            '    runpy.run_module("experiments.run", run_name="__main__", alter_sys=True)\n'
            'except SystemExit as e:\n'
            f'    assert str(e.code).startswith("error: ") and {message!r} in str(e.code), e.code\n'
            'else:\n'
            '    raise AssertionError("the run was not refused")\n')
    args = ('--config=experiments/configs/quickstart.py', f'--workdir={tmp_path / "run"}', override)
    assert _training_machinery_imported_by(code, *args) == []
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('config, reason', [
    ('experiments/configs/nope.py', "[Errno 2] No such file or directory: 'experiments/configs/nope.py'"),
    ('experiments/configs/quickstart.py:k=abc', "invalid literal for int() with base 10: 'abc'"),
    ('experiments/configs/fashion_pairs.py:base,k=5',
     "'base,k=5' sets k, which this variant does not use; drop it."),
])
def test_cli_config_that_does_not_load_is_one_line(config, reason, tmp_path):
    out = subprocess.run([sys.executable, '-m', 'experiments.run', f'--config={config}',
                          f'--workdir={tmp_path / "run"}'], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert out.stderr.strip().splitlines() == [f'error: --config={config} does not load: {reason}']
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('module, arg, unread', [
    ('quickstart', 'base,k=3', 'k'),                              # the flat model has no experts
    ('quickstart', 'dmde,k=3', 'k'),
    ('fashion_pairs', 'base,branch_width=2,balance=elasso', 'balance, branch_width'),
    ('fashion_styles', 'base,experts=shuffled', 'experts'),
    ('fashion_pairs_deepme', 'ablation=flat,groups=5', 'groups'),   # DeepME's, not the flat model's
    ('fashion_pairs_dmde', 'base,overlap=0.0', 'overlap'),
])
def test_a_config_argument_the_variant_never_reads_is_refused(module, arg, unread):
    get_config = importlib.import_module(f'experiments.configs.{module}').get_config
    with pytest.raises(ValueError, match=f"^'{arg}' sets {unread}, which this variant does not use"):
        get_config(arg)
    selector = arg.split(',')[0]
    get_config(selector)  # the variant itself loads


def test_every_shipped_config_refuses_arguments_it_does_not_read():
    for path in sorted(glob.glob(os.path.join(REPO, 'experiments', 'configs', '*.py'))):
        name = os.path.basename(path)[:-3]
        module = importlib.import_module(f'experiments.configs.{name}')
        if hasattr(module, 'get_config') and name != 'common':
            assert hasattr(module.get_config, '__wrapped__'), name  # common.rejects_unread_args


def test_every_argument_a_config_variant_reads_is_accepted():
    """The same arguments on the variants that read them load."""
    importlib.import_module('experiments.configs.quickstart').get_config('k=3')
    importlib.import_module('experiments.configs.fashion_pairs').get_config('branch_width=2,balance=elasso')
    importlib.import_module('experiments.configs.fashion_pairs_deepme').get_config('groups=5')
    importlib.import_module('experiments.configs.fashion_pairs_dmde').get_config('overlap=0.0,base_epochs=2')
    importlib.import_module('experiments.configs.fashion_pairs_dmde').get_config('base,base_epochs=2')


def test_experts_on_a_partition_file_need_the_file(tmp_path):
    _refused(_nofe(expert_partition='file', partition_file=str(tmp_path / 'none.txt')), tmp_path / 'run',
             'nofe.expert_partition=file need one specialty id per class')
