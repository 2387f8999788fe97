"""Data-parallel training on this machine: 2 ranks x 1 thread (mpiexec, DistributedDataParallel)
against 1 process x 2 threads, on the same global batch, and what the gradient reduction costs.

    python benchmarks/distributed.py                         # ResNet-18 (CIFAR stem) at 32x32, global batch 32
    python benchmarks/distributed.py --config resnet50:8:64 --steps 4

For each run, after one warm-up step, the median over --steps training steps (forward,
cross-entropy, backward, SGD with momentum) of:
  step           seconds per step on every rank (the slowest rank's)
  throughput     global batch / step, images per second
and over 2 ranks also:
  allreduce      a blocking all_reduce of all the gradients (one flat float32 array), alone:
                 the communication a step would pay with no overlap at all; its fraction of the step
  exposed        what the backward waited at its end for reductions not yet done (DDP's last_wait_seconds)
  overlap        1 - exposed / allreduce: the share of the communication hidden behind the backward
  bandwidth      bytes / allreduce seconds (algorithm bandwidth), also for a 4 MB all_reduce
Then an estimate on paper of ResNet-50 over NCCL on 8 and 64 GPUs (estimate()).
The machine is shared: rerun, and read the figures as a few tens of percent.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESNET50_PARAMS = 25_557_032  # torchvision's ResNet-50


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="resnet18:32:32:small", help="model:global batch:image size[:small]")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run(command, threads):
    """Run ``command`` (this script as a worker) with one thread count for every library; its JSON line."""
    env = {**os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][0])


def worker(config, steps):
    """One rank's (or the lone process's) measurements, printed by rank 0 as one JSON line."""
    sys.path.insert(0, os.path.dirname(HERE))
    import numpy as np
    import minires
    import minires.distributed as dist
    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    name, batch, size, *small = config.split(":")
    batch, size = int(batch), int(size)
    minires.manual_seed(0)
    model = minires.fuse(getattr(minires.models, name)(num_classes=10, small_input=bool(small)))
    ddp = dist.DistributedDataParallel(model)
    opt = minires.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(rank)
    x = minires.tensor(rng.normal(size=(batch // world, 3, size, size)).astype(np.float32))
    y = minires.tensor(rng.integers(0, 10, batch // world))
    times, waits = [], []
    for _ in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad()
        minires.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
        dist.barrier()
        times.append(time.perf_counter() - start)
        waits.append(ddp.last_wait_seconds)
    grads = np.zeros(sum(p.numel() for p in model.parameters()), np.float32)
    result = {"world": world, "step": statistics.median(times[1:]), "batch": batch, "bytes": grads.nbytes,
              "exposed": statistics.median(waits[1:]), "allreduce": _allreduce_seconds(dist, grads),
              "allreduce_4mb": _allreduce_seconds(dist, np.zeros(2**20, np.float32))}
    if rank == 0:
        print(json.dumps(result), flush=True)


def _allreduce_seconds(dist, a, repeats=5):
    """Median seconds of a blocking all_reduce of array a, all ranks started together."""
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(a)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(one, two):
    print(f"{'run':24s} {'step s':>8s} {'images/s':>9s}")
    for label, r in (("1 process x 2 threads", one), ("2 ranks x 1 thread", two)):
        print(f"{label:24s} {r['step']:8.3f} {r['batch'] / r['step']:9.1f}")
    mb = two["bytes"] / 2**20
    print(f"2 ranks: gradients {mb:.1f} MB, allreduce {two['allreduce'] * 1e3:.1f} ms "
          f"({two['allreduce'] / two['step']:.1%} of the step), exposed {two['exposed'] * 1e3:.1f} ms, "
          f"overlap {max(0.0, 1 - two['exposed'] / two['allreduce']):.0%}; bandwidth {mb / two['allreduce']:.0f} MB/s "
          f"(4 MB: {4 / two['allreduce_4mb']:.0f} MB/s)")


def estimate(step_s, bus_gb_s, gpus, latency_s=20e-6, overlap=0.0):
    """Seconds of a ResNet-50 step on ``gpus`` GPUs, each at ``step_s`` alone, and its scaling efficiency.
    A ring all_reduce of S bytes over p ranks moves 2 (p - 1) / p * S through each link, in 2 (p - 1)
    steps of ``latency_s``: t = 2 (p - 1) / p * S / bus bandwidth + 2 (p - 1) * latency, float32
    gradients; ``overlap``: the share of t hidden behind the backward."""
    size = 4 * RESNET50_PARAMS
    t = 2 * (gpus - 1) / gpus * size / (bus_gb_s * 1e9) + 2 * (gpus - 1) * latency_s
    step = step_s + (1 - overlap) * t
    return t, step, step_s / step


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args.config, args.steps)
    me = [os.path.abspath(__file__), "--worker", "--config", args.config, "--steps", str(args.steps)]
    one = run([sys.executable, *me], threads=2)
    two = run(["mpiexec", "-n", "2", sys.executable, *me], threads=1)
    report(one, two)
    print("ResNet-50 over NCCL, float32 gradients (102 MB), per-GPU step and bus bandwidth assumed, see estimate():")
    for gpus, bus in ((8, 350), (64, 45)):
        for step_s in (0.1, 0.3):
            t, step, eff = estimate(step_s, bus, gpus)
            print(f"  {gpus:2d} GPUs at {bus} GB/s, step {step_s:.1f} s: allreduce {t * 1e3:.1f} ms, "
                  f"efficiency {eff:.1%} without overlap")


if __name__ == "__main__":
    main()
