"""DistributedSampler: each rank its own shard of a dataset, as PyTorch's
torch.utils.data.distributed.DistributedSampler; Subset: a dataset restricted to some indices.

Every rank draws the same permutation of 0 .. n-1, from default_rng([seed, epoch]) (the seed is
shared, so no communication is needed), pads it by repeating its first indices up to a multiple
of the number of ranks (or, drop_last, cuts the tail), and takes every num_replicas-th index from
position rank on. The shards are disjoint but for the padding, together cover the dataset, and
have one length, so that every rank runs the same number of steps (a rank with one step fewer
would leave the others waiting in the gradient reduction).

Until the DataLoader takes a sampler, one epoch over this rank's shard is
    sampler.set_epoch(epoch)
    loader = DataLoader(Subset(dataset, list(sampler)), batch_size=b)   # shuffle=False: the sampler shuffled
"""
import math

import numpy as np

from .dataset import Dataset


class DistributedSampler:
    """Iterates over this rank's indices into ``dataset`` (anything with a len()) for the epoch set by
    set_epoch(). num_replicas and rank default to minires.distributed's world size and rank."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        from .. import distributed
        self.n = len(dataset)
        self.num_replicas = distributed.get_world_size() if num_replicas is None else num_replicas
        self.rank = distributed.get_rank() if rank is None else rank
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"DistributedSampler: rank must lie in [0, {self.num_replicas}), got {self.rank}")
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, int(seed), drop_last, 0
        # drop_last: the largest multiple of num_replicas not above n; else the smallest not below
        self.num_samples = self.n // self.num_replicas if drop_last else math.ceil(self.n / self.num_replicas)

    def set_epoch(self, epoch):
        """The epoch whose permutation __iter__ gives: call it at the start of each epoch, on every rank."""
        self.epoch = int(epoch)

    def __len__(self):
        return self.num_samples

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
        total = self.num_samples * self.num_replicas
        order = np.resize(order, total)  # pads by repeating from the start, or cuts the tail
        return iter(order[self.rank:total:self.num_replicas].tolist())


class Subset(Dataset):
    """``dataset`` restricted to ``indices``: sample i is dataset[indices[i]] (as torch.utils.data.Subset)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, np.asarray(indices, dtype=np.int64)
        if hasattr(dataset, "__getitems__"):  # a batch at once (ArrayDataset) where the dataset can: DataLoader looks
            self.__getitems__ = lambda batch: dataset.__getitems__(self.indices[np.asarray(batch)])

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def __len__(self):
        return len(self.indices)
