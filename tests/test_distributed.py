"""minires.distributed. In this process (no launcher: a group of one): the post-accumulate-grad
hook, the collectives' identities and errors, the sampler's shards, SyncBatchNorm and DDP reducing to
their one-process selves. Over 2 ranks, the scripts in tests/dist/ launched with mpiexec: DDP's
gradients equal one process's on the global batch and its parameters stay identical, SyncBatchNorm
equals BatchNorm over the global batch, the sampler's shards, and a rank killed or hung mid-step;
``minires train`` over 2 ranks (tests/dist/train.py): the metrics of one process, a rank killed
mid-step, resumed on 1 rank and on 2, only rank 0 writing, and its one-line errors."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import minires
import minires.distributed as dist
from minires import nn
from minires.cli import main
from minires.data import ArrayDataset, DataLoader, DistributedSampler, Subset
from train_runs import TINY, assert_consistent, leftovers, make_image_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))


# --- the hook that DDP stands on --------------------------------------------------------------
def test_post_accumulate_grad_hook_runs_when_the_leaf_is_done_before_the_backward_ends():
    w1 = minires.tensor(np.full((3, 3), 0.5), requires_grad=True)
    w2 = minires.tensor(np.full((3, 3), 2.0), requires_grad=True)
    seen = []
    w2.register_post_accumulate_grad_hook(lambda p: seen.append(("w2", p.grad is not None, w1.grad is None)))
    handle = w1.register_post_accumulate_grad_hook(lambda p: seen.append(("w1", p.grad is not None, None)))
    x = minires.tensor(np.ones((2, 3)))
    ((x @ w1).relu() @ w2 @ w2).sum().backward()  # w2 used twice: its hook once, after both uses
    assert seen == [("w2", True, True), ("w1", True, None)]
    handle.remove()
    ((x @ w1) @ w2).sum().backward()
    assert [s[0] for s in seen[2:]] == ["w2"]


def test_post_accumulate_grad_hook_only_on_leaves():
    y = minires.tensor(np.ones(2), requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match="register_post_accumulate_grad_hook: only a leaf"):
        y.register_post_accumulate_grad_hook(print)


# --- one process ------------------------------------------------------------------------------
def test_alone_the_group_is_one_and_the_collectives_give_back_their_input():
    dist.init()
    assert dist.is_initialized() and (dist.get_rank(), dist.get_world_size(), dist.get_local_rank()) == (0, 1, 0)
    a = np.arange(6.0).reshape(2, 3)
    assert dist.all_reduce(a) is a and (a == np.arange(6.0).reshape(2, 3)).all()
    assert dist.broadcast(a, src=0) is a
    assert np.array_equal(dist.all_gather(a), a[None])
    assert dist.all_reduce(a, op="max", async_op=True).wait() is a
    dist.barrier()


def test_collectives_errors_name_the_function_and_the_problem(monkeypatch):
    dist.init()
    with pytest.raises(ValueError, match="all_reduce: expected a C-contiguous array"):
        dist.all_reduce(np.ones((3, 4))[:, ::2])
    with pytest.raises(ValueError, match="all_reduce: op must be one of"):
        dist.all_reduce(np.ones(3), op="mean")
    with pytest.raises(ValueError, match=r"broadcast: src must be a rank in \[0, 1\)"):
        dist.broadcast(np.ones(3), src=1)
    monkeypatch.setattr(dist.collectives, "_group", None)
    with pytest.raises(RuntimeError, match=r"barrier: call minires.distributed.init\(\) first"):
        dist.barrier()
    with pytest.raises(RuntimeError, match="DistributedDataParallel: call"):
        dist.DistributedDataParallel(nn.Linear(2, 2))


def test_ddp_alone_is_the_model_itself():
    dist.init()
    minires.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    minires.manual_seed(0)
    ddp = dist.DistributedDataParallel(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double(),
                                       bucket_cap_mb=1e-5)
    x = minires.tensor(np.random.default_rng(0).normal(size=(5, 4)))
    for m in (net, ddp):
        m(x).sum().backward()
    assert list(ddp.state_dict()) == ["module." + k for k in net.state_dict()]
    for p, q in zip(net.parameters(), ddp.parameters()):
        assert np.array_equal(p.grad.numpy(), q.grad.numpy())


def test_convert_sync_batchnorm_keeps_the_tensors_and_alone_is_batchnorm():
    dist.init()
    bn = nn.BatchNorm2d(3).double()
    model = nn.Sequential(nn.Conv2d(2, 3, 1).double(), bn, nn.ReLU())
    converted = dist.convert_sync_batchnorm(model)
    sync = converted[1]
    assert converted is model and type(sync) is dist.SyncBatchNorm
    assert sync.weight is bn.weight and sync.running_var is bn.running_var
    x = np.random.default_rng(1).normal(size=(4, 3, 2, 2))
    assert np.array_equal(sync(minires.tensor(x)).numpy(), nn.BatchNorm2d(3).double()(minires.tensor(x)).numpy())


def test_sampler_shards_are_disjoint_equal_padded_and_reshuffled():
    shards = [list(DistributedSampler(range(10), num_replicas=3, rank=r, seed=1)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    taken = [i for row in zip(*shards) for i in row]  # the padded permutation, in order
    assert sorted(taken[:10]) == list(range(10)) and taken[10:] == taken[:2]
    later = DistributedSampler(range(10), num_replicas=3, rank=0, seed=1)
    later.set_epoch(1)
    assert list(later) != shards[0]
    assert list(DistributedSampler(range(10), num_replicas=3, rank=2, shuffle=False, drop_last=True)) == [2, 5, 8]
    with pytest.raises(ValueError, match=r"DistributedSampler: rank must lie in \[0, 3\)"):
        DistributedSampler(range(10), num_replicas=3, rank=3)


def test_subset_feeds_the_dataloader_a_shard():
    data = ArrayDataset(np.arange(6 * 3, dtype=np.uint8).reshape(6, 3, 1, 1), np.arange(6) % 2, ["a", "b"])
    (x, y), = DataLoader(Subset(data, [4, 1, 2]), batch_size=3)
    assert x.numpy()[:, 0, 0, 0].tolist() == [12, 3, 6] and y.numpy().tolist() == [0, 1, 0]


# --- two ranks --------------------------------------------------------------------------------
def _mpiexec(args, timeout, **env):
    """(return code, output, seconds) of mpiexec -n 2 python tests/dist/ARGS, one Numba thread each."""
    if MPIEXEC is None:
        pytest.skip("mpiexec not found (pip install 'minires[dist]')")
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", **env}
    start = time.monotonic()
    run = subprocess.run([MPIEXEC, "-n", "2", sys.executable, *args], cwd=os.path.join(ROOT, "tests", "dist"),
                         env=env, capture_output=True, text=True, timeout=timeout)
    return run.returncode, run.stdout + run.stderr, time.monotonic() - start


@pytest.mark.parametrize("script, checks", [
    ("ddp.py", ["step_gradients", "no_sync_accumulates", "identical_over_steps 20", "unused_parameter_named"]),
    ("sync_batchnorm.py", ["sync_batchnorm", "network_float32"]),
    ("sampler.py", ["sampler"]),
])
def test_two_ranks(script, checks):
    rc, out, _ = _mpiexec([script], timeout=300)
    assert rc == 0, out
    for check in checks:
        assert out.count(f"OK {check}") == 2, out  # both ranks; they share stdout, so lines may interleave


def test_a_hung_rank_ends_the_job_with_one_line_within_the_timeout():
    rc, out, seconds = _mpiexec(["failure.py", "hang", "5"], timeout=120)
    assert rc != 0 and seconds < 60, (rc, seconds, out)
    assert "minires.distributed: rank 0 of 2: all_reduce of" in out and "another rank died or hangs" in out, out
    assert "finished the step" not in out


def test_a_killed_rank_ends_the_job():
    """MPICH's launcher ends the others as soon as a rank is killed (with its own message); a launcher
    that does not leaves them to the timeout, as a hung rank."""
    rc, out, seconds = _mpiexec(["failure.py", "kill", "5"], timeout=120)
    assert rc != 0 and seconds < 60, (rc, seconds, out)
    assert "Killed (signal 9)" in out or "another rank died or hangs" in out, out
    assert "finished the step" not in out


# --- minires train over two ranks -------------------------------------------------------------
@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """(the data, the folder of a 2-epoch run in one process, with the global batch the ranks share)."""
    tmp = tmp_path_factory.mktemp("train")
    data = make_image_folder(tmp / "imgs")
    assert main(["train", *TINY, "--data", data, "--epochs", "2", "--out", str(tmp / "alone")]) == 0
    return data, tmp / "alone"


def _metrics(out):
    """metrics.csv's epoch, losses and accuracies (not the timings), as numbers."""
    return np.array([[float(v) for v in row.split(",")[:5]] for row in (out / "metrics.csv").read_text().splitlines()[1:]])


@pytest.fixture(scope="module")
def killed(alone, tmp_path_factory):
    """A 2-epoch run on 2 ranks whose rank 1 is SIGKILLed at epoch 2's 2nd step: (its folder, its
    options, mpiexec's return code, output and seconds)."""
    out = tmp_path_factory.mktemp("killed") / "run"
    args = [*TINY, "--data", alone[0], "--epochs", "2", "--out", str(out)]
    return (out, args, *_mpiexec(["train.py", *args], timeout=300, MINIRES_TEST_KILL_AT="5"))


def test_train_a_rank_killed_mid_step_ends_the_job_and_leaves_the_last_commit(killed):
    out, _, rc, printed, seconds = killed
    assert rc != 0 and seconds < 120 and "Killed (signal 9)" in printed, printed
    assert printed.count("epoch 1/2: train loss") == 1, printed  # rank 0 alone prints
    assert assert_consistent(out) == 1  # the commit of epoch 1, nothing of epoch 2


def test_train_resumes_on_one_rank_or_two_and_only_rank_0_writes(killed, tmp_path):
    out, args, *_ = killed
    again = tmp_path / "again"
    shutil.copytree(out, again, symlinks=True)
    assert main(["train", *args, "--resume"]) == 0  # on one process
    assert assert_consistent(out) == 2 and not leftovers(out)
    rc, printed, _ = _mpiexec(["train.py", *args[:-1], str(again), "--resume"], timeout=300)
    assert rc == 0 and "rank 1 wrote []" in printed, printed
    assert printed.count("epoch 2/2: train loss") == 1, printed
    assert assert_consistent(again) == 2 and not leftovers(again)


def test_train_on_two_ranks_gives_one_process_metrics(alone, killed):
    """Epoch 1's training loss and the accuracies to float32 rounding. The test loss, in eval mode
    after three steps, amplifies rounding: a ReLU whose input lies within rounding of zero passes or
    blocks its gradient by the last bit, and one-process runs that differ only in the order of their
    sums (MINIRES_KERNELS, MINIRES_PLANS, MINIRES_WINOGRAD) spread by a few percent there, as the
    2-rank run does; without SyncBatchNorm (--no-sync-bn) it moves by far more, and so does the
    training loss."""
    ranks, one = _metrics(killed[0])[:1], _metrics(alone[1])[:1]  # epoch 1 (a later test resumes killed)
    np.testing.assert_allclose(np.delete(ranks, TEST_LOSS, axis=1), np.delete(one, TEST_LOSS, axis=1), rtol=1e-3)
    np.testing.assert_allclose(ranks[:, TEST_LOSS], one[:, TEST_LOSS], rtol=0.1)


TEST_LOSS = 3  # metrics.csv's column of the test loss


def test_train_on_two_ranks_refuses_a_batch_it_cannot_share_in_one_line(alone, tmp_path):
    rc, printed, _ = _mpiexec(["train.py", *TINY, "--batch-size", "15", "--data", alone[0], "--out",
                               str(tmp_path / "x")], timeout=120)
    assert rc == 2 and not os.path.exists(tmp_path / "x"), printed
    assert [line for line in printed.strip().splitlines() if not line.startswith("rank 1 wrote")] == [
        "minires train: error: --batch-size 15 must be a multiple of the 2 ranks (the global batch, shared out "
        "equally)"], printed
