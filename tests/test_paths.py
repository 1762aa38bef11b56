"""Paths from configs and flags expand a leading ``~`` wherever they are read (the shell leaves
``--config.data.data_dir=~/x`` as written): data dirs and files, the workdir, partition files."""
import os

import numpy as np
import pytest
from PIL import Image

from experiments.configs import quickstart
from nofe_jax import methods, paths, validation
from nofe_jax.data import sources
from nofe_jax.grouping import specialties
from nofe_jax.methods.nofe import options as nofe_options


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh home folder: ``~`` is ``tmp_path / 'home'``."""
    folder = tmp_path / 'home'
    folder.mkdir()
    monkeypatch.setenv('HOME', str(folder))
    return folder


def test_expand_expands_a_leading_tilde_only(home):
    assert paths.expand('~/tensorflow_datasets') == f'{home}/tensorflow_datasets'
    assert paths.expand('~') == str(home)
    assert paths.expand('') == ''  # a field's "default"
    assert paths.expand('/data/~x') == '/data/~x'
    assert paths.expand('$HOME/x') == '$HOME/x'  # the shell expands variables; we do not again


def _npz(path):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (6, 4, 4, 1), dtype=np.uint8), y_train=np.arange(6) % 2,
             x_test=rng.integers(0, 256, (2, 4, 4, 1), dtype=np.uint8), y_test=np.arange(2))


def test_data_paths_expand_tilde_in_checks_and_loaders(home):
    config = quickstart.get_config('smoke')
    _npz(home / 'tiny.npz')
    config.data.update(source='npz', path='~/tiny.npz')
    assert sources.data_problems(config.data) == []
    assert len(sources.load_dataset(config.data).train) == 6
    for split in ('train', 'test'):
        for label in ('a', 'b'):
            (home / 'folders' / split / label).mkdir(parents=True)
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(home / 'folders' / split / label / '0.png')
    config.data.update(source='image_folder', path='', data_dir='~/folders')
    assert sources.data_problems(config.data) == []
    assert sources.load_dataset(config.data).class_names == ['a', 'b']
    assert str(home / 'fashion') in sources.idx_problem('~/fashion')  # looked in the real folder


def test_tfds_data_dir_expands_tilde(home):
    with pytest.raises(sources.DatasetNotFoundError, match=str(home / 'tensorflow_datasets')):
        sources.load_tfds_dataset('cifar100', data_dir='~/tensorflow_datasets')


def test_workdir_and_partition_file_expand_tilde(home):
    (home / 'taken').write_text('a file, not a folder')
    assert 'is not a folder' in validation.workdir_problem('~/taken')
    assert validation.workdir_problem('~/new_workdir') is None
    (home / 'partition.txt').write_text('\n'.join(str(c % 5) for c in range(10)) + '\n')
    assert nofe_options.partition_file_problems('~/partition.txt', num_experts=5) == []
    np.testing.assert_array_equal(specialties.load_partition('~/partition.txt', 10), np.arange(10) % 5)
    config = quickstart.get_config('smoke')
    config.nofe.update(specialties='file', partition_file='~/partition.txt')
    assert methods.config_problems(config, '~/new_workdir') == []
    assert not os.path.exists(home / 'new_workdir')  # checking creates nothing


def test_idx_folder_expands_tilde(home):
    real = sources.DEFAULT_FASHION_MNIST_DIR
    if sources.idx_problem(real):
        pytest.skip('the Fashion-MNIST IDX files are not installed')
    os.symlink(real, home / 'fashion')
    assert sources.load_idx_dataset('~/fashion').num_classes == 10
