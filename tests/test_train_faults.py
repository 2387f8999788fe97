"""Fault injection: a 2-epoch ``minires train`` run is SIGKILLed right before each change it makes to
the names in its output folder, in turn (tests/killed_train.py counts them: every mkdir, link,
symlink, rename, unlink and rmdir), as a crash or a power cut can stop it anywhere. After each kill
the folder must be consistent (train_runs.assert_consistent: every output present loads, metrics.csv
is last.npz's history, best.npz is metrics.csv's best epoch); then the same command, with --resume
when an epoch was saved, must finish the run exactly as the uninterrupted one, and leave no
temporary file or stale epoch folder behind (tests/test_train.py tests the removal of those a run
killed after its last commit leaves for the next)."""
import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from train_runs import TINY, assert_consistent, assert_same_run, leftovers, make_image_folder

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600  # seconds for one request: a hung child fails the test instead of stopping the suite


class Server:
    """tests/killed_train.py in a process of its own: run(K, ARGS) -> (exit status, changes)."""

    def __init__(self, log):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "killed_train.py")], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})

    def run(self, kill_at, *args):
        self.proc.stdin.write(json.dumps([kill_at, *map(str, args)]) + "\n")
        self.proc.stdin.flush()
        if not select.select([self.proc.stdout], [], [], TIMEOUT)[0]:
            raise TimeoutError(f"tests/killed_train.py gave no answer to {kill_at} {args} in {TIMEOUT} s")
        answer = json.loads(self.proc.stdout.readline())
        return answer["status"], answer["changes"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(the server, the data, a run's options but --out, the uninterrupted run's folder)."""
    tmp = tmp_path_factory.mktemp("faults")
    data = make_image_folder(tmp / "imgs")
    with open(tmp / "server.log", "w") as log:
        server = Server(log)
        args = [*TINY, "--data", data, "--epochs", "2"]
        assert server.run(-1, *args, "--out", tmp / "straight")[0] == 0, (tmp / "server.log").read_text()[-3000:]
        yield server, args, tmp / "straight"
        server.close()


def test_a_kill_anywhere_leaves_a_consistent_folder_and_an_exact_resume(runs, tmp_path):
    server, args, straight = runs
    status, changes = server.run(0, *args, "--out", tmp_path / "traced")
    assert status == 0
    assert len(changes) >= 8, changes  # at least one per output file and epoch
    failures = []
    for k, change in enumerate(changes, 1):
        out = tmp_path / f"killed-{k}"
        try:
            assert server.run(k, *args, "--out", out)[0] == -9, "not killed"
            epoch = assert_consistent(out)
            if epoch < 2:  # else the run was over: a resume would be refused, and the next run cleans up
                assert server.run(0, *args, "--out", out, *(["--resume"] if epoch else []))[0] == 0, "not resumed"
                assert not leftovers(out), leftovers(out)
            assert assert_consistent(out) == 2
            assert_same_run(straight, out)
        except AssertionError as e:
            failures.append(f"killed before change {k}, {change}: {str(e).splitlines()[0]}")
    assert not failures, "\n".join(failures)
