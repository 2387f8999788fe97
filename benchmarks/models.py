"""ResNet training-step and inference throughput: minires against PyTorch, each alone.

    python benchmarks/models.py                       # the issue's CPU configurations
    python benchmarks/models.py --config resnet50:8:224 --rounds 5 --runs 7 --threads 2
    python benchmarks/models.py --same-process torch-first   # also both in one process, torch first
    python benchmarks/models.py --memory              # also peak RSS of a training step, each in a child
    python benchmarks/models.py --breakdown           # also where minires's training step spends its time
    python benchmarks/models.py --device cuda [--tf32] # on a GPU: the issue's GPU configurations

What is measured: a training step (forward, cross-entropy, backward and an SGD step with momentum
0.9) or an inference (an eval-mode forward without a graph) of one model, batch and input size, in
images per second. Both frameworks get the same weights (minires initializes them; the parent has a
minires process write them to a temporary .npz, which PyTorch's processes read with NumPy), the same
batch (benchmarks/fresh.make_batch) and the same thread count; minires runs the model fused
(minires.fuse), as minires train does.

How: each measurement is a fresh process that imports only its own framework (PyTorch's never
imports minires, so it gets none of minires's process-wide settings, minires/runtime.py), sets up,
runs one untimed step (Numba's compile or cache load, allocator warm-up), then --runs timed steps.
--rounds rounds interleave the frameworks (minires, torch, torch, minires, ...; benchmarks/fresh.py),
and the median over all rounds' steps is reported; the ratio is minires's throughput over PyTorch's
(above 1: minires is faster). The parent imports neither framework.
--same-process ORDER adds, to each round, one process that imports and sets up both frameworks in
ORDER (each running its untimed step before the next is imported: "torch-first" is a notebook that
ran PyTorch before importing minires), then runs each framework's timed steps as a block, in ORDER;
each framework's speed there is reported against its speed alone. Without torch, minires runs alone.
"""
import argparse
import collections
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

import fresh

HERE = os.path.dirname(os.path.abspath(__file__))
# The targets: torchvision's ResNet-18 at 32x32 is the 224-pixel architecture on small images
# (its stem leaves 8x8 maps); ":small" adds the CIFAR stem (3x3, stride 1, no max-pool).
DEFAULT_CONFIGS = {"cpu": ["resnet50:8:224", "resnet18:16:224", "resnet18:64:32", "resnet18:64:32:small"],
                   "cuda": ["resnet50:128:224", "resnet18:256:224", "resnet18:512:32"]}
# A measurement's frameworks, in the order its process imports and runs them.
SIDES = {"minires": ("minires",), "torch": ("torch",),
         "minires-first": ("minires", "torch"), "torch-first": ("torch", "minires")}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", help="MODEL:BATCH:SIZE[:small] (repeatable); :small uses the small-input stem")
    p.add_argument("--runs", type=int, default=5, help="timed steps per process (after one untimed step)")
    p.add_argument("--rounds", type=int, default=3, help="fresh processes per framework, interleaved; median over all")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for BLAS, Numba and PyTorch")
    p.add_argument("--modes", default="train,infer", help="comma-separated: train, infer")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--same-process", choices=["minires-first", "torch-first"],
                   help="also measure both frameworks in one process, imported and run in this order")
    p.add_argument("--memory", action="store_true", help="also measure peak RSS of one training step per framework")
    p.add_argument("--breakdown", action="store_true", help="also time minires's steps per op and kernel")
    p.add_argument("--no-torch", action="store_true", help="minires alone")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where both frameworks run")
    p.add_argument("--tf32", action="store_true", help="on a GPU: float32 GEMMs and convolutions on TF32 tensor cores")
    p.add_argument("--worker", nargs=3, metavar=("SIDE", "CONFIG", "TASK"), help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- in a worker process

class MiniresModel:
    """minires's model (fused), optimizer, input and steps for one configuration."""
    framework = "minires"

    def __init__(self, config, dtype, device="cpu", tf32=False):
        import minires  # before NumPy, as minires's users import it: see minires/runtime.py
        name, batch, size, small = config
        if device == "cuda" and not minires.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA GPU (or no CuPy) on this machine")
        minires.manual_seed(0)
        self.plain = getattr(minires.models, name)(small_input=small).to(dtype)
        if device == "cuda":
            minires.cuda.set_tf32(tf32)
        # trees from before minires.fuse and devices (timed by ab.py) fused inside their models
        self.model = minires.fuse(self.plain, inplace=True) if hasattr(minires, "fuse") else self.plain
        self.opt = minires.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        x, y = fresh.make_batch(batch, size, dtype)
        self.x, self.y = minires.tensor(x), minires.tensor(y)
        if device != "cpu":
            self.model.to(device)
            self.x, self.y = self.x.to(device), self.y.to(device)
        self.mr, self.sync = minires, (minires.cuda.synchronize if device == "cuda" else lambda: None)

    def state_dict(self):
        """The initial weights as NumPy arrays, under torchvision's names."""
        return {k: v.numpy() for k, v in self.plain.state_dict().items()}

    def train_step(self):
        self.model.train()
        loss = self.mr.functional.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.sync()

    def infer_step(self):
        self.model.eval()
        with self.mr.no_grad():
            self.model(self.x)
        self.sync()

    def device_memory(self, steps):
        """(bytes in CuPy arrays now, the most at once over ``steps`` more training steps)."""
        now = self.mr.cuda.memory_allocated()
        self.mr.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            self.train_step()
        return now, self.mr.cuda.max_memory_allocated()


class TorchModel:
    """PyTorch's model (torchvision's architecture, minires's initial weights from ``weights``, an
    .npz), optimizer, input and steps for one configuration. Imports no minires."""
    framework = "torch"

    def __init__(self, config, dtype, device="cpu", tf32=False, weights=None):
        import numpy as np
        import torch
        name, batch, size, small = config
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cudnn.benchmark = True
        self.model = torch_model(name, small).to(getattr(torch, dtype))
        with np.load(weights) as saved:
            self.model.load_state_dict({k: torch.from_numpy(saved[k]) for k in saved.files})
        self.model.to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        x, y = fresh.make_batch(batch, size, dtype)
        self.x, self.y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        self.torch, self.sync = torch, (torch.cuda.synchronize if device == "cuda" else lambda: None)

    def train_step(self):
        self.model.train()
        loss = self.torch.nn.functional.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.sync()

    def infer_step(self):
        self.model.eval()
        with self.torch.no_grad():
            self.model(self.x)
        self.sync()

    def device_memory(self, steps):
        """(bytes in PyTorch's tensors now, the most at once over ``steps`` more training steps)."""
        cuda = self.torch.cuda
        now = cuda.memory_allocated()
        cuda.reset_peak_memory_stats()
        for _ in range(steps):
            self.train_step()
        return now, cuda.max_memory_allocated()


def torch_model(name, small_input):
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


def build(framework, config, args):
    if framework == "minires":
        return MiniresModel(config, args.dtype, args.device, args.tf32)
    return TorchModel(config, args.dtype, args.device, args.tf32, args.weights)


def worker(args):
    """One measurement, in a process of its own (see the module's docstring); prints its JSON.
    TASK: "weights" (write minires's initial weights to --weights; -> versions), "train" or "infer"
    (-> {framework: {"first": s, "times": [s, ...]}}), "memory" (-> {"baseline": MB, "peak": MB}),
    "breakdown" (prints minires's time per op and kernel)."""
    side, text, task = args.worker
    config = fresh.parse_config(text)
    if task == "weights":
        import numpy as np
        model = MiniresModel(config, args.dtype)  # on the CPU, where its arrays are NumPy's
        np.savez(args.weights, **model.state_dict())
        result = {"minires": model.mr.__version__, "kernels": model.mr.get_kernels(),
                  "numpy": np.__version__, "numba": sys.modules["numba"].__version__}
    elif task == "memory":
        result = peak_memory(build(side, config, args), args.device)
    elif task == "breakdown":
        return breakdown(MiniresModel(config, args.dtype), text, args.modes, args.runs)
    else:
        result = time_steps(SIDES[side], config, task, args)
    print(json.dumps(result))


def time_steps(frameworks, config, mode, args):
    """Each framework's model set up and its untimed first step run, in order; then each one's
    --runs timed steps, in order. -> {framework: {"first": s, "times": [s, ...]}}"""
    steps, first = {}, {}
    for fw in frameworks:
        model = build(fw, config, args)
        steps[fw] = model.train_step if mode == "train" else model.infer_step
        first[fw] = fresh.timed(steps[fw])
    return {fw: {"first": first[fw], "times": [fresh.timed(steps[fw]) for _ in range(args.runs)]} for fw in frameworks}


def peak_memory(model, device):
    """Peak memory of two training steps after a first: {"baseline": MB after setup and the first
    step, "peak": MB}. On the CPU, resident memory; the peak is the kernel's high-water mark (VmHWM),
    reset after the first step, not getrusage's ru_maxrss, which a child started by fork + exec
    inherits from its parent. On a GPU, the memory in arrays (CuPy's pool, PyTorch's caching
    allocator)."""
    model.train_step()
    if device == "cuda":
        now, peak = model.device_memory(2)
        return {"baseline": now / 2 ** 20, "peak": peak / 2 ** 20}
    baseline = proc_status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    model.train_step()
    model.train_step()
    return {"baseline": baseline, "peak": proc_status_mb("VmHWM")}


def proc_status_mb(field):
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


# ---------------------------------------------------------------- minires's time per op and kernel

def breakdown(model, text, modes, steps):
    """For each mode: minires.profile's tables of ``steps`` steps after one untimed: per op (forward
    and backward; the optimizer's kernels), then per convolution plan and kernel."""
    for mode in modes.split(","):
        print(f"\nwhere minires's {'training step' if mode == 'train' else 'inference'} spends its time: "
              f"{text} ({steps} steps after one)")
        step = model.train_step if mode == "train" else model.infer_step
        step()
        with model.mr.profile() as prof:
            for _ in range(steps):
                step()
                prof.step()
        print(prof.table(group_by="op", limit=25))
        print(prof.table(group_by="kernel", limit=25))


# ---------------------------------------------------------------- the parent

class Measurements:
    """Starts the worker processes of one run: the parent's handle on its options, environment and
    the weights file of each configuration (written by a minires process on first use)."""

    def __init__(self, args, folder):
        self.args, self.folder, self.versions = args, folder, {}
        self.env = fresh.child_env(args.threads)

    def weights(self, config):
        path = os.path.join(self.folder, config.replace(":", "_") + ".npz")
        if not os.path.exists(path):
            self.versions = fresh.run_json(self.argv("minires", config, "weights", path), self.env)
        return path

    def argv(self, side, config, task, weights=None):
        a = self.args
        return [os.path.abspath(__file__), "--worker", side, config, task, "--runs", str(a.runs), "--dtype", a.dtype,
                "--modes", a.modes, "--device", a.device, "--weights", weights or self.weights(config)] + \
            (["--tf32"] if a.tf32 else [])

    def json(self, side, config, task):
        return fresh.run_json(self.argv(side, config, task), self.env)

    def show(self, side, config, task):
        """Run a worker whose output is for the reader (the breakdown)."""
        sys.stdout.flush()
        subprocess.run([sys.executable, *self.argv(side, config, task)], env=self.env, check=True)


def throughput(args, measure, config, mode, sides):
    """{side: {framework: (img/s from the median step over all rounds, median first-step seconds)}}."""
    runs = collections.defaultdict(lambda: collections.defaultdict(list))
    for side in fresh.interleaved(sides, args.rounds):
        for fw, r in measure.json(side, config, mode).items():
            runs[side][fw].append(r)
    batch = fresh.parse_config(config)[1]
    return {side: {fw: (batch / statistics.median(t for r in rs for t in r["times"]),
                        statistics.median(r["first"] for r in rs)) for fw, rs in by_fw.items()}
            for side, by_fw in runs.items()}


def report_throughput(args, measure, config, frameworks):
    """Print a configuration's lines: per mode, each framework alone and, with --same-process, there.
    -> the ratios minires / torch, as text."""
    sides = frameworks + ([args.same_process] if args.same_process and len(frameworks) == 2 else [])
    ratios = []
    for mode in args.modes.split(","):
        ips = throughput(args, measure, config, mode, sides)
        mine, first = ips["minires"]["minires"]
        line = f"{config:<22} {mode:<5}  minires {mine:8.1f} img/s (first step {first:.2f} s)"
        if "torch" in ips:
            theirs = ips["torch"]["torch"][0]
            ratios.append(f"{config} {mode} {mine / theirs:.2f}x")
            line += f"   torch {theirs:8.1f} img/s   ratio {mine / theirs:.2f}x"
        print(line, flush=True)
        if args.same_process in ips:
            there = ips[args.same_process]
            print(f"{'':29}in one process, {args.same_process}: " + ", ".join(
                f"{fw} {there[fw][0]:.1f} img/s ({there[fw][0] / ips[fw][fw][0]:.2f}x alone)"
                for fw in SIDES[args.same_process]), flush=True)
    return ratios


def report_memory(measure, config, frameworks, device):
    unit = "GPU memory in arrays" if device == "cuda" else "resident memory"
    print(f"\npeak {unit} of a training step (a fresh process each; MB): baseline after setup -> peak")
    m = {fw: measure.json(fw, config, "memory") for fw in frameworks}
    line = "".join(f"   {fw} {r['baseline']:7.0f} -> {r['peak']:7.0f} (step +{r['peak'] - r['baseline']:.0f})"
                   for fw, r in m.items())
    if len(m) == 2:
        line += f"   peak ratio {m['minires']['peak'] / m['torch']['peak']:.2f}x"
    print(f"{config:<22}" + line)


def report(args, measure, configs, frameworks):
    measure.weights(configs[0])
    v = measure.versions
    torch_version = importlib.metadata.version("torch") if "torch" in frameworks else "not measured"
    print(f"minires {v['minires']} (kernels: {v['kernels']}), numpy {v['numpy']}, numba {v['numba']}, "
          f"torch {torch_version}; {args.threads} threads; {args.dtype}; {args.device}; "
          f"median of {args.rounds} rounds x {args.runs} steps, each framework alone in a fresh process")
    ratios = [r for config in configs for r in report_throughput(args, measure, config, frameworks)]
    if args.memory:
        report_memory(measure, configs[0], frameworks, args.device)
    if args.breakdown:
        for config in configs:
            measure.show("minires", config, "breakdown")
    if ratios:
        print("\nthroughput ratio minires / torch, each alone: " + ", ".join(ratios))


def main():
    args = parse_args()
    if args.worker:
        return worker(args)
    has_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    with tempfile.TemporaryDirectory() as folder:
        try:
            report(args, Measurements(args, folder), args.config or DEFAULT_CONFIGS[args.device],
                   ["minires", "torch"] if has_torch else ["minires"])
        except RuntimeError as e:
            print(f"models.py: error: {e}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
