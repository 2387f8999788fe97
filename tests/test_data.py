"""minires.data: the DataLoader (batching, shuffling, seeds, resuming), the batch transforms, and the
sources, read from small files in the real formats that these tests write: CIFAR-10 batches as
Python 2 wrote them (and as Python 3 re-saves them), image-folder trees of PNG and JPEG files."""
import os
import pickle
import struct

import numpy as np
import pytest

from minires.data import ArrayDataset, DataLoader, Dataset, load_source, transforms as T
from minires.data.cifar10 import load_cifar10, read_batch


def _dataset(n=10, size=4):
    images = np.arange(n * 3 * size * size, dtype=np.uint8).reshape(n, 3, size, size)
    return ArrayDataset(images, np.arange(n) % 3, ["a", "b", "c"])


def _labels(loader):
    return [y.numpy().tolist() for _, y in loader]


# --- DataLoader ----------------------------------------------------------------------------------
def test_batches_in_order_with_last_partial_batch():
    loader = DataLoader(_dataset(10), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.shape == (4, 3, 4, 4) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in batches]), _dataset(10).images)


def test_drop_last():
    loader = DataLoader(_dataset(10), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [4, 4]


def test_shuffle_is_a_seeded_permutation_per_pass():
    data = ArrayDataset(np.zeros((10, 1, 1, 1)), np.arange(10) % 10, [str(i) for i in range(10)])
    a, b = DataLoader(data, 3, shuffle=True, seed=7), DataLoader(data, 3, shuffle=True, seed=7)
    first, second = _labels(a), _labels(a)
    assert sorted(sum(first, [])) == list(range(10))
    assert first != second  # each pass draws a new order ...
    assert [first, second] == [_labels(b), _labels(b)]  # ... the same for the same seed
    assert _labels(DataLoader(data, 3, shuffle=True, seed=8)) != first


def test_state_dict_resumes_the_next_pass():
    data = ArrayDataset(np.zeros((10, 1, 1, 1)), np.arange(10) % 10, [str(i) for i in range(10)])
    a = DataLoader(data, 4, shuffle=True, seed=3)
    _labels(a)
    state = a.state_dict()
    expected = _labels(a)
    b = DataLoader(data, 4, shuffle=True)  # a random seed, replaced by the state's
    b.load_state_dict(state)
    assert state == {"seed": 3, "epoch": 1} and _labels(b) == expected


def test_augmentation_is_seeded_too():
    data = _dataset(8, size=6)
    aug = T.Compose([T.RandomCrop(6, padding=2), T.RandomHorizontalFlip(), T.ToFloat()])
    run = lambda seed: [x.numpy() for x, _ in DataLoader(data, 3, shuffle=True, transform=aug, seed=seed)]  # noqa: E731
    for a, b in zip(run(1), run(1)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(run(1), run(2)))


def test_a_plain_dataset_is_stacked_sample_by_sample():
    class Squares(Dataset):
        def __getitem__(self, i):
            return np.full((1, 2, 2), i * i, dtype=np.float32), i

        def __len__(self):
            return 5

    (x, y), (x2, y2) = DataLoader(Squares(), batch_size=3)
    assert x.shape == (3, 1, 2, 2) and y.numpy().tolist() == [0, 1, 2] and x2.numpy()[:, 0, 0, 0].tolist() == [9, 16]


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="DataLoader: batch_size"):
        DataLoader(_dataset(), batch_size=batch_size)


def test_array_dataset_checks():
    with pytest.raises(ValueError, match=r"ArrayDataset: expected images \(N, C, H, W\)"):
        ArrayDataset(np.zeros((3, 4, 4)), np.zeros(3), ["a"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ArrayDataset(np.zeros((3, 1, 4, 4)), [0, 1, 2], ["a", "b"])


# --- transforms ----------------------------------------------------------------------------------
def test_random_crop_takes_windows_of_the_padded_image():
    images = np.random.default_rng(0).integers(1, 256, (20, 2, 5, 5)).astype(np.uint8)
    out = T.RandomCrop(4, padding=2)(images, np.random.default_rng(1))
    assert out.shape == (20, 2, 4, 4) and out.dtype == np.uint8
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for img, crop in zip(padded, out):
        found = [(i, j) for i in range(6) for j in range(6) if np.array_equal(img[:, i:i + 4, j:j + 4], crop)]
        assert found
        offsets.update(found)
    assert len(offsets) > 5  # the places vary
    np.testing.assert_array_equal(T.RandomCrop(5)(images, np.random.default_rng(0)), images)


def test_random_crop_that_does_not_fit():
    with pytest.raises(ValueError, match="RandomCrop: a 9x9 crop does not fit images 4x4 padded by 2"):
        T.RandomCrop(9, padding=2)(np.zeros((1, 1, 4, 4)), np.random.default_rng(0))


def test_horizontal_flip():
    images = np.arange(2 * 3 * 2 * 4).reshape(2, 3, 2, 4)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(images, rng), images[..., ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0)(images, rng), images)
    flipped = T.RandomHorizontalFlip()(np.repeat(images, 50, axis=0), rng)
    mirrored = [np.array_equal(f, f0[..., ::-1]) for f, f0 in zip(flipped, np.repeat(images, 50, axis=0))]
    assert 20 < sum(mirrored) < 80


def test_to_float_and_normalize():
    images = np.array([0, 51, 255], dtype=np.uint8).reshape(1, 3, 1, 1)
    x = T.ToFloat()(images)
    assert x.dtype == np.float32 and x.ravel().tolist() == pytest.approx([0.0, 0.2, 1.0])
    y = T.Normalize([0.0, 0.1, 0.5], [1.0, 0.5, 0.25])(x)
    assert y.dtype == np.float32 and y.ravel().tolist() == pytest.approx([0.0, 0.2, 2.0])
    with pytest.raises(ValueError, match="Normalize: 2 channel statistics for images of shape"):
        T.Normalize([0, 0], [1, 1])(x)
    with pytest.raises(ValueError, match="std > 0"):
        T.Normalize([0], [0])


def test_channel_stats():
    images = np.random.default_rng(0).integers(0, 256, (50, 3, 4, 5)).astype(np.uint8)
    mean, std = T.channel_stats(images, chunk=7)
    x = images / 255
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-9)


@pytest.mark.parametrize("size", [3, 8, 17])
def test_resize_matches_torch_bilinear(size):
    torch = pytest.importorskip("torch")
    images = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.tensor(images), size=(size, size), mode="bilinear",
                                               align_corners=False).numpy()
    np.testing.assert_allclose(T.resize(images, size), expected, rtol=1e-5, atol=1e-6)


# --- digits --------------------------------------------------------------------------------------
def test_digits():
    source = load_source("digits")
    train, test = source.train, source.test
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.images.shape[1:] == (3, 8, 8) and train.images.dtype == np.uint8
    assert train.classes == [str(d) for d in range(10)] and set(test.labels) == set(range(10))
    np.testing.assert_array_equal(train.images[:, 0], train.images[:, 2])  # gray, as RGB
    assert train.images.max() == 255 and not source.hflip
    again = load_source("digits", image_size=16)  # the same split, resized
    assert again.train.images.shape[1:] == (3, 16, 16)
    np.testing.assert_array_equal(again.train.labels, train.labels)
    np.testing.assert_allclose(source.mean, train.images[:, :1].mean() / 255)


# --- CIFAR-10 ------------------------------------------------------------------------------------
def _py2_pickle(obj):
    """The bytes Python 2's cPickle (protocol 2) wrote for a CIFAR-10 batch dict: byte strings as
    BINSTRING, a NumPy array as numpy.core.multiarray._reconstruct plus its __setstate__ tuple."""
    out = []

    def string(b):
        out.append(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)

    def integer(n):
        out.append(b"K" + bytes([n]) if 0 <= n < 256 else b"M" + struct.pack("<H", n))

    def value(v):
        if isinstance(v, bytes):
            string(v)
        elif isinstance(v, int):
            integer(v)
        elif isinstance(v, list):
            out.append(b"](")
            for item in v:
                value(item)
            out.append(b"e")
        else:  # a uint8 ndarray
            out.append(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            integer(0)
            out.append(b"\x85")
            string(b"b")
            out.append(b"\x87R(")
            integer(1)
            out.append(b"(")
            for n in v.shape:
                integer(n)
            out.append(b"tcnumpy\ndtype\n")
            string(b"u1")
            integer(0)
            integer(1)
            out.append(b"\x87R(")
            integer(3)
            string(b"|")
            out.append(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff")
            integer(0)
            out.append(b"tb\x89")
            string(v.tobytes())
            out.append(b"tb")

    out.append(b"\x80\x02}(")
    for k, v in obj.items():
        string(k)
        value(v)
    out.append(b"u.")
    return b"".join(out)


def _cifar_batch(seed, n):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072)).astype(np.uint8), rng.integers(0, 10, n).tolist()


def _write_cifar(folder, sizes=(3, 2, 2, 2, 1, 4), python3_batch=None):
    """data_batch_1..5 and test_batch with the given image counts, plus batches.meta; the batch
    named python3_batch is written as Python 3 re-saves it (pickle protocol 2, bytes keys)."""
    folder.mkdir(exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {}
    for i, (name, n) in enumerate(zip(names, sizes)):
        data, labels = batches[name] = _cifar_batch(i, n)
        obj = {b"batch_label": b"training batch", b"labels": labels, b"data": data,
               b"filenames": [b"img_%d.png" % j for j in range(n)]}
        blob = pickle.dumps(obj, protocol=2) if name == python3_batch else _py2_pickle(obj)
        (folder / name).write_bytes(blob)
    meta = {b"label_names": [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"],
            b"num_cases_per_batch": 10000, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(_py2_pickle(meta))
    return batches


def test_cifar10_reads_python2_and_python3_batches(tmp_path):
    batches = _write_cifar(tmp_path / "cifar", python3_batch="data_batch_2")
    source = load_source(f"cifar10:{tmp_path / 'cifar'}")
    train_data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_array_equal(source.train.images, train_data.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(source.train.labels, sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), []))
    np.testing.assert_array_equal(source.test.images, batches["test_batch"][0].reshape(-1, 3, 32, 32))
    assert source.train.classes[:2] == ["plane", "car"] and source.hflip
    assert source.train.images.shape == (10, 3, 32, 32) and len(source.test) == 4


def test_cifar10_standard_class_names_without_meta(tmp_path):
    _write_cifar(tmp_path / "c")
    os.remove(tmp_path / "c" / "batches.meta")
    (_, _), (_, _), classes = load_cifar10(str(tmp_path / "c"))
    assert classes[0] == "airplane" and len(classes) == 10


def test_cifar10_never_runs_code_from_a_file(tmp_path):
    """A pickle naming any other callable is refused before the call: here open (io.open), which
    would create a file."""
    marker = tmp_path / "created-by-the-pickle"

    class Evil:
        def __reduce__(self):
            return open, (str(marker), "w")

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": Evil(), "labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"not a CIFAR-10 batch file \(it names io.open"):
        read_batch(str(path))
    assert not marker.exists()


def test_cifar10_refuses_object_arrays(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": np.array([1, "x"], dtype=object), "labels": []}, protocol=2))
    with pytest.raises(ValueError, match="object dtype"):
        read_batch(str(path))


@pytest.mark.parametrize("damage, match", [
    (lambda f: os.remove(f / "data_batch_3"), "lacks data_batch_3"),
    (lambda f: (f / "test_batch").write_bytes(b"\x80\x02}(U\x04data"), "test_batch is not a CIFAR-10 batch file"),
    (lambda f: (f / "test_batch").write_bytes(_py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]})),
     r"lacks a uint8 'data' array \(N, 3072\)"),
    (lambda f: (f / "test_batch").write_bytes(_py2_pickle({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]})),
     "labels' in 0..9"),
    (lambda f: (f / "test_batch").write_bytes(pickle.dumps([1, 2], protocol=2)), "holds a list"),
])
def test_cifar10_bad_folders(tmp_path, damage, match):
    _write_cifar(tmp_path / "c")
    damage(tmp_path / "c")
    with pytest.raises(ValueError, match=match):
        load_source(f"cifar10:{tmp_path / 'c'}")


# --- image folders -------------------------------------------------------------------------------
def _write_folder(root, classes=("cat", "dog"), per_class=3, seed=0):
    """PNGs of varied sizes and modes (RGB, grayscale, palette) and a JPEG, per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (10 + i, 12, 3)).astype(np.uint8)
            im = Image.fromarray(pixels)
            im = [im, im.convert("L"), im.convert("P")][i % 3]
            im.save(root / name / f"{i}.png")
        Image.fromarray(np.full((6, 6, 3), 40 * c, np.uint8)).save(root / name / "extra.JPG")
        (root / name / "notes.txt").write_text("not an image, skipped by its extension")


def test_folder_split_by_seed(tmp_path):
    _write_folder(tmp_path / "imgs", per_class=4)
    source = load_source(f"folder:{tmp_path / 'imgs'}", image_size=8)
    assert source.train.classes == ["cat", "dog"] and source.hflip
    assert len(source.train) + len(source.test) == 10 and len(source.test) == 2
    assert source.train.images.shape[1:] == (3, 8, 8) and source.train.images.dtype == np.uint8
    again = load_source(f"folder:{tmp_path / 'imgs'}", image_size=8)
    np.testing.assert_array_equal(again.test.images, source.test.images)


def test_folder_with_train_and_test(tmp_path):
    from PIL import Image

    _write_folder(tmp_path / "d" / "train", per_class=2)
    _write_folder(tmp_path / "d" / "val", per_class=1, seed=1)
    source = load_source(f"folder:{tmp_path / 'd'}")
    assert len(source.train) == 6 and len(source.test) == 4
    assert source.train.images.shape[1:] == (3, 32, 32)
    expected = np.asarray(Image.open(tmp_path / "d" / "val" / "dog" / "extra.JPG").convert("RGB")
                          .resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1)
    np.testing.assert_array_equal(source.test.images[3], expected)  # sorted: dog/0.png, dog/extra.JPG
    assert source.test.labels.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("make, match", [
    (lambda root: None, "is not a folder"),
    (lambda root: root.mkdir(), "has no class sub-folders"),
    (lambda root: (_write_folder(root), (root / "emu").mkdir()), r"class folder .*emu holds no images"),
    (lambda root: (_write_folder(root), (root / "dog" / "1.png").write_bytes(b"not a png")),
     r"cannot read .*1.png as an image"),
    (lambda root: (_write_folder(root / "train"), _write_folder(root / "test", classes=("cat", "eel"))),
     r"has classes \['cat', 'eel'\], but the training set has \['cat', 'dog'\]"),
])
def test_folder_errors(tmp_path, make, match):
    make(tmp_path / "imgs")
    with pytest.raises(ValueError, match=match):
        load_source(f"folder:{tmp_path / 'imgs'}")


@pytest.mark.parametrize("spec, match", [
    ("mnist", "unknown dataset 'mnist'"),
    ("digits:/tmp", "digits takes no path"),
    ("cifar10", "expected cifar10:PATH"),
    ("folder:", "the path is empty"),
])
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        load_source(spec)


def test_bad_image_size():
    with pytest.raises(ValueError, match="image size must be a positive int"):
        load_source("digits", image_size=0)
