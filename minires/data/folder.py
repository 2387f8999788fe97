"""Image-folder trees, read with Pillow: one sub-folder per class, its name the class name.

    PATH/train/CLASS/*.png and PATH/test/CLASS/*.png (or PATH/val/...): the split is given;
    PATH/CLASS/*.png: one set, which the caller splits.

Every image is converted to RGB and resized (bilinear) to size x size.
"""
import os

import numpy as np

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
TEST_FOLDERS = ("test", "val")


def _subfolders(path):
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def read_tree(path, size, classes=None):
    """(images uint8 (N, 3, size, size), labels int64 (N,), class names) from PATH/CLASS/*;
    ``classes`` fixes the class list (a test tree must have the train tree's classes)."""
    from PIL import Image, UnidentifiedImageError

    found = _subfolders(path)
    if not found:
        raise ValueError(f"folder: {path} has no class sub-folders (expected PATH/CLASS/image files)")
    if classes is not None and found != classes:
        raise ValueError(f"folder: {path} has classes {found}, but the training set has {classes}")
    images, labels = [], []
    for label, name in enumerate(found):
        files = sorted(f for f in os.listdir(os.path.join(path, name)) if f.lower().endswith(EXTENSIONS))
        if not files:
            raise ValueError(f"folder: class folder {os.path.join(path, name)} holds no images "
                             f"({', '.join(EXTENSIONS)})")
        for f in files:
            file = os.path.join(path, name, f)
            try:
                with Image.open(file) as im:
                    im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            except (UnidentifiedImageError, OSError, ValueError) as e:
                raise ValueError(f"folder: cannot read {file} as an image ({e})") from None
            images.append(np.asarray(im).transpose(2, 0, 1))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64), found


def load_folder(path, size):
    """(train, test, class names), train and test each (images, labels), when PATH has train/ and
    test/ (or val/); else (all, None, class names), for the caller to split."""
    if not os.path.isdir(path):
        raise ValueError(f"folder: {path} is not a folder")
    subs = _subfolders(path)
    test_name = next((t for t in TEST_FOLDERS if t in subs), None)
    if "train" in subs and test_name:
        *train, classes = read_tree(os.path.join(path, "train"), size)
        *test, _ = read_tree(os.path.join(path, test_name), size, classes)
        return tuple(train), tuple(test), classes
    *whole, classes = read_tree(path, size)
    return tuple(whole), None, classes
