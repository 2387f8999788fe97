"""A/B of two minires source trees: the same training and inference steps, each tree alone in a fresh
process of its own, rounds interleaved, medians.

    python benchmarks/ab.py OLD_TREE NEW_TREE [--config resnet50:8:224 ...] [--rounds 3] [--steps 5]

A tree is a checkout's root (the folder holding minires/ and kernels/). Each measurement starts a new
Python process with PYTHONPATH=TREE running benchmarks/models.py's minires worker (this checkout's),
which builds the model (fused, as minires train runs it), runs one untimed step (Numba's compile or
cache load) and then --steps timed steps of one mode, and reports their seconds; nothing else runs
in it, so no other framework's threads linger there. Rounds interleave the trees (old, new, new,
old, ...: benchmarks/fresh.py), and medians over all rounds are compared. The ratio printed is NEW's
throughput over OLD's (above 1: NEW is faster). Checkouts older than the import fix need a link
minires/kernels -> ../kernels.
"""
import argparse
import os
import statistics
import sys

import fresh

CONFIGS = ["resnet50:8:224", "resnet18:16:224", "resnet18:64:32"]
MODELS_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models.py")


def measure(tree, config, mode, steps, threads):
    """Seconds of ``steps`` timed steps in a fresh process running ``tree``'s minires: models.py's
    minires worker, with PYTHONPATH=tree."""
    env = fresh.child_env(threads, PYTHONPATH=os.path.abspath(tree))
    try:
        return fresh.run_json([MODELS_PY, "--worker", "minires", config, mode, "--runs", str(steps)], env)["minires"]["times"]
    except RuntimeError as e:
        raise RuntimeError(f"{tree} {config} {mode}: {e}") from None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--config", action="append", help=f"MODEL:BATCH:SIZE[:small] (repeatable; default {' '.join(CONFIGS)})")
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
            for side in fresh.interleaved(("old", "new"), args.rounds):
                times[side] += measure(trees[side], config, mode, args.steps, args.threads)
            batch = fresh.parse_config(config)[1]
            ips = {k: batch / statistics.median(v) for k, v in times.items()}
            print(f"{config:<18} {mode:<5}  old {ips['old']:8.1f} img/s   new {ips['new']:8.1f} img/s   "
                  f"new/old {ips['new'] / ips['old']:.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
