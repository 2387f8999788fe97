"""The CPU launcher under AddressSanitizer, in a child process.

ASan's runtime must be the first library of a process (LD_PRELOAD), and its options are read when
the process starts, so sanitized kernels cannot run inside the pytest process: they run in a child
started with libasan preloaded. NumPy's arrays there come from ASan's malloc, with poisoned
redzones around each, so a kernel that reads or writes one element outside an argument array is
stopped with a report naming its .cu file and line.

``Worker().load(family)`` gives a kernels.cuda.Module whose kernels have the RawKernel calling
convention, as launch.load's: each call sends the arguments to the child, runs the kernel there,
and copies the arrays back into the caller's (in place, as device memory would be written). A
crash (an ASan report) raises KernelCrashed with the report; the next call starts a fresh child.
"""
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from minires.kernels import cuda

TESTS = Path(__file__).resolve().parent.parent
ASAN_OPTIONS = "detect_leaks=0:abort_on_error=0:halt_on_error=1:allocator_may_return_null=1"


class KernelCrashed(AssertionError):
    """The child process died running a kernel; the message holds its stderr (ASan's report)."""


def libasan():
    """The path of g++'s ASan runtime (the one the launcher's -fsanitize=address links against)."""
    path = subprocess.run([os.environ.get("CXX", "g++"), "-print-file-name=libasan.so"], capture_output=True,
                          text=True, check=True).stdout.strip()
    if not os.path.isabs(path):
        raise RuntimeError("g++ has no libasan.so (Debian: apt-get install libasan8)")
    return path


class Worker:
    """A child process running sanitized kernels; started on the first call, restarted after a crash."""

    def __init__(self):
        self._child = self._log = None

    def load(self, family):
        return cuda.Module(family, lambda expression: RemoteKernel(self, family, expression))

    def call(self, family, expression, grid, block, args, shared_mem=0):
        for k, a in enumerate(args):
            if isinstance(a, np.ndarray) and not a.flags.c_contiguous:  # checked here: pickling would copy it
                raise ValueError(f"{expression}: argument {k} must be C-contiguous (the caller copies, as on the GPU)")
        child = self._start()
        try:
            pickle.dump((family, expression, grid, block, tuple(args), shared_mem), child.stdin)
            child.stdin.flush()
            ok, result = pickle.load(child.stdout)
        except (EOFError, BrokenPipeError):
            child.wait()
            self._log.seek(0)
            report = self._log.read().decode(errors="replace")
            self._child = None
            raise KernelCrashed(f"{expression} crashed the sanitized worker (exit {child.returncode}):\n{report}")
        if not ok:
            raise result
        for a, r in zip(args, result):
            if isinstance(a, np.ndarray):
                a[...] = r

    def _start(self):
        if self._child is None:
            self._log = tempfile.TemporaryFile()
            env = dict(os.environ, LD_PRELOAD=libasan(), ASAN_OPTIONS=ASAN_OPTIONS,
                       PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
            self._child = subprocess.Popen([sys.executable, "-m", "cuda_cpu.worker"], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=self._log, env=env)
        return self._child

    def close(self):
        if self._child is not None:
            self._child.stdin.close()
            self._child.wait()
            self._child = None


class RemoteKernel:
    """One kernel in the worker, callable as cupy.RawKernel."""

    def __init__(self, worker, family, expression):
        self.worker, self.family, self.name = worker, family, expression

    def __call__(self, grid, block, args, shared_mem=0):
        self.worker.call(self.family, self.name, grid, block, args, shared_mem)


def serve():
    """The child's loop: read a call, run it with sanitize=True, send back the arrays (or the error)."""
    from cuda_cpu import launch
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies on the pipe
    modules = {}
    while True:
        try:
            family, expression, grid, block, args, shared_mem = pickle.load(requests)
        except EOFError:
            return
        try:
            if family not in modules:
                modules[family] = launch.load(family, sanitize=True)
            modules[family]._lookup(expression)(grid, block, args, shared_mem)
            reply = True, [a if isinstance(a, np.ndarray) else None for a in args]
        except Exception as e:
            reply = False, e
        pickle.dump(reply, replies)
        replies.flush()


if __name__ == "__main__":
    serve()
