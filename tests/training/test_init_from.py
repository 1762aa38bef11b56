"""``config.init_from``: a trained flat model (a checkpoint of this project) starts the flat model,
the NofE's generalist and DMDE's and DeepME's stacked bases; layers that fit load, the classifier
is re-initialised where its outputs differ, the run says which; a bad source is one line before
any work; a resumed run neither re-reads it nor ends otherwise than an uninterrupted one."""
import shutil

import jax
import numpy as np
import pytest

from experiments.configs import quickstart
from nofe_jax import methods, validation
from nofe_jax.methods.deepme import model as deepme_model
from nofe_jax.methods.deepme import recipe as deepme_recipe
from nofe_jax.methods.dmde import model as dmde_model
from nofe_jax.methods.dmde import recipe as dmde_recipe
from nofe_jax.models import group_networks, registry
from nofe_jax.training import checkpoints, init_from
from nofe_jax.training import run as run_lib

pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')

IMAGE = np.zeros((1, 8, 8, 1), np.float32)  # the digits, as tiny_cnn reads them


def _init(model, seed=0):
    return jax.jit(lambda r: model.init(r, IMAGE, train=False))(jax.random.key(seed))


def _source(num_classes=10):
    """A flat tiny_cnn's layers, as ``init_from.read_source`` gives them."""
    return init_from.layers_of(jax.device_get(_init(registry.build_base('tiny_cnn', num_classes), seed=1)))


def test_a_flat_model_loads_every_layer_of_the_same_shapes():
    fresh = _init(registry.build_base('tiny_cnn', 10))
    loaded, names, renewed = init_from.load_layers(fresh, _source(), init_from.FLAT)
    assert names == ['head/ip1', 'trunk/conv1', 'trunk/conv2'] and renewed == []
    jax.tree.map(np.testing.assert_array_equal, init_from.layers_of(loaded), _source())


def test_another_number_of_classes_re_initialises_only_the_classifier():
    fresh = _init(registry.build_base('tiny_cnn', 4))
    loaded, names, renewed = init_from.load_layers(fresh, _source(10), init_from.FLAT)
    assert names == ['trunk/conv1', 'trunk/conv2']
    assert renewed == ['head/ip1 (bias [10], kernel [512, 10] there, bias [4], kernel [512, 4] here)']
    np.testing.assert_array_equal(loaded['params']['head']['ip1']['kernel'], fresh['params']['head']['ip1']['kernel'])
    np.testing.assert_array_equal(loaded['params']['trunk']['conv2']['kernel'],
                                  _source()['params']['trunk/conv2']['kernel'])


def test_relabelled_outputs_never_take_the_classifier_even_when_its_shape_fits():
    fresh = _init(registry.build_base('tiny_cnn', 10))
    loaded, _, renewed = init_from.load_layers(fresh, _source(10), init_from.RELABELLED)
    assert renewed == ['head/ip1 (the classifier: new outputs)']
    np.testing.assert_array_equal(loaded['params']['head']['ip1']['kernel'], fresh['params']['head']['ip1']['kernel'])


def test_every_stacked_group_network_gets_the_same_loaded_layers_and_a_fresh_classifier():
    groups = group_networks.GroupNetworks(registry.build_base('tiny_cnn', 5), num_groups=3, num_class_slots=4)
    fresh = _init(groups)
    loaded, names, renewed = init_from.load_layers(fresh, _source(), init_from.STACKED_GROUPS)
    assert names == ['trunk/conv1', 'trunk/conv2'] and renewed == ['head/ip1 (the classifier: new outputs)']
    source = _source()['params']
    for layer in ('conv1', 'conv2'):
        for leaf in ('kernel', 'bias'):
            stacked = loaded['params']['base']['trunk'][layer][leaf]
            assert stacked.shape[0] == 3
            for g in range(3):
                np.testing.assert_array_equal(stacked[g], source[f'trunk/{layer}'][leaf])
    jax.tree.map(np.testing.assert_array_equal, loaded['params']['base']['head'], fresh['params']['base']['head'])
    line = init_from.describe_load('/x', names, renewed, init_from.STACKED_GROUPS, fresh)
    assert line == ('init_from /x: loaded 2 layers into each of 3 networks (trunk/conv1, trunk/conv2); '
                    're-initialised head/ip1 (the classifier: new outputs)')


def test_group_networks_over_the_sources_classes_start_from_their_classes_columns():
    groups = group_networks.GroupNetworks(registry.build_base('tiny_cnn', 5), num_groups=3, num_class_slots=4)
    fresh = _init(groups)
    slot_classes = np.array([[3, 1, 0, 0], [0, 2, 4, 5], [9, 8, 7, 0]])
    slot_mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]], bool)
    fit = init_from.stacked_groups(slot_classes, slot_mask, num_classes=10)
    loaded, names, renewed = init_from.load_layers(fresh, _source(10), fit)
    assert names == ["head/ip1 (its classes' columns)", 'trunk/conv1', 'trunk/conv2'] and renewed == []
    theirs, ours = _source(10)['params']['head/ip1'], loaded['params']['base']['head']['ip1']
    before = fresh['params']['base']['head']['ip1']
    for g in range(3):
        for j in range(5):  # slot 4: the not-in-group output
            held = j < 4 and slot_mask[g, j]
            kernel, bias = ((theirs['kernel'][:, slot_classes[g, j]], theirs['bias'][slot_classes[g, j]])
                            if held else (before['kernel'][g, :, j], before['bias'][g, j]))
            np.testing.assert_array_equal(ours['kernel'][g, :, j], kernel)
            assert ours['bias'][g, j] == bias
    np.testing.assert_array_equal(ours[group_networks.SHARED_WEIGHT], 0.0)  # w_k = w_0 + v_k = the source's
    # A source of other classes (7, not the run's 10): the classifier stays fresh.
    _, names, renewed = init_from.load_layers(fresh, _source(7), fit)
    assert names == ['trunk/conv1', 'trunk/conv2'] and renewed == ['head/ip1 (the classifier: new outputs)']


@pytest.fixture(scope='module')
def flat_source(trained_run):
    """A finished flat quickstart smoke run: the workdir others start from."""
    return trained_run(quickstart.get_config('smoke,base')).workdir


def _config(variant: str, source) -> object:
    config = quickstart.get_config(variant)
    config.init_from = str(source)
    return config


def _source_params(workdir):
    return init_from.read_source(str(workdir), 'tiny_cnn')['params']


@pytest.mark.parametrize('variant', ['smoke,dmde', 'smoke,deepme'])
def test_the_group_methods_start_every_base_network_from_the_flat_checkpoint(variant, flat_source, tmp_path):
    config = _config(variant, flat_source)
    method = methods.METHODS[config.recipe]
    run = run_lib.prepare_run(config, str(tmp_path), method)
    if config.recipe == 'dmde':
        layout = dmde_model.balanced_layout(config, 10)
        stage = dmde_recipe.bases_stage(run, layout)
    else:
        layout = deepme_model.even_layout(config, 10)
        stage = deepme_recipe.bases_stage(run, layout, np.eye(10))
    assert stage.fingerprint['init_from'] == str(flat_source)
    fresh = jax.jit(lambda r: stage.model.init(r, IMAGE, train=False))(jax.random.key(0))
    loaded = stage.init_variables(fresh)['params']['base']
    source = _source_params(flat_source)
    for g in range(layout.num_groups):
        for layer in ('conv1', 'conv2'):
            np.testing.assert_array_equal(loaded['trunk'][layer]['kernel'][g], source[f'trunk/{layer}']['kernel'])
    kernel, bias = loaded['head']['ip1']['kernel'], loaded['head']['ip1']['bias']
    assert kernel.shape[-1] == layout.num_outputs
    if config.recipe == 'dmde':  # fresh, of the group's outputs (a not-in-group output among them)
        jax.tree.map(np.testing.assert_array_equal, loaded['head'], fresh['params']['base']['head'])
        return
    # DeepME, from a flat model of the run's 10 classes: each slot starts from its class's column.
    for g, j in zip(*np.nonzero(layout.slot_mask)):
        c = layout.slot_classes[g, j]
        np.testing.assert_array_equal(kernel[g, :, j], source['head/ip1']['kernel'][:, c])
        assert bias[g, j] == source['head/ip1']['bias'][c]


def test_the_nofe_generalist_starts_from_the_flat_checkpoint_with_a_fresh_classifier(flat_source, capsys):
    from nofe_jax.methods.nofe import recipe as nofe_recipe
    config = _config('smoke', flat_source)
    run = run_lib.prepare_run(config, '/unused', methods.METHODS['nofe'])
    stage = nofe_recipe.generalist_stage(run, np.arange(10) % 5, False, nofe_recipe.count_subsets(run))
    loaded = stage.init_variables(_init(stage.model))['params']
    np.testing.assert_array_equal(loaded['trunk']['conv1']['kernel'],
                                  _source_params(flat_source)['trunk/conv1']['kernel'])
    assert '[generalist] init_from' in capsys.readouterr().out


def test_a_flat_run_says_what_it_loaded_and_learns_on(flat_source, trained_run):
    finished = trained_run(_config('smoke,base', flat_source))
    assert (f'[base] init_from {flat_source}: loaded 3 layers (head/ip1, trunk/conv1, trunk/conv2); '
            're-initialised none') in finished.stdout
    assert finished.summary['final']['test/top1'] > 0.5


def test_a_missing_source_is_one_line_before_any_work():
    config = _config('smoke,dmde', '/nonexistent/flat_run')
    with pytest.raises(validation.ConfigError) as refused:
        methods.validate(config, '/tmp/unused')
    assert str(refused.value) == ("init_from='/nonexistent/flat_run' does not exist; name a flat run's "
                                  'workdir, a checkpoint folder or a .npz or .safetensors of ImageNet weights '
                                  "(--config.init_from=...; '' starts from scratch).")


def test_a_folder_without_checkpoints_is_one_line(tmp_path):
    problems = methods.config_problems(_config('smoke,base', tmp_path), str(tmp_path / 'run'))
    assert problems == [f"init_from='{tmp_path}' holds no checkpoint: name a flat run's workdir (with "
                        "checkpoints/base/), a stage's checkpoint folder or one step's."]


def test_a_source_of_another_model_is_one_line(flat_source):
    wider = init_from.model_shapes(registry.build_base('tiny_cnn', 10, width=32), (8, 8, 1))
    source = init_from.source_shapes(str(flat_source), 'tiny_cnn')
    assert init_from.fit_problem('/x', 'tiny_cnn', source, wider) == (
        "init_from='/x' does not fit model.name='tiny_cnn': layer trunk/conv1 is bias [16], "
        'kernel [3, 3, 1, 16] there, bias [32], kernel [3, 3, 1, 32] here.')
    same = init_from.model_shapes(registry.build_base('tiny_cnn', 4), (8, 8, 1))
    assert init_from.fit_problem('/x', 'tiny_cnn', source, same) is None  # only the classifier differs


def test_a_stage_checkpoint_folder_and_a_step_folder_name_the_same_source(flat_source):
    stage_dir = flat_source / 'checkpoints' / 'base'
    step_dir = stage_dir / max((p.name for p in stage_dir.iterdir() if p.name.isdigit()), key=int)
    for path in (stage_dir, step_dir):
        jax.tree.map(np.testing.assert_array_equal, _source_params(path), _source_params(flat_source))


def test_resuming_with_another_init_from_is_refused_naming_it(flat_source, trained_run, tmp_path):
    finished = trained_run(_config('smoke,base', flat_source))
    workdir = tmp_path / 'run'
    shutil.copytree(finished.workdir, workdir)
    with pytest.raises(checkpoints.CheckpointError) as refused:
        methods.train_and_evaluate(quickstart.get_config('smoke,base'), str(workdir))
    assert f"init_from='{flat_source}' there, '' now" in str(refused.value)


def test_a_resumed_run_reads_its_checkpoint_not_the_source_and_ends_as_the_uninterrupted_one(
        flat_source, trained_run, tmp_path, capsys):
    from experiments.benchmarks import kill_soak
    source = tmp_path / 'source'
    shutil.copytree(flat_source, source)
    config = _config('smoke,base', source)
    config.train.checkpoint_every = '20 steps'
    uninterrupted = trained_run(config)  # keyed by the config: this test's own
    workdir = tmp_path / 'resumed'
    shutil.copytree(uninterrupted.workdir, workdir)
    stage_dir = workdir / 'checkpoints' / 'base'
    last = max((p for p in stage_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    shutil.rmtree(last)  # as if killed after the checkpoint before it
    # Other weights of the same shapes at the same path: a re-read would show in the result.
    other = quickstart.get_config('smoke,base')
    other.seed = 1
    shutil.rmtree(source)
    shutil.copytree(trained_run(other).workdir, source)
    capsys.readouterr()
    resumed = methods.train_and_evaluate(config, str(workdir))
    printed = capsys.readouterr().out
    assert '[base] resumed from step 40' in printed and 'init_from' not in printed
    assert resumed['final'] == uninterrupted.summary['final']
    jax.tree.map(np.testing.assert_array_equal, kill_soak.outcome(workdir)['states']['base']['params'],
                 kill_soak.outcome(uninterrupted.workdir)['states']['base']['params'])


def test_deepme_from_the_flat_checkpoint_warms_up_its_bases_and_gates_on_the_flat_model(
        flat_source, tmp_path, capsys):
    """The bases' classifiers warm up alone on the loaded trunks; with gate_input='shared' the gate
    stage loads the flat model beside them, reads its features and, frozen (the default), never
    updates it; with shared_lr_mult > 0 it trains it, the bases still frozen."""
    from experiments.benchmarks import kill_soak
    config = _config('smoke,deepme', flat_source)
    config.bases.optim.last_layer_only = '1 epoch'  # the whole smoke stage is phase one
    config.deepme.gate_input = 'shared'
    config.gate.train.duration = '5 steps'
    summary = methods.train_and_evaluate(config, str(tmp_path))
    states, source = kill_soak.outcome(tmp_path)['states'], _source_params(flat_source)
    bases = states['bases']['params']['base']
    for layer in ('conv1', 'conv2'):
        for g in range(config.deepme.num_groups):
            np.testing.assert_array_equal(bases['trunk'][layer]['kernel'][g], source[f'trunk/{layer}']['kernel'])
    # The classifiers alone learned, on the flat model's features.
    assert summary['stages']['bases']['final']['test/in_group_top1'] > 0.5

    assert f'[gate] init_from {flat_source}: loaded 3 layers (head/ip1, trunk/conv1, trunk/conv2)' \
        in capsys.readouterr().out
    shared = states['gate']['params']['shared']
    for layer, weights in init_from.layers_of({'params': shared})['params'].items():
        jax.tree.map(np.testing.assert_array_equal, weights, source[layer])  # loaded, then never updated
    mixture = deepme_model.gated_mixture(config, deepme_model.even_layout(config, 10), 10)
    images = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype(np.float32)
    tables = (np.zeros((3, 4), np.int32), np.ones((3, 4), bool))
    variables = jax.jit(lambda r: mixture.init(r, images, *tables, train=False))(jax.random.key(0))
    variables['params']['shared'] = shared
    features = mixture.apply(variables, images, *tables, train=False)[1]['features']
    flat = registry.build_base('tiny_cnn', 10).apply({'params': shared}, images, train=False)[1]['features']
    np.testing.assert_allclose(features, np.asarray(flat).reshape(3, -1), rtol=1e-6)

    tuned_dir = tmp_path / 'tuned'  # the same bases (their stage resumes at its end), a tuned gate
    shutil.copytree(tmp_path / 'checkpoints' / 'bases', tuned_dir / 'checkpoints' / 'bases')
    config.deepme.shared_lr_mult = 1.0
    config.gate.optim.weight_decay = 0.0  # what moves the flat model is the gate's gradient
    methods.train_and_evaluate(config, str(tuned_dir))
    tuned = kill_soak.outcome(tuned_dir)['states']['gate']['params']
    jax.tree.map(np.testing.assert_array_equal, tuned['groups'], states['gate']['params']['groups'])
    for layer, weights in init_from.layers_of({'params': tuned['shared']})['params'].items():
        if layer != 'head/ip1':  # its classifier has no gradient: the gate reads the features
            assert not np.array_equal(weights['kernel'], source[layer]['kernel']), layer


def test_a_shared_gate_without_init_from_is_one_line():
    config = quickstart.get_config('deepme')
    config.deepme.gate_input = 'shared'
    (problem,) = methods.config_problems(config, '/tmp/unused')
    assert problem.startswith("deepme.gate_input='shared' reads the trained flat model of init_from")
    config.deepme.gate = 'equal'  # NoGate reads nothing
    assert methods.config_problems(config, '/tmp/unused') == []
    config.deepme.shared_lr_mult = 1.0  # would tune a network nothing reads: refused, not ignored
    (problem,) = methods.config_problems(config, '/tmp/unused')
    assert problem.startswith('deepme.shared_lr_mult fine-tunes the flat model the gate reads')


def test_resuming_with_another_last_layer_warm_up_is_refused_naming_it(flat_source, trained_run, tmp_path):
    finished = trained_run(_config('smoke,base', flat_source))
    workdir = tmp_path / 'run'
    shutil.copytree(finished.workdir, workdir)
    config = _config('smoke,base', flat_source)
    config.optim.last_layer_only = '10 steps'
    with pytest.raises(checkpoints.CheckpointError) as refused:
        methods.train_and_evaluate(config, str(workdir))
    assert "optim.last_layer_only='0 steps' there, '10 steps' now" in str(refused.value)
