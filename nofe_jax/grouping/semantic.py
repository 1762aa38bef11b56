"""WordNet access (through nltk), class -> synset tables and LCH similarity.

The LCH matrices of the shipped tables come precomputed with the package
(`semantic_similarity(dataset)`, no WordNet needed at run time): the shortest
path lengths as uint8 in data/wordnet_path_lengths.npz. After editing a table,
regenerate that file from WordNet 3.0 with

    python -m nofe_jax.grouping.semantic

(tests/grouping/test_semantic.py recomputes it and compares exactly).
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # nltk takes over a second to import; only the WordNet configs need it
    from nltk.corpus.reader.wordnet import Synset, WordNetCorpusReader

DEBIAN_WORDNET_DIR = Path('/usr/share/wordnet')
CACHE_ENV_VAR = 'NOFE_JAX_NLTK_DATA'

# The files nltk's WordNetCorpusReader opens; all but `lexnames` ship in
# Debian's wordnet-base (+ wordnet-sense-index for index.sense).
_DEBIAN_FILES = (
    'cntlist.rev', 'index.sense',
    'index.adj', 'index.adv', 'index.noun', 'index.verb',
    'data.adj', 'data.adv', 'data.noun', 'data.verb',
    'adj.exc', 'adv.exc', 'noun.exc', 'verb.exc',
)

# The 45 standard WordNet 3.0 lexicographer files (name, syntactic category),
# in file-number order; Debian does not ship this file but nltk requires it.
_LEXNAMES = (
    ('adj.all', 3), ('adj.pert', 3), ('adv.all', 4), ('noun.Tops', 1),
    ('noun.act', 1), ('noun.animal', 1), ('noun.artifact', 1),
    ('noun.attribute', 1), ('noun.body', 1), ('noun.cognition', 1),
    ('noun.communication', 1), ('noun.event', 1), ('noun.feeling', 1),
    ('noun.food', 1), ('noun.group', 1), ('noun.location', 1),
    ('noun.motive', 1), ('noun.object', 1), ('noun.person', 1),
    ('noun.phenomenon', 1), ('noun.plant', 1), ('noun.possession', 1),
    ('noun.process', 1), ('noun.quantity', 1), ('noun.relation', 1),
    ('noun.shape', 1), ('noun.state', 1), ('noun.substance', 1),
    ('noun.time', 1), ('verb.body', 2), ('verb.change', 2),
    ('verb.cognition', 2), ('verb.communication', 2), ('verb.competition', 2),
    ('verb.consumption', 2), ('verb.contact', 2), ('verb.creation', 2),
    ('verb.emotion', 2), ('verb.motion', 2), ('verb.perception', 2),
    ('verb.possession', 2), ('verb.social', 2), ('verb.stative', 2),
    ('verb.weather', 2), ('adj.ppl', 3),
)

# Depth D of WordNet 3.0's noun taxonomy as nltk's lch_similarity counts it
# (the longest hypernym path); nltk derives it by scanning all 82,115 noun
# synsets, which takes about 15 s.
WORDNET30_NOUN_DEPTH = 19

_MISSING_WORDNET = (
    'WordNet 3.0 was not found. Either install the Debian packages '
    '(`apt-get install --no-install-recommends wordnet-base wordnet-sense-index`, '
    'which fill {debian}) or let nltk download it '
    '(`python -c "import nltk; nltk.download(\'wordnet\')"`).'
)


def default_cache_dir() -> Path:
    """The NLTK data dir built from Debian's WordNet: $NOFE_JAX_NLTK_DATA or ~/.cache/nofe_jax/nltk_data."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override)
    return Path.home() / '.cache' / 'nofe_jax' / 'nltk_data'


def lexnames_text() -> str:
    """The content of WordNet 3.0's `lexnames` file (`NN<TAB>name<TAB>pos-number` lines)."""
    return ''.join(f'{i:02d}\t{name}\t{pos}\n' for i, (name, pos) in enumerate(_LEXNAMES))


def build_nltk_wordnet(debian_dir: str | os.PathLike, cache_dir: str | os.PathLike) -> Path:
    """Copies Debian's WordNet into `<cache_dir>/corpora/wordnet/` (+ lexnames); returns that folder."""
    source = Path(debian_dir)
    target = Path(cache_dir) / 'corpora' / 'wordnet'
    missing = [name for name in _DEBIAN_FILES if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f'{source} lacks {missing}. ' + _MISSING_WORDNET.format(debian=source))
    if _is_complete_copy(source, target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so concurrent processes (several
    # hosts on one machine) never see a half-written corpus.
    staging = Path(tempfile.mkdtemp(prefix='wordnet.', dir=target.parent))
    for name in _DEBIAN_FILES:
        # nltk refuses symlinked corpus files, so copy the bytes.
        shutil.copyfile(source / name, staging / name)
    (staging / 'lexnames').write_text(lexnames_text())
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(staging, target)
    except OSError:
        # Another process installed a complete copy first.
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_complete_copy(source: Path, target: Path) -> bool:
    if not (target / 'lexnames').is_file():
        return False
    return all((target / name).is_file()
               and (target / name).stat().st_size == (source / name).stat().st_size
               for name in _DEBIAN_FILES)


def load_wordnet(data_dir: str | os.PathLike | None = None) -> WordNetCorpusReader:
    """nltk's WordNet reader for `<data_dir>/corpora/wordnet` (None: nltk's own search path).

    nltk 3.10 only opens files under its data path, so `data_dir` is added
    to `nltk.data.path` (for this process).
    """
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if data_dir is not None and os.fspath(data_dir) not in nltk.data.path:
        nltk.data.path.append(os.fspath(data_dir))
    corpus = nltk.data.find('corpora/wordnet')
    with warnings.catch_warnings():
        # Only the multilingual (OMW) functions are unavailable; we never use them.
        warnings.filterwarnings('ignore', message='The multilingual functions')
        return WordNetCorpusReader(corpus, None)


def prepare_wordnet(cache_dir: str | os.PathLike | None = None,
                    debian_dir: str | os.PathLike = DEBIAN_WORDNET_DIR) -> WordNetCorpusReader:
    """Returns a WordNet 3.0 reader: nltk's own data if present, else one built from Debian's files."""
    try:
        return load_wordnet()
    except LookupError:
        pass
    if not Path(debian_dir).is_dir():
        raise FileNotFoundError(_MISSING_WORDNET.format(debian=debian_dir))
    data_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    build_nltk_wordnet(debian_dir, data_dir)
    return load_wordnet(data_dir)


def synset_of(spec: str, wordnet: WordNetCorpusReader) -> Synset:
    """The synset named by an nltk name ('dog.n.01') or an ImageNet wnid ('n02084071')."""
    if len(spec) == 9 and spec[0] in 'nvasr' and spec[1:].isdigit():
        return wordnet.synset_from_pos_and_offset(spec[0], int(spec[1:]))
    return wordnet.synset(spec)


def lch_similarity_matrix(synsets: Sequence[Synset], wordnet: WordNetCorpusReader) -> np.ndarray:
    """[C, C] Leacock-Chodorow similarity of noun synsets; the diagonal holds the maximum, log(2 D).

    Same values as nltk's `lch_similarity`: -log((p + 1) / (2 D)), with p the
    shortest hypernym-graph path in edges (so p + 1 counts the nodes on it)
    and D the depth of WordNet's noun taxonomy. Shortest paths are computed
    once per shared ancestor instead of once per pair (nltk's pairwise call
    is about 3 ms, too slow for thousands of classes).
    """
    not_nouns = [s.name() for s in synsets if s.pos() != 'n']
    if not_nouns:
        raise ValueError(f'LCH similarity needs noun synsets; got {not_nouns[:5]}.')
    paths = shortest_path_matrix(synsets)
    if wordnet.get_version() == '3.0':
        return lch_from_path_lengths(paths)
    return lch_from_path_lengths(paths, log_two_depth=wordnet.lch_similarity(synsets[0], synsets[0]))


def lch_from_path_lengths(paths: np.ndarray,
                          log_two_depth: float = np.log(2.0 * WORDNET30_NOUN_DEPTH)) -> np.ndarray:
    """[C, C] LCH -log((p + 1) / (2 D)) from shortest path lengths p in edges; D defaults to WordNet 3.0's.

    The one formula both the live and the shipped matrices go through, so
    they agree to the bit.
    """
    return log_two_depth - np.log1p(np.asarray(paths, dtype=np.float64))


def shortest_path_matrix(synsets: Sequence[Synset]) -> np.ndarray:
    """[C, C] shortest path lengths (edges) through a common hypernym, inf where there is none."""
    members: dict[Synset, tuple[list[int], list[int]]] = {}
    for i, synset in enumerate(synsets):
        for ancestor, distance in _ancestor_distances(synset).items():
            idx, dist = members.setdefault(ancestor, ([], []))
            idx.append(i)
            dist.append(distance)
    paths = np.full((len(synsets), len(synsets)), np.inf)
    for idx, dist in members.values():
        block = np.ix_(idx, idx)
        dist = np.asarray(dist, dtype=np.float64)
        paths[block] = np.minimum(paths[block], dist[:, None] + dist[None, :])
    return paths


def _ancestor_distances(synset: Synset) -> dict[Synset, int]:
    """Fewest hypernym (or instance-hypernym) steps from `synset` to each ancestor, itself at 0."""
    distances: dict[Synset, int] = {}
    frontier, depth = [synset], 0
    while frontier:
        frontier = [s for s in frontier if s not in distances]
        for s in frontier:
            distances[s] = depth
        frontier = [h for s in frontier for h in s.hypernyms() + s.instance_hypernyms()]
        depth += 1
    return distances


# CIFAR-100 fine classes in tfds/keras label order (alphabetical).
CIFAR100_CLASS_NAMES = (
    'apple', 'aquarium_fish', 'baby', 'bear', 'beaver', 'bed', 'bee', 'beetle',
    'bicycle', 'bottle', 'bowl', 'boy', 'bridge', 'bus', 'butterfly', 'camel',
    'can', 'castle', 'caterpillar', 'cattle', 'chair', 'chimpanzee', 'clock',
    'cloud', 'cockroach', 'couch', 'crab', 'crocodile', 'cup', 'dinosaur',
    'dolphin', 'elephant', 'flatfish', 'forest', 'fox', 'girl', 'hamster',
    'house', 'kangaroo', 'keyboard', 'lamp', 'lawn_mower', 'leopard', 'lion',
    'lizard', 'lobster', 'man', 'maple_tree', 'motorcycle', 'mountain', 'mouse',
    'mushroom', 'oak_tree', 'orange', 'orchid', 'otter', 'palm_tree', 'pear',
    'pickup_truck', 'pine_tree', 'plain', 'plate', 'poppy', 'porcupine',
    'possum', 'rabbit', 'raccoon', 'ray', 'road', 'rocket', 'rose', 'sea',
    'seal', 'shark', 'shrew', 'skunk', 'skyscraper', 'snail', 'snake', 'spider',
    'squirrel', 'streetcar', 'sunflower', 'sweet_pepper', 'table', 'tank',
    'telephone', 'television', 'tiger', 'tractor', 'train', 'trout', 'tulip', 'turtle',
    'wardrobe', 'whale', 'willow_tree', 'wolf', 'woman', 'worm',
)

# Noun senses chosen for the image content. Where CIFAR-100 groups a class in
# a superclass, the sense follows it (mushroom and sweet pepper as vegetables,
# lamp as a source of light among the electrical devices). WordNet has no
# "aquarium fish": goldfish ("used as pond or aquarium fishes") stands in.
_CIFAR100_SYNSETS = (
    'apple.n.01', 'goldfish.n.01', 'baby.n.01', 'bear.n.01', 'beaver.n.07',
    'bed.n.01', 'bee.n.01', 'beetle.n.01', 'bicycle.n.01', 'bottle.n.01',
    'bowl.n.03', 'male_child.n.01', 'bridge.n.01', 'bus.n.01', 'butterfly.n.01',
    'camel.n.01', 'can.n.01', 'castle.n.02', 'caterpillar.n.01', 'cattle.n.01',
    'chair.n.01', 'chimpanzee.n.01', 'clock.n.01', 'cloud.n.02', 'cockroach.n.01',
    'sofa.n.01', 'crab.n.01', 'crocodile.n.01', 'cup.n.01', 'dinosaur.n.01',
    'dolphin.n.02', 'elephant.n.01', 'flatfish.n.02', 'forest.n.02', 'fox.n.01',
    'female_child.n.01', 'hamster.n.01', 'house.n.01', 'kangaroo.n.01', 'keyboard.n.01',
    'lamp.n.01', 'lawn_mower.n.01', 'leopard.n.02', 'lion.n.01', 'lizard.n.01',
    'lobster.n.02', 'man.n.01', 'maple.n.02', 'motorcycle.n.01', 'mountain.n.01',
    'mouse.n.01', 'mushroom.n.05', 'oak.n.02', 'orange.n.01', 'orchid.n.01',
    'otter.n.02', 'palm.n.03', 'pear.n.01', 'pickup.n.01', 'pine.n.01',
    'plain.n.01', 'plate.n.04', 'poppy.n.01', 'porcupine.n.01', 'opossum.n.02',
    'rabbit.n.01', 'raccoon.n.02', 'ray.n.07', 'road.n.01', 'rocket.n.01',
    'rose.n.01', 'sea.n.01', 'seal.n.09', 'shark.n.01', 'shrew.n.02',
    'skunk.n.04', 'skyscraper.n.01', 'snail.n.01', 'snake.n.01', 'spider.n.01',
    'squirrel.n.01', 'streetcar.n.01', 'sunflower.n.01', 'sweet_pepper.n.02', 'table.n.02',
    'tank.n.01', 'telephone.n.01', 'television_receiver.n.01', 'tiger.n.02', 'tractor.n.01',
    'train.n.01', 'trout.n.02', 'tulip.n.01', 'turtle.n.02', 'wardrobe.n.01', 'whale.n.02',
    'willow.n.01', 'wolf.n.01', 'woman.n.01', 'worm.n.01',
)

FASHION_MNIST_CLASS_NAMES = (
    'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
    'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
)

# jersey.n.03 is the synset whose lemmas include T-shirt; bag.n.04 is the
# handbag sense; WordNet has no ankle boot, so boot.n.01 stands in.
_FASHION_MNIST_SYNSETS = (
    'jersey.n.03', 'trouser.n.01', 'pullover.n.01', 'dress.n.01', 'coat.n.01',
    'sandal.n.01', 'shirt.n.01', 'gym_shoe.n.01', 'bag.n.04', 'boot.n.01',
)

# The digits 0-9 as numbers (all direct hyponyms of digit.n.01).
_DIGITS_SYNSETS = (
    'zero.n.02', 'one.n.01', 'two.n.01', 'three.n.01', 'four.n.01',
    'five.n.01', 'six.n.01', 'seven.n.01', 'eight.n.01', 'nine.n.01',
)


def package_data(name: str) -> importlib.resources.abc.Traversable:
    """A file shipped in nofe_jax/grouping/data (package data, so it is there after any install)."""
    return importlib.resources.files('nofe_jax.grouping') / 'data' / name


# ImageNet-1k (ILSVRC-2012) WordNet ids in tfds' label order: a copy of tfds'
# datasets/imagenet2012/labels.txt. Shipped rather than read from tfds because
# where tfds keeps that file is internal to it (no public accessor) and reading
# it would cost this module tfds' import; the list has been fixed since 2012,
# and a test checks it against tfds' imagenet2012 label names.
IMAGENET2012_WNIDS = tuple(package_data('imagenet2012_wnids.txt').read_text().split())

CLASS_SYNSETS: dict[str, tuple[str, ...]] = {
    'cifar100': _CIFAR100_SYNSETS,
    'fashion_mnist': _FASHION_MNIST_SYNSETS,
    'digits': _DIGITS_SYNSETS,
    'imagenet2012': IMAGENET2012_WNIDS,
}


def class_synsets(dataset: str, wordnet: WordNetCorpusReader) -> list[Synset]:
    """The synsets of a dataset's classes, in label order."""
    if dataset not in CLASS_SYNSETS:
        raise ValueError(f'No class -> synset table for {dataset!r}; known: {sorted(CLASS_SYNSETS)}.')
    return [synset_of(spec, wordnet) for spec in CLASS_SYNSETS[dataset]]


PATH_LENGTHS_FILE = 'wordnet_path_lengths.npz'


def path_length_tables(wordnet: WordNetCorpusReader) -> dict[str, np.ndarray]:
    """uint8 [C, C] shortest path lengths of every CLASS_SYNSETS table, what PATH_LENGTHS_FILE holds.

    Refuses anything but WordNet 3.0, whose depth the shipped LCH assumes.
    """
    if wordnet.get_version() != '3.0':
        raise ValueError(f'The shipped path lengths are for WordNet 3.0, got {wordnet.get_version()}.')
    tables = {}
    for dataset in CLASS_SYNSETS:
        paths = shortest_path_matrix(class_synsets(dataset, wordnet))
        if not np.all(paths < np.iinfo(np.uint8).max):  # also catches inf (no common hypernym)
            raise ValueError(f'{dataset}: a path length does not fit in uint8 ({paths.max()}).')
        tables[dataset] = paths.astype(np.uint8)
    return tables


def write_path_length_file(path: str | os.PathLike, wordnet: WordNetCorpusReader) -> None:
    """Writes every table's path lengths and, beside each, the synsets they were computed for."""
    tables = path_length_tables(wordnet)
    synsets = {f'{dataset}_synsets': np.array(CLASS_SYNSETS[dataset]) for dataset in tables}
    np.savez_compressed(path, **tables, **synsets)


def shipped_path_lengths(dataset: str) -> np.ndarray:
    """uint8 [C, C] shortest WordNet 3.0 path lengths of a dataset's classes, read from the package.

    Raises if the file was computed for other synsets than CLASS_SYNSETS has
    now (a table edited without regenerating the file).
    """
    if dataset not in CLASS_SYNSETS:
        raise ValueError(f'No class -> synset table for {dataset!r}; known: {sorted(CLASS_SYNSETS)}.')
    with package_data(PATH_LENGTHS_FILE).open('rb') as f, np.load(f) as data:
        stored = tuple(data[f'{dataset}_synsets'].tolist()) if f'{dataset}_synsets' in data else None
        if stored != CLASS_SYNSETS[dataset]:
            raise ValueError(f'{PATH_LENGTHS_FILE} is stale for {dataset!r} (its synsets differ from '
                             'CLASS_SYNSETS); regenerate it: python -m nofe_jax.grouping.semantic')
        return data[dataset]


def tuple_similarity(item_similarity: np.ndarray, items: int) -> np.ndarray:
    """[K^items, K^items] similarity of item tuples read left to right (class = K * left + right
    for pairs, K^2 * left + K * middle + right for three items): the mean over positions of the
    two items' similarities at that position."""
    k = item_similarity.shape[0]
    positions = np.indices((k,) * items).reshape(items, -1)  # the item at each position of every class
    return np.mean([item_similarity[np.ix_(p, p)] for p in positions], axis=0)


def left_item_paths(item_paths: np.ndarray, items: int) -> np.ndarray:
    """[K^items, K^items] path lengths (edges) when every item tuple is a hyponym of its left item:
    0 to itself, 2 between siblings under one left item, else 2 + their left items' path."""
    k = item_paths.shape[0]
    left = np.repeat(np.arange(k), k ** (items - 1))  # classes are numbered left item first
    paths = item_paths[np.ix_(left, left)].astype(np.float64) + 2.0
    np.fill_diagonal(paths, 0.0)
    return paths


# Datasets whose classes are tuples of another's items (experiments/build_fashion_pairs.py):
# name -> (the items' dataset, items per class, reading). 'mean': `tuple_similarity`, every
# position counts; 'left': `left_item_paths`, the benchmark's coarse grouping by the left item.
TUPLE_DATASETS = {'fashion_pairs': ('fashion_mnist', 2, 'mean'),
                  'fashion_tuples': ('fashion_mnist', 3, 'mean'),
                  'fashion_pairs_left': ('fashion_mnist', 2, 'left'),
                  'fashion_tuples_left': ('fashion_mnist', 3, 'left')}


def semantic_similarity(dataset: str) -> np.ndarray:
    """[C, C] LCH similarity of a dataset's classes in label order, from the shipped path lengths.

    Equal to `lch_similarity_matrix(class_synsets(dataset, wordnet), wordnet)`
    on WordNet 3.0, without needing WordNet (or nltk) installed. A tuple dataset's classes get
    their items' LCH in the table's reading (TUPLE_DATASETS).
    """
    if dataset in TUPLE_DATASETS:
        items_dataset, items, reading = TUPLE_DATASETS[dataset]
        if reading == 'left':
            return lch_from_path_lengths(left_item_paths(shipped_path_lengths(items_dataset), items))
        return tuple_similarity(semantic_similarity(items_dataset), items)
    return lch_from_path_lengths(shipped_path_lengths(dataset))


def main() -> None:
    """Regenerates the shipped path lengths from WordNet 3.0, in this source tree."""
    target = Path(__file__).parent / 'data' / PATH_LENGTHS_FILE
    write_path_length_file(target, prepare_wordnet())
    print(f'wrote {target} ({target.stat().st_size} bytes)')


if __name__ == '__main__':
    main()
