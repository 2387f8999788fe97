"""Where a first run's time goes: Numba compiling minires's kernels into an empty cache.

    python benchmarks/compile_times.py                    # minires train, one epoch, fresh cache
    python benchmarks/compile_times.py --top 40 -- --model resnet18 --batch-size 32
    python benchmarks/compile_times.py --cache DIR        # a given cache folder (a second run: loads)

Runs ``minires train`` (its defaults, one epoch without warm-up, arguments after -- passed on) in this process with
NUMBA_CACHE_DIR pointed at a new temporary folder (so the cache is empty, and nobody's cache is
touched), and records every compilation Numba makes through the "numba:compile" event: one per
function and argument-type signature that missed the disk cache. Printed, heaviest first: each
compiled function's signatures and seconds, inclusive (its own compile, with the njit functions it
compiled on the way, as a kernel compiles its non-inlined callees) and exclusive (less those), as
the compiling thread's CPU time (Numba compiles on one thread, so on a busy machine this counts the
work, where wall time also counts the waits for a core); then the whole run's wall and CPU time
(all threads) and its compilations' share. A function with more
than one signature shows where argument types (dtype, layout, a Python bool against a NumPy bool,
an int against a float) multiplied its compilations.
"""
import argparse
import collections
import os
import sys
import tempfile
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--top", type=int, default=30, help="how many signatures to list (heaviest first)")
    p.add_argument("--cache", help="Numba cache folder to use (default: a new empty one)")
    p.add_argument("train_args", nargs="*", help="after --: more arguments for minires train")
    return p.parse_args(argv)


class CompileRecorder:
    """A Numba event listener: per (function, signature), CPU seconds inclusive and exclusive of the
    compilations nested in it. Numba compiles under one global lock, so a stack tracks the nesting."""

    def __init__(self):
        from numba.core import event
        recorder = self

        class Listener(event.Listener):
            def on_start(self, ev):
                recorder.stack.append([time.thread_time(), 0.0])

            def on_end(self, ev):
                start, nested = recorder.stack.pop()
                seconds = time.thread_time() - start
                if recorder.stack:
                    recorder.stack[-1][1] += seconds
                key = (ev.data["dispatcher"].py_func.__qualname__, ev.data["dispatcher"].py_func.__module__,
                       tuple(str(a) for a in ev.data["args"]))
                recorder.inclusive[key] += seconds
                recorder.exclusive[key] += seconds - nested

        self.stack, self.inclusive, self.exclusive = [], collections.defaultdict(float), collections.defaultdict(float)
        self.listener, self.event = Listener(), event

    def __enter__(self):
        self.event.register("numba:compile", self.listener)
        return self

    def __exit__(self, *exc):
        self.event.unregister("numba:compile", self.listener)

    def total(self):
        """Seconds spent compiling: the sum of the outermost compilations."""
        return sum(self.exclusive.values())

    def report(self, top):
        counts = collections.Counter(name for name, _, _ in self.inclusive)
        print(f"{'function':34} {'sigs':>4} {'incl s':>7} {'excl s':>7}  signature (CPU seconds)")
        for key, seconds in sorted(self.inclusive.items(), key=lambda kv: -kv[1])[:top]:
            name, module, args = key
            print(f"{name:34} {counts[name]:4} {seconds:7.2f} {self.exclusive[key]:7.2f}  "
                  f"{module.rsplit('.', 1)[-1]}({', '.join(args)})")


def main(argv=None):
    args = parse_args(argv)
    cache = args.cache or tempfile.mkdtemp(prefix="numba-cold-")
    os.environ["NUMBA_CACHE_DIR"] = cache  # before Numba loads: it reads the variable once
    start, cpu = time.perf_counter(), time.process_time()
    from minires import cli  # noqa: E402  (Numba's import is part of a first run)
    with CompileRecorder() as rec, tempfile.TemporaryDirectory() as out:
        status = cli.main(["train", "--epochs", "1", "--warmup-epochs", "0", "--out", os.path.join(out, "run"), *args.train_args])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"\nNumba cache: {cache}")
    rec.report(args.top)
    print(f"\n{len(rec.inclusive)} signatures of {len({k[0] for k in rec.inclusive})} functions compiled; "
          f"the run: wall {wall:.1f} s, CPU {cpu:.1f} s of which compiling {rec.total():.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
