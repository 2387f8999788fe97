"""ResNet training-step and inference throughput: minires against PyTorch, side by side.

    python benchmarks/models.py                       # the issue's CPU configurations
    python benchmarks/models.py --config resnet50:8:224 --runs 7 --threads 2
    python benchmarks/models.py --memory              # also peak RSS of a training step, each in a child
    python benchmarks/models.py --breakdown           # also where minires's training step spends its time
    python benchmarks/models.py --device cuda [--tf32] # on a GPU: the issue's GPU configurations

Both frameworks get the same weights, batch, input size and thread count, each in a process of its
own (as each runs for its users: its own thread pools and allocator state; minires tunes glibc's
malloc at import, see minires/runtime.py, which PyTorch's process must not inherit); minires runs
the model fused (minires.fuse), as minires train does; their runs
alternate (minires, torch, minires, ...) so that machine noise hits both alike, and the median of
--runs timed runs after one warm-up is reported. A training step is forward, cross-entropy, backward and an SGD
step (momentum 0.9); inference is an eval-mode forward without a graph. The ratio printed last is
minires's throughput over PyTorch's (above 1: minires is faster). Without torch, minires runs alone.
"""
import argparse
import collections
import contextlib
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
USER_ENV = dict(os.environ)  # before minires, imported here, sets variables for itself (see framework_env)
# The targets: torchvision's ResNet-18 at 32x32 is the 224-pixel architecture on small images
# (its stem leaves 8x8 maps); ":small" adds the CIFAR stem (3x3, stride 1, no max-pool).
DEFAULT_CONFIGS = {"cpu": ["resnet50:8:224", "resnet18:16:224", "resnet18:64:32", "resnet18:64:32:small"],
                   "cuda": ["resnet50:128:224", "resnet18:256:224", "resnet18:512:32"]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", help="MODEL:BATCH:SIZE[:small] (repeatable); :small uses the small-input stem")
    p.add_argument("--runs", type=int, default=5, help="timed runs per framework and mode (median reported)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for BLAS, Numba and PyTorch")
    p.add_argument("--modes", default="train,infer", help="comma-separated: train, infer")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--memory", action="store_true", help="also measure peak RSS of one training step per framework")
    p.add_argument("--breakdown", action="store_true", help="also time minires's steps per op and kernel")
    p.add_argument("--no-torch", action="store_true", help="minires alone")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where both frameworks run")
    p.add_argument("--tf32", action="store_true", help="on a GPU: float32 GEMMs and convolutions on TF32 tensor cores")
    p.add_argument("--child", nargs=3, metavar=("FRAMEWORK", "CONFIG", "DTYPE"), help=argparse.SUPPRESS)
    p.add_argument("--worker", nargs=3, metavar=("FRAMEWORK", "CONFIG", "DTYPE"), help=argparse.SUPPRESS)
    p.add_argument("--profile", nargs=2, metavar=("CONFIG", "DTYPE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def set_threads(n):
    """Before NumPy/Numba/torch load: one thread count for every library."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)


def parse_config(text):
    """MODEL:BATCH:SIZE[:small] -> (model, batch, size, small_input)."""
    name, batch, size, *small = text.split(":")
    if small not in ([], ["small"]):
        raise ValueError(f"--config {text!r}: expected MODEL:BATCH:SIZE or MODEL:BATCH:SIZE:small")
    return name, int(batch), int(size), bool(small)


def load_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_model(torch, name, small_input):
    """A torchvision-architecture model: torchvision's when installed, else the test suite's copy."""
    try:
        import torchvision.models as tvm
        if not small_input:
            return getattr(tvm, name)()
    except ImportError:
        pass
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import torch_resnet
    return torch_resnet.torch_resnet(name, small_input=small_input)


class Runner:
    """One framework's model, input and step functions for one configuration."""

    def __init__(self, framework, config, dtype, torch=None, device="cpu", tf32=False):
        import minires  # before NumPy, as minires's users import it: see minires/runtime.py
        import numpy as np
        self.framework, (name, batch, size, small), self.device = framework, config, device
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((batch, 3, size, size)).astype(dtype)
        self.y = rng.integers(0, 1000, batch)
        minires.manual_seed(0)
        model = getattr(minires.models, name)(small_input=small).to(dtype)
        if framework == "minires":
            if device == "cuda":
                minires.cuda.set_tf32(tf32)
            self.model, self.F, self.mr = minires.fuse(model, inplace=True).to(device), minires.functional, minires
            self.opt = minires.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            self.x, self.y = minires.tensor(self.x).to(device), minires.tensor(self.y).to(device)
            self.sync = minires.cuda.synchronize if device == "cuda" else (lambda: None)
        else:
            self.torch = torch
            if device == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
                torch.backends.cudnn.benchmark = True
            self.model = torch_model(torch, name, small).to(getattr(torch, dtype))
            self.model.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in model.state_dict().items()})
            self.model.to(device)
            self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
            self.x, self.y = torch.from_numpy(self.x).to(device), torch.from_numpy(self.y).to(device)
            self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def train_step(self):
        self.model.train()
        if self.framework == "minires":
            loss = self.F.cross_entropy(self.model(self.x), self.y)
        else:
            loss = self.torch.nn.functional.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.sync()

    def infer_step(self):
        self.model.eval()
        if self.framework == "minires":
            with self.mr.no_grad():
                self.model(self.x)
        else:
            with self.torch.no_grad():
                self.model(self.x)
        self.sync()


@contextlib.contextmanager
def op_timers(totals):
    """Within: every op's forward and backward (inclusive of the kernels it calls) and every kernel
    call add their seconds to totals["op Name.forward"] / ["kernel name"]."""
    from minires import kernels
    from minires.autograd.function import Function

    def timer(fn, label):
        def timed_fn(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - start
        return timed_fn

    undo = []
    classes = [Function]
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        for attr in ("forward", "backward"):
            if attr in cls.__dict__ and cls is not Function:
                undo.append((cls, attr, cls.__dict__[attr]))
                setattr(cls, attr, staticmethod(timer(getattr(cls, attr), f"op {cls.__name__}.{attr}")))
    for name in kernels.__all__:
        fn = getattr(kernels, name)
        if isinstance(fn, kernels.Kernel):
            # the ops call kernels.<name>; kernels.winograd_conv3x3 calls its transforms in their module
            for owner in (kernels, kernels.winograd):
                if getattr(owner, name, None) is fn:
                    undo.append((owner, name, fn))
                    setattr(owner, name, timer(fn, f"kernel {name}"))
    try:
        yield
    finally:
        for owner, attr, value in undo:
            setattr(owner, attr, value)


def breakdown(config, dtype, modes, steps):
    """In a minires process of its own (as its timed runs): for each mode, print the median step time
    and, per op and kernel, the seconds per step and share of it."""
    runner = Runner("minires", parse_config(config), dtype)
    for mode in modes.split(","):
        print(f"\nwhere minires's {'training step' if mode == 'train' else 'inference'} spends its time: "
              f"{config} (median of {steps} steps after one)")
        step = runner.train_step if mode == "train" else runner.infer_step
        step()
        print_breakdown(step, steps)


def print_breakdown(step_fn, steps):
    """The median of steps timed calls of step_fn, and per op and kernel the seconds per call and share."""
    totals, times = collections.defaultdict(float), []
    with op_timers(totals):
        for _ in range(steps):
            times.append(timed(step_fn))
    step = statistics.median(times)
    ops = sum(v for k, v in totals.items() if k.startswith("op ")) / steps
    print(f"  step {step:.3f} s; in ops (forward + backward, inclusive) {ops:.3f} s, outside them "
          f"(graph, optimizer, batch-norm statistics) {step - ops:.3f} s; a kernel's time is part of its op's")
    conv = totals["op Conv2d.forward"] + totals["op Conv2d.backward"]
    totals["= Conv2d's GEMMs (the rest of its time)"] = conv - sum(
        v for k, v in totals.items() if k in ("kernel im2col", "kernel col2im") or k.startswith("kernel winograd"))
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<40} {seconds / steps:7.3f} s  {100 * seconds / steps / step:5.1f}%")


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def child(framework, config, dtype, device, tf32):
    """Peak RSS of two training steps in a fresh process: printed as 'baseline_mb peak_mb'. The peak
    is the kernel's high-water mark (VmHWM), reset after setup; not getrusage's ru_maxrss, which a
    child started by fork + exec inherits from its parent."""
    torch = load_torch() if framework == "torch" else None
    r = Runner(framework, parse_config(config), dtype, torch, device, tf32)
    if device == "cuda":  # the GPU's memory in arrays: CuPy's pool, PyTorch's caching allocator
        r.train_step()
        print(*(n / 2 ** 20 for n in device_memory(r, framework, torch)))
        return
    baseline = proc_status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    r.train_step()
    r.train_step()
    print(f"{baseline:.1f} {proc_status_mb('VmHWM'):.1f}")


def device_memory(r, framework, torch):
    """(bytes in arrays now, the most at once): after a first step, before the peak's step."""
    if framework == "torch":
        now = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(2):
            r.train_step()
        return now, torch.cuda.max_memory_allocated()
    import minires
    now = minires.cuda.memory_allocated()
    minires.cuda.reset_peak_memory_stats()
    for _ in range(2):
        r.train_step()
    return now, minires.cuda.max_memory_allocated()


def worker(framework, config, dtype, device, tf32):
    """A framework's own process: set up the configuration, say "ready", then for each line "train"
    or "infer" on stdin run one step and print its seconds."""
    r = Runner(framework, parse_config(config), dtype, load_torch() if framework == "torch" else None, device, tf32)
    print("ready", flush=True)
    for line in sys.stdin:
        print(timed(r.train_step if line.strip() == "train" else r.infer_step), flush=True)


class Worker:
    """The parent's handle on a worker process: step(mode) -> seconds of one step there."""

    def __init__(self, framework, config, dtype, threads, device_args):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", framework, config, dtype,
                                      "--threads", str(threads), *device_args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=framework_env(framework))
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {framework} worker for {config} did not start")

    def step(self, mode):
        self.proc.stdin.write(mode + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def framework_env(framework):
    """A worker's environment. PyTorch's imports minires only to make the shared weights (after
    torch), and must not get minires's settings with it: its malloc setting, and the variables that
    importing minires here set for OpenBLAS and OpenMP (kept where the user set them)."""
    if framework != "torch":
        return dict(os.environ)
    env = dict(os.environ, MINIRES_MALLOC="default")
    for var in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT"):
        env.pop(var, None)
        if var in USER_ENV:
            env[var] = USER_ENV[var]
    return env


def proc_status_mb(field):
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory(framework, config, dtype, threads, device_args):
    out = subprocess.run([sys.executable, __file__, "--child", framework, config, dtype, "--threads", str(threads),
                          *device_args],
                         capture_output=True, text=True, check=True, env=framework_env(framework)).stdout.split()
    return float(out[-2]), float(out[-1])


def main():
    args = parse_args()
    set_threads(args.threads)
    if args.child:
        return child(*args.child, args.device, args.tf32)
    if args.worker:
        return worker(*args.worker, args.device, args.tf32)
    device_args = ["--device", args.device] + (["--tf32"] if args.tf32 else [])
    configs = args.config or DEFAULT_CONFIGS[args.device]
    if args.profile:
        return breakdown(*args.profile, args.modes, args.runs)
    import numpy as np
    import numba
    import minires
    if args.device == "cuda" and not minires.cuda.is_available():
        print("models.py: error: --device cuda: no CUDA GPU (or no CuPy) on this machine", file=sys.stderr)
        return 2
    torch = None if args.no_torch else load_torch()
    if torch is not None:
        torch.set_num_threads(args.threads)
    print(f"minires {minires.__version__} (kernels: {minires.get_kernels()}), numpy {np.__version__}, "
          f"numba {numba.__version__}" + (f", torch {torch.__version__}" if torch else ", torch not installed")
          + f"; {args.threads} threads; {args.dtype}; median of {args.runs} runs")
    results = []
    for text in configs:
        config = parse_config(text)
        mine = Worker("minires", text, args.dtype, args.threads, device_args)
        theirs = Worker("torch", text, args.dtype, args.threads, device_args) if torch else None
        for mode in args.modes.split(","):
            first = mine.step(mode)  # includes Numba's compile or cache load on a first call
            if theirs:
                theirs.step(mode)
            times = {"minires": [], "torch": []}
            for _ in range(args.runs):
                times["minires"].append(mine.step(mode))
                if theirs:
                    times["torch"].append(theirs.step(mode))
            batch = config[1]
            ips = {k: batch / statistics.median(v) for k, v in times.items() if v}
            line = f"{text:<22} {mode:<5}  minires {ips['minires']:8.1f} img/s (first call {first:.2f} s)"
            if theirs:
                line += f"   torch {ips['torch']:8.1f} img/s   ratio {ips['minires'] / ips['torch']:.2f}x"
            print(line, flush=True)
            results.append((text, mode, ips))
        for w in (mine, theirs):
            if w:
                w.close()
    if args.memory:
        print("\npeak RSS of a training step (fresh process each; MB): baseline after setup -> peak")
        unit = "GPU memory in arrays" if args.device == "cuda" else "RSS"
        print(f"(peak {unit})")
        for text in configs[:1]:
            m = peak_memory("minires", text, args.dtype, args.threads, device_args)
            line = f"{text:<22} minires {m[0]:7.0f} -> {m[1]:7.0f} (step +{m[1] - m[0]:.0f})"
            if torch:
                t = peak_memory("torch", text, args.dtype, args.threads, device_args)
                line += f"   torch {t[0]:7.0f} -> {t[1]:7.0f} (step +{t[1] - t[0]:.0f})   peak ratio {m[1] / t[1]:.2f}x"
            print(line)
    if args.breakdown:
        for text in configs:
            sys.stdout.flush()
            subprocess.run([sys.executable, __file__, "--profile", text, args.dtype, "--modes", args.modes,
                            "--runs", str(args.runs), "--threads", str(args.threads)], check=True)
    if torch:
        print("\nthroughput ratio minires / torch: " + ", ".join(f"{c} {m} {r['minires'] / r['torch']:.2f}x" for c, m, r in results))


if __name__ == "__main__":
    sys.exit(main())
