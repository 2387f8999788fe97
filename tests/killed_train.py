"""A server of ``minires train`` runs, some killed, for tests/test_train_faults.py.

Each request, a line of JSON ``[K, ARG, ...]`` on stdin, runs ``minires train ARG ...`` and is
answered by a line ``{"status": exit status or -signal, "changes": [...]}`` on stdout:
  K > 0   in a forked child, SIGKILLed right before its K-th change to the names in its --out folder
          (a mkdir, link, symlink, rename, unlink or rmdir), as a crash or a power cut stops it there;
  K = 0   in a forked child, not killed, its changes listed ("mkdir ('OUT/.epoch-1',)", ...);
  K = -1  in the server itself (the first request: it imports and compiles what every child reuses,
          so a run costs its training only, not a process start).
Changes elsewhere (Numba's cache) are not counted. Forking after Numba's kernels have run needs its
workqueue threading layer (GNU OpenMP is not fork-safe), set here before minires loads Numba.
"""
import contextlib
import json
import os
import signal
import sys

os.environ["NUMBA_THREADING_LAYER"] = "workqueue"
CHANGES = ("mkdir", "link", "symlink", "replace", "rename", "unlink", "remove", "rmdir")


def main():
    from minires.cli import main as minires_main

    for line in sys.stdin:
        kill_at, *args = json.loads(line)
        if kill_at < 0:
            with contextlib.redirect_stdout(sys.stderr):
                status, changes = minires_main(["train", *args]), []
        else:
            status, changes = _in_child(lambda: minires_main(["train", *args]), _out(args), kill_at)
        print(json.dumps({"status": status, "changes": changes}), flush=True)


def _out(args):
    return os.path.abspath(args[args.index("--out") + 1])


def _in_child(run, out, kill_at):
    """(exit status or -signal, the changes made in ``out``) of run() in a forked child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.dup2(2, 1)  # the child's prints are not answers
        with os.fdopen(write, "w") as log:
            _watch(out, kill_at, log)
            status = run()
            sys.stdout.flush()
        os._exit(status)
    os.close(write)
    with os.fdopen(read) as log:
        changes = log.read().splitlines()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), changes


def _watch(out, kill_at, log):
    """Wrap os's functions that change names: count the changes in ``out``, list each on ``log``
    (flushed: a kill loses nothing), and SIGKILL this process right before the kill_at-th."""
    count = 0

    def watched(name, real):
        def change(*a, **kw):
            nonlocal count
            if _in(out, a, kw):
                count += 1
                if count == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                print(f"{name} {a}", file=log, flush=True)
            return real(*a, **kw)
        return change

    for name in CHANGES:
        setattr(os, name, watched(name, getattr(os, name)))


def _in(folder, args, kwargs):
    """Whether a call changes a name in ``folder``: a path argument there, or a name relative to an
    open folder (shutil.rmtree's dir_fd calls, which only the run folder's cleanup makes)."""
    paths = [a for a in args if isinstance(a, str)]
    return "dir_fd" in kwargs or any(os.path.abspath(p).startswith(folder + os.sep) for p in paths)


if __name__ == "__main__":
    main()
