"""CIFAR-10 from its standard "python version" folder: data_batch_1 .. data_batch_5 (the 50,000
training images) and test_batch (10,000), plus batches.meta (the class names), as distributed.

Each batch is a pickle of {"data": uint8 array (10000, 3072), "labels": [int], ...}, rows holding
the red, green and blue 32x32 planes. Unpickling can run any code a file names, so these files are
read by a restricted Unpickler (the pickle documentation's "restricting globals"): the only
callables a file may name are the three NumPy needs to rebuild an array (numpy's _reconstruct,
ndarray, dtype, the last refusing object dtypes that could hold arbitrary Python objects) and
_codecs.encode, which pickles re-saved by Python 3 use for raw bytes. Anything else, os.system
included, stops the load with an error before it is called.
"""
import os
import pickle

import numpy as np

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array-rebuilding function, whatever its module's name


def _reconstruct(cls, shape, dtype):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"an array of type {cls!r}")
    return _RECONSTRUCT(cls, shape, dtype)


def _dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"an object dtype {dtype}")
    return dtype


def _encode(text, encoding="latin1"):
    return text.encode(encoding)


class _SafeUnpickler(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _dtype, ("_codecs", "encode"): _encode}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch never does")
        return self.ALLOWED[module, name]


def _unpickle(path, what):
    """The dict a CIFAR-10 file holds, its byte-string keys decoded."""
    try:
        with open(path, "rb") as f:
            # latin1: the original files come from Python 2, whose byte strings this decodes 1:1
            obj = _SafeUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise ValueError(f"cifar10: {path} is not a CIFAR-10 {what} file ({e or type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"cifar10: {path} holds a {type(obj).__name__}, not a CIFAR-10 {what} dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_batch(path):
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one batch file."""
    batch = _unpickle(path, "batch")
    data, labels = batch.get("data"), batch.get("labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
            and isinstance(labels, list) and len(labels) == len(data)
            and all(isinstance(y, int) and 0 <= y < 10 for y in labels)):
        raise ValueError(f"cifar10: {path} lacks a uint8 'data' array (N, 3072) with N 'labels' in 0..9")
    return data.reshape(-1, 3, 32, 32), np.array(labels, dtype=np.int64)


def read_classes(folder):
    """The class names from batches.meta when present, else the standard ten."""
    path = os.path.join(folder, "batches.meta")
    if not os.path.exists(path):
        return list(CLASSES)
    names = _unpickle(path, "metadata").get("label_names")
    if not (isinstance(names, list) and len(names) == 10):
        raise ValueError(f"cifar10: {path} lacks the ten 'label_names'")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def load_cifar10(folder):
    """((train images, labels), (test images, labels), class names) from a CIFAR-10 python folder."""
    missing = [f for f in TRAIN_FILES + [TEST_FILE] if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise ValueError(f"cifar10: {folder} lacks {', '.join(missing)} (expected the CIFAR-10 python batches)")
    train = [read_batch(os.path.join(folder, f)) for f in TRAIN_FILES]
    test = read_batch(os.path.join(folder, TEST_FILE))
    images, labels = (np.concatenate(parts) for parts in zip(*train))
    return (images, labels), test, read_classes(folder)
