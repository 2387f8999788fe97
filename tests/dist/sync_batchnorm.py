"""SyncBatchNorm over the ranks equals a BatchNorm2d over the global batch in one process: outputs,
the input's gradient, the parameters' gradients (summed over the ranks) and running statistics."""
import numpy as np

from common import B, assert_close, dist, minires, nn


def main():
    rank, world = dist.get_rank(), dist.get_world_size()
    rng = np.random.default_rng(0)  # the same draws on every rank
    x = rng.normal(3.0, 2.0, size=(world * B, 4, 3, 5))
    g = rng.normal(size=x.shape)  # the output's gradient: loss = sum(y * g)
    weight, bias = rng.normal(size=4), rng.normal(size=4)
    rows = slice(rank * B, (rank + 1) * B)
    results = []
    for bn, xs, gs in ((nn.BatchNorm2d(4), x, g), (dist.convert_sync_batchnorm(nn.BatchNorm2d(4)), x[rows], g[rows])):
        bn.double().load_state_dict({**bn.state_dict(), "weight": weight, "bias": bias})
        for _ in range(2):  # twice: the running statistics' update from non-initial values too
            xt = minires.tensor(xs, requires_grad=True)
            bn.weight.grad = bn.bias.grad = None
            y = bn(xt)
            (y * minires.tensor(gs)).sum().backward()
        results.append((y.numpy(), xt.grad.numpy(), bn.weight.grad.numpy(), bn.bias.grad.numpy(),
                        bn.running_mean.numpy(), bn.running_var.numpy()))
    (y, gx, gw, gb, rm, rv), (ys, gxs, gws, gbs, rms, rvs) = results
    assert isinstance(bn, dist.SyncBatchNorm)
    assert_close([ys, gxs], [y[rows], gx[rows]], "SyncBatchNorm's output or input gradient and BatchNorm's")
    assert_close([dist.all_reduce(gws), dist.all_reduce(gbs)], [gw, gb], "the summed parameter gradients")
    assert_close([rms, rvs], [rm, rv], "the running statistics")
    print("OK sync_batchnorm", flush=True)


if __name__ == "__main__":
    dist.init(timeout=30)
    main()
