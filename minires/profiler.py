"""The profiler: where a step's time goes, op by op, module by module, kernel by kernel.

    with minires.profile() as prof:
        for _ in range(3):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(); loss.backward(); opt.step()
            prof.step()
    print(prof.table(sort_by="total", group_by="op"))     # or group_by="module" / "kernel"
    prof.export_chrome_trace("trace.json")                 # open in https://ui.perfetto.dev

While a profile is active, every op's forward (Function.apply) and backward (run_backward), every
convolution plan call (ops/conv.py) and every kernel call (kernels/_dispatch.py) becomes an Event:
its start and end, the event it ran inside (its parent: an op contains its plan, a plan its kernels),
the module it ran in (Module.__call__ keeps the stack of modules), the shapes of its arrays, its
multiply-adds (MACs: convolutions, linear layers, matrix products; a backward counts the forward's
MACs once per gradient of a factor it computes), the bytes it read and wrote, and the bytes of the
arrays it made (returned or saved; not its inputs, nor views of them). Per group, ``total`` is the time inside the events,
``self`` that time less the time in their children. The top-level events (those with no parent)
never overlap, so their total plus "outside ops" (the graph's bookkeeping, Python between the ops)
is the profile's wall time.

Rates are set against the machine's ceilings, measured once per process on first use (ceilings()):
an event with MACs against a square matrix product's FLOP/s (2 per MAC), any other against a large
array copy's bytes/s. A convolution's rate counts a direct convolution's MACs, so a plan doing fewer
multiplications (Winograd's) can pass 100% of the GEMM ceiling. On a GPU each event waits for the device at its start and end, so the time is the work's,
not its launch's. profile(memory=True) also records the peak memory: on the CPU through tracemalloc
(NumPy reports its arrays to it; tracing slows Python down, so keep it off when timing).

Off (the default), each hook costs one test of ``active``.
"""
import importlib.util
import json
import os
import sys
import threading
import time
import tracemalloc

import numpy as np

from . import anomaly
from .device import device_of, get_device, in_use, is_array

__all__ = ["profile", "Profile", "Event", "ceilings"]

active = None  # the Profile recording now, or None: the hooks test this and nothing else

GROUPS = ("op", "module", "kernel")
SORT_KEYS = ("total", "self", "calls", "macs", "bytes", "alloc", "name")
OUTSIDE = "(outside ops)"


class Event:
    """One recorded call. kind: "forward" / "backward" (an op), "plan forward" / "plan backward",
    "kernel". Times are time.perf_counter() seconds; inner: seconds spent in its children."""
    __slots__ = ("name", "kind", "parent", "module", "start", "end", "inner", "shapes", "macs", "bytes", "alloc")

    def __init__(self, name, kind, parent, module):
        self.name, self.kind, self.parent, self.module = name, kind, parent, module
        self.start = self.end = self.inner = 0.0
        self.shapes, self.macs, self.bytes, self.alloc = (), 0, 0, 0

    @property
    def duration(self):
        return self.end - self.start

    @property
    def label(self):
        """The row an event is counted in under group_by="op" or "kernel": its name and kind."""
        return f"{self.name} {self.kind}"


def profile(memory=False):
    """A Profile, to use as a context manager (see the module docstring)."""
    return Profile(memory)


class Profile:
    """The events of one ``with minires.profile() as prof:`` block, in the order they began, the
    block's wall time (seconds), the steps marked with step(), and with memory=True ``peak_bytes``:
    the most bytes allocated at once during the block beyond those live when it began."""

    def __init__(self, memory=False):
        self.memory, self.events, self.steps, self.wall, self.peak_bytes = memory, [], 0, 0.0, None
        self._stack, self._names, self._device, self._dtype, self._waited = [], {}, "cpu", None, False

    # --- the block ------------------------------------------------------------------------------------
    def __enter__(self):
        global active
        if active is not None:
            raise RuntimeError("profile: another profile is already recording (they cannot nest)")
        self._memory_start()
        self._gpu = None  # minires.cuda when the "cuda" device is in use: events on it wait for the GPU
        if in_use("cuda"):
            from . import cuda
            self._gpu = cuda
        self._thread = threading.get_ident()
        active = self
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        global active
        self.wall = time.perf_counter() - self._start
        active = None
        self._memory_stop()

    def step(self):
        """Mark the end of a training step or an inference: the table reports times per step."""
        self.steps += 1

    def _memory_start(self):
        self._tracing = self.memory and not tracemalloc.is_tracing()
        if self._tracing:
            tracemalloc.start()
        if self.memory:
            tracemalloc.reset_peak()
            self._base = {"cpu": tracemalloc.get_traced_memory()[0]}
        if self.memory and in_use("cuda"):
            from . import cuda
            cuda.reset_peak_memory_stats()
            self._base["cuda"] = cuda.memory_allocated()

    def _memory_stop(self):
        if not self.memory:
            return
        peak = {"cpu": tracemalloc.get_traced_memory()[1] - self._base["cpu"]}
        if self._tracing:
            tracemalloc.stop()
        if "cuda" in self._base:
            from . import cuda
            peak["cuda"] = cuda.max_memory_allocated() - self._base["cuda"]
        self.peak_bytes = peak["cuda"] if self._waited and "cuda" in peak else peak["cpu"]

    # --- the hooks --------------------------------------------------------------------------------------
    def forward(self, cls, ctx, arrays):
        """cls.forward(ctx, *arrays), recorded (Function.apply)."""
        module = self._module_name()
        event, out, ins = self._record(cls.__name__, "forward", cls.forward, (ctx, *arrays), arrays, module)
        event.macs = _op_macs(cls.__name__, arrays, out)
        _account(event, ins, (out, vars(ctx).get("_saved", ())))
        ctx.profiled = (module, event.macs)  # for its backward
        return out

    def backward(self, node, grad):
        """type(node).backward(node, grad), recorded (Function.run_backward). Its MACs: a gradient of
        a product's factor costs as many as the forward; the module is the forward's."""
        module, macs = vars(node).get("profiled", ("", 0))
        saved = vars(node).get("_saved", ())
        event, grads, ins = self._record(type(node).__name__, "backward", type(node).backward, (node, grad),
                                         (grad, saved), module)
        event.macs = macs * sum(bool(n) for n in node.needs_input_grad[:2])
        _account(event, ins, grads)
        return grads

    def plan(self, plan, direction, *args):
        """plan.forward(x, w, b) or plan.backward(saved, g), recorded (ops/conv.py)."""
        event, result, ins = self._record(plan.name, "plan " + direction, getattr(plan, direction), args, args)
        needs = plan.needs
        event.macs = plan.problem.macs * (1 if direction == "forward" else int(needs[0]) + int(needs[1]))
        _account(event, ins, result)
        return result

    def kernel(self, name, call, f, backend, x, args, kwargs):
        """call(f, backend, x, args, kwargs): one call of the kernel ``name`` (kernels/_dispatch.py)."""
        event, result, ins = self._record(name, "kernel", call, (f, backend, x, args, kwargs), (x, args))
        _account(event, ins, result)
        return result

    def _record(self, name, kind, fn, args, given, module=None):
        """Run fn(*args) as a new event whose inputs are the arrays in ``given``; -> (the event, fn's
        result, those arrays). Calls from other threads (a data loader's) run unrecorded."""
        if threading.get_ident() != self._thread:
            return Event(name, kind, None, ""), fn(*args), []
        parent = self._stack[-1] if self._stack else None
        event = Event(name, kind, parent, parent.module if module is None and parent else module or "")
        arrays = _arrays(given)
        event.shapes = tuple(a.shape for a in arrays)
        if self._dtype is None and arrays and arrays[0].dtype.kind == "f":  # the first op's: for the ceilings
            self._device, self._dtype = device_of(arrays[0]).name, arrays[0].dtype
        gpu = self._gpu and any(device_of(a).name == "cuda" for a in arrays)
        self.events.append(event)
        self._stack.append(event)
        if gpu:  # wait for the work queued before, so that the event's time is its own work's
            self._waited = True
            self._gpu.synchronize()
        event.start = time.perf_counter()
        try:
            return event, fn(*args), arrays
        finally:
            if gpu:
                self._gpu.synchronize()
            event.end = time.perf_counter()
            self._stack.pop()
            if parent is not None:
                parent.inner += event.end - event.start

    def _module_name(self):
        """The qualified name of the module being called ("layer1.0.conv1"), or "" outside any."""
        stack = anomaly._modules
        key = tuple(map(id, stack))
        if key not in self._names:
            parts = [_child_name(parent, child) for parent, child in zip(stack, stack[1:])]
            self._names[key] = ".".join(parts) or (type(stack[0]).__name__ if stack else "")
        return self._names[key]

    # --- reports ----------------------------------------------------------------------------------------
    def rows(self, group_by="op", sort_by="total"):
        """The table's rows as dicts: name, calls, total and self (seconds), macs, bytes, alloc (bytes),
        in order of sort_by (largest first; by name, alphabetical). With group_by "op" or "module" a
        last row, OUTSIDE, holds the wall time outside the top-level events."""
        if group_by not in GROUPS:
            raise ValueError(f"profile.table: group_by must be one of {', '.join(GROUPS)}, got {group_by!r}")
        if sort_by not in SORT_KEYS:
            raise ValueError(f"profile.table: sort_by must be one of {', '.join(SORT_KEYS)}, got {sort_by!r}")
        rows = {}
        for e in self.events:
            key = _group_key(e, group_by)
            if key is not None:
                r = rows.setdefault(key, dict(name=key, calls=0, total=0.0, self=0.0, macs=0, bytes=0, alloc=0))
                r["calls"] += 1
                r["total"] += e.duration
                r["self"] += e.duration - e.inner
                r["macs"] += e.macs
                r["bytes"] += e.bytes
                r["alloc"] += e.alloc
        out = sorted(rows.values(), key=lambda r: r["name"] if sort_by == "name" else -r[sort_by])
        if group_by != "kernel":
            outside = self.wall - sum(e.duration for e in self.events if e.parent is None)
            out.append(dict(name=OUTSIDE, calls=0, total=outside, self=outside, macs=0, bytes=0, alloc=0))
        return out

    def table(self, sort_by="total", group_by="op", limit=None):
        """The rows as text: per group its calls, total and self milliseconds per step, share of the
        wall time, MACs, achieved GFLOP/s (2 flops per MAC) or GB/s and the share of the machine's
        ceiling for it, and MB of arrays made per step. ``limit``: at most this many rows."""
        rows = self.rows(group_by, sort_by)
        if limit is not None and len(rows) > limit:
            rows = rows[:limit] + [r for r in rows[-1:] if r["name"] == OUTSIDE]
        steps = max(self.steps, 1)
        gemm, copy = self._ceilings()
        lines = [(group_by, "calls", "total ms", "self ms", "% wall", "GMACs", "rate", "% peak", "alloc MB")]
        for r in rows:
            rate, peak = _rate(r, gemm, copy)
            lines.append((r["name"], str(r["calls"] // steps) if r["calls"] else "",
                          f"{1e3 * r['total'] / steps:.2f}", f"{1e3 * r['self'] / steps:.2f}",
                          f"{100 * r['total'] / self.wall:.1f}" if self.wall else "",
                          f"{r['macs'] / steps / 1e9:.4g}" if r["macs"] else "", rate, peak,
                          f"{r['alloc'] / steps / 2 ** 20:.1f}" if r["alloc"] else ""))
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        text = ["  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])])
                for line in lines]
        return "\n".join([*text, self._footer(steps, gemm, copy)])

    def _footer(self, steps, gemm, copy):
        per = f"{1e3 * self.wall / steps:.2f} ms per step over {self.steps} steps" if self.steps else \
            "(no steps marked: totals over the block)"
        peak = "" if self.peak_bytes is None else f"; peak memory {self.peak_bytes / 2 ** 20:.1f} MB"
        return (f"wall {1e3 * self.wall:.1f} ms, {per}{peak}; ceilings measured here: "
                f"GEMM {gemm:.1f} GFLOP/s, copy {copy:.1f} GB/s")

    def _ceilings(self):
        """The ceilings of the device and float dtype the events ran in (the GPU's if any ran there)."""
        return ceilings(self._device, self._dtype or np.float32)

    def export_chrome_trace(self, path):
        """Write the events as Chrome's trace format (JSON "traceEvents" of complete events, times in
        microseconds from the block's start), for Perfetto or chrome://tracing; written atomically."""
        pid = os.getpid()
        trace = {"displayTimeUnit": "ms", "traceEvents": [
            {"name": e.name, "cat": e.kind, "ph": "X", "pid": pid, "tid": 0,
             "ts": 1e6 * (e.start - self._start), "dur": 1e6 * e.duration,
             "args": {"module": e.module, "shapes": [list(s) for s in e.shapes], "macs": e.macs,
                      "bytes": e.bytes, "alloc": e.alloc}} for e in self.events]}
        from .serialization import write_atomically  # here: the kernels import this module before minires.nn exists
        write_atomically(path, lambda f: f.write(json.dumps(trace).encode()), "export_chrome_trace")


def _group_key(event, group_by):
    """The row ``event`` is counted in, or None: "op" rows are the ops and the other top-level events
    (an optimizer's kernels); "module" rows the top-level events by module; "kernel" rows the plans
    and kernels."""
    if group_by == "op":
        return event.label if event.kind in ("forward", "backward") or event.parent is None else None
    if group_by == "module":
        return (event.module or "(no module)") if event.parent is None else None
    return event.label if event.kind not in ("forward", "backward") else None


def _rate(row, gemm, copy):
    """(achieved rate, % of its ceiling) as text: GFLOP/s for rows with MACs, else GB/s."""
    if not row["total"] or row["name"] == OUTSIDE:
        return "", ""
    if row["macs"]:
        rate = 2 * row["macs"] / row["total"] / 1e9
        return f"{rate:.1f} GFLOP/s", f"{100 * rate / gemm:.0f}"
    rate = row["bytes"] / row["total"] / 1e9
    return f"{rate:.2f} GB/s", f"{100 * rate / copy:.0f}"


def _op_macs(name, arrays, out):
    """Multiply-adds of an op's forward: convolutions (their problem's), linear layers and matrix
    products (rows x inner x columns of the output); 0 for the others, counted in bytes."""
    if name == "Conv2d":
        return arrays[3].macs
    if name in ("Linear", "MatMul"):
        return out.size * arrays[1].shape[-1 if name == "Linear" else 0]
    return 0


def _arrays(value):
    """The arrays in ``value``: an array, or tuples and lists of values at any depth (a plan's saved)."""
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, (tuple, list)):
        return [a for v in value if not isinstance(v, _NOT_ARRAYS) for a in _arrays(v)]
    return [value] if is_array(value) else []


_NOT_ARRAYS = (int, float, str, type(None))  # a kernel's many geometry numbers: no need to ask the devices


def _account(event, ins, outs):
    """Set the bytes an event moved (it read its input arrays ``ins`` and wrote the arrays in
    ``outs`` that are not views of them) and made: the same written arrays, each counted once."""
    given = {id(_owner(a)) for a in ins}
    written = {id(a): a for a in _arrays(outs) if id(_owner(a)) not in given}
    event.alloc = sum(a.nbytes for a in written.values())
    event.bytes = sum(a.nbytes for a in ins) + event.alloc


def _owner(a):
    """The array that owns the memory ``a`` views (a itself when it owns it)."""
    while getattr(a, "base", None) is not None and is_array(a.base):
        a = a.base
    return a


def _child_name(parent, child):
    """child's attribute name in parent, or its class name when it is not a registered child."""
    return next((k for k, m in parent._modules.items() if m is child), type(child).__name__)


# --- the machine's ceilings ----------------------------------------------------------------------------
_ceilings = {}
_SIZES = {"cpu": (512, 2 ** 23), "cuda": (4096, 2 ** 26)}  # GEMM side, elements copied (other devices: the CPU's)


def ceilings(device="cpu", dtype=np.float32):
    """(GFLOP/s of a square matrix product, GB/s of an array copy counting its read and its write) on
    ``device`` in ``dtype``, the best of three runs each, measured once per process."""
    key = (device, np.dtype(dtype))
    if key not in _ceilings:
        xp = get_device(device).xp
        side, count = _SIZES.get(device, _SIZES["cpu"])
        a = xp.ones((side, side), dtype)
        src, dst = xp.ones(count, dtype), xp.empty(count, dtype)
        gemm = _best(lambda: a @ a, device, runs=5)
        copy = _best(lambda: xp.copyto(dst, src), device)
        _ceilings[key] = (2 * side ** 3 / gemm / 1e9, 2 * src.nbytes / copy / 1e9)
    return _ceilings[key]


def _best(fn, device, runs=3):
    """The shortest of ``runs`` timed calls of fn (after one untimed), waiting for a GPU."""
    from . import cuda
    wait = cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    wait()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        wait()
        times.append(time.perf_counter() - start)
    return min(times)


# --- the command line: minires profile MODEL [--batch 8] [--size 224] [--train|--eval] [--steps 3] ------
def add_arguments(parser):
    from . import workload
    parser.add_argument("model", metavar="MODEL", help="a model of the zoo, e.g. resnet50")
    workload.add_arguments(parser, batch=8, steps=3)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--train", dest="training", action="store_true", default=True,
                      help="training steps: forward, loss, backward, SGD (the default)")
    mode.add_argument("--eval", dest="training", action="store_false", help="inference: eval mode, no graph")
    parser.add_argument("--group-by", default="op", help=f"rows per {' | '.join(GROUPS)} (default: op)")
    parser.add_argument("--sort-by", default="total", help=f"{' | '.join(SORT_KEYS)} (default: total)")
    parser.add_argument("--rows", default="25", help="at most this many rows (default: 25)")
    parser.add_argument("--out", default=None, help="the bar chart, a PNG (default: profile-MODEL.png)")
    parser.add_argument("--trace", default=None, help="also write a Chrome trace (JSON) here, for Perfetto")


def run(args):
    from . import workload
    from .study import UsageError, _number
    try:
        batch, size, steps = workload.numbers(args, [args.model])
        rows = _number("--rows", args.rows, int, 1)
        for option, value, allowed in (("--group-by", args.group_by, GROUPS), ("--sort-by", args.sort_by, SORT_KEYS)):
            if value not in allowed:
                raise UsageError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
        out = args.out or f"profile-{args.model}.png"
        for option, path in (("--out", out), ("--trace", args.trace)):
            check_output(option, path)
        w = workload.Workload(args.model, batch, size, args.device, args.small_input)
        step = w.step_function(args.training)
    except UsageError as e:
        print(f"minires profile: error: {e}", file=sys.stderr)
        return 2
    # the same steps unprofiled, before and after (a drift over the run cancels): what recording costs
    before = _timed_steps(step, steps)
    with profile() as prof:
        for _ in range(steps):
            step()
            prof.step()
    plain = (before + _timed_steps(step, steps)) / 2
    with profile(memory=True) as traced:  # the peak in a step of its own: tracing slows the timed ones
        step()
    prof.peak_bytes = traced.peak_bytes
    what = f"{args.model}, batch {batch}, {size}x{size}, {'training step' if args.training else 'inference'}, {args.device}"
    print(f"{what}; times per step over {steps} steps after one untimed")
    print(prof.table(args.sort_by, args.group_by, limit=rows))
    print(f"unprofiled: {1e3 * plain / steps:.2f} ms per step over {steps} steps; profiled / unprofiled = "
          f"{prof.wall / plain:.3f} (the profiler's own cost, and the machine's noise)")
    plot_bars(prof.rows(args.group_by, "total")[:rows], max(prof.steps, 1), out, what)
    print(f"wrote {out}")
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"wrote {args.trace} (open it in https://ui.perfetto.dev or chrome://tracing)")
    return 0


def _timed_steps(step, steps):
    """Seconds that ``steps`` calls of step() take, nothing recorded."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def check_output(option, path):
    """Refuse an output path whose folder does not exist, before anything runs (None passes); a PNG
    also needs matplotlib."""
    from .study import UsageError
    folder = os.path.dirname(path or "") or "."
    if path is not None and not os.path.isdir(folder):
        raise UsageError(f"{option} {path}: the folder {folder} does not exist")
    if path is not None and path.endswith(".png") and importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"{option} {path}: matplotlib is needed to plot: pip install 'minires[train]'")


def plot_bars(rows, steps, path, title):
    """A horizontal bar per row: its total and, inside, its self milliseconds per step."""
    from .study import _figure, _save
    fig, _ = _figure((9, 1.2 + 0.3 * len(rows)))
    ax = fig.subplots()
    names = [r["name"] for r in rows][::-1]
    ax.barh(names, [1e3 * r["total"] / steps for r in rows][::-1], color="#9ecae1", label="total")
    ax.barh(names, [1e3 * r["self"] / steps for r in rows][::-1], color="#3182bd", height=0.5, label="self")
    ax.set_xlabel("milliseconds per step")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    ax.legend()
    _save(fig, path)
