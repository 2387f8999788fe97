"""``minires train`` on each rank, as ``python -m minires train ARGS`` would run it, with two probes:
MINIRES_TEST_KILL_AT=K SIGKILLs rank 1 at its K-th optimizer step (a rank that dies mid-step), and
every rank but 0 lists what it changed in the run folder (Python's audit events: opened for writing,
made, renamed, removed), printed at exit as "rank R wrote [...]": it must be nothing."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))  # this checkout's minires

from minires.cli import main  # noqa: E402
from minires.optim import SGD  # noqa: E402

WRITES = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.symlink", "os.link", "shutil.rmtree"}


def watch_writes(out, written):
    def hook(event, args):
        path = str(args[0]) if args else ""
        writing = event == "open" and len(args) > 1 and any(c in str(args[1]) for c in "wxa+")
        if (event in WRITES or writing) and os.path.abspath(path).startswith(out):
            written.append(f"{event} {path}")
    sys.addaudithook(hook)


def kill_rank1_at(k):
    steps, step = [], SGD.step

    def step_or_die(self):
        steps.append(1)
        if len(steps) == k:
            os.kill(os.getpid(), signal.SIGKILL)
        step(self)

    SGD.step = step_or_die


if __name__ == "__main__":
    rank, args = int(os.environ.get("PMI_RANK", 0)), sys.argv[1:]
    written = []
    if rank > 0:
        watch_writes(os.path.abspath(args[args.index("--out") + 1]), written)
        if "MINIRES_TEST_KILL_AT" in os.environ:
            kill_rank1_at(int(os.environ["MINIRES_TEST_KILL_AT"]))
    status = main(["train", *args])
    if rank > 0:
        print(f"rank {rank} wrote {written}", flush=True)
    sys.exit(status)
