"""DataLoader: batches of a Dataset, shuffled and augmented reproducibly.

Each pass over the loader draws its shuffling and its random augmentation from one generator,
default_rng([seed, epoch]), where epoch counts the passes so far; so a seed fixes every pass, and
state_dict() = {"seed", "epoch"} is all a checkpoint needs to resume the exact same batches.
"""
import math

import numpy as np

from ..autograd.tensor import Tensor


class DataLoader:
    """Yields (images, labels) Tensors: images float32 (B, C, H, W) after ``transform``, labels int64 (B,).

    transform(images, rng) works on a whole batch (see minires.data.transforms); the last batch
    holds the remaining len(dataset) % batch_size samples unless drop_last. seed=None draws one.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, transform=None, seed=None):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.transform = transform
        self.seed = int(np.random.SeedSequence().generate_state(1)[0]) if seed is None else int(seed)
        self.epoch = 0

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        n = len(self.dataset)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            images, labels = self._fetch(order[start:start + self.batch_size])
            images = self.transform(images, rng) if self.transform else images
            yield Tensor(np.asarray(images, dtype=np.float32)), Tensor(np.asarray(labels, dtype=np.int64))

    def _fetch(self, indices):
        if hasattr(self.dataset, "__getitems__"):
            return self.dataset.__getitems__(indices)
        samples = [self.dataset[int(i)] for i in indices]
        return np.stack([s[0] for s in samples]), np.array([s[1] for s in samples])

    def state_dict(self):
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state_dict):
        self.seed, self.epoch = int(state_dict["seed"]), int(state_dict["epoch"])
