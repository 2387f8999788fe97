"""Train a zoo model on an image dataset, with progress, metrics, curves and resumable checkpoints.

Plain ``minires train`` trains ResNet-18 (its small-input stem) on scikit-learn's handwritten digits
on the CPU. Each epoch shows a progress bar (loss, accuracy, images/s) and then commits, in one
atomic step, OUT/metrics.csv (a row per epoch: epoch, train_loss, train_acc, test_loss, test_acc,
images_per_s, seconds), OUT/curves.png (loss and accuracy per epoch), OUT/last.npz (the checkpoint:
model, optimizer, schedule, data-order state, epoch and history) and OUT/best.npz (the checkpoint of
the epoch with the best test accuracy so far). --resume continues OUT's run from last.npz exactly as
if it had never stopped (same batches, same augmentation, same numbers); --eval-only reports the
test loss and accuracy of OUT/best.npz (else last.npz). The learning rate follows --schedule batch by
batch, after a linear warmup over --warmup-epochs.

Stopping: a kill at any instant leaves OUT as the last commit left it (see "the run folder" below).
Ctrl-C (SIGINT) and SIGTERM stop at once, or after a commit under way, with one line saying where
and the command that resumes (exit status 130 and 143). Bad input (an unknown model or dataset, a
hyperparameter out of range or not finite, a missing or malformed data folder, a checkpoint of
another model or a corrupt one, ...) stops with a one-line error and exit status 2 before anything
is written. A loss that is not finite stops the run, before its step changes anything, with one line
naming the epoch, the step and the likely causes (exit status 3); --detect-anomaly (slow) names the
op and the module that first made a NaN or an infinity instead. A failed write (a full disk) stops
with one line and exit status 1, OUT as the last commit left it.

Many processes: ``mpiexec -n N minires train ...`` (or srun; the launcher is found in the environment,
or named by --distributed) trains the same run on N ranks, each computing 1/N of every batch:
--batch-size stays the global batch. Every rank draws the same global batch (the same shuffle and
augmentation as one process) and keeps its own contiguous rows, so that the run is the one-process
run computed in pieces: its metrics equal one process's up to float32 rounding, and its checkpoints,
which hold nothing that depends on N, resume on any number of ranks. The gradients are averaged by
minires.distributed.DistributedDataParallel; the batch norms compute their statistics over the
global batch (SyncBatchNorm, --no-sync-bn to keep each rank's own, as PyTorch's default), for the
same reason. The test set is shared out by whole batches and the sums added up. Rank 0 alone picks
and writes the run folder, prints and shows progress; what it alone can meet (a failed write, a
folder or checkpoint refused) it hands to every rank, so that all stop together with one line. A
rank that dies or hangs ends the job within --timeout seconds (each collective's deadline).
"""
import argparse
import contextlib
import math
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np

from . import distributed as dist
from . import functional as F
from . import models, warmup
from .data.prefetch import prefetch
from .device import get_device, is_device_name
from .fusion import fuse
from .optim import SGD, AdamW, lr_scheduler
from .random import manual_seed
from .serialization import load, save
from .anomaly import AnomalyError, detect_anomaly
from .autograd.tensor import Tensor, no_grad

METRICS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "seconds"]
OPTIMIZER_DEFAULTS = {"sgd": dict(lr=0.02, weight_decay=5e-4), "adamw": dict(lr=1e-3, weight_decay=0.05)}
SMALL_INPUT_MAX = 64  # images up to this size get the small-input stem (no stride-2 conv, no max-pool)
OUTPUTS = ("last.npz", "best.npz", "metrics.csv", "curves.png")
CURRENT = ".current"  # the link to the committed epoch's folder (see "the run folder")


class RunError(Exception):
    """What stops a run, reported in one line ("minires train: error: ...") with an exit status:
    1 for a failed write."""
    status = 1


class UsageError(RunError):
    """Bad input from the command line: exit status 2, before anything is written."""
    status = 2


class NonFinite(RunError):
    """A loss that is not finite: exit status 3 (as for --detect-anomaly's AnomalyError), the
    checkpoints as they were before the step."""
    status = 3


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised where the program is (a BaseException, as KeyboardInterrupt, so
    that no ``except Exception`` takes it for an error)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def zoo():
    """The model names --model accepts: the minires.models constructors with a small-input stem."""
    return [n for n in models.ARCHITECTURES if not models.is_cifar(n)]


def _device_name(name):
    """--device's value: a device minires knows (cuda is checked for a GPU later, in prepare)."""
    if not is_device_name(name):
        raise argparse.ArgumentTypeError(f"unknown device {name!r}: expected cpu, cuda or a registered device")
    return name


def add_arguments(p):
    sgd, adamw = OPTIMIZER_DEFAULTS["sgd"], OPTIMIZER_DEFAULTS["adamw"]
    p.add_argument("--model", default="resnet18", help="a minires.models name (default: %(default)s)")
    p.add_argument("--data", default="digits", help="digits, cifar10:PATH or folder:PATH (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this size (default: the data's own)")
    p.add_argument("--epochs", type=int, default=12, help="epochs in all, a resumed run's included (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (default: %(default)s)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZER_DEFAULTS), default="sgd", help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"peak learning rate (default: {sgd['lr']:g} sgd, {adamw['lr']:g} adamw)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum, in [0, 1) (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help=f"(default: {sgd['weight_decay']:g} sgd, {adamw['weight_decay']:g} adamw)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD; default: off)")
    p.add_argument("--schedule", choices=["constant", "step", "cosine"], default="cosine",
                   help="lr per batch after the warmup: constant, step (x0.1 at 50%% and 75%% of training) or "
                        "cosine to 0 (default: %(default)s)")
    p.add_argument("--warmup-epochs", type=float, default=None,
                   help="linear lr warmup from lr/10 over this many epochs (default: 1, or half of --epochs if less)")
    p.add_argument("--device", type=_device_name, default="cpu", help="cpu, cuda or another registered device "
                   "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="fixes the initial weights, data order and augmentation (default: %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default: the first free runs/train-N)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (needed) from its last.npz, given the options it was started "
                        "with; an interrupted run prints the command (default: off)")
    p.add_argument("--eval-only", action="store_true",
                   help="evaluate --out's best.npz (else last.npz) on the test set (default: off)")
    p.add_argument("--distributed", action="store_true",
                   help="join the ranks that a launcher started (mpiexec, srun) even where the environment does not "
                        "show it (default: from the environment)")
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=True,
                   help="on several ranks, batch statistics over the global batch, as one process computes them "
                        "(default: on)")
    p.add_argument("--timeout", type=float, default=dist.DEFAULT_TIMEOUT,
                   help="on several ranks, the seconds a rank waits for the others in a collective before it ends "
                        "the job: a rank that died or hangs (default: %(default)g)")
    p.add_argument("--detect-anomaly", action="store_true",
                   help="check every op's result and gradient, and name the first op and module that makes a NaN or "
                        "an infinity (slow; default: off)")


def run(args):
    start, s = time.perf_counter(), None
    with _StopSignals() as stops:
        try:
            join_ranks(args)
            s = prepare(args)
            if args.eval_only:
                loss, acc = evaluate(s.model, s.test_loader, args.device)
                _say(f"{s.checkpoint}: epoch {s.epoch}, test loss {loss:.4f}, test accuracy {acc:.1%}")
                return 0
            # NumPy's warnings of overflows are left out: a loss that is not finite is reported in one line
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                    detect_anomaly() if args.detect_anomaly else contextlib.nullcontext(), _warmup(s, args):
                fit(s, args, start, stops)
        except AnomalyError as e:  # met in one rank's share of the batch, maybe not in the others'
            return _report(f"error: {s.where}: {e}; {_saved(s)}", NonFinite.status, alone=True)
        except RunError as e:
            return _report(f"error: {e}", e.status)
        except Interrupted as e:
            return _report(_interrupted(e.signum, s, args), 128 + e.signum)
    return 0


@contextlib.contextmanager
def _warmup(s, args):
    """Kernels compiled in a second process meanwhile (minires/warmup.py): on the CPU, in a run of
    one process."""
    process = None
    if args.device == "cpu" and dist.get_world_size() == 1:
        x, _ = next(iter(s.test_loader))  # a batch as the evaluation gets it
        process = warmup.start(args.model, len(s.source.train.classes), x.shape, x.dtype,
                               s.source.train.images.shape[-1] <= SMALL_INPUT_MAX)
    try:
        yield
    finally:
        warmup.stop(process)


def _report(message, status, alone=False):
    """Print ``message`` as minires train's one line; return ``status``. On several ranks, rank 0
    alone prints what every rank meets together (a refused option, a loss that is not finite, a
    signal), and a rank that meets an error ``alone`` prints it and ends the job, whose other ranks
    would otherwise wait for it until their timeout."""
    if alone and dist.get_world_size() > 1:
        dist.abort(f"minires train: {message}")
    if dist.get_rank() == 0:
        print(f"minires train: {message}", file=sys.stderr)
    return status


def _say(*args, **kwargs):
    """print(), on rank 0 alone."""
    if dist.get_rank() == 0:
        print(*args, **kwargs)


# --- many processes ----------------------------------------------------------------------------------
def join_ranks(args):
    """Join the ranks of the launcher that started this process, if one did (or --distributed): the
    collectives wait at most --timeout seconds."""
    launched = dist.launched_world_size()
    if not (args.distributed or launched > 1):
        return
    if not 0 < args.timeout < math.inf:
        raise UsageError(f"--timeout must be a finite number of seconds above 0, got {args.timeout}")
    dist.init(timeout=args.timeout)
    if dist.get_world_size() < launched or (args.distributed and dist.get_world_size() == 1):
        raise UsageError(f"started as one of {launched} processes, but without mpi4py and an MPI library each would "
                         "train alone: pip install 'minires[dist]'" if launched > 1 else
                         "--distributed: no launcher started this process with others (mpiexec -n N, srun), or "
                         "mpi4py is missing: pip install 'minires[dist]'")


def _on_rank0(work):
    """work() on rank 0, its result (or the RunError it raised) handed to every rank: what rank 0
    alone does, reading and writing the run folder, the others then go on, or stop, with."""
    if dist.get_world_size() == 1:
        return work()
    result = None
    if dist.get_rank() == 0:
        try:
            result = work()
        except RunError as e:
            result = e
    result = dist.broadcast_object(result)
    if isinstance(result, RunError):
        raise result
    return result


def _sum_over_ranks(*values):
    """The sums over the ranks of a few numbers (each rank's share of a batch's loss, ...), as floats."""
    if dist.get_world_size() == 1:
        return values
    return tuple(dist.all_reduce(np.array(values, np.float64)).tolist())


def _buffers_of_rank0(model):
    """Rank 0's buffers on every rank: with --no-sync-bn, each rank's last step left its own running
    statistics, and the test pass and the checkpoint must see one model."""
    if dist.get_world_size() > 1:
        for b in model.buffers():
            dist.broadcast(b.data)


def _share(n):
    """The rows of an n-image batch that this rank computes: the r-th of N contiguous runs, of equal
    sizes where N divides n."""
    rank, world = dist.get_rank(), dist.get_world_size()
    return slice(n * rank // world, n * (rank + 1) // world)


def _shares(loader):
    """This rank's rows of each of the loader's batches (alone: all of them)."""
    for x, y in loader:
        rows = _share(len(y))
        yield Tensor(x.data[rows]), Tensor(y.data[rows])


def _test_batches(n, batch_size):
    """This rank's share of n test images: the indices of one process's batches r, r + N, ..., whole,
    so that each batch's sums are the ones one process computes."""
    starts = range(dist.get_rank() * batch_size, n, dist.get_world_size() * batch_size)
    return [i for start in starts for i in range(start, min(start + batch_size, n))]


def _check_ranks(args, train_size):
    """The global batch must split into equal shares, and the epoch's last batch give each rank a row."""
    world = dist.get_world_size()
    last = train_size % args.batch_size
    if args.batch_size % world:
        raise UsageError(f"--batch-size {args.batch_size} must be a multiple of the {world} ranks (the global batch, "
                         "shared out equally)")
    if 0 < last < world:
        raise UsageError(f"the last batch of each epoch holds {last} of the {train_size} training images, fewer than "
                         f"the {world} ranks: choose a --batch-size that leaves none, or at least {world}")


# --- setting up: every check before anything is written ----------------------------------------
def prepare(args):
    """What a run needs (model, data loaders, optimizer, schedule, output folder, history), or a
    UsageError."""
    _check_numbers(args)
    if args.model not in zoo():
        raise UsageError(f"unknown model {args.model!r}: expected one of {', '.join(zoo())}")
    if args.device == "cuda":
        try:
            get_device("cuda")
        except RuntimeError as e:
            raise UsageError(e) from None
    out, checkpoint, state = _on_rank0(lambda: _open_run(args))
    try:
        import matplotlib  # noqa: F401  (checked now, used after the first epoch)
        import tqdm  # noqa: F401
        from . import data
        source = data.load_source(args.data, args.image_size)
    except ImportError as e:
        raise UsageError(f"{e.name} is needed for training: pip install 'minires[train]'") from None
    except (ValueError, OSError) as e:
        raise UsageError(e) from None

    _check_ranks(args, len(source.train))

    manual_seed(args.seed)
    size = source.train.images.shape[-1]
    model = getattr(models, args.model)(num_classes=len(source.train.classes), small_input=size <= SMALL_INPUT_MAX)
    model = fuse(model, inplace=True)  # each batch norm, residual addition and ReLU as one op
    if dist.get_world_size() > 1 and args.sync_bn:
        model = dist.convert_sync_batchnorm(model)
    model.to(args.device)
    # every rank draws the global batches (the same order and augmentation) and keeps its share of each
    train_loader = data.DataLoader(source.train, args.batch_size, shuffle=True, transform=source.train_transform(),
                                   seed=args.seed)
    test_set = source.test if dist.get_world_size() == 1 else \
        data.Subset(source.test, _test_batches(len(source.test), args.batch_size))
    test_loader = data.DataLoader(test_set, args.batch_size, transform=source.test_transform())
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
    _on_rank0(lambda: _make_folder(out, args))
    # the model that trains: over several ranks, wrapped to average the gradients (the checkpoints hold
    # the model's own state dict, whatever the number of ranks)
    ddp = dist.DistributedDataParallel(model) if dist.get_world_size() > 1 else model
    # epoch: the epochs committed; where: how far this process got, for the message of a stop
    return SimpleNamespace(model=model, ddp=ddp, source=source, train_loader=train_loader, test_loader=test_loader,
                           optimizer=optimizer, scheduler=scheduler, out=out, checkpoint=checkpoint, epoch=epoch,
                           history=history, best_acc=max(history["test_acc"], default=-1.0),
                           where="before the first step")


def _open_run(args):
    """(OUT, the checkpoint to start from or None, its state or None)."""
    out, checkpoint = _output_folder(args)
    return out, checkpoint, _read_checkpoint(checkpoint, args) if checkpoint else None


def _make_folder(out, args):
    try:
        os.makedirs(out, exist_ok=True)
        if not args.eval_only:
            remove_stale(out)
    except OSError as e:
        raise UsageError(f"cannot make or clean the output folder {out}: {e}") from None


def _check_numbers(args):
    """Each number option in its range; NaN fails every comparison, so it is refused too."""
    lr, weight_decay = _lr_and_weight_decay(args)
    warmup = _warmup_epochs(args)
    checks = [("--batch-size", args.batch_size, args.batch_size >= 1, "at least 1"),
              ("--epochs", args.epochs, args.epochs >= 1, "at least 1"),
              ("--lr", lr, 0 < lr < math.inf, "a finite number above 0"),
              ("--weight-decay", weight_decay, 0 <= weight_decay < math.inf, "a finite number, at least 0"),
              ("--momentum", args.momentum, 0 <= args.momentum < 1, "in [0, 1)"),
              ("--warmup-epochs", warmup, 0 <= warmup < args.epochs, f"in [0, --epochs={args.epochs})"),
              ("--seed", args.seed, args.seed >= 0, "at least 0")]
    for flag, value, ok, expected in checks:
        if not ok:
            raise UsageError(f"{flag} must be {expected}, got {value}")


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


def _lr_and_weight_decay(args):
    """--lr and --weight-decay, or the --optimizer's defaults for them."""
    defaults = OPTIMIZER_DEFAULTS[args.optimizer]
    return (defaults["lr"] if args.lr is None else args.lr,
            defaults["weight_decay"] if args.weight_decay is None else args.weight_decay)


def _warmup_epochs(args):
    """--warmup-epochs, by default 1, or half the run when that is shorter (--epochs 1)."""
    return min(1, args.epochs / 2) if args.warmup_epochs is None else args.warmup_epochs


def _optimizer(model, args):
    lr, wd = _lr_and_weight_decay(args)
    if args.optimizer == "adamw":
        return AdamW(model.parameters(), lr=lr, weight_decay=wd)
    return SGD(model.parameters(), lr=lr, momentum=args.momentum, weight_decay=wd, nesterov=args.nesterov)


def _scheduler(optimizer, args, batches_per_epoch, step):
    """The per-batch schedule: --schedule over the batches after the warmup, preceded by a linear
    warmup from lr/10 over the warmup epochs, if any; at ``step``, a resumed run's batch count. The plan
    follows this run's --epochs, so a finished run resumed with more epochs gets a schedule
    stretched to the new length from where it stands."""
    total = args.epochs * batches_per_epoch
    warmup = round(_warmup_epochs(args) * batches_per_epoch)
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
def fit(s, args, start, stops):
    for epoch in range(s.epoch + 1, args.epochs + 1):
        t0 = time.perf_counter()
        train_loss, train_acc, seconds = train_epoch(s, args, epoch)
        _buffers_of_rank0(s.model)
        s.where = f"in epoch {epoch}/{args.epochs}, in its test pass"
        test_loss, test_acc = evaluate(s.model, s.test_loader, args.device)
        if not math.isfinite(test_loss):
            raise NonFinite(f"the test loss is {test_loss} after epoch {epoch}/{args.epochs} (its last steps made the "
                            f"weights so): {_causes(args)}; {_saved(s)}")
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
                   test_acc=test_acc, images_per_s=len(s.source.train) / seconds, seconds=time.perf_counter() - t0)
        for k in METRICS:
            s.history[k].append(row[k])
        state = {"model_name": args.model, "data": args.data, "model": s.model.state_dict(),
                 "optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict(),
                 "loader": s.train_loader.state_dict(), "epoch": epoch, "history": s.history}
        with stops.held():  # a signal now waits until the epoch is saved and reported
            _on_rank0(lambda: _commit(s, state, new_best=test_acc > s.best_acc))
            s.epoch, s.best_acc, s.where = epoch, max(s.best_acc, test_acc), f"after epoch {epoch}/{args.epochs}"
            _say(f"epoch {epoch}/{args.epochs}: train loss {train_loss:.4f} acc {train_acc:.1%} | "
                  f"test loss {test_loss:.4f} acc {test_acc:.1%} | {row['images_per_s']:.0f} img/s | "
                  f"{row['seconds']:.1f}s", flush=True)
    best = int(np.argmax(s.history["test_acc"]))
    _say(f"best test accuracy {s.history['test_acc'][best]:.1%} (epoch {best + 1}); checkpoints, metrics.csv "
          f"and curves.png in {s.out}")
    _say(f"test accuracy {s.history['test_acc'][-1]:.1%} after {args.epochs} epoch{'s' * (args.epochs > 1)} in "
          f"{_duration(time.perf_counter() - start)}")


def _commit(s, state, new_best):
    try:
        commit(s.out, state, new_best)
    except OSError as e:
        raise RunError(f"cannot save epoch {state['epoch']} in {s.out}: {e}; {_saved(s)}") from None


def train_epoch(s, args, epoch):
    """One pass over the training data: (mean loss, accuracy, seconds). Stops with NonFinite at a
    loss that is not finite, before its backward and step change anything. On several ranks, each
    computes its share of every batch, and the loss and accuracy are the global batch's."""
    from tqdm import tqdm

    s.model.train()
    total_loss, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
    # the rate tqdm shows is images/s; off a terminal (a log file) it redraws rarely
    with tqdm(total=len(s.source.train), desc=f"epoch {epoch}/{args.epochs}", unit="img", leave=False,
              file=sys.stderr, mininterval=0.1 if sys.stderr.isatty() else 10, disable=dist.get_rank() > 0) as bar:
        for step, (x, y) in enumerate(prefetch(_shares(s.train_loader), args.device), 1):  # copied ahead
            s.where = f"in epoch {epoch}/{args.epochs} at step {step}/{len(s.train_loader)}"
            logits = s.ddp(x)
            loss = F.cross_entropy(logits, y)
            # the batch's loss sum and correct count over the ranks: the same numbers, and decision, on each
            batch_loss, batch_correct, n = _sum_over_ranks(loss.item() * len(y),
                                                           int((logits.data.argmax(axis=1) == y.data).sum()), len(y))
            value = batch_loss / n
            if not math.isfinite(value):
                raise NonFinite(f"the training loss is {value} {s.where}: {_causes(args)}; {_saved(s)}")
            s.optimizer.zero_grad()
            # DDP averages the ranks' gradients; each rank's mean loss weighted by N * its rows / n (1 for
            # equal shares) makes that average the gradient of the batch's mean loss
            weight = dist.get_world_size() * len(y) / n
            (loss if weight == 1 else loss * weight).backward()
            s.optimizer.step()
            s.scheduler.step()
            total_loss += batch_loss
            correct += int(batch_correct)
            seen += n
            bar.update(n)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.1%}")
    return total_loss / seen, correct / seen, time.perf_counter() - t0


def evaluate(model, loader, device):
    """(mean cross-entropy, accuracy) over a loader, in eval mode (BatchNorm's running statistics);
    on several ranks, over the union of their loaders."""
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    with no_grad():
        for x, y in prefetch(loader, device):
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.data.argmax(axis=1) == y.data).sum())
            seen += len(y)
    total_loss, correct, seen = _sum_over_ranks(total_loss, correct, seen)  # each rank's test batches, added up
    return total_loss / seen, correct / seen


# --- stopping ----------------------------------------------------------------------------------------
class _StopSignals:
    """While a command runs, SIGINT (Ctrl-C) and SIGTERM raise Interrupted where the main thread is,
    except inside ``held()`` (a commit), which they wait for: a run stops at once, and no commit is
    cut short (a kill can cut one, and loses nothing, but leaves a folder for the next run to remove).
    The handlers before are put back on exit. Outside the main thread, which alone may set signal
    handlers (a run started from another thread), signals are left as they are."""

    def __enter__(self):
        self.holding, self.pending, self.previous = False, None, {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if not self.holding:
            raise Interrupted(signum)
        self.pending = signum

    @contextlib.contextmanager
    def held(self):
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending:
            raise Interrupted(self.pending)


def _interrupted(signum, s, args):
    """The line a stop by signal ``signum`` prints: where the run was, and the command that goes on."""
    stop = f"interrupted by {signal.Signals(signum).name}"
    if s is None or args.eval_only:
        return f"{stop} {'before training began' if s is None else 'in the evaluation'}"
    if s.epoch:
        return f"{stop} {s.where}; {_saved(s)}: resume with: {_command(args, s.out, resume=True)}"
    return f"{stop} {s.where}; {_saved(s)}: start again with: {_command(args, s.out, resume=False)}"


def _saved(s):
    return f"{s.out} holds epoch {s.epoch}" if s.epoch else f"{s.out} holds no epoch yet"


def _causes(args):
    lr, _ = _lr_and_weight_decay(args)
    return (f"likely a learning rate too high for this model and batch size (--lr {lr:g}), or data that is not "
            f"finite; --detect-anomaly names the op that first makes a NaN or an infinity")


def _command(args, out, resume):
    """The command line of this run again: the options that differ from their defaults, --out, and
    --resume to go on from the last commit."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = vars(parser.parse_args([]))
    words = _program()
    for dest, value in vars(args).items():
        if dest in defaults and dest not in ("out", "resume") and value != defaults[dest]:
            flag = "--" + dest.replace("_", "-")
            words += [flag] if value is True else ["--no-" + flag[2:]] if value is False else [flag, str(value)]
    return shlex.join(words + ["--out", out] + (["--resume"] if resume else []))


def _program():
    """How this command was started: ``python -m minires train`` (by its executable's name), or
    ``minires train``."""
    if os.path.abspath(sys.argv[0]) == os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py"):
        return [os.path.basename(sys.executable), "-m", "minires", "train"]
    return ["minires", "train"]


# --- the run folder: one atomic commit per epoch ------------------------------------------------------
# OUT/last.npz, best.npz, metrics.csv and curves.png are symbolic links into OUT/.current, itself a
# link to the folder of the last committed epoch, OUT/.epoch-N, which holds the four files. An epoch
# is committed by writing its folder in full (best.npz a hard link to the best epoch's checkpoint,
# not a copy), flushed to the disk, then pointing .current at it by one rename, which is atomic: at
# every instant, killed or not, the four names show one epoch's files, complete and consistent. The
# folder replaced, and any that a kill left half-written, are removed after the commit or by the
# next run in OUT. (Resuming a run that an older minires wrote as plain files makes them links once,
# after the first commit: for that one moment they show two epochs.)

def commit(out, state, new_best):
    """Make the checkpoint ``state`` (its epoch, history, ...) the run's state in OUT, atomically;
    new_best: it is also best.npz."""
    folder = os.path.join(out, f".epoch-{state['epoch']}")
    os.mkdir(folder)
    save(state, os.path.join(folder, "last.npz"))
    best = os.path.join(folder, "last.npz") if new_best else os.path.realpath(os.path.join(out, "best.npz"))
    os.link(best, os.path.join(folder, "best.npz"))
    write_metrics(state["history"], os.path.join(folder, "metrics.csv"))
    write_curves(state["history"], os.path.join(folder, "curves.png"))
    _fsync(folder)
    _link_outputs(out, replace_files=False)  # a new run's links, resolved once .current exists
    _symlink(os.path.basename(folder), os.path.join(out, CURRENT))  # the commit
    _fsync(out)
    _link_outputs(out, replace_files=True)
    remove_stale(out)


def remove_stale(out):
    """Remove what stopped runs left in OUT: temporary files (*.tmp) and the epoch folders other
    than the committed one."""
    keep = os.path.realpath(os.path.join(out, CURRENT))
    for name in os.listdir(out):
        path = os.path.join(out, name)
        if name.endswith(".tmp"):
            os.unlink(path)
        elif name.startswith(".epoch-") and os.path.realpath(path) != keep:
            shutil.rmtree(path)


def _link_outputs(out, replace_files):
    """Make each output name a link to its file in .current, where it is none yet: missing names,
    and with replace_files, plain files too."""
    for name in OUTPUTS:
        path = os.path.join(out, name)
        if not os.path.islink(path) and (replace_files or not os.path.lexists(path)):
            _symlink(os.path.join(CURRENT, name), path)


def _symlink(target, path):
    """Make ``path`` a symbolic link to ``target`` in one step, whatever it was before."""
    os.symlink(target, path + ".tmp")
    os.replace(path + ".tmp", path)


def _fsync(folder):
    """Flush a folder's entries to the disk, so that a power cut cannot undo a rename in it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path, mode, write):
    """write(file) into a new file ``path``, flushed to the disk before the commit that shows it."""
    with open(path, mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def write_metrics(history, path):
    lines = [",".join(METRICS)] + [",".join(str(int(v)) if k == "epoch" else f"{v:.6g}" for k, v in zip(METRICS, values))
                                   for values in zip(*(history[k] for k in METRICS))]
    _write_durably(path, "x", lambda f: f.write("\n".join(lines) + "\n"))


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
    _write_durably(path, "xb", lambda f: fig.savefig(f, format="png", dpi=100))


def _duration(seconds):
    m, s = divmod(math.ceil(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
