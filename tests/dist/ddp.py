"""DistributedDataParallel over the ranks: the checks of tests/test_distributed.py (see there)."""
from common import dist, global_batch, grads, local, minires, model, same_on_every_rank, assert_close

F = minires.functional


def step_gradients():
    """One step: every rank's averaged gradients equal one process's on the global batch."""
    rank, world = dist.get_rank(), dist.get_world_size()
    net = model(seed=rank)  # different weights on each rank, until the wrap broadcasts rank 0's
    ddp = dist.DistributedDataParallel(net, bucket_cap_mb=1e-4)  # ~100-byte buckets: several of them
    assert len(ddp._buckets) > 1
    assert same_on_every_rank([p.numpy() for p in net.parameters()]), "parameters differ after the wrap"
    single = model(seed=0)  # rank 0's weights, in one process
    x, y = global_batch(0, world)
    F.cross_entropy(ddp(local((x, y), rank)[0]), local((x, y), rank)[1]).backward()
    F.cross_entropy(single(minires.tensor(x)), minires.tensor(y)).backward()
    assert_close(grads(net), grads(single), "DDP's gradients and one process's on the global batch")
    print("OK step_gradients", flush=True)


def no_sync_accumulates():
    """Two batches, the first under no_sync: the sum of both global batches' gradients."""
    rank, world = dist.get_rank(), dist.get_world_size()
    net, single = model(seed=0), model(seed=0)
    ddp = dist.DistributedDataParallel(net)
    for step in (1, 2):
        x, y = global_batch(step, world)
        xl, yl = local((x, y), rank)
        if step == 1:
            with ddp.no_sync():
                F.cross_entropy(ddp(xl), yl).backward()
            assert not same_on_every_rank(grads(net)), "no_sync reduced the gradients"
        else:
            F.cross_entropy(ddp(xl), yl).backward()
        F.cross_entropy(single(minires.tensor(x)), minires.tensor(y)).backward()
    assert_close(grads(net), grads(single), "accumulated gradients")
    print("OK no_sync_accumulates", flush=True)


def identical_over_steps(steps=20):
    """SGD with momentum: parameters, and SyncBatchNorm's running statistics, bit-identical on every
    rank at every step (BatchNorm's would differ after each step, until the next forward broadcasts rank 0's)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    net = dist.convert_sync_batchnorm(model(seed=rank, batchnorm=True))
    ddp = dist.DistributedDataParallel(net)
    opt = minires.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for step in range(steps):
        xl, yl = local(global_batch(10 + step, world), rank)
        opt.zero_grad()
        F.cross_entropy(ddp(xl), yl).backward()
        opt.step()
        state = [t.numpy() for t in net.parameters()] + [t.numpy() for t in net.buffers()]
        assert same_on_every_rank(state), f"parameters differ across ranks after step {step + 1}"
    print(f"OK identical_over_steps {steps}", flush=True)


class WithSpare(minires.nn.Module):
    """model() and a Linear layer that forward leaves out."""

    def __init__(self):
        super().__init__()
        self.net, self.spare = model(seed=0), minires.nn.Linear(2, 2).double()

    def forward(self, x):
        return self.net(x)


def unused_parameter_named():
    ddp = dist.DistributedDataParallel(WithSpare())
    try:
        ddp(local(global_batch(0, dist.get_world_size()), dist.get_rank())[0])
    except RuntimeError as e:
        assert "spare.weight" in str(e) and "spare.bias" in str(e), str(e)
        print("OK unused_parameter_named", flush=True)
        return
    raise AssertionError("an unused parameter went unnoticed")


if __name__ == "__main__":
    dist.init(timeout=30)
    step_gradients()
    no_sync_accumulates()
    identical_over_steps()
    unused_parameter_named()
