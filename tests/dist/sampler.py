"""DistributedSampler on each rank: disjoint shards of one length covering the dataset, padded as
PyTorch's, the same permutation on every rank for an epoch and a new one for the next."""
import numpy as np

from common import dist
from minires.data import DistributedSampler

N = 11  # not a multiple of the 2 ranks: one index of padding


def shards(epoch, **kwargs):
    sampler = DistributedSampler(range(N), seed=7, **kwargs)
    sampler.set_epoch(epoch)
    mine = np.array(list(sampler))
    assert len(mine) == len(sampler)
    return dist.all_gather(mine)  # (ranks, per rank)


def main():
    world = dist.get_world_size()
    s0 = shards(0)
    assert s0.shape == (world, -(-N // world)), s0.shape
    order = s0.T.ravel()  # the padded permutation, in the order the ranks take it
    assert sorted(order[:N]) == list(range(N)), "the shards do not cover the dataset once"
    assert list(order[N:]) == list(order[:len(order) - N]), "the padding is not the permutation's start"
    assert not np.array_equal(shards(1), s0), "set_epoch did not reshuffle"
    cut = shards(0, drop_last=True)
    assert cut.shape == (world, N // world) and len(set(cut.ravel())) == cut.size, "drop_last: not disjoint"
    print("OK sampler", flush=True)


if __name__ == "__main__":
    dist.init(timeout=30)
    main()
