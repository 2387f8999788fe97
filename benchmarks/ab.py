"""A/B of two minires source trees: the same training and inference steps, each tree alone in a fresh
process of its own, rounds interleaved, medians.

    python benchmarks/ab.py OLD_TREE NEW_TREE [--config resnet50:8:224 ...] [--rounds 3] [--steps 5]

A tree is a checkout's root (the folder holding minires/ and kernels/). Each measurement starts a new
Python process with PYTHONPATH=TREE, which builds the model, runs one untimed step (Numba's compile
or cache load) and then --steps timed steps of one mode, and prints their seconds; nothing else runs
in it, so no other framework's threads linger there. Per round, the two trees take turns in
alternating order. The ratio printed is NEW's throughput over OLD's (above 1: NEW is faster). A tree
whose minires has fuse() runs its models fused, as its minires train does (older trees fused inside
the models). Checkouts older than the import fix need a link minires/kernels -> ../kernels.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

CONFIGS = ["resnet50:8:224", "resnet18:16:224", "resnet18:64:32"]

WORKER = r"""
import json, sys, time
import minires
import numpy as np
name, batch, size, mode, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
minires.manual_seed(0)
model = getattr(minires.models, name)()
model = minires.fuse(model, inplace=True) if hasattr(minires, "fuse") else model
rng = np.random.default_rng(0)
x, y = minires.Tensor(rng.standard_normal((batch, 3, size, size)).astype(np.float32)), rng.integers(0, 1000, batch)
opt = minires.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

def step():
    if mode == "train":
        model.train()
        loss = minires.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    else:
        model.eval()
        with minires.no_grad():
            model(x)

step()
times = []
for _ in range(steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def measure(tree, config, mode, steps, threads):
    """Seconds of ``steps`` timed steps in a fresh process running ``tree``'s minires."""
    name, batch, size = config.split(":")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    out = subprocess.run([sys.executable, "-c", WORKER, name, batch, size, mode, str(steps)], env=env,
                         capture_output=True, text=True, cwd=os.path.abspath(tree))
    if out.returncode:
        raise RuntimeError(f"{tree} {config} {mode}: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--config", action="append", help=f"MODEL:BATCH:SIZE (repeatable; default {' '.join(CONFIGS)})")
    p.add_argument("--modes", default="train,infer")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    trees = {"old": args.old, "new": args.new}
    print(f"A/B: old {args.old}, new {args.new}; {args.threads} threads; {args.rounds} rounds x {args.steps} steps, "
          "each tree alone in a fresh process")
    for config in args.config or CONFIGS:
        for mode in args.modes.split(","):
            times = {"old": [], "new": []}
            for r in range(args.rounds):
                for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    times[side] += measure(trees[side], config, mode, args.steps, args.threads)
            batch = int(config.split(":")[1])
            ips = {k: batch / statistics.median(v) for k, v in times.items()}
            print(f"{config:<18} {mode:<5}  old {ips['old']:8.1f} img/s   new {ips['new']:8.1f} img/s   "
                  f"new/old {ips['new'] / ips['old']:.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
