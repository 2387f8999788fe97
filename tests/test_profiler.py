"""minires.profile: the events it records (ops, plans, kernels, nested), their table grouped by op,
module or kernel, the Chrome trace, multiply-adds against minires.summary, its total against the
step's wall time, and ``minires profile``."""
import json
import threading

import numpy as np
import pytest

import minires
from minires import cli, models, nn, profiler
from minires import functional as F
from minires.autograd.function import Function


def _net():
    minires.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))


def _batch(n=4, size=6):
    rng = np.random.default_rng(0)
    return minires.tensor(rng.standard_normal((n, 3, size, size)).astype(np.float32)), minires.tensor(np.arange(n) % 5)


def _train_step(model, x, y):
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss


@pytest.fixture(scope="module")
def net_profile():
    model, (x, y) = _net(), _batch()
    _train_step(model, x, y)
    with minires.profile() as prof:
        for _ in range(2):
            _train_step(model, x, y)
            prof.step()
    return prof


def test_events_nest(net_profile):
    events = net_profile.events
    kinds = {e.kind for e in events}
    assert {"forward", "backward", "plan forward", "plan backward", "kernel"} <= kinds
    for e in events:
        assert e.end >= e.start
        if e.parent is not None:  # inside its parent's interval, in the same module
            assert e.parent.start <= e.start and e.end <= e.parent.end and e.module == e.parent.module
    for e in (e for e in events if e.kind.startswith("plan")):
        assert e.parent.name == "Conv2d" and e.parent.kind == e.kind.split()[1]
    for e in events:  # inner: the time in its children, which never overlap
        children = [c for c in events if c.parent is e]
        assert e.inner == pytest.approx(sum(c.duration for c in children), abs=1e-9)
    conv = next(e for e in events if e.name == "Conv2d" and e.kind == "forward")
    assert conv.shapes == ((4, 3, 6, 6), (8, 3, 3, 3), (8,)) and conv.module == "0"
    assert conv.alloc >= 4 * 8 * 6 * 6 * 4  # at least its output
    assert next(e for e in events if e.name == "Linear").module == "4"
    assert minires.profiler.active is None and net_profile.steps == 2


def test_top_level_time_and_outside_add_up_to_the_wall(net_profile):
    rows = net_profile.rows("op")
    top = sum(e.duration for e in net_profile.events if e.parent is None)
    assert rows[-1]["name"] == profiler.OUTSIDE
    assert top + rows[-1]["total"] == pytest.approx(net_profile.wall)
    assert sum(r["total"] for r in rows) == pytest.approx(net_profile.wall)  # the op rows are the top level


def test_ops_cover_most_of_a_training_step():
    """What the profiler attributes to ops is most of a step (the rest: the graph's bookkeeping and
    Python between ops). Its own cost is measured, not tested: `minires profile` prints the same
    steps unprofiled beside it, and benchmarks/RESULTS.md has the figures."""
    model = models.resnet18(num_classes=10, small_input=True)
    x, y = _batch(4, 16)
    _train_step(model, x, y)
    with minires.profile() as prof:
        _train_step(model, x, y)
    assert sum(e.duration for e in prof.events if e.parent is None) > 0.7 * prof.wall


def test_forward_macs_equal_summary():
    model = models.resnet18()
    x = minires.tensor(np.zeros((2, 3, 64, 64), np.float32))
    model.eval()
    with minires.no_grad(), minires.profile() as prof:
        model(x)
    macs = sum(e.macs for e in prof.events if e.kind == "forward")
    assert macs == minires.summary(model, (2, 3, 64, 64), print_table=False).total_macs
    assert {e.name for e in prof.events if e.kind == "forward" and e.macs} == {"Conv2d", "Linear"}


def test_backward_macs_count_the_gradients_computed():
    conv = nn.Conv2d(3, 4, 3)
    for input_grad, factor in ((False, 1), (True, 2)):
        x = minires.tensor(np.ones((2, 3, 5, 5), np.float32), requires_grad=input_grad)
        with minires.profile() as prof:
            conv(x).sum().backward()
        forward, backward = (next(e for e in prof.events if e.name == "Conv2d" and e.kind == k)
                             for k in ("forward", "backward"))
        assert forward.macs == 2 * 4 * 3 * 3 * 3 * 3 * 3
        assert backward.macs == factor * forward.macs
        plan = next(e for e in prof.events if e.kind == "plan backward")
        assert plan.macs == backward.macs and plan.parent is backward


def test_table_groups_and_sorts(net_profile):
    ops = net_profile.rows("op")
    assert {"Conv2d forward", "Conv2d backward", "Linear forward", "CrossEntropy backward"} <= {r["name"] for r in ops}
    conv = next(r for r in ops if r["name"] == "Conv2d forward")
    assert conv["calls"] == 2 and conv["macs"] == 2 * 4 * 8 * 36 * 27 and conv["self"] <= conv["total"]
    modules = {r["name"]: r for r in net_profile.rows("module")}
    assert {"0", "1", "4", "(no module)", profiler.OUTSIDE} <= set(modules)  # (no module): the loss
    # 2 steps of a forward and a backward that computes the weight's gradient only (the input needs none)
    assert modules["0"]["macs"] == 2 * 2 * 4 * 8 * 36 * 27
    kernels = [r["name"] for r in net_profile.rows("kernel")]
    assert any(k.endswith("plan forward") for k in kernels) and all(not k.endswith(" forward") or "plan" in k
                                                                    for k in kernels)
    assert profiler.OUTSIDE not in kernels
    by_calls = [r["calls"] for r in net_profile.rows("op", sort_by="calls")[:-1]]
    assert by_calls == sorted(by_calls, reverse=True)
    by_name = [r["name"] for r in net_profile.rows("kernel", sort_by="name")]
    assert by_name == sorted(by_name)
    text = net_profile.table(sort_by="self", group_by="module", limit=2)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["module", "calls"] and lines[-2].startswith(profiler.OUTSIDE) and len(lines) == 5
    assert "ms per step over 2 steps" in lines[-1] and "GFLOP/s" in net_profile.table()
    with pytest.raises(ValueError, match="group_by must be one of op, module, kernel, got 'layer'"):
        net_profile.table(group_by="layer")
    with pytest.raises(ValueError, match="sort_by"):
        net_profile.table(sort_by="speed")


def test_chrome_trace(net_profile, tmp_path):
    path = tmp_path / "trace.json"
    net_profile.export_chrome_trace(str(path))
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    assert len(events) == len(net_profile.events)
    for e in events:
        assert e["ph"] == "X" and {"name", "cat", "ts", "dur", "pid", "tid", "args"} <= set(e)
        assert e["dur"] >= 0 and {"shapes", "macs", "module"} <= set(e["args"])
    conv, plan = (next(e for e in events if e["cat"] == c) for c in ("forward", "plan forward"))
    assert conv["name"] == "Conv2d" and conv["args"]["shapes"][0] == [4, 3, 6, 6] and conv["args"]["macs"] > 0
    assert conv["ts"] <= plan["ts"] and plan["ts"] + plan["dur"] <= conv["ts"] + conv["dur"] + 1e-3  # nested
    assert not [p for p in tmp_path.iterdir() if p.name != "trace.json"]  # no temporary file left


class _Fails(Function):
    @staticmethod
    def forward(ctx, x):
        raise ArithmeticError("fails on purpose")


def test_off_changes_nothing_and_errors_leave_it_clean():
    model, (x, y) = _net(), _batch()
    with minires.profile() as prof:
        inside = model(x).numpy()
        with pytest.raises(ArithmeticError):
            _Fails.apply(x)
        after = F.relu(x)
        with pytest.raises(RuntimeError, match="cannot nest"):
            with minires.profile():
                pass
    assert np.array_equal(inside, model(x).numpy())
    assert next(e for e in prof.events if e.name == "ReLU" and e.parent is None)  # not inside the failed op
    assert minires.profiler.active is None and after.shape == x.shape
    count = len(prof.events)
    _train_step(model, x, y)
    assert len(prof.events) == count


def test_memory():
    x = minires.tensor(np.ones((256, 1024), np.float32))
    with minires.profile(memory=True) as prof:
        y = x * 2
        del y
    assert prof.peak_bytes >= x.data.nbytes
    mul = next(e for e in prof.events if e.name == "Mul")
    assert mul.alloc == x.data.nbytes and mul.bytes == 2 * x.data.nbytes
    with minires.profile() as prof:
        x.reshape(1024, 256)
    assert prof.peak_bytes is None and prof.events[0].alloc == 0  # a view allocates nothing


def test_ceilings_are_measured_once():
    gemm, copy = profiler.ceilings()
    assert gemm > 0 and copy > 0
    assert profiler.ceilings() == (gemm, copy)


# --- minires profile -----------------------------------------------------------------------------------
def test_profile_command(tmp_path, capsys):
    png, trace = tmp_path / "p.png", tmp_path / "t.json"
    assert cli.main(["profile", "resnet18", "--size", "32", "--batch", "2", "--steps", "1", "--group-by", "kernel",
                     "--out", str(png), "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "resnet18, batch 2, 32x32, training step, cpu" in out and "plan backward" in out and "peak memory" in out
    assert "unprofiled: " in out and "profiled / unprofiled = " in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(trace.read_text())["traceEvents"]


@pytest.mark.parametrize("argv, message", [
    (["resnet19"], "unknown model 'resnet19'"),
    (["resnet18", "--batch", "0"], "--batch must be an integer of at least 1, got '0'"),
    (["resnet18", "--size", "x"], "--size"),
    (["resnet18", "--steps", "-1"], "--steps"),
    (["resnet18", "--group-by", "layer"], "--group-by must be one of op, module, kernel"),
    (["resnet18", "--sort-by", "speed"], "--sort-by"),
    (["resnet18", "--device", "tpu"], "unknown device 'tpu'"),
    (["resnet18", "--out", "/no/such/folder/p.png"], "the folder /no/such/folder does not exist"),
])
def test_profile_command_bad_input(argv, message, capsys, tmp_path, monkeypatch):
    assert message in usage_error("profile", argv, capsys, tmp_path, monkeypatch)


def usage_error(command, argv, capsys, tmp_path, monkeypatch):
    """Run ``minires COMMAND ARGV`` in the empty folder tmp_path; check that it exits with status 2,
    one line on stderr and nothing written; -> that line."""
    monkeypatch.chdir(tmp_path)
    assert cli.main([command, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"minires {command}: error: ") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())
    return err


def test_other_threads_run_unrecorded():
    x = minires.tensor(np.ones((2, 2), np.float32))
    results = []
    with minires.profile() as prof:
        worker = threading.Thread(target=lambda: results.append(F.relu(x)))
        worker.start()
        worker.join()
        x * 2
    assert [e.name for e in prof.events] == ["Mul"] and results[0].shape == (2, 2)


def test_modules_with_hooks_are_named_too():
    model, (x, _) = _net(), _batch()
    model[0].register_forward_hook(lambda module, args, out: None)
    with minires.profile() as prof:
        model(x)
    assert next(e for e in prof.events if e.name == "Conv2d").module == "0"
