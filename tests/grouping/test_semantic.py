"""Tests for nofe_jax.grouping.semantic and the WordNet cut in specialties."""


import nltk
import numpy as np
import pytest

from nofe_jax.grouping import clustering, semantic, specialties as sp


def _nltk_has_wordnet():
    try:
        nltk.data.find('corpora/wordnet')
        return True
    except LookupError:
        return False


# Skip only where no WordNet exists at all (CI installs wordnet-base).
pytestmark = pytest.mark.skipif(
    not semantic.DEBIAN_WORDNET_DIR.is_dir() and not _nltk_has_wordnet(),
    reason='neither nltk wordnet nor /usr/share/wordnet is installed')

needs_debian = pytest.mark.skipif(not semantic.DEBIAN_WORDNET_DIR.is_dir(),
                                  reason='/usr/share/wordnet is not installed')


@pytest.fixture(scope='module')
def wordnet(tmp_path_factory):
    return semantic.prepare_wordnet(cache_dir=tmp_path_factory.mktemp('nltk_data'))


@needs_debian
def test_build_from_debian_copies_files(tmp_path):
    corpus = semantic.build_nltk_wordnet(semantic.DEBIAN_WORDNET_DIR, tmp_path)
    assert corpus == tmp_path / 'corpora' / 'wordnet'
    for name in ('data.noun', 'index.noun', 'index.sense', 'lexnames'):
        assert (corpus / name).is_file() and not (corpus / name).is_symlink()
    lexnames = (corpus / 'lexnames').read_text().splitlines()
    assert len(lexnames) == 45
    assert lexnames[0] == '00\tadj.all\t3' and lexnames[5] == '05\tnoun.animal\t1'
    assert lexnames[44] == '44\tadj.ppl\t3'
    # A second call reuses the complete copy.
    mtime = (corpus / 'data.noun').stat().st_mtime_ns
    semantic.build_nltk_wordnet(semantic.DEBIAN_WORDNET_DIR, tmp_path)
    assert (corpus / 'data.noun').stat().st_mtime_ns == mtime


def test_build_from_missing_dir_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match='apt-get install .*wordnet-base wordnet-sense-index'):
        semantic.build_nltk_wordnet(tmp_path / 'nowhere', tmp_path / 'cache')


def test_default_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv(semantic.CACHE_ENV_VAR, str(tmp_path))
    assert semantic.default_cache_dir() == tmp_path
    monkeypatch.delenv(semantic.CACHE_ENV_VAR)
    assert semantic.default_cache_dir().parts[-3:] == ('.cache', 'nofe_jax', 'nltk_data')


def test_lch_dog_cat(wordnet):
    dog, cat = semantic.synset_of('dog.n.01', wordnet), semantic.synset_of('n02121620', wordnet)
    assert cat.name() == 'cat.n.01'
    assert semantic.synset_of('n02084071', wordnet) == dog
    sim = semantic.lch_similarity_matrix([dog, cat], wordnet)
    assert sim[0, 1] == pytest.approx(2.0281, abs=1e-4) and sim[1, 0] == sim[0, 1]
    assert sim[0, 0] == pytest.approx(np.log(2 * 19)) and sim[0, 0] > sim[0, 1]
    assert dog.shortest_path_distance(cat) == 4


def test_lch_against_hypernym_walks(wordnet):
    """Paths walked by hand; LCH = ln(2 * 19) - ln(edges + 1)."""
    synset = wordnet.synset
    lion, tiger, dog, cat = (synset(n) for n in ('lion.n.01', 'tiger.n.02', 'dog.n.01', 'cat.n.01'))
    # lion -> big_cat <- tiger: 2 edges.
    assert lion.hypernyms() == tiger.hypernyms() == [synset('big_cat.n.01')]
    # dog -> canine -> carnivore <- feline <- cat: 4 edges.
    assert synset('canine.n.02') in dog.hypernyms()
    assert synset('canine.n.02').hypernyms() == synset('feline.n.01').hypernyms() == [synset('carnivore.n.01')]
    assert cat.hypernyms() == [synset('feline.n.01')]
    # lion -> big_cat -> feline -> carnivore <- canine <- dog: 5 edges.
    assert synset('big_cat.n.01').hypernyms() == [synset('feline.n.01')]
    sim = semantic.lch_similarity_matrix([lion, tiger, dog, cat], wordnet)
    assert sim[0, 1] == pytest.approx(2.538974, abs=1e-6)  # ln(38 / 3)
    assert sim[2, 3] == pytest.approx(2.028148, abs=1e-6)  # ln(38 / 5)
    assert sim[0, 2] == pytest.approx(1.845827, abs=1e-6)  # ln(38 / 6)


def test_shortest_paths_match_nltk(wordnet):
    synsets = semantic.class_synsets('cifar100', wordnet)[::9]
    paths = semantic.shortest_path_matrix(synsets)
    expected = [[a.shortest_path_distance(b) for b in synsets] for a in synsets]
    np.testing.assert_array_equal(paths, expected)


@pytest.mark.parametrize('dataset,size', [('cifar100', 100), ('fashion_mnist', 10), ('digits', 10),
                                          ('imagenet2012', 1000)])
def test_every_class_synset_resolves(wordnet, dataset, size):
    synsets = semantic.class_synsets(dataset, wordnet)
    assert len(synsets) == size == len(set(synsets))
    assert all(s.pos() == 'n' for s in synsets)
    sim = semantic.lch_similarity_matrix(synsets, wordnet)
    assert np.all(np.isfinite(sim)) and np.allclose(sim, sim.T)


def test_imagenet2012_wnids_in_tfds_label_order():
    import tensorflow_datasets as tfds
    names = tfds.builder('imagenet2012').info.features['label'].names
    assert semantic.IMAGENET2012_WNIDS == tuple(names)
    assert semantic.IMAGENET2012_WNIDS[:2] == ('n01440764', 'n01443537')  # tench, goldfish


@pytest.fixture(scope='module')
def recomputed_path_lengths(wordnet):
    return semantic.path_length_tables(wordnet)


@pytest.mark.parametrize('dataset', sorted(semantic.CLASS_SYNSETS))
def test_shipped_similarity_equals_wordnet(wordnet, recomputed_path_lengths, dataset):
    shipped = semantic.shipped_path_lengths(dataset)
    assert shipped.dtype == np.uint8
    np.testing.assert_array_equal(shipped, recomputed_path_lengths[dataset])
    live = semantic.lch_similarity_matrix(semantic.class_synsets(dataset, wordnet), wordnet)
    np.testing.assert_array_equal(semantic.semantic_similarity(dataset), live)


def test_shipped_file_lists_every_table():
    with semantic.package_data(semantic.PATH_LENGTHS_FILE).open('rb') as f, np.load(f) as data:
        assert set(data.files) == {key for d in semantic.CLASS_SYNSETS for key in (d, f'{d}_synsets')}


def test_write_path_length_file_round_trips(wordnet, tmp_path, monkeypatch):
    monkeypatch.setattr(semantic, 'CLASS_SYNSETS', {'digits': semantic.CLASS_SYNSETS['digits']})
    semantic.write_path_length_file(tmp_path / 'paths.npz', wordnet)
    with np.load(tmp_path / 'paths.npz') as data:
        np.testing.assert_array_equal(data['digits'], semantic.shipped_path_lengths('digits'))
        assert tuple(data['digits_synsets'].tolist()) == semantic.CLASS_SYNSETS['digits']


def test_stale_shipped_table_is_refused(monkeypatch):
    edited = ('zero.n.02',) + semantic.CLASS_SYNSETS['digits'][:0:-1]
    monkeypatch.setitem(semantic.CLASS_SYNSETS, 'digits', edited)
    with pytest.raises(ValueError, match='stale.*python -m nofe_jax.grouping.semantic'):
        semantic.semantic_similarity('digits')
    with pytest.raises(ValueError, match='No class -> synset table'):
        semantic.semantic_similarity('mnist')


def test_semantic_similarity_needs_no_nltk():
    import subprocess
    import sys
    code = ('import sys; sys.modules["nltk"] = None; from nofe_jax.grouping import semantic; '
            'sim = semantic.semantic_similarity("imagenet2012"); assert sim.shape == (1000, 1000)')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_digit_synsets_are_digits(wordnet):
    digit = wordnet.synset('digit.n.01')
    assert all(digit in s.hypernyms() for s in semantic.class_synsets('digits', wordnet))


def test_cifar100_names_in_label_order():
    names = semantic.CIFAR100_CLASS_NAMES
    assert len(names) == 100 and list(names) == sorted(names)
    assert names[91] == 'trout' and names[84] == 'table'  # As in the release's class folders.


def test_wordnet_specialties_cifar100_make_sense(wordnet):
    names = list(semantic.CIFAR100_CLASS_NAMES)
    groups = sp.wordnet_specialties(semantic.class_synsets('cifar100', wordnet), 10)
    assert groups.shape == (100,) and set(groups.tolist()) == set(range(10))

    def same_group(*classes):
        return len({groups[names.index(c)] for c in classes}) == 1

    assert same_group('maple_tree', 'oak_tree', 'palm_tree', 'pine_tree', 'willow_tree')
    assert same_group('apple', 'orange', 'pear')
    assert same_group('bus', 'pickup_truck', 'streetcar', 'tractor', 'train')
    assert same_group('lion', 'tiger', 'leopard', 'wolf', 'fox')
    assert not same_group('lion', 'bus')


@pytest.mark.parametrize('num_groups', [1, 2, 3, 7, 20, 50, 100])
def test_wordnet_specialties_exactly_k(wordnet, num_groups):
    groups = sp.wordnet_specialties(semantic.class_synsets('cifar100', wordnet), num_groups)
    assert set(groups.tolist()) == set(range(num_groups))


def test_wordnet_specialties_digits_and_too_many(wordnet):
    synsets = semantic.class_synsets('digits', wordnet)
    assert len(set(sp.wordnet_specialties(synsets, 3).tolist())) == 3
    with pytest.raises(ValueError, match='Choose K <= C'):
        sp.wordnet_specialties(synsets, 11)


def test_pair_classes_are_as_similar_as_their_items_on_average():
    items = np.array([[3.0, 1.0], [1.0, 3.0]])
    pairs = semantic.tuple_similarity(items, 2)  # classes (0,0), (0,1), (1,0), (1,1)
    assert pairs[0, 1] == (3.0 + 1.0) / 2 and pairs[1, 2] == (1.0 + 1.0) / 2 and pairs[3, 3] == 3.0
    fashion = semantic.semantic_similarity('fashion_mnist')
    shipped = semantic.semantic_similarity('fashion_pairs')
    assert shipped.shape == (100, 100)
    # 'Shirt|Bag' (6, 8) vs 'T-shirt/top|Bag' (0, 8)
    assert shipped[6 * 10 + 8, 0 * 10 + 8] == (fashion[6, 0] + fashion[8, 8]) / 2


def test_tuple_classes_number_their_items_left_first():
    items = np.array([[3.0, 1.0], [1.0, 2.0]])
    triples = semantic.tuple_similarity(items, 3)  # class = 4 * left + 2 * middle + right
    # (0,1,1) vs (1,1,0): left 0/1, middle 1/1, right 1/0
    assert triples[0b011, 0b110] == pytest.approx((1.0 + 2.0 + 1.0) / 3)
    assert np.allclose(triples, triples.T) and np.allclose(np.diag(triples)[[0, 7]], [3.0, 2.0])
    fashion = semantic.semantic_similarity('fashion_mnist')
    shipped = semantic.semantic_similarity('fashion_tuples')
    assert shipped.shape == (1000, 1000)
    # 'Shirt|Bag|Coat' (6, 8, 4) vs 'T-shirt/top|Bag|Pullover' (0, 8, 2)
    assert shipped[684, 82] == pytest.approx((fashion[6, 0] + fashion[8, 8] + fashion[4, 2]) / 3)


def test_left_item_reading_makes_each_tuple_a_hyponym_of_its_left_item():
    items = np.array([[0.0, 3.0], [3.0, 0.0]])  # two items three edges apart
    # pairs (0,0), (0,1), (1,0), (1,1): siblings under one left item are 2 apart, cousins 3 + 2
    assert np.array_equal(semantic.left_item_paths(items, 2),
                          [[0, 2, 5, 5], [2, 0, 5, 5], [5, 5, 0, 2], [5, 5, 2, 0]])
    fashion_paths = semantic.shipped_path_lengths('fashion_mnist')
    theta = semantic.semantic_similarity('fashion_tuples_left')
    assert theta.shape == (1000, 1000)
    # 'Shirt|Bag|Coat' (684) vs 'Shirt|Bag|Pullover' (682): siblings; vs 'T-shirt/top|Bag|Pullover' (82)
    assert theta[684, 682] == pytest.approx(semantic.lch_from_path_lengths(2.0))
    assert theta[684, 82] == pytest.approx(semantic.lch_from_path_lengths(fashion_paths[6, 0] + 2.0))
    assert theta[684, 684] == pytest.approx(semantic.lch_from_path_lengths(0.0))


def test_clustering_the_left_item_reading_groups_whole_left_items():
    theta = semantic.semantic_similarity('fashion_pairs_left')
    affinity = theta * (1.0 - np.eye(100))
    memberships = clustering.soft_spectral_clustering(affinity, 10, np.random.default_rng(0))
    groups = np.argmax(memberships, axis=1)
    # one group per left item: classes 10 l .. 10 l + 9 share theirs
    assert sorted(len(set(groups[10 * left:10 * left + 10])) for left in range(10)) == [1] * 10
    assert len(set(groups)) == 10
