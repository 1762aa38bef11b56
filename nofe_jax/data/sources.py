"""Where images come from: random-access splits of uint8 images and int32 labels.

Every source yields numpy only. Catalog datasets go through tensorflow-datasets
(imported lazily, only on that path); local files (Fashion-MNIST IDX, npz,
image-folder trees), scikit-learn's digits and learnable synthetic data are
first-class alternatives for offline machines.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import gzip
import os
import struct
import tempfile
import zipfile
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np
from PIL import Image

from nofe_jax import paths, validation

# Debian's `dataset-fashion-mnist` package installs the IDX files here.
DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'

FASHION_MNIST_CLASSES = [
    'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
    'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
]

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.ppm', '.pgm', '.tif', '.tiff', '.webp')

# Catalog datasets whose train split is larger than this are read on demand
# (array_record) instead of being loaded into memory.
MAX_IN_MEMORY_BYTES = 4 * 1024**3


class DatasetNotFoundError(FileNotFoundError):
    """The requested data is not on this machine; the message says how to provide it."""


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file."""


# Set in the pipeline's worker processes: there each worker is one core's worth of decoding, so
# sources decode a batch in the worker's own thread instead of a thread pool.
_decode_serially = False


def decode_serially() -> None:
    """Makes every source in this process decode in the calling thread (pipeline workers)."""
    global _decode_serially
    _decode_serially = True


class _DecodingPool:
    """A thread pool created on first use and left out of pickles (worker processes make theirs)."""

    def __init__(self, num_threads: int):
        self.num_threads = num_threads
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def map(self, fn: Callable, items: Sequence) -> list:
        if _decode_serially or self.num_threads <= 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.num_threads)
        return list(self._pool.map(fn, items))

    def __getstate__(self) -> dict:
        return {'num_threads': self.num_threads, '_pool': None}


class ArraySource(abc.ABC):
    """A random-access split: uint8 images [n,H,W,C] and int32 labels [n] by index."""

    # Worker processes `pipeline` decodes and augments this source's batches in (0: one host
    # thread). Sources that decode files take it from config.data.num_workers; in-memory
    # arrays keep 0, as copying them into workers is slower than the thread.
    num_workers: int = 0

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of examples."""

    @property
    @abc.abstractmethod
    def labels(self) -> np.ndarray:
        """All labels, int32 [N]."""

    @abc.abstractmethod
    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images uint8 [n,H,W,C] and labels int32 [n] at `indices`."""


class InMemorySource(ArraySource):
    """A split held in memory as numpy arrays."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f'images must be uint8 [N,H,W,C], got {images.dtype} {images.shape}')
        if labels.shape != (images.shape[0],):
            raise ValueError(f'labels must be [N={images.shape[0]}], got {labels.shape}')
        self.images = images
        self._labels = labels.astype(np.int32)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices)
        return self.images[indices], self._labels[indices]


class SubsetSource(ArraySource):
    """A view of `indices` of another source (e.g. a training split minus a held-out subset)."""

    def __init__(self, source: ArraySource, indices: np.ndarray):
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and (indices.min() < 0 or indices.max() >= len(source))):
            raise ValueError(f'subset indices must be a 1-D vector in [0, {len(source)})')
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return self.indices.size

    @property
    def num_workers(self) -> int:
        return self.source.num_workers

    @property
    def labels(self) -> np.ndarray:
        return self.source.labels[self.indices]

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.source.get(self.indices[np.asarray(indices)])


def _to_rgb_or_gray(image: Image.Image, channels: int) -> Image.Image:
    return image.convert('L' if channels == 1 else 'RGB')


def _fit_size(image: Image.Image, image_size: int) -> Image.Image:
    # A plain (aspect-ignoring) resize, as Caffe's convert_imageset --resize_height/width.
    if image_size and image.size != (image_size, image_size):
        return image.resize((image_size, image_size), Image.BILINEAR)
    return image


def resize_image(image: np.ndarray, image_size: int) -> np.ndarray:
    """Resizes one uint8 [H,W,C] image to [image_size,image_size,C] (0 keeps it)."""
    if not image_size or image.shape[:2] == (image_size, image_size):
        return image
    gray = image.shape[-1] == 1
    resized = np.asarray(_fit_size(Image.fromarray(image[..., 0] if gray else image), image_size))
    return resized[..., None] if gray else resized


def _stack(images: Sequence[np.ndarray], what: str) -> np.ndarray:
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f'{what}: images have different sizes {sorted(shapes)[:4]}; '
                         'set config.data.image_size to resize them to one size')
    return np.stack(images)


class ImageFolderSource(ArraySource):
    """root/<class>/<image file> tree, decoded with PIL on access (never all in memory)."""

    def __init__(self, root: str, image_size: int = 0, class_names: Sequence[str] | None = None,
                 channels: int | None = None, num_threads: int = 8, num_workers: int = 0):
        if not os.path.isdir(root):
            raise DatasetNotFoundError(f'image folder {root!r} does not exist')
        found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        self.class_names = list(class_names) if class_names is not None else found
        unknown = sorted(set(found) - set(self.class_names))
        if unknown:
            raise ValueError(f'{root}: class folders {unknown[:5]} are not among the training classes')
        self.root = root
        self.image_size = image_size
        paths, labels = [], []
        for label, name in enumerate(self.class_names):
            folder = os.path.join(root, name)
            if not os.path.isdir(folder):
                continue
            files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
            paths += [os.path.join(folder, f) for f in files]
            labels += [label] * len(files)
        if not paths:
            raise DatasetNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) under {root}/<class>/')
        self.paths = paths
        self._labels = np.asarray(labels, np.int32)
        if channels is None:
            with Image.open(paths[0]) as first:
                channels = 1 if first.mode in ('1', 'L', 'LA', 'I', 'I;16', 'F') else 3
        self.channels = channels
        self.num_workers = num_workers
        # PIL releases the GIL while decoding, so threads give real parallelism.
        self._pool = _DecodingPool(num_threads)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def _load(self, path: str) -> np.ndarray:
        try:
            with Image.open(path) as image:
                image = _fit_size(_to_rgb_or_gray(image, self.channels), self.image_size)
                array = np.asarray(image, np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            # PIL's own messages ('image file is truncated') do not say which file.
            raise UnreadableImageError(f'cannot decode image {path}: {type(e).__name__}: {e}') from e
        return array[..., None] if array.ndim == 2 else array

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices)
        images = self._pool.map(self._load, [self.paths[i] for i in indices])
        return _stack(images, self.root), self._labels[indices]

    def image_shape(self) -> tuple[int, int, int]:
        """Shape of one decoded image (decodes the first file)."""
        return tuple(self._load(self.paths[0]).shape)


class TfdsArraySource(ArraySource):
    """A tfds split read on demand through `tfds.data_source` (array_record files)."""

    def __init__(self, data_source, label_source, image_key: str, label_key: str, image_size: int = 0,
                 num_threads: int = 8, num_workers: int = 0):
        self._source = data_source
        self._label_source = label_source  # same records with the image left undecoded
        self._image_key = image_key
        self._label_key = label_key
        self.image_size = image_size
        self._labels: np.ndarray | None = None
        self.num_workers = num_workers
        # Reading and decoding one record per thread overlaps I/O and PIL/TF decoding.
        self._pool = _DecodingPool(num_threads)

    def __len__(self) -> int:
        return len(self._source)

    @property
    def labels(self) -> np.ndarray:
        # Reading every record once is slow for ImageNet, so do it only when asked.
        if self._labels is None:
            records = self._pool.map(self._label_source.__getitem__, range(len(self)))
            labels = [r[self._label_key] for r in records]
            self._labels = np.asarray(labels, np.int32)
        return self._labels

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        records = self._pool.map(self._source.__getitem__, [int(i) for i in np.asarray(indices)])
        images = [resize_image(np.asarray(r[self._image_key], np.uint8), self.image_size) for r in records]
        labels = np.asarray([r[self._label_key] for r in records], np.int32)
        return _stack(images, 'tfds'), labels


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train and a test split with the facts the models and reports need."""

    name: str
    train: ArraySource
    test: ArraySource
    class_names: list[str]
    image_shape: tuple[int, int, int]
    num_classes: int
    synthetic: bool
    description: str
    # Known groupings of the classes (name -> int[C] group ids), to score learned partitions.
    class_groupings: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------- IDX (Fashion-MNIST)

_IDX_FILES = {
    'train_images': 'train-images-idx3-ubyte',
    'train_labels': 'train-labels-idx1-ubyte',
    'test_images': 't10k-images-idx3-ubyte',
    'test_labels': 't10k-labels-idx1-ubyte',
}


def _find_idx_file(directory: str, stem: str) -> str | None:
    for name in (stem + '.gz', stem):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def read_idx(path: str) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack('>HBB', data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f'{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})')
    shape = struct.unpack(f'>{ndim}I', data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def idx_problem(data_dir: str = '') -> str | None:
    """Why the IDX files are not in ``data_dir`` ('' = the Debian package's folder; never a fallback)."""
    directory = paths.expand(data_dir) or DEFAULT_FASHION_MNIST_DIR
    missing = [stem for stem in _IDX_FILES.values() if _find_idx_file(directory, stem) is None]
    if not missing:
        return None
    remedy = ('pass --config.data.data_dir=<dir with the 4 IDX files>' if data_dir else
              f'install them with `apt-get install dataset-fashion-mnist` (puts them in '
              f'{DEFAULT_FASHION_MNIST_DIR}) or pass --config.data.data_dir=<dir with the 4 IDX files>')
    return (f'Fashion-MNIST IDX files {", ".join(missing)} (optionally .gz) not found in '
            f'{directory}; {remedy}.')


def load_idx_dataset(data_dir: str = '') -> Dataset:
    """Fashion-MNIST from its four IDX files in ``data_dir`` ('' = the Debian package's folder)."""
    problem = idx_problem(data_dir)
    if problem:
        raise DatasetNotFoundError(problem)
    directory = paths.expand(data_dir) or DEFAULT_FASHION_MNIST_DIR
    files = {key: _find_idx_file(directory, stem) for key, stem in _IDX_FILES.items()}
    arrays = {key: read_idx(path) for key, path in files.items()}
    train = InMemorySource(arrays['train_images'][..., None], arrays['train_labels'])
    test = InMemorySource(arrays['test_images'][..., None], arrays['test_labels'])
    return Dataset(name='fashion_mnist', train=train, test=test, class_names=list(FASHION_MNIST_CLASSES),
                   image_shape=(28, 28, 1), num_classes=10, synthetic=False,
                   description=f'Fashion-MNIST IDX files in {directory}')


# ----------------------------------------------------------------------------- npz

def _as_uint8_images(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f'{what} must be [N,H,W] or [N,H,W,C], got shape {x.shape}')
    if x.dtype != np.uint8:
        if x.size and (x.min() < 0 or x.max() > 255 or not np.all(np.equal(np.mod(x, 1), 0))):
            raise ValueError(f'{what} must hold integer pixel values 0..255, got {x.dtype}')
        x = x.astype(np.uint8)
    return x


NPZ_GROUPING_PREFIX = 'grouping_'
NPZ_KEYS = ('x_train', 'y_train', 'x_test', 'y_test')


def npz_problem(path: str) -> str | None:
    """Why ``path`` is not an .npz archive holding x_train, y_train, x_test and y_test (None: it is)."""
    what = f'an .npz archive with {"/".join(NPZ_KEYS)}'
    path = paths.expand(path)
    if not path or not os.path.isfile(path):
        return f'npz file {path!r} not found; pass --config.data.path=<file.npz>, {what}.'
    if not zipfile.is_zipfile(path):
        return f'{path} is not {what}.'
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in NPZ_KEYS if key not in data.files]
    return f'{path} is not {what} (it lacks {", ".join(missing)}).' if missing else None


def load_npz_dataset(path: str) -> Dataset:
    """A dataset from one .npz file with x_train, y_train, x_test, y_test (and optional class_names).

    Optional ``grouping_<name>`` arrays (int [C]) are known groupings of the classes.
    """
    path = paths.expand(path)
    problem = npz_problem(path)
    if problem:
        absent = not os.path.isfile(path or '')  # a missing file, or one that is not an archive
        raise (DatasetNotFoundError if absent else ValueError)(problem)
    with np.load(path, allow_pickle=False) as data:
        train = InMemorySource(_as_uint8_images(data['x_train'], 'x_train'), data['y_train'].reshape(-1))
        test = InMemorySource(_as_uint8_images(data['x_test'], 'x_test'), data['y_test'].reshape(-1))
        class_names = [str(c) for c in data['class_names']] if 'class_names' in data.files else None
        groupings = {key[len(NPZ_GROUPING_PREFIX):]: np.asarray(data[key]).astype(np.int32)
                     for key in data.files if key.startswith(NPZ_GROUPING_PREFIX)}
    if class_names is None:
        num_classes = int(max(train.labels.max(), test.labels.max())) + 1
        class_names = [str(i) for i in range(num_classes)]
    for key, grouping in groupings.items():
        if grouping.shape != (len(class_names),):
            raise ValueError(f'{path}: {NPZ_GROUPING_PREFIX}{key} must hold one group id per class '
                             f'({len(class_names)}), got shape {grouping.shape}')
    name = os.path.splitext(os.path.basename(path))[0]
    return Dataset(name=name, train=train, test=test, class_names=class_names,
                   image_shape=tuple(train.images.shape[1:]), num_classes=len(class_names),
                   synthetic=False, description=f'npz file {path}', class_groupings=groupings)


# ----------------------------------------------------------------------------- image folders

def _image_folder_splits(root: str) -> tuple[str, list[str]]:
    """The train folder and the candidate test folders (first existing one wins) under ``root``."""
    return os.path.join(root, 'train'), [os.path.join(root, d) for d in ('test', 'val', 'validation')]


def image_folder_problem(root: str) -> str | None:
    """Why ``root`` is not an image-folder dataset (train/ and test|val|validation/), or None."""
    root = paths.expand(root)
    train_dir, test_dirs = _image_folder_splits(root)
    if root and os.path.isdir(train_dir) and any(os.path.isdir(d) for d in test_dirs):
        return None
    return (f'image folder dataset needs {train_dir}/<class>/* and one of {", ".join(test_dirs)} '
            'with the same class folders; pass --config.data.data_dir=<root>')


def load_image_folder_dataset(root: str, image_size: int = 0, num_workers: int = 0) -> Dataset:
    """root/train/<class>/* and root/test (or val, validation)/<class>/*, decoded on access
    (in ``num_workers`` worker processes of the pipeline; 0: one host thread)."""
    root = paths.expand(root)
    problem = image_folder_problem(root)
    if problem:
        raise DatasetNotFoundError(problem)
    train_dir, test_dirs = _image_folder_splits(root)
    test_dir = next(d for d in test_dirs if os.path.isdir(d))
    train = ImageFolderSource(train_dir, image_size, num_workers=num_workers)
    test = ImageFolderSource(test_dir, image_size, class_names=train.class_names, channels=train.channels,
                             num_workers=num_workers)
    return Dataset(name=os.path.basename(os.path.normpath(root)), train=train, test=test,
                   class_names=list(train.class_names), image_shape=train.image_shape(),
                   num_classes=len(train.class_names), synthetic=False,
                   description=f'image folders under {root}')


# ----------------------------------------------------------------------------- sklearn digits

def load_digits_dataset(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 handwritten 8x8 digits, split stratified and deterministically."""
    images, labels, train_idx, test_idx = _cached_digits_split(test_fraction, seed)
    return Dataset(name='digits', train=InMemorySource(images[train_idx], labels[train_idx]),
                   test=InMemorySource(images[test_idx], labels[test_idx]),
                   class_names=[str(i) for i in range(10)], image_shape=(8, 8, 1), num_classes=10,
                   synthetic=False, description='sklearn.datasets.load_digits (UCI handwritten digits)')


_DIGITS_ARRAYS = ('images', 'labels', 'train_idx', 'test_idx')


def digits_cache_path(test_fraction: float, seed: int) -> str:
    """Where the digits split is kept (beside WordNet's NLTK copy): one file per scikit-learn
    version, whose data and split it is."""
    import importlib.metadata
    version = importlib.metadata.version('scikit-learn')
    return os.path.join(os.path.expanduser('~'), '.cache', 'nofe_jax',
                        f'digits-sklearn{version}-test{test_fraction}-seed{seed}.npz')


def _cached_digits_split(test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """(images, labels, train_idx, test_idx), from the cache when it holds them.

    Importing scikit-learn takes most of a digits run's start-up (0.8 s of about 3 s); its
    split, saved once, is read back bit for bit. An unreadable cache file is rebuilt.
    """
    path = digits_cache_path(test_fraction, seed)
    try:
        with np.load(path) as cached:
            return tuple(cached[name] for name in _DIGITS_ARRAYS)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass
    arrays = _digits_split(test_fraction, seed)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), suffix='.npz',
                                         delete=False) as f:  # renamed whole: never half-written
            np.savez(f, **dict(zip(_DIGITS_ARRAYS, arrays)))
        os.replace(f.name, path)
    except OSError:  # a read-only home: the split is still right, only not kept
        pass
    return arrays


def _digits_split(test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits  # sklearn import is slow; only this loader needs it.
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are 0..16; stretch them to the 0..255 range every other source uses.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                           random_state=seed, stratify=labels)
    return images, labels, train_idx, test_idx


# ----------------------------------------------------------------------------- synthetic

def synthetic_dataset(image_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10,
                      num_train: int = 1000, num_test: int = 200, seed: int = 0) -> Dataset:
    """Learnable fake data: each class a fixed smooth random template plus pixel noise."""
    height, width, channels = (int(s) for s in image_shape)
    template_rng, train_rng, test_rng = (np.random.default_rng(s)
                                         for s in np.random.SeedSequence(seed).spawn(3))
    # Templates are sums of a few low-frequency cosines, so even tiny CNNs separate them.
    waves = 4
    freq = template_rng.integers(0, 3, size=(num_classes, channels, waves, 2))
    phase = template_rng.uniform(0, 2 * np.pi, size=(num_classes, channels, waves))
    amp = template_rng.uniform(0.5, 1.0, size=(num_classes, channels, waves))
    y = np.arange(height)[:, None] / height
    x = np.arange(width)[None, :] / width

    def templates(classes: np.ndarray) -> np.ndarray:
        # Only the classes a split uses: 1,000 ImageNet-sized templates would take seconds.
        f = freq[classes][..., None, None]  # [k, ch, waves, 2, 1, 1]
        arg = 2 * np.pi * (f[..., 0, :, :] * y + f[..., 1, :, :] * x) + phase[classes][..., None, None]
        t = (amp[classes][..., None, None] * np.cos(arg)).sum(2).transpose(0, 2, 3, 1)  # [k, H, W, ch]
        return 128 + 100 * t / np.abs(t).max(axis=(1, 2, 3), keepdims=True)

    def sample(rng: np.random.Generator, n: int) -> InMemorySource:
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
        classes, index = np.unique(labels, return_inverse=True)
        noisy = templates(classes)[index] + rng.normal(0, 40, size=(n, height, width, channels))
        return InMemorySource(np.clip(np.round(noisy), 0, 255).astype(np.uint8), labels)

    return Dataset(name='synthetic', train=sample(train_rng, num_train), test=sample(test_rng, num_test),
                   class_names=[f'class_{i:03d}' for i in range(num_classes)],
                   image_shape=(height, width, channels), num_classes=num_classes, synthetic=True,
                   description=f'synthetic class templates + noise (seed {seed})')


# ----------------------------------------------------------------------------- tensorflow-datasets

def _tfds_not_found(name: str, data_dir: str, looked_in: str) -> DatasetNotFoundError:
    target = data_dir or '~/tensorflow_datasets'
    lines = [
        f'tfds dataset {name!r} is not prepared in {looked_in} (no dataset_info.json there), and '
        'this library never downloads (download=False). To provide it:',
        f'  * on a machine with internet: `tfds build {name} --data_dir={target}` or '
        f'`python -c "import tensorflow_datasets as tfds; tfds.load(\'{name}\', data_dir=\'{target}\')"`, '
        f'then copy the {name}/ folder into the data dir here;',
        '  * or point to an existing tfds data dir with --config.data.data_dir=<dir>.',
    ]
    if name.startswith('imagenet'):
        lines.append(f'  * ImageNet cannot be downloaded by tfds: put ILSVRC2012_img_train.tar and '
                     f'ILSVRC2012_img_val.tar into {target}/downloads/manual/ and run `tfds build {name} '
                     f'--data_dir={target} --file_format=array_record` '
                     '(or use an image folder tree: source=image_folder).')
    return DatasetNotFoundError('\n'.join(lines))


def tfds_name_problem(name: str) -> str | None:
    """Why tensorflow-datasets knows no dataset ``name`` (with its closest names), or None."""
    import tensorflow_datasets as tfds

    known = tfds.list_builders(with_community_datasets=False)
    if name.split(':')[0].split('/')[0] in known:
        return None
    near = validation.closest(name, known)
    return (f'tensorflow-datasets has no dataset named {name!r} (data.name)'
            + (f'; did you mean {" or ".join(near)}?' if near else '.'))


def load_tfds_dataset(name: str, data_dir: str = '', train_split: str = 'train', test_split: str = 'test',
                      image_size: int = 0, num_workers: int = 0) -> Dataset:
    """A prepared tensorflow-datasets dataset; never downloads, fails fast if the data is absent.

    Splits read on demand are decoded in ``num_workers`` pipeline worker processes (0: a thread);
    splits loaded into memory always use the thread.
    """
    import tensorflow_datasets as tfds  # tfds (and TensorFlow behind tfds.load) only on this path.

    data_dir = paths.expand(data_dir)
    problem = tfds_name_problem(name)
    if problem:
        raise ValueError(problem)
    builder = tfds.builder(name, data_dir=data_dir or None)
    # Checked before tfds.load: an unprepared dataset must fail in a second, not after retries.
    if not builder.is_prepared():
        raise _tfds_not_found(name, data_dir, builder.data_dir)
    info = builder.info
    for split in (train_split, test_split):
        try:
            info.splits[split]
        except (KeyError, ValueError) as e:
            raise ValueError(f'tfds {name} has no split {split!r}; it has {", ".join(info.splits)} '
                             '(set config.data.train_split / test_split)') from e
    image_key, label_key = info.supervised_keys or ('image', 'label')
    label_feature = info.features[label_key]
    class_names = list(label_feature.names)
    image_feature = info.features[image_key]
    static_shape = tuple(image_feature.shape)
    known_shape = None not in static_shape
    train_bytes = info.splits[train_split].num_examples * (int(np.prod(static_shape)) if known_shape else 0)
    in_memory = known_shape and train_bytes <= MAX_IN_MEMORY_BYTES
    where = f'tfds {name} {builder.version} in {builder.data_dir}'

    if in_memory:
        def split_source(split: str) -> ArraySource:
            data = tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir or None, batch_size=-1,
                                           download=False))
            images = np.asarray(data[image_key], np.uint8)
            if image_size and images.shape[1:3] != (image_size, image_size):
                images = np.stack([resize_image(image, image_size) for image in images])
            return InMemorySource(images, np.asarray(data[label_key]))
        description = f'{where}, loaded into memory'
    else:
        if info.file_format != tfds.core.file_adapters.FileFormat.ARRAY_RECORD:
            raise ValueError(
                f'{where} is too large for memory or has images of varying size, and it is stored as '
                f'{info.file_format.value}, which cannot be read by index. Rebuild it with '
                f'`tfds build {name} --data_dir=... --file_format=array_record`, or export it to an image '
                'folder tree (source=image_folder).')
        if not known_shape and not image_size:
            raise ValueError(f'{where} has images of varying size {static_shape}; set config.data.image_size')

        def split_source(split: str) -> ArraySource:
            source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
            label_source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False,
                                            decoders={image_key: tfds.decode.SkipDecoding()})
            return TfdsArraySource(source, label_source, image_key, label_key, image_size,
                                   num_workers=num_workers)
        description = f'{where}, read on demand (array_record)'
    image_shape = (image_size, image_size, static_shape[-1]) if image_size else static_shape

    return Dataset(name=name, train=split_source(train_split), test=split_source(test_split),
                   class_names=class_names, image_shape=tuple(int(s) for s in image_shape),
                   num_classes=label_feature.num_classes, synthetic=False, description=description)


# ----------------------------------------------------------------------------- dispatch

_LOADERS: dict[str, Callable[[ml_collections.ConfigDict], Dataset]] = {
    'tfds': lambda c: load_tfds_dataset(c.name, c.data_dir, c.train_split, c.test_split, c.image_size,
                                        c.num_workers),
    'idx': lambda c: load_idx_dataset(c.data_dir),
    'npz': lambda c: load_npz_dataset(c.path),
    'image_folder': lambda c: load_image_folder_dataset(c.data_dir, c.image_size, c.num_workers),
    # The digits split is fixed (seed 0) so every experiment seed sees the same test set.
    'digits': lambda c: load_digits_dataset(),
    'synthetic': lambda c: synthetic_dataset(c.synthetic_shape, c.synthetic_classes,
                                             c.synthetic_train_size, c.synthetic_test_size, c.seed),
}

SOURCES = tuple(_LOADERS)

# What each source needs on disk, checked without reading any images.
_PROBLEMS: dict[str, Callable[[ml_collections.ConfigDict], str | None]] = {
    'tfds': lambda c: tfds_name_problem(c.name),
    'idx': lambda c: idx_problem(c.data_dir),
    'npz': lambda c: npz_problem(c.path),
    'image_folder': lambda c: image_folder_problem(c.data_dir),
}


def data_problems(config: ml_collections.ConfigDict) -> list[str]:
    """Every reason ``config`` (config.data) cannot load, found without reading images."""
    problem = validation.choice_problem('data.source', config.source, SOURCES)
    if problem:
        return [problem]
    problems = [_PROBLEMS[config.source](config) if config.source in _PROBLEMS else None,
                validation.range_problem('data.image_size', config.image_size, low=0, integer=True),
                validation.range_problem('data.num_workers', config.num_workers, low=0, integer=True)]
    if config.source == 'synthetic':
        problems += [validation.range_problem(f'data.{field}', config[field], low=1, integer=True)
                     for field in ('synthetic_classes', 'synthetic_train_size', 'synthetic_test_size')]
        if len(config.synthetic_shape) != 3 or min(config.synthetic_shape) < 1:
            problems.append(f'data.synthetic_shape={tuple(config.synthetic_shape)} must be (H, W, C) '
                            'with every size >= 1.')
    return [p for p in problems if p]


def load_dataset(config: ml_collections.ConfigDict) -> Dataset:
    """The dataset a data config names (config.source picks the loader)."""
    if config.source not in _LOADERS:
        raise validation.ConfigError(validation.choice_problem('data.source', config.source, SOURCES))
    return _LOADERS[config.source](config)
