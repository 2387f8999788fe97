"""Compute kernels, implementation against implementation, on ResNet-18/50 layer shapes.

    python benchmarks/kernels.py                 # every layer shape, batch 8, 224x224
    python benchmarks/kernels.py --quick         # one shape per kernel (under a minute)
    python benchmarks/kernels.py --batch 16 --size 112 --runs 9
    python benchmarks/kernels.py --device cuda   # on a GPU: the CUDA kernels against the GPU's ceilings

Every kernel (im2col, into preallocated memory as conv2d calls it; col2im; max/avg pooling forward
and backward; batch-norm statistics, normalization, the two fused for training, and backward,
alone, with the fused ReLU and with the fused residual and ReLU (+res); relu(a + b) and the ReLU's
backward; the SGD update; Winograd F(4x4, 3x3)'s weight, input and output transforms and the adjoints
for the weight's gradient, on the stride-1 3x3 layers that conv2d runs it on; the live-tap copy of a
weight and its adjoint, on the small maps where conv2d drops taps that read only padding; the
unrolled weight of a convolution on maps smaller than its kernel, and its adjoint)
runs in each implementation: the NumPy reference, Numba, and on a
machine with CuPy and a GPU the "cuda" version (the reference on CuPy arrays until a CUDA version is
registered). Per call: the median time of --runs calls after one warm-up, the memory traffic as
GB/s (the bytes a kernel must read and write at least, once each) and the arithmetic as GFLOP/s,
each also as a fraction of the ceilings measured in the same run: a large float32 GEMM (NumPy's
BLAS) and a large array copy (the faster of np.copyto and a parallel Numba copy). The kernels are
memory-bound: the GB/s fraction is the one to read (above 100%: a working set that fits in the
last-level cache, which the large copy does not). Activations are channel-major, as conv2d
produces them (the stem's input image is NCHW). The full run ends with each network's kernel time
per training step (every kernel call the forward and backward make), and both runs report Numba's
first-call cost per kernel: compiling (into an empty cache) and loading from the disk cache, each
measured in a fresh process.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np
from numba import njit, prange

import minires
from minires import kernels
from minires.kernels._geometry import pool_out_size
from minires.kernels.pooling import avgpool_divisor
from minires import plans
from minires.plans.live_taps import live_window as _live_window

KERNELS = ["im2col", "col2im", "maxpool_forward", "maxpool_backward", "avgpool_forward", "avgpool_backward",
           "bn_stats", "bn_forward", "bn_train_forward", "bn_backward", "bn_forward+relu", "bn_train_forward+relu",
           "bn_backward+relu", "bn_forward+res", "bn_train_forward+res", "add_relu", "relu_backward", "sgd_update",
           "winograd_weights", "winograd_input", "winograd_output", "winograd_grad_output", "winograd_grad_weights",
           "taps_crop", "taps_pad", "toeplitz_weight", "toeplitz_weight_grad"]
# +relu: relu=True; +res: a residual added before the ReLU (relu=True, residual=identity)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224, help="input height and width")
    p.add_argument("--runs", type=int, default=None, help="timed calls per kernel and implementation (default 7, --quick 3)")
    p.add_argument("--quick", action="store_true", help="one representative shape per kernel")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: the GPU's kernels and ceilings")
    p.add_argument("--probe-first-calls", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- layer shapes

def resnet_layers(depth, batch, size):
    """The kernel-relevant layers of a torchvision ResNet-18 or -50 as (kind, shape, geometry):
    ("conv", x shape, (k, s, p)) for each convolution that needs im2col (not the 1x1 stride-1 ones),
    followed by ("taps", weight shape, live window) where it drops taps (see conv),
    ("bn", x shape, None), ("pool", x shape, (k, s, p)), ("bn_add", x shape, None) for a block's last batch norm
    with the residual addition and ReLU, ("params", (count,), None) for all the parameters (as one array)."""
    layers = [("conv", (batch, 3, size, size), (7, 2, 3))]
    h = (size - 1) // 2 + 1
    layers += [("bn", (batch, 64, h, h), None), ("pool", (batch, 64, h, h), (3, 2, 1))]
    h = (h - 1) // 2 + 1
    cin = 64
    bottleneck = depth == 50
    for stage, blocks in enumerate([3, 4, 6, 3] if bottleneck else [2, 2, 2, 2]):
        width = 64 << stage
        cout = width * 4 if bottleneck else width
        for b in range(blocks):
            s = 2 if stage > 0 and b == 0 else 1
            ho = (h - 1) // s + 1
            if bottleneck:  # 1x1 (pointwise: no im2col) > 3x3 stride s > 1x1
                layers += [("bn", (batch, width, h, h), None), *conv((batch, width, h, h), (3, s, 1), width),
                           ("bn", (batch, width, ho, ho), None), ("bn_add", (batch, cout, ho, ho), None)]
            else:
                layers += [*conv((batch, cin, h, h), (3, s, 1), cout), ("bn", (batch, cout, ho, ho), None),
                           *conv((batch, cout, ho, ho), (3, 1, 1), cout), ("bn_add", (batch, cout, ho, ho), None)]
            if s != 1 or cin != cout:  # downsample: 1x1 stride s, then batch norm
                if s != 1:
                    layers.append(("conv", (batch, cin, h, h), (1, s, 0)))
                layers.append(("bn", (batch, cout, ho, ho), None))
            cin, h = cout, ho
    return layers + [("params", ((25_557_032 if bottleneck else 11_689_512),), None)]


def is_winograd(kind, shape, geo):
    """Whether conv2d runs this layer's convolution in a training step as Winograd F(4x4, 3x3): the
    plan plans.choose picks for it in float32."""
    if kind != "conv" or geo[0] != 3:
        return False
    return plans.choose(problem(shape, geo, shape[1]), (True, True, False)).name == plans.Winograd.name


def problem(shape, geo, cout):
    """The ConvProblem of a float32 CPU convolution of x ``shape``, geometry (k, s, p), cout filters."""
    k, s, p = geo
    return plans.ConvProblem(tuple(shape), (cout, shape[1], k, k), (s, s), (p, p), (1, 1), 1, np.dtype(np.float32), "cpu")


def live_window(shape, geo):
    """The live taps ((t0, t1), (u0, u1)) of a convolution of x ``shape``, geometry (k, s, p), where
    some of its k x k taps read only padding (small maps: conv2d copies the others out of the weight,
    taps_crop, and puts their gradient back, taps_pad); else None."""
    window = _live_window(problem(shape, geo, 1))
    return None if window == ((0, geo[0]), (0, geo[0])) else window


def unrolled(shape, geo):
    """Whether conv2d runs a convolution of x ``shape``, geometry (k, s, p), as one GEMM with the
    unrolled weight: a map of fewer positions than live taps."""
    (t0, t1), (u0, u1) = live_window(shape, geo) or ((0, geo[0]), (0, geo[0]))
    return shape[2] * shape[3] < (t1 - t0) * (u1 - u0)


def conv(shape, geo, cout):
    """A convolution's entries in resnet_layers: ("conv", x shape, geo), then where it runs with the
    unrolled weight ("toeplitz", weight shape, geo + (map side,)), or where it drops dead taps ("taps",
    weight shape, live window)."""
    wshape = (cout, shape[1], geo[0], geo[0])
    if unrolled(shape, geo):
        return [("conv", shape, geo), ("toeplitz", wshape, geo + (shape[2],))]
    window = live_window(shape, geo)
    return [("conv", shape, geo)] + ([("taps", wshape, window)] if window else [])


def kernel_calls(layers):
    """{(kernel, shape, geometry): calls per training step}: a convolution runs im2col in forward
    (its col kept for backward) and col2im in backward (not for the stem, whose input needs no
    gradient), or where it is Winograd, the three Winograd transforms once in forward and once for
    the input's gradient, and the two adjoints for the weight's (from the forward's V); a batch norm
    bn_train_forward and bn_backward (most with the fused ReLU: counted without); a block's last
    batch norm bn_train_forward with the residual and relu_backward (the mask of both inputs'
    gradient) before bn_backward; max pooling its forward and backward; SGD one sgd_update over
    every parameter."""
    names_of = {"bn": ["bn_train_forward", "bn_backward"],
                "bn_add": ["bn_train_forward+res", "relu_backward", "bn_backward"],
                "pool": ["maxpool_forward", "maxpool_backward"], "params": ["sgd_update"]}
    calls = {}
    for kind, shape, geo in layers:
        if is_winograd(kind, shape, geo):
            names = 2 * ["winograd_weights", "winograd_input", "winograd_output"] + [
                "winograd_grad_output", "winograd_grad_weights"]
        elif kind == "conv" and live_window(shape, geo) or kind == "conv" and unrolled(shape, geo):
            continue  # its im2col on the live taps is not counted; an unrolled one has none
        elif kind in ("taps", "toeplitz"):
            names = ["taps_crop", "taps_pad"] if kind == "taps" else ["toeplitz_weight", "toeplitz_weight_grad"]
        else:
            names = ["im2col"] + (["col2im"] if shape[1] != 3 else []) if kind == "conv" else names_of[kind]
        for name in names:
            calls[(name, shape, geo)] = calls.get((name, shape, geo), 0) + 1
    return calls


def cases(batch, size, quick):
    """[(kernel, shape, geometry, {net: calls per step})], in kernel order."""
    per_net = {f"ResNet-{d}": kernel_calls(resnet_layers(d, batch, size)) for d in (18, 50)}
    if quick:
        h = (size - 1) // 2 + 1
        c56, c112 = (batch, 64, (h - 1) // 2 + 1, (h - 1) // 2 + 1), (batch, 64, h, h)
        bn = (batch, 256, c56[2], c56[3])
        picked = {("im2col", c56, (3, 1, 1)), ("col2im", c56, (3, 1, 1)), ("maxpool_forward", c112, (3, 2, 1)),
                  ("maxpool_backward", c112, (3, 2, 1)), ("avgpool_forward", c112, (3, 2, 1)),
                  ("winograd_weights", c56, (3, 1, 1)), ("winograd_input", c56, (3, 1, 1)),
                  ("winograd_output", c56, (3, 1, 1)), ("winograd_grad_output", c56, (3, 1, 1)),
                  ("winograd_grad_weights", c56, (3, 1, 1)),
                  ("avgpool_backward", c112, (3, 2, 1)), ("sgd_update", (11_689_512,), None)}
        picked |= {(name, (512, 512, 3, 3), ((1, 2), (1, 2))) for name in ("taps_crop", "taps_pad")}
        picked |= {(name, (256, 256, 3, 3), (3, 1, 1, 2)) for name in ("toeplitz_weight", "toeplitz_weight_grad")}
        picked |= {(name, bn, None) for name in KERNELS if name.startswith(("bn", "add", "relu"))}
    else:
        picked = {key for calls in per_net.values() for key in calls}
        # ResNets use no avg_pool2d: time it on max pooling's shape; the fused ReLU on the batch norms'
        picked |= {(name.replace("max", "avg"), shape, geo) for name, shape, geo in picked if name.startswith("maxpool")}
        # bn_stats and bn_forward, which the training step no longer calls, on the batch norms' shapes too
        picked |= {(name, shape, geo) for name in ("bn_stats", "bn_forward") for k, shape, geo in picked if k == "bn_backward"}
        picked |= {(name + "+relu", shape, geo) for name, shape, geo in picked
                   if name in ("bn_forward", "bn_train_forward", "bn_backward")}
        picked |= {("bn_forward+res", shape, geo) for name, shape, geo in picked if name == "bn_train_forward+res"}
        picked |= {("add_relu", shape, geo) for name, shape, geo in picked if name == "relu_backward"}
        # the live-tap copies, which ResNets call only on small maps: ResNet-18's at 32x32 (its layer4)
        picked |= {(name, (cout, cin, 3, 3), live_window((batch, cin, h, h), (3, s, 1))) for name in ("taps_crop", "taps_pad")
                   for cin, cout, h, s in ((256, 512, 2, 2), (512, 512, 1, 1))}
        # and the unrolled weight, on ResNet-18's 2x2 maps at 32x32 (its layer3)
        picked |= {(name, (256, 256, 3, 3), (3, 1, 1, 2)) for name in ("toeplitz_weight", "toeplitz_weight_grad")}
    order = {name: i for i, name in enumerate(KERNELS)}
    rows = sorted(picked, key=lambda key: (order[key[0]], -np.prod(key[1]), key[1], key[2] or ()))
    return [(name, shape, geo, {net: calls.get((name, shape, geo), 0) for net, calls in per_net.items()})
            for name, shape, geo in rows]


# ---------------------------------------------------------------- inputs, traffic and arithmetic

def channel_major(a):
    """(N, C, H, W) a as a view of (C, N, H, W) memory, as conv2d outputs are."""
    return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


def make_call(name, shape, geo, rng):
    """(args, bytes, flops) for one kernel call: arguments (float32 NumPy arrays), the memory traffic
    (every input read and every output written once) and the floating-point operations."""
    if name.startswith("taps"):  # shape: the weight's, geo: the live window; every line of the weight moves
        w = rng.standard_normal(shape, dtype=np.float32)
        live = kernels.taps_crop(w, *geo)
        args = (w,) + geo if name == "taps_crop" else (live, shape, (geo[0][0], geo[1][0]))
        return args, w.nbytes + live.nbytes, 0
    if name.startswith("toeplitz"):  # shape: the weight's, geo: (k, s, p, map side)
        k, st, p, h = geo
        taps = kernels.toeplitz_taps((h, h), (k, k), (st, st), (p, p), (1, 1))
        w = rng.standard_normal(shape, dtype=np.float32)
        wb = kernels.toeplitz_weight(w, taps)
        return ((w, taps) if name == "toeplitz_weight" else (wb, taps, shape)), w.nbytes + wb.nbytes, 0
    if name == "sgd_update":  # p, grad, momentum buffer: read 3, write 2
        p, grad, buf = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
        return (p, grad, buf, 1e-6, 0.9, 0.0, 1e-4, False, False), 5 * p.nbytes, 6 * p.size
    x = rng.standard_normal(shape, dtype=np.float32)
    x = x if shape[1] == 3 else channel_major(x)
    n, c, h, w = shape
    if name.startswith("winograd"):  # a C -> C channel, padding-1 layer; flops of the dense products
        slots = n * kernels.winograd_slots((h, w))
        v = np.empty((6, 6, c, slots), np.float32)
        if name == "winograd_weights":
            wt, u = rng.standard_normal((c, c, 3, 3), dtype=np.float32), np.empty((6, 6, c, c), np.float32)
            return (wt, u), wt.nbytes + u.nbytes, c * c * 324
        if name == "winograd_input":
            return (x, (1, 1), v), x.nbytes + v.nbytes, v.size * 22
        if name == "winograd_grad_output":  # 60 multiply-adds per (channel, slot) and transform row pair
            return (x, v), x.nbytes + v.nbytes, c * slots * 480
        if name == "winograd_grad_weights":
            du, gw = rng.standard_normal((6, 6, c, c), dtype=np.float32), np.empty((c, c, 3, 3), np.float32)
            return (du, gw), du.nbytes + gw.nbytes, c * c * 324
        return (rng.standard_normal(v.shape, dtype=np.float32), np.empty((c, n, h, w), np.float32)), \
            v.nbytes + x.nbytes, c * slots * 40 * 11
    if name in ("im2col", "col2im"):
        k, s, p = geo
        g = ((k, k), (s, s), (p, p), (1, 1))
        ho, wo = (kernels.conv_out_size(d, k, s, p, 1) for d in (h, w))
        col_bytes = 4 * c * k * k * n * ho * wo
        if name == "im2col":  # into preallocated memory, as conv2d calls it (its scratch buffer)
            out = np.empty((c * k * k, n * ho * wo), np.float32)
            return (x,) + g + (out,), x.nbytes + col_bytes, 0
        col = rng.standard_normal((c * k * k, n * ho * wo), dtype=np.float32)
        return (col, shape) + g, col_bytes + x.nbytes, col.size
    if "pool" in name:
        k, s, p = geo
        ohw = tuple(pool_out_size(d, k, s, p, 1, False) for d in (h, w))
        taps, out = k * k, n * c * ohw[0] * ohw[1]
        gy = channel_major(rng.standard_normal((n, c) + ohw, dtype=np.float32))
        g = ((k, k), (s, s), (p, p))
        if name == "maxpool_forward":
            return (x,) + g + ((1, 1), ohw), x.nbytes + 2 * gy.nbytes, out * taps
        if name == "maxpool_backward":
            _, arg = kernels.maxpool_forward(x, *g, (1, 1), ohw)
            return (gy, arg, shape) + g + ((1, 1),), 2 * gy.nbytes + x.nbytes, out
        div = avgpool_divisor(np, (h, w), ohw, (k, k), (s, s), (p, p), True, np.float32)
        if name == "avgpool_forward":
            return (x,) + g + (ohw, div), x.nbytes + gy.nbytes, out * (taps + 1)
        return (gy, shape) + g + (div,), gy.nbytes + x.nbytes, out * taps * 2
    x3 = x.reshape(n, c, h * w)
    mean, var = kernels.bn_stats(x3)
    invstd = 1 / np.sqrt(var + np.float32(1e-5))
    weight, bias = rng.standard_normal(c, dtype=np.float32), rng.standard_normal(c, dtype=np.float32)
    if name == "bn_stats":
        return (x3,), x.nbytes, 4 * x.size
    if name in ("add_relu", "relu_backward"):
        return (x, channel_major(rng.standard_normal(shape, dtype=np.float32))), 3 * x.nbytes, x.size
    if name.endswith("+res"):  # relu(bn(x) + residual)
        res = channel_major(rng.standard_normal(shape, dtype=np.float32)).reshape(x3.shape)
        if name.startswith("bn_train_forward"):
            return (x3, weight, bias, 1e-5, True, res), 3 * x.nbytes, 7 * x.size
        return (x3, mean, invstd, weight, bias, True, res), 3 * x.nbytes, 4 * x.size
    relu = name.endswith("+relu")
    if name.startswith("bn_train_forward"):
        return (x3, weight, bias, 1e-5, relu), 2 * x.nbytes, (6 if relu else 5) * x.size
    if name.startswith("bn_forward"):
        return (x3, mean, invstd, weight, bias, relu), 2 * x.nbytes, (3 if relu else 2) * x.size
    gy = channel_major(rng.standard_normal(shape, dtype=np.float32)).reshape(n, c, h * w)
    return (gy, x3, mean, invstd, weight, True, bias, relu), 3 * x.nbytes, (13 if relu else 9) * x.size


# ---------------------------------------------------------------- timing

def median_time(f, runs, sync=lambda: None):
    f()
    sync()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ceilings(quick, runs):
    """(GEMM GFLOP/s, copy GB/s, copy source): a large float32 GEMM through NumPy's BLAS, and the faster
    of np.copyto and a parallel Numba copy of a large array (bytes read plus bytes written)."""
    @njit(parallel=True)
    def parallel_copy(dst, src):
        for i in prange(src.size):
            dst[i] = src[i]

    rng = np.random.default_rng(0)
    n = 1024 if quick else 2048
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    gemm = 2 * n ** 3 / median_time(lambda: a @ b, runs) / 1e9
    src = np.ones((32 if quick else 64) << 20, dtype=np.float32)
    dst = np.empty_like(src)
    copies = {name: 2 * src.nbytes / median_time(lambda: f(dst, src), runs) / 1e9
              for name, f in (("np.copyto", np.copyto), ("numba prange", parallel_copy))}
    best = max(copies, key=copies.get)
    return gemm, copies[best], best


def implementations(device):
    """{label: (to_device, sync)}: numpy and numba on the CPU; on "cuda", the kernels on CuPy arrays
    (our CUDA versions where registered, the NumPy reference through CuPy elsewhere)."""
    if device == "cpu":
        return {"numpy": (None, None), "numba": (None, None)}
    minires.device.get_device("cuda")  # registers the CUDA kernels, or says in one line why not
    import cupy
    return {"cuda": (lambda a: cupy.asarray(a) if isinstance(a, np.ndarray) else a, cupy.cuda.Device().synchronize)}


def gpu_ceilings(quick, runs):
    """(float32 GEMM GFLOP/s, copy GB/s, how) on the GPU: cuBLAS on 8192^2 matrices, a 256 MB copy."""
    import cupy
    n, sync = 4096 if quick else 8192, cupy.cuda.Device().synchronize
    a = cupy.ones((n, n), cupy.float32)
    gemm = 2 * n ** 3 / median_time(lambda: a @ a, runs, sync) / 1e9
    src = cupy.ones(64 << 20, cupy.float32)
    dst = cupy.empty_like(src)
    return gemm, 2 * src.nbytes / median_time(lambda: cupy.copyto(dst, src), runs, sync) / 1e9, "cupy.copyto"


def kernel_of(name):
    return getattr(kernels, name.split("+")[0])


def run_kernel(name, args, impl, to_device, sync, runs):
    k = kernel_of(name)
    if to_device is None:
        f = k.impls.get(impl, k.impls["numpy"])
        return median_time(lambda: f(*args), runs)
    dargs = tuple(to_device(a) for a in args)
    return median_time(lambda: k(*dargs), runs, sync)


# ---------------------------------------------------------------- numba first calls

def probe_first_calls():
    """Child process: the first call of each Numba kernel on small float32 inputs, in seconds (JSON)."""
    minires.set_kernels("numpy")  # make_call's own kernel calls must not compile anything
    rng = np.random.default_rng(0)
    out = {}
    for name in KERNELS:
        geo = (3, 2, 1) if name in ("im2col", "col2im") or "pool" in name else (3, 1, 1) if "winograd" in name else None
        shape = (1000,) if name == "sgd_update" else (2, 4, 9, 9)
        if name.startswith("taps"):
            shape, geo = (4, 2, 3, 3), ((1, 2), (1, 2))
        if name.startswith("toeplitz"):
            shape, geo = (4, 2, 3, 3), (3, 1, 1, 2)
        args, _, _ = make_call(name, shape, geo, rng)
        f = kernel_of(name).impls["numba"]
        t = time.perf_counter()
        f(*args)
        out[name] = time.perf_counter() - t
    print(json.dumps(out))


def first_calls():
    """{kernel: (compile s, cache-load s)}: two fresh processes sharing an empty Numba cache folder."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [json.loads(subprocess.run([sys.executable, os.path.abspath(__file__), "--probe-first-calls"], env=env,
                                          check=True, capture_output=True, text=True).stdout) for _ in range(2)]
    return {name: (runs[0][name], runs[1][name]) for name in KERNELS}


# ---------------------------------------------------------------- report

def describe_machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{datetime.date.today()}  {cpu}, {os.cpu_count()} cores  Python {platform.python_version()}  "
            f"NumPy {np.__version__}  Numba {numba.__version__} ({numba.get_num_threads()} threads)")


def fmt_shape(shape, geo):
    s = "x".join(map(str, shape))
    if geo is not None and len(geo) == 2:  # a weight's live window
        return f"{s} [{geo[0][0]}:{geo[0][1]},{geo[1][0]}:{geo[1][1]}]"
    if geo is not None and len(geo) == 4:  # a weight unrolled over a map
        return f"{s} k{geo[0]}s{geo[1]}p{geo[2]} on {geo[3]}x{geo[3]}"
    return s if geo is None else f"{s} k{geo[0]}s{geo[1]}p{geo[2]}"


def main(argv=None):
    args = parse_args(argv)
    if args.probe_first_calls:
        return probe_first_calls()
    runs = args.runs or (3 if args.quick else 7)
    print(describe_machine())
    try:
        impls = implementations(args.device)
    except RuntimeError as e:
        print(f"kernels.py: error: {e}", file=sys.stderr)
        return 2
    gemm, copy, copy_src = (ceilings if args.device == "cpu" else gpu_ceilings)(args.quick, runs)
    print(f"ceilings: float32 GEMM {gemm:.1f} GFLOP/s; copy {copy:.1f} GB/s ({copy_src}, bytes read + written)")

    rng = np.random.default_rng(0)
    head = f"{'kernel':21} {'shape N x C x H x W':29} {'impl':9} {'ms':>8} {'GB/s':>6} {'%copy':>6} {'GFLOP/s':>8} {'%gemm':>6} {'speedup':>7}"
    print("\n" + head + "\n" + "-" * len(head))
    step = {impl: {} for impl in impls}
    for name, shape, geo, calls in cases(args.batch, args.size, args.quick):
        call_args, nbytes, flops = make_call(name, shape, geo, rng)
        base = None
        for impl, (to_device, sync) in impls.items():
            t = run_kernel(name, call_args, impl, to_device, sync, runs)
            base = base or t
            for net, count in calls.items():
                step[impl][net] = step[impl].get(net, 0) + count * t
            gflops = f"{flops / t / 1e9:8.2f} {100 * flops / t / 1e9 / gemm:5.1f}%" if flops else f"{'-':>8} {'-':>6}"
            print(f"{name:21} {fmt_shape(shape, geo):29} {impl:9} {1e3 * t:8.2f} {nbytes / t / 1e9:6.1f} "
                  f"{100 * nbytes / t / 1e9 / copy:5.0f}% {gflops} {base / t:6.1f}x")

    if not args.quick:
        print(f"\nkernel time per training step (batch {args.batch}, {args.size}x{args.size}; GEMMs not included):")
        for net in ("ResNet-18", "ResNet-50"):
            print(f"  {net}: " + ", ".join(f"{impl} {1e3 * step[impl][net]:.0f} ms" for impl in impls))

    if args.device != "cpu":
        return 0
    print("\nNumba first call per kernel (float32; fresh process each): compile into an empty cache / load from it;\n"
          "the first kernel called (im2col) also starts Numba's runtime and thread pool")
    for name, (compile_s, load_s) in first_calls().items():
        print(f"  {name:21} {compile_s:6.2f} s / {load_s:5.2f} s")


if __name__ == "__main__":
    sys.exit(main())
