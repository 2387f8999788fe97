"""SyncBatchNorm over the ranks equals a BatchNorm2d over the global batch in one process: outputs,
the input's gradient, the parameters' gradients (summed over the ranks) and running statistics, in
float64 to rounding and in float32 within its rounding noise; and a small network's gradients under
DistributedDataParallel equal one process's in float32 (the arithmetic that ``minires train`` runs)."""
import numpy as np

from common import B, assert_close, dist, minires, nn
from minires.fusion import fuse

F = minires.functional
# float32's tolerance: a few times the noise between two one-process runs that differ only in the
# order of their sums (the global batch permuted), so that a wrong formula cannot hide in it
FLOAT32_RTOL = 2e-6


def batchnorm_equals(dtype, rtol):
    rank, world = dist.get_rank(), dist.get_world_size()
    rng = np.random.default_rng(0)  # the same draws on every rank
    x = rng.normal(3.0, 2.0, size=(world * B, 4, 3, 5)).astype(dtype)
    g = rng.normal(size=x.shape).astype(dtype)  # the output's gradient: loss = sum(y * g)
    weight, bias = rng.normal(size=4).astype(dtype), rng.normal(size=4).astype(dtype)
    rows = slice(rank * B, (rank + 1) * B)
    results = []
    for bn, xs, gs in ((nn.BatchNorm2d(4), x, g), (dist.convert_sync_batchnorm(nn.BatchNorm2d(4)), x[rows], g[rows])):
        bn.to(dtype).load_state_dict({**bn.state_dict(), "weight": weight, "bias": bias})
        for _ in range(2):  # twice: the running statistics' update from non-initial values too
            xt = minires.tensor(xs, requires_grad=True)
            bn.weight.grad = bn.bias.grad = None
            y = bn(xt)
            (y * minires.tensor(gs)).sum().backward()
        results.append((y.numpy(), xt.grad.numpy(), bn.weight.grad.numpy(), bn.bias.grad.numpy(),
                        bn.running_mean.numpy(), bn.running_var.numpy()))
    (y, gx, gw, gb, rm, rv), (ys, gxs, gws, gbs, rms, rvs) = results
    assert isinstance(bn, dist.SyncBatchNorm)
    what = f"in {np.dtype(dtype)}"
    assert_close([ys, gxs], [y[rows], gx[rows]], f"SyncBatchNorm's output or input gradient and BatchNorm's {what}",
                 rtol)
    assert_close([dist.all_reduce(gws), dist.all_reduce(gbs)], [gw, gb], f"the summed parameter gradients {what}", rtol)
    assert_close([rms, rvs], [rm, rv], f"the running statistics {what}", rtol)


def network(dtype):
    """Two convolutions, each with a batch norm and a ReLU, and a Linear layer, fused as ``minires
    train`` runs it (the batch norms' ReLUs in their ops: SyncBatchNorm.fused)."""
    minires.manual_seed(0)
    return fuse(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.Flatten(), nn.Linear(4 * 5 * 5, 3)).to(dtype))


def network_gradients_float32():
    """One step of DDP with SyncBatchNorm in float32: every parameter's gradient equals one process's
    on the global batch within float32 noise."""
    rank, world = dist.get_rank(), dist.get_world_size()
    rng = np.random.default_rng(1)
    x, y = rng.normal(3.0, 2.0, size=(world * B, 2, 5, 5)).astype(np.float32), rng.integers(0, 3, world * B)
    rows = slice(rank * B, (rank + 1) * B)
    net, single = dist.convert_sync_batchnorm(network(np.float32)), network(np.float32)
    F.cross_entropy(dist.DistributedDataParallel(net)(minires.tensor(x[rows])), minires.tensor(y[rows])).backward()
    F.cross_entropy(single(minires.tensor(x)), minires.tensor(y)).backward()
    assert_close([p.grad.numpy() for p in net.parameters()], [p.grad.numpy() for p in single.parameters()],
                 "DDP's float32 gradients with SyncBatchNorm and one process's", FLOAT32_RTOL)


if __name__ == "__main__":
    dist.init(timeout=30)
    batchnorm_equals(np.float64, 1e-12)
    batchnorm_equals(np.float32, FLOAT32_RTOL)
    print("OK sync_batchnorm", flush=True)
    network_gradients_float32()
    print("OK network_float32", flush=True)
