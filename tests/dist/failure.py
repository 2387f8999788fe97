"""A rank that dies (argument "kill": SIGKILL) or hangs ("hang") in the middle of a DDP backward,
after it has started reducing some buckets: the other rank must not wait forever."""
import os
import signal
import sys
import time

from common import dist, global_batch, local, minires, model


def main(mode):
    rank = dist.get_rank()
    net = model(seed=0)
    ddp = dist.DistributedDataParallel(net, bucket_cap_mb=1e-4)
    if rank == 1:  # the first layer's weight is the last gradient: the other buckets are in flight
        first = next(net.parameters())
        first.register_post_accumulate_grad_hook(
            lambda p: os.kill(os.getpid(), signal.SIGKILL) if mode == "kill" else time.sleep(3600))
    x, y = local(global_batch(0, dist.get_world_size()), rank)
    print(f"rank {rank} starts the step", flush=True)
    minires.functional.cross_entropy(ddp(x), y).backward()
    print(f"rank {rank} finished the step", flush=True)


if __name__ == "__main__":
    dist.init(timeout=float(sys.argv[2]))
    main(sys.argv[1])
