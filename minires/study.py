"""Study why shortcuts work: gradient flow through the layers, and the ResNet paper's degradation experiment.

    minires study gradflow    [--models plain56,resnet56] [--data digits] [--steps 100] [--out DIR]
    minires study degradation [--models plain20,plain56,resnet20,resnet56] [--data digits] [--steps 180] [--out DIR]

Both train each model with the same recipe, the CIFAR recipe of He et al. 2015 made short: SGD with
momentum 0.9 and weight decay 1e-4, batches of 128, the learning rate warmed up linearly from lr/10
over 12 steps and divided by 10 at half and at three quarters of the steps, random-crop
augmentation, the same seed for every model (so the same batches in the same order). The peak
learning rate is 0.02, not the paper's 0.1: in a run this short 0.1 left ResNet-56 at 30% training
error after 360 steps on digits (and Plain-56 at chance), 0.02 brings it to 3% in 180. The models
run fused (minires.fuse), which changes no number.

gradflow: at the first step, the last one and --records - 2 steps between, notes for each layer on the
main path (each convolution but the projection shortcuts', then fc; its index is its depth, 1 to 56
for a 56-layer network) the mean and standard deviation of its output, the norm of the loss's
gradient with respect to its weight, ||dL/dW||, and with respect to its output, ||dL/dy||. Writes
OUT/gradflow.csv (a row per model, step and layer) and OUT/gradflow.png (a panel per recorded step
and quantity, one line per model, the layers on the x-axis). Each layer's forward is wrapped for the
recorded steps only, as minires.summary does: the output passes through _Probe, an identity op whose
backward notes the norm of the gradient going through it.

degradation: trains every model and writes OUT/degradation.csv (a row per model and step: loss and
error of the training batch, and the test error after each pass over the data) and
OUT/degradation.png (training error per iteration, averaged over a pass, and test error, plain
networks on the left and residual ones on the right, as the paper's Figure 6).

Bad input (an unknown model or data set, a bad number) stops with a one-line error and exit status 2
before anything is written.
"""
import csv
import inspect
import os
import sys
import time
from contextlib import nullcontext

import numpy as np

from . import functional as F
from . import models
from .autograd.function import Function
from .autograd.tensor import no_grad
from .fusion import fuse
from .nn import Conv2d, Linear
from .optim import SGD, lr_scheduler
from .random import manual_seed

SMALL_INPUT_MAX = 64  # the ImageNet-layout models get their small-input stem up to this image size
RECIPE = dict(lr=0.02, momentum=0.9, weight_decay=1e-4, warmup=12)
STUDIES = {
    # name: (help, default models, default steps)
    "gradflow": ("per-layer activations and gradient norms of plain and residual networks, at "
                 "initialisation and through training", "plain56,resnet56", 100),
    "degradation": ("training error against iteration of plain and residual networks of two depths "
                    "(He et al. 2015, Figure 6)", "plain20,plain56,resnet20,resnet56", 180),
}


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


def zoo():
    """The model names --models accepts: every minires.models constructor."""
    return [n for n in models.__all__ if n[0].islower() and n not in ("load_torch_weights", "torch_state_dict")]


def add_arguments(parser):
    sub = parser.add_subparsers(dest="study", metavar="STUDY", required=True)
    for name, (text, default_models, steps) in STUDIES.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--models", default=default_models,
                       help=f"comma-separated minires.models names (default: {default_models})")
        p.add_argument("--data", default="digits", help="digits, cifar10:PATH or folder:PATH (default: digits)")
        p.add_argument("--steps", default=str(steps), help=f"training iterations per model (default: {steps})")
        p.add_argument("--batch-size", default="128", help="default: 128")
        p.add_argument("--lr", default=str(RECIPE["lr"]), help=f"peak learning rate (default: {RECIPE['lr']})")
        p.add_argument("--warmup", default=str(RECIPE["warmup"]),
                       help=f"steps of linear warmup from lr/10 (default: {RECIPE['warmup']})")
        p.add_argument("--seed", default="0", help="fixes the initial weights, data order and augmentation")
        p.add_argument("--out", default=None, help=f"output folder (default: the first free runs/{name}-N)")
        if name == "gradflow":
            p.add_argument("--records", default="3", help="steps recorded, the first and last among them (default: 3)")


def run(args):
    try:
        setup = prepare(args)
    except UsageError as e:
        print(f"minires study {args.study}: error: {e}", file=sys.stderr)
        return 2
    return (gradflow if args.study == "gradflow" else degradation)(setup)


# --- setting up: every check before anything is written ----------------------------------------
class Setup:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def prepare(args):
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--models names no model: {args.models!r}")
    for n in names:
        if n not in zoo():
            raise UsageError(f"unknown model {n!r}: expected one of {', '.join(zoo())}")
    if len(set(names)) != len(names):
        raise UsageError(f"--models names a model twice: {args.models!r}")
    steps = _number("--steps", args.steps, int, 1)
    batch_size = _number("--batch-size", args.batch_size, int, 1)
    lr = _number("--lr", args.lr, float, 0.0)
    seed = _number("--seed", args.seed, int, 0)
    warmup = _number("--warmup", args.warmup, int, 0)
    records = _number("--records", args.records, int, 2) if args.study == "gradflow" else 0
    if records > steps:
        raise UsageError(f"--records {records} is more than --steps {steps}")
    out = args.out if args.out is not None else _first_free(f"runs/{args.study}-{{}}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file, not a folder")
    try:
        import matplotlib  # noqa: F401  (checked now, used at the end)
        from . import data
        source = data.load_source(args.data)
    except ImportError as e:
        raise UsageError(f"{e.name} is needed for the studies: pip install 'minires[train]'") from None
    except (ValueError, OSError) as e:
        raise UsageError(e) from None
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot make the output folder {out}: {e.strerror}") from None
    return Setup(names=names, steps=steps, batch_size=batch_size, lr=lr, seed=seed, records=records, out=out,
                 source=source, data=data, spec=args.data, warmup=warmup)


def _number(option, text, kind, minimum):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not value >= minimum or (kind is float and not np.isfinite(value)):
        what = "an integer" if kind is int else "a number"
        raise UsageError(f"{option} must be {what} of at least {minimum}, got {text!r}")
    return value


def _first_free(pattern):
    i = 1
    while os.path.exists(pattern.format(i)):
        i += 1
    return pattern.format(i)


def build(name, source, seed):
    """Model ``name`` for ``source``'s classes (the small-input stem for small images), initialized
    from ``seed``, fused."""
    manual_seed(seed)
    constructor = getattr(models, name)
    kwargs = dict(num_classes=len(source.train.classes))
    if "small_input" in inspect.signature(constructor).parameters:
        kwargs["small_input"] = source.train.images.shape[-1] <= SMALL_INPUT_MAX
    return fuse(constructor(**kwargs), inplace=True)


# --- the training loop both studies share --------------------------------------------------------
def train(model, s, record=None, on_pass=None):
    """``s.steps`` SGD steps of the recipe on ``s.source``'s training set; per step, the batch's loss
    and error (fraction misclassified). record(step) gives a context manager around the step's
    forward and backward, or None; on_pass(step) runs after each pass over the data."""
    loader = s.data.DataLoader(s.source.train, s.batch_size, shuffle=True, transform=s.source.train_transform(),
                               seed=s.seed)
    optimizer = SGD(model.parameters(), lr=s.lr, momentum=RECIPE["momentum"], weight_decay=RECIPE["weight_decay"])
    warmup = min(s.warmup, s.steps - 1)
    decay = lr_scheduler.MultiStepLR(optimizer, milestones=[s.steps // 2 - warmup, s.steps * 3 // 4 - warmup])
    scheduler = decay if not warmup else lr_scheduler.SequentialLR(
        optimizer, [lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=warmup), decay], milestones=[warmup])
    losses, errors, step = [], [], 0
    model.train()
    while step < s.steps:
        for x, y in loader:
            with (record(step) if record else None) or nullcontext():
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad()
                loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            errors.append(float((logits.data.argmax(axis=1) != y.data).mean()))
            step += 1
            if step == s.steps:
                break
        if on_pass:
            on_pass(step)
            model.train()
    return np.array(losses), np.array(errors)


def test_error(model, s):
    loader = s.data.DataLoader(s.source.test, 512, transform=s.source.test_transform())
    model.eval()
    wrong = 0
    with no_grad():
        for x, y in loader:
            wrong += int((model(x).data.argmax(axis=1) != y.data).sum())
    return wrong / len(s.source.test)


# --- gradient flow ---------------------------------------------------------------------------------
class _Probe(Function):
    """The identity, whose backward notes the norm of the gradient that passes through it."""

    @staticmethod
    def forward(ctx, a, notes, key):
        ctx.notes, ctx.key = notes, key
        return a

    @staticmethod
    def backward(ctx, grad):
        ctx.notes[ctx.key] = _norm(grad)
        return grad, None, None


def _norm(a):
    return float(np.sqrt(np.sum(np.square(a, dtype=np.float64))))


def main_path(model):
    """(name, module) of the layers on the main path, in order: convolutions and linear layers,
    not the projection shortcuts."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (Conv2d, Linear)) and "downsample" not in n.split(".")]


class LayerStats:
    """record(step) for train(): around the recorded steps, each main-path layer's forward wrapped to
    note its output's mean and std and to pass it through _Probe; on leaving, after the backward,
    the notes and each weight's gradient norm become rows."""

    def __init__(self, model, name, steps):
        self.layers, self.name, self.steps, self.rows = main_path(model), name, set(steps), []

    def __call__(self, step):
        return self._recording(step) if step in self.steps else None

    def _recording(self, step):
        stats, grads = {}, {}
        recorder = self

        class Recording:
            def __enter__(self):
                for name, m in recorder.layers:
                    m.forward = _noted(m, name, stats, grads)  # an instance attribute: found before the method

            def __exit__(self, *exc):
                for name, m in recorder.layers:
                    del m.forward
                if exc[0] is None:
                    for i, (name, m) in enumerate(recorder.layers, 1):
                        recorder.rows.append(dict(
                            model=recorder.name, step=step, layer=i, name=name, type=type(m).__name__,
                            act_mean=stats[name][0], act_std=stats[name][1], grad_norm=_norm(m.weight.grad.data),
                            out_grad_norm=grads.get(name, 0.0), weight_norm=_norm(m.weight.data)))
                return False

        return Recording()


def _noted(module, name, stats, grads):
    forward = module.forward

    def noted(x):
        out = forward(x)
        data = out.data
        stats[name] = (float(data.mean(dtype=np.float64)), float(data.std(dtype=np.float64)))
        return _Probe.apply(out, grads, name)

    return noted


def gradflow(s):
    record_at = sorted({round(i * (s.steps - 1) / (s.records - 1)) for i in range(s.records)})
    rows, summary, t0 = [], [], time.perf_counter()
    for name in s.names:
        start = time.perf_counter()
        model = build(name, s.source, s.seed)
        stats = LayerStats(model, name, record_at)
        _, errors = train(model, s, record=stats)
        rows += stats.rows
        first = [r["grad_norm"] for r in stats.rows if r["step"] == 0]
        summary.append(f"{name}: {len(first)} layers; at step 0 ||dL/dW|| runs from {first[0]:.3g} (layer 1) to "
                       f"{first[-2]:.3g} (layer {len(first) - 1}), {first[0] / first[-2]:.3g}x; last training "
                       f"error {errors[-1]:.1%}; {time.perf_counter() - start:.0f} s")
        print(summary[-1], flush=True)
    _write_csv(rows, os.path.join(s.out, "gradflow.csv"))
    plot_gradflow(rows, record_at, os.path.join(s.out, "gradflow.png"))
    print(f"gradflow.csv and gradflow.png in {s.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


def plot_gradflow(rows, steps, path):
    """Rows: activation std, ||dL/dW||, ||dL/dy|| (log scale); columns: the recorded steps."""
    from matplotlib.ticker import MaxNLocator

    fig, canvas = _figure((4.2 * len(steps), 9))
    quantities = [("act_std", "output std"), ("grad_norm", "||dL/dW||"), ("out_grad_norm", "||dL/d output||")]
    axes = fig.subplots(len(quantities), len(steps), sharex=True, sharey="row", squeeze=False)
    models_ = list(dict.fromkeys(r["model"] for r in rows))
    for col, step in enumerate(steps):
        for row, (key, label) in enumerate(quantities):
            ax = axes[row][col]
            for name in models_:
                mine = [r for r in rows if r["model"] == name and r["step"] == step]
                ax.plot([r["layer"] for r in mine], [r[key] for r in mine], marker=".", markersize=3, label=name)
            ax.set_yscale("log" if key != "act_std" else "linear")
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.set_title("initialisation" if step == 0 else f"after {step} step{'s' * (step > 1)}")
            if row == len(quantities) - 1:
                ax.set_xlabel("layer (main path, input to output)")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].legend()
    _save(fig, path)


# --- degradation -----------------------------------------------------------------------------------
def degradation(s):
    rows, results, t0 = [], [], time.perf_counter()
    for name in s.names:
        start = time.perf_counter()
        model = build(name, s.source, s.seed)
        tests = {}
        losses, errors = train(model, s, on_pass=lambda step: tests.__setitem__(step, test_error(model, s)))
        for i, (loss, err) in enumerate(zip(losses, errors), 1):
            rows.append(dict(model=name, step=i, loss=loss, train_error=err, test_error=tests.get(i, "")))
        per_pass = min(len(errors), -(-len(s.source.train) // s.batch_size))
        results.append((name, errors[-per_pass:].mean(), tests[s.steps], time.perf_counter() - start))
        print(f"{name}: training error {results[-1][1]:.1%} (last pass), test error {results[-1][2]:.1%}, "
              f"{results[-1][3]:.0f} s", flush=True)
    _write_csv(rows, os.path.join(s.out, "degradation.csv"))
    plot_degradation(rows, -(-len(s.source.train) // s.batch_size), s.spec, os.path.join(s.out, "degradation.png"))
    print(f"degradation.csv and degradation.png in {s.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


def plot_degradation(rows, per_pass, data, path):
    """Training error (a moving average over one pass, thin) and test error after each pass (bold)
    against the iteration: plain networks on the left, the others (residual) on the right."""
    fig, canvas = _figure((12, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    names = list(dict.fromkeys(r["model"] for r in rows))
    colors = {}
    for name in names:
        ax = axes[0] if name.startswith("plain") else axes[1]
        mine = [r for r in rows if r["model"] == name]
        err = np.array([r["train_error"] for r in mine]) * 100
        k = min(per_pass, len(err))
        smooth = np.convolve(err, np.ones(k) / k, mode="valid")
        line, = ax.plot(np.arange(k, len(err) + 1), smooth, linewidth=1, label=f"{name} train",
                        color=colors.get(_depth(name)))
        colors.setdefault(_depth(name), line.get_color())
        test = [(r["step"], r["test_error"] * 100) for r in mine if r["test_error"] != ""]
        ax.plot(*zip(*test), linewidth=2.5, color=line.get_color(), label=f"{name} test")
    for ax, title in zip(axes, ("plain networks", "residual networks")):
        ax.set_title(f"{title} on {data.split(':')[0]}")
        ax.set_xlabel("iteration")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    axes[0].set_ylabel("error (%)")
    _save(fig, path)


def _depth(name):
    return "".join(c for c in name if c.isdigit())


# --- outputs -----------------------------------------------------------------------------------------
def _figure(size):
    """A matplotlib Figure on the Agg renderer directly: no pyplot, so no global backend is switched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, FigureCanvasAgg(fig)


def _save(fig, path):
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fig.savefig(tmp, format="png", dpi=80)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()})
