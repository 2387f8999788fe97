"""The image sources that ``minires train --data SPEC`` names, each giving a train and a test set of
RGB uint8 images (N, 3, size, size):

    digits        scikit-learn's bundled handwritten digits: 1,797 8x8 images of 0..9 (grayscale,
                  17 levels), nothing downloaded; a fixed 80/20 split (1,438 train, 359 test)
    cifar10:PATH  the CIFAR-10 python batches in PATH (see minires.data.cifar10), 32x32
    folder:PATH   an image-folder tree (see minires.data.folder), with its own train/test split or
                  the same fixed 80/20 split

An image size other than the source's own resizes the images (bilinear).
"""
from collections import namedtuple

import numpy as np

from . import transforms as T
from .dataset import ArrayDataset

DEFAULT_SIZES = {"digits": 8, "cifar10": 32, "folder": 32}
SPLIT_SEED, TEST_FRACTION = 0, 0.2


class Source(namedtuple("Source", "name train test mean std hflip")):
    """train and test ArrayDatasets, the per-channel mean and std of the training images (for
    Normalize) and whether mirrored images are still valid samples (not so for digits)."""

    def train_transform(self):
        """The augmentation: a random crop after zero-padding by 1/8 of the size, a horizontal
        flip where it makes sense, then ToFloat and Normalize."""
        size = self.train.images.shape[-1]
        flip = [T.RandomHorizontalFlip()] if self.hflip else []
        return T.Compose([T.RandomCrop(size, padding=max(1, size // 8)), *flip, *self.test_transform().transforms])

    def test_transform(self):
        return T.Compose([T.ToFloat(), T.Normalize(self.mean, self.std)])


def load_source(spec, image_size=None):
    """The Source for "digits", "cifar10:PATH" or "folder:PATH", its images image_size x image_size
    (default: 8 for digits, 32 otherwise). Raises ValueError with a one-line reason on bad input."""
    name, colon, path = spec.partition(":")
    if name not in DEFAULT_SIZES:
        raise ValueError(f"unknown dataset {spec!r}: expected digits, cifar10:PATH or folder:PATH")
    if (name == "digits") == bool(colon):
        raise ValueError(f"dataset {spec!r}: " + ("digits takes no path" if colon else f"expected {name}:PATH"))
    if name != "digits" and not path:
        raise ValueError(f"dataset {spec!r}: the path is empty")
    size = DEFAULT_SIZES[name] if image_size is None else image_size
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"image size must be a positive int, got {size!r}")
    if name == "digits":
        (train, test), classes, hflip = _split(*_digits()), [str(d) for d in range(10)], False
    elif name == "cifar10":
        from .cifar10 import load_cifar10
        train, test, classes = load_cifar10(path)
        hflip = True
    else:
        from .folder import load_folder
        train, test, classes = load_folder(path, size)
        train, test = (train, test) if test is not None else _split(*train)
        hflip = True
    train, test = (ArrayDataset(_resized(images, size), labels, classes) for images, labels in (train, test))
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"dataset {spec!r}: the split leaves {len(train)} training and {len(test)} test images")
    return Source(name, train, test, *_normalization(train.images), hflip)


def _normalization(images):
    """Normalize's per-channel mean and std, of the training images; a channel that is constant (as
    in single-colour images) gets std 1: centred, not divided by 0."""
    mean, std = T.channel_stats(images)
    return mean, np.where(std > 0, std, 1.0)


def _digits():
    """scikit-learn's digits as RGB uint8 (1797, 3, 8, 8) and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    gray = np.round(digits.images * (255 / 16)).astype(np.uint8)  # levels 0..16 -> 0..255
    return np.repeat(gray[:, None], 3, axis=1), digits.target.astype(np.int64)


def _split(images, labels):
    """(train, test) (images, labels) pairs: a fixed-seed permutation, its first 20% the test set."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = round(len(labels) * TEST_FRACTION)
    return (images[order[n_test:]], labels[order[n_test:]]), (images[order[:n_test]], labels[order[:n_test]])


def _resized(images, size):
    if images.shape[-2:] == (size, size):
        return images
    return np.clip(np.round(T.resize(images, size)), 0, 255).astype(np.uint8)
