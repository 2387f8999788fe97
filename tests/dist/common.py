"""What the scripts that tests/test_distributed.py launches with mpiexec share: a small float64
model and batch, and checks across ranks. Each script raises (a failed assert) or prints its OK line."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))  # this checkout's minires

import minires  # noqa: E402
import minires.distributed as dist  # noqa: E402
from minires import nn  # noqa: E402

B = 3  # samples per rank


def model(seed, batchnorm=False):
    """Conv -> (BatchNorm) -> ReLU -> Linear, float64, weights drawn from ``seed``."""
    minires.manual_seed(seed)
    layers = [nn.Conv2d(2, 4, 3, padding=1)] + ([nn.BatchNorm2d(4)] if batchnorm else []) + \
             [nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3)]
    return nn.Sequential(*layers).double()


def global_batch(step, world_size):
    """(images (W*B, 2, 5, 5), labels (W*B,)), the same on every rank for a step."""
    rng = np.random.default_rng(step)
    return rng.normal(size=(world_size * B, 2, 5, 5)), rng.integers(0, 3, world_size * B)


def local(batch, rank):
    """This rank's share of a global batch: rows rank*B .. (rank+1)*B - 1."""
    return [minires.tensor(a[rank * B:(rank + 1) * B]) for a in batch]


def grads(m):
    return [p.grad.numpy() for p in m.parameters()]


def assert_close(actual, expected, what, rtol=1e-12):
    for a, e in zip(actual, expected):
        err = np.abs(a - e).max() / max(np.abs(e).max(), 1e-300)
        assert err <= rtol, f"rank {dist.get_rank()}: {what} differ by {err:.2e} relative"


def same_on_every_rank(arrays):
    """Whether every rank holds bit for bit the same arrays."""
    flat = np.concatenate([np.ravel(a) for a in arrays])
    rows = dist.all_gather(flat)
    return all(np.array_equal(rows[0], r) for r in rows[1:])
