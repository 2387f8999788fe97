"""Datasets: indexable collections of (image, label) samples, as torch.utils.data.Dataset."""
import numpy as np


class Dataset:
    """The base class: dataset[i] is one (image, label) sample; len(dataset) the number of samples."""

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class ArrayDataset(Dataset):
    """Images held in one array, (N, C, H, W) (uint8 for pixels 0..255, so a large set stays
    small in memory), with integer labels (N,) and the class names. ``__getitems__`` hands the
    DataLoader a whole batch by fancy indexing instead of one sample at a time."""

    def __init__(self, images, labels, classes):
        images, labels = np.asarray(images), np.asarray(labels, dtype=np.int64)
        if images.ndim != 4 or labels.shape != images.shape[:1]:
            raise ValueError(f"ArrayDataset: expected images (N, C, H, W) and labels (N,), got shapes "
                             f"{images.shape} and {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"ArrayDataset: labels must lie in [0, {len(classes)}) for {len(classes)} classes, "
                             f"got [{labels.min()}, {labels.max()}]")
        self.images, self.labels, self.classes = images, labels, list(classes)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def __getitems__(self, indices):
        return self.images[indices], self.labels[indices]

    def __len__(self):
        return len(self.labels)
