"""Measuring in fresh processes: the pieces benchmarks/models.py and benchmarks/ab.py share.

A measurement is a new Python process that imports only what it measures, so that no other
framework's threads, allocator state or process-wide settings (minires sets some at import: see
minires/runtime.py) are there; the parent imports neither framework. Its result comes back as JSON on
the last line of its output. Rounds interleave the sides in alternating order (A, B, B, A, ...) so
that slow minutes on a shared machine hit every side alike, and the medians over all rounds are
compared. Nothing here imports NumPy at module level: the parent stays free of every library.
"""
import json
import os
import subprocess
import sys
import time

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def parse_config(text):
    """MODEL:BATCH:SIZE[:small] -> (model, batch, size, small_input); :small is the small-input stem."""
    name, batch, size, *small = text.split(":")
    if small not in ([], ["small"]):
        raise ValueError(f"config {text!r}: expected MODEL:BATCH:SIZE or MODEL:BATCH:SIZE:small")
    return name, int(batch), int(size), bool(small)


def child_env(threads, **extra):
    """The parent's environment with one thread count for every library (read when each loads) and
    ``extra`` variables (PYTHONPATH=tree, say)."""
    return dict(os.environ, **{var: str(threads) for var in THREAD_VARIABLES}, **extra)


def run_json(args, env):
    """Run ``python args...`` in a new process; its last line of output, parsed as JSON. A failure
    raises RuntimeError with the last line of its error output."""
    out = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError((out.stderr.strip().splitlines() or [f"a worker ended with status {out.returncode}"])[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def interleaved(sides, rounds):
    """The order of measurements: ``sides`` in order in even rounds, reversed in odd ones
    (A, B, B, A, A, B for two sides and three rounds)."""
    for r in range(rounds):
        yield from (sides if r % 2 == 0 else sides[::-1])


def make_batch(batch, size, dtype):
    """The benchmark's input and labels as NumPy arrays, the same in every process:
    x (batch, 3, size, size) standard normal, y (batch,) classes of 1000."""
    import numpy as np
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, 3, size, size)).astype(dtype), rng.integers(0, 1000, batch)


def timed(fn):
    """Seconds of one call of fn."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
