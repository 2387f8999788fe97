"""Train a zoo model on an image dataset, with progress, metrics, curves and resumable checkpoints.

Plain ``minires train`` trains ResNet-18 (its small-input stem) on scikit-learn's handwritten digits
on the CPU. Each epoch shows a progress bar (loss, accuracy, images/s) and then writes, each file
atomically, OUT/metrics.csv (a row per epoch: epoch, train_loss, train_acc, test_loss, test_acc,
images_per_s, seconds), OUT/curves.png (loss and accuracy per epoch), OUT/last.npz (the checkpoint:
model, optimizer, schedule, data-order state, epoch and history) and, on the best test accuracy so
far, OUT/best.npz. --resume continues OUT's run from last.npz exactly as if it had never stopped
(same batches, same augmentation, same numbers); --eval-only reports the test loss and accuracy of
OUT/best.npz (else last.npz). The learning rate follows --schedule batch by batch, after a linear
warmup over --warmup-epochs. Bad input (an unknown model or dataset, a missing or malformed data
folder, a checkpoint of another model or a corrupt one, ...) stops with a one-line error and exit
status 2 before anything is written.
"""
import inspect
import math
import os
import sys
import time
from types import SimpleNamespace

import numpy as np

from . import functional as F
from . import models
from .device import get_device, to_device
from .fusion import fuse
from .optim import SGD, AdamW, lr_scheduler
from .random import manual_seed
from .serialization import load, save
from .autograd.tensor import Tensor, no_grad

METRICS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "seconds"]
OPTIMIZER_DEFAULTS = {"sgd": dict(lr=0.02, weight_decay=5e-4), "adamw": dict(lr=1e-3, weight_decay=0.05)}
SMALL_INPUT_MAX = 64  # images up to this size get the small-input stem (no stride-2 conv, no max-pool)


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


def zoo():
    """The model names --model accepts: the minires.models constructors with a small-input stem."""
    return [n for n in models.__all__
            if n[0].islower() and "small_input" in inspect.signature(getattr(models, n)).parameters]


def add_arguments(p):
    p.add_argument("--model", default="resnet18", help="a minires.models name (default: resnet18)")
    p.add_argument("--data", default="digits", help="digits, cifar10:PATH or folder:PATH (default: digits)")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this size (default: the data's own)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZER_DEFAULTS), default="sgd")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 0.02 sgd, 0.001 adamw)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    p.add_argument("--weight-decay", type=float, default=None, help="default: 5e-4 sgd, 0.05 adamw")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    p.add_argument("--schedule", choices=["constant", "step", "cosine"], default="cosine",
                   help="lr per batch: constant, step (x0.1 at 50%% and 75%% of training) or cosine to 0")
    p.add_argument("--warmup-epochs", type=float, default=1, help="linear lr warmup from lr/10 (default: 1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--seed", type=int, default=0, help="fixes the initial weights, data order and augmentation")
    p.add_argument("--out", default=None, help="output folder (default: the first free runs/train-N)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.npz")
    p.add_argument("--eval-only", action="store_true", help="evaluate --out's best.npz (else last.npz) on the test set")


def run(args):
    start = time.perf_counter()
    try:
        setup = prepare(args)
    except UsageError as e:
        print(f"minires train: error: {e}", file=sys.stderr)
        return 2
    if args.eval_only:
        loss, acc = evaluate(setup.model, setup.test_loader, args.device)
        print(f"{setup.checkpoint}: epoch {setup.epoch}, test loss {loss:.4f}, test accuracy {acc:.1%}")
        return 0
    fit(setup, args, start)
    return 0


# --- setting up: every check before anything is written ----------------------------------------
def prepare(args):
    """What a run needs (model, data loaders, optimizer, schedule, output folder, history), or a
    UsageError."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    if not 0 <= args.warmup_epochs < args.epochs:
        raise UsageError(f"--warmup-epochs must be in [0, --epochs={args.epochs}), got {args.warmup_epochs}")
    if args.model not in zoo():
        raise UsageError(f"unknown model {args.model!r}: expected one of {', '.join(zoo())}")
    if args.device == "cuda":
        try:
            get_device("cuda")
        except RuntimeError as e:
            raise UsageError(e) from None
    out, checkpoint = _output_folder(args)
    state = _read_checkpoint(checkpoint, args) if checkpoint else None
    try:
        import matplotlib  # noqa: F401  (checked now, used after the first epoch)
        import tqdm  # noqa: F401
        from . import data
        source = data.load_source(args.data, args.image_size)
    except ImportError as e:
        raise UsageError(f"{e.name} is needed for training: pip install 'minires[train]'") from None
    except (ValueError, OSError) as e:
        raise UsageError(e) from None

    manual_seed(args.seed)
    size = source.train.images.shape[-1]
    model = getattr(models, args.model)(num_classes=len(source.train.classes), small_input=size <= SMALL_INPUT_MAX)
    model = fuse(model, inplace=True)  # each batch norm, residual addition and ReLU as one op
    model.to(args.device)
    train_loader = data.DataLoader(source.train, args.batch_size, shuffle=True, transform=source.train_transform(),
                                   seed=args.seed)
    test_loader = data.DataLoader(source.test, args.batch_size, transform=source.test_transform())
    try:
        optimizer = _optimizer(model, args)
    except ValueError as e:
        raise UsageError(e) from None
    epoch, step, history = 0, 0, {k: [] for k in METRICS}
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            if args.resume:
                optimizer.load_state_dict(state["optimizer"])
                train_loader.load_state_dict(state["loader"])
                step = int(state["scheduler"]["last_epoch"])
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise UsageError(f"{checkpoint} does not fit this {args.model} on {args.data}: {e}") from None
        epoch, history = state["epoch"], state["history"]
        if args.resume and epoch >= args.epochs:
            raise UsageError(f"{checkpoint} has already trained {epoch} epochs: "
                             f"pass --epochs above {epoch} to continue")
    # made after the optimizer's state is loaded: the schedule scales the checkpoint's initial lrs
    scheduler = _scheduler(optimizer, args, len(train_loader), step)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot make the output folder {out}: {e.strerror}") from None
    return SimpleNamespace(model=model, source=source, train_loader=train_loader, test_loader=test_loader,
                 optimizer=optimizer, scheduler=scheduler, out=out, checkpoint=checkpoint, epoch=epoch,
                 history=history, best_acc=max(history["test_acc"], default=-1.0))


def _output_folder(args):
    """(OUT, the checkpoint to start from or None), refusing to overwrite another run."""
    if args.resume and args.eval_only:
        raise UsageError("--resume and --eval-only exclude each other")
    if (args.resume or args.eval_only) and args.out is None:
        raise UsageError(f"--{'resume' if args.resume else 'eval-only'} needs --out, the folder of the run")
    out = args.out if args.out is not None else _first_free("runs/train-{}")
    last, best = os.path.join(out, "last.npz"), os.path.join(out, "best.npz")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file, not a folder")
    if args.eval_only:
        checkpoint = best if os.path.exists(best) else last
    elif args.resume:
        checkpoint = last
    elif os.path.exists(last):
        raise UsageError(f"{out} already holds a run (last.npz): pass --resume to continue it, or another --out")
    else:
        return out, None
    if not os.path.exists(checkpoint):
        raise UsageError(f"{out} holds no checkpoint (last.npz) to {'resume' if args.resume else 'evaluate'}")
    return out, checkpoint


def _first_free(pattern):
    i = 1
    while os.path.exists(pattern.format(i)):
        i += 1
    return pattern.format(i)


def _read_checkpoint(path, args):
    try:
        state = load(path)
    except Exception as e:  # a corrupt file can fail in the zip, the .npy or the structure layer
        raise UsageError(f"cannot read the checkpoint {path}: {type(e).__name__}: {e}") from None
    needed = ("model_name", "data", "model", "optimizer", "scheduler", "loader", "epoch", "history")
    if not isinstance(state, dict) or any(k not in state for k in needed):
        raise UsageError(f"{path} is not a minires train checkpoint")
    if state["model_name"] != args.model:
        raise UsageError(f"{path} is a checkpoint of {state['model_name']}, not of --model {args.model}")
    if args.resume and state["data"] != args.data:
        raise UsageError(f"{path} was trained on {state['data']}, not on --data {args.data}")
    return state


def _optimizer(model, args):
    defaults = OPTIMIZER_DEFAULTS[args.optimizer]
    lr = defaults["lr"] if args.lr is None else args.lr
    wd = defaults["weight_decay"] if args.weight_decay is None else args.weight_decay
    if args.optimizer == "adamw":
        return AdamW(model.parameters(), lr=lr, weight_decay=wd)
    return SGD(model.parameters(), lr=lr, momentum=args.momentum, weight_decay=wd, nesterov=args.nesterov)


def _scheduler(optimizer, args, batches_per_epoch, step):
    """The per-batch schedule: --schedule over the batches after the warmup, preceded by a linear
    warmup from lr/10 when --warmup-epochs > 0; at ``step``, a resumed run's batch count. The plan
    follows this run's --epochs, so a finished run resumed with more epochs gets a schedule
    stretched to the new length from where it stands."""
    total = args.epochs * batches_per_epoch
    warmup = round(args.warmup_epochs * batches_per_epoch)
    rest = total - warmup
    if args.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=rest)
    elif args.schedule == "step":
        main = lr_scheduler.MultiStepLR(optimizer, milestones=[rest // 2, rest * 3 // 4])
    else:
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup:
        ramp = lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=warmup)
        main = lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
    main.last_epoch = step - 1  # the schedules are closed-form in the step count: jump there
    main.step()
    return main


# --- training --------------------------------------------------------------------------------------
def fit(s, args, start):
    for epoch in range(s.epoch, args.epochs):
        t0 = time.perf_counter()
        train_loss, train_acc, seconds = train_epoch(s, args, epoch)
        test_loss, test_acc = evaluate(s.model, s.test_loader, args.device)
        row = dict(epoch=epoch + 1, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
                   test_acc=test_acc, images_per_s=len(s.source.train) / seconds, seconds=time.perf_counter() - t0)
        for k in METRICS:
            s.history[k].append(row[k])
        state = {"model_name": args.model, "data": args.data, "model": s.model.state_dict(),
                 "optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict(),
                 "loader": s.train_loader.state_dict(), "epoch": epoch + 1, "history": s.history}
        save(state, os.path.join(s.out, "last.npz"))
        if test_acc > s.best_acc:
            s.best_acc = test_acc
            save(state, os.path.join(s.out, "best.npz"))
        write_metrics(s.history, os.path.join(s.out, "metrics.csv"))
        write_curves(s.history, os.path.join(s.out, "curves.png"))
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {train_loss:.4f} acc {train_acc:.1%} | "
              f"test loss {test_loss:.4f} acc {test_acc:.1%} | {row['images_per_s']:.0f} img/s | "
              f"{row['seconds']:.1f}s", flush=True)
    best = int(np.argmax(s.history["test_acc"]))
    print(f"best test accuracy {s.history['test_acc'][best]:.1%} (epoch {best + 1}); checkpoints, metrics.csv "
          f"and curves.png in {s.out}")
    print(f"test accuracy {s.history['test_acc'][-1]:.1%} after {args.epochs} epochs in "
          f"{_duration(time.perf_counter() - start)}")


def train_epoch(s, args, epoch):
    """One pass over the training data: (mean loss, accuracy, seconds)."""
    from tqdm import tqdm

    s.model.train()
    total_loss, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
    # the rate tqdm shows is images/s; off a terminal (a log file) it redraws rarely
    with tqdm(total=len(s.source.train), desc=f"epoch {epoch + 1}/{args.epochs}", unit="img", leave=False,
              file=sys.stderr, mininterval=0.1 if sys.stderr.isatty() else 10) as bar:
        for x, y in s.train_loader:
            x, y = _to(x, args.device), _to(y, args.device)
            logits = s.model(x)
            loss = F.cross_entropy(logits, y)
            s.optimizer.zero_grad()
            loss.backward()
            s.optimizer.step()
            s.scheduler.step()
            total_loss += loss.item() * len(y)
            correct += int((logits.data.argmax(axis=1) == y.data).sum())
            seen += len(y)
            bar.update(len(y))
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.1%}")
    return total_loss / seen, correct / seen, time.perf_counter() - t0


def evaluate(model, loader, device):
    """(mean cross-entropy, accuracy) over a loader, in eval mode (BatchNorm's running statistics)."""
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    with no_grad():
        for x, y in loader:
            x, y = _to(x, device), _to(y, device)
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.data.argmax(axis=1) == y.data).sum())
            seen += len(y)
    return total_loss / seen, correct / seen


def _to(t, device):
    return t if device == "cpu" else Tensor(to_device(t.data, device))


# --- outputs -----------------------------------------------------------------------------------------
def _atomic(path, write):
    """Call write(temporary path) for a file in path's folder, then move it over path in one step."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_metrics(history, path):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(",".join(METRICS) + "\n")
            for values in zip(*(history[k] for k in METRICS)):
                f.write(",".join(str(int(v)) if k == "epoch" else f"{v:.6g}" for k, v in zip(METRICS, values)) + "\n")
    _atomic(path, write)


def write_curves(history, path):
    """Loss and accuracy per epoch, train and test, side by side (matplotlib's Agg renderer directly:
    no pyplot, so no global backend is switched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    epochs = history["epoch"]
    for ax, name in zip(fig.subplots(1, 2), ("loss", "acc")):
        for split in ("train", "test"):
            values = np.array(history[f"{split}_{name}"]) * (100 if name == "acc" else 1)
            ax.plot(epochs, values, marker="o", markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy loss" if name == "loss" else "accuracy (%)")
        ax.set_yscale("log" if name == "loss" else "linear")  # early test losses can be huge
        ax.grid(alpha=0.3)
        ax.legend()
    _atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def _duration(seconds):
    m, s = divmod(math.ceil(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
