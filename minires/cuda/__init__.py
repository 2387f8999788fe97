"""The GPU: the "cuda" device over CuPy, with minires's own CUDA kernels (kernels/cuda/*.cu).

    minires.cuda.is_available()          a CUDA GPU and CuPy are there
    tensor.to("cuda"), model.to("cuda")  arrays on the GPU; every op then runs there
    minires.cuda.synchronize()           wait for the GPU (time a step only after this)
    memory_allocated(), max_memory_allocated(), reset_peak_memory_stats(), empty_cache()
    set_tf32(enabled)                    float32 GEMMs on TF32 tensor cores (default off: see below)
    StreamCopier                         host-to-GPU copies on a stream of their own (minires.data.prefetch)

The device is registered the first time it is asked for (minires.device); ``install`` then
registers, under its name, the CUDA versions of the kernels (minires/cuda/kernels.py) and the
convolution plans a GPU runs (rules below). The same ``install`` with another device name and
another loader runs the whole GPU path on the CPU in the tests: the .cu sources compiled with g++
and a shim (tests/cuda_cpu/), behind a test device with NumPy memory.

TF32 is off by default: float32 GEMMs then round as the CPU's and PyTorch's matmul do (PyTorch also
leaves TF32 off for matmul, and on for cuDNN convolutions), so results agree with the CPU to 1e-5
relative. set_tf32(True) trades that for tensor-core speed (about 10 mantissa bits per product).
"""
from .. import plans

__all__ = ["is_available", "device_count", "synchronize", "memory_allocated", "max_memory_allocated",
           "reset_peak_memory_stats", "memory_reserved", "empty_cache", "set_tf32", "get_tf32", "manual_seed",
           "install", "StreamCopier"]

_state = {"tf32": False, "peak": 0}


def _cupy():
    import cupy
    return cupy


def is_available():
    """Whether CuPy is installed and sees at least one CUDA GPU."""
    try:
        return _cupy().cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: CuPy raises several kinds
        return False


def device_count():
    """The number of CUDA GPUs CuPy sees (0 without CuPy or a driver)."""
    try:
        return _cupy().cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def synchronize():
    """Wait until the current GPU has finished all queued work."""
    _cupy().cuda.Device().synchronize()


def memory_allocated():
    """Bytes of GPU memory in arrays now (CuPy's memory pool, in use)."""
    return _cupy().get_default_memory_pool().used_bytes()


def memory_reserved():
    """Bytes the memory pool holds from the driver (in use or cached for reuse)."""
    return _cupy().get_default_memory_pool().total_bytes()


def max_memory_allocated():
    """The most bytes in arrays at once since the device was installed or reset_peak_memory_stats."""
    return max(_state["peak"], memory_allocated())


def reset_peak_memory_stats():
    _state["peak"] = memory_allocated()


def empty_cache():
    """Give the memory pool's unused blocks back to the driver."""
    _cupy().get_default_memory_pool().free_all_blocks()


def set_tf32(enabled):
    """Let float32 GEMMs (convolutions, linear layers) run on TF32 tensor cores (True) or not (False)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_tf32: expected True or False, got {enabled!r}")
    _state["tf32"] = enabled
    if is_available():
        _apply_tf32()


def get_tf32():
    return _state["tf32"]


def _apply_tf32():
    import numpy as np
    from cupy._core import _routines_linalg as linalg
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if _state["tf32"] else linalg.COMPUTE_TYPE_DEFAULT)


def manual_seed(seed):
    """Seed the GPU's random generator (minires.manual_seed calls this when a GPU is in use)."""
    _cupy().random.seed(seed)


class StreamCopier:
    """Host-to-GPU copies that overlap compute: the "cuda" device's copier (minires.data.prefetch has the
    protocol). Copies run on a non-blocking stream of their own, from pinned host memory (a copy from
    pageable memory would be staged through a driver buffer and hold the host until it is done)."""

    def __init__(self):
        cupy = _cupy()
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def pinned(self, shape, dtype):
        import cupyx
        return cupyx.empty_pinned(shape, dtype)

    def copy(self, host):
        """Start copying pinned ``host`` to a new GPU array: (the array, the copy's event). The copy
        stream first waits for the compute stream's work so far: the memory pool may hand out memory
        that a queued kernel there still uses (freed in Python, not yet on the GPU)."""
        cupy = _cupy()
        self.stream.wait_event(cupy.cuda.get_current_stream().record())
        a = cupy.empty(host.shape, host.dtype)
        a.set(host, stream=self.stream)
        return a, self.stream.record()

    def wait(self, event):
        cupy = _cupy()
        cupy.cuda.get_current_stream().wait_event(event)

    def synchronize(self, event):
        event.synchronize()


def _tracking_allocator(pool):
    """CuPy's pool allocation, noting the peak of memory in use (CuPy's pool keeps no peak)."""
    def malloc(nbytes):
        memory = pool.malloc(nbytes)
        _state["peak"] = max(_state["peak"], pool.used_bytes())
        return memory
    return malloc


def install(device, load, **options):
    """Register under ``device`` the CUDA kernels compiled by ``load(family)`` and the GPU's plans;
    options: those of kernels.register (max_grid, block)."""
    from . import kernels
    kernels.register(device, load, **options)
    if not plans.rules(device):
        for rule in RULES:
            plans.register(device, rule)


def _install_cuda():
    """What minires.device does when "cuda" is first asked for, after registering the device."""
    from ..kernels import cuda as sources
    cupy = _cupy()
    pool = cupy.get_default_memory_pool()
    cupy.cuda.set_allocator(_tracking_allocator(pool))
    _apply_tf32()
    install("cuda", sources.load)


# The GPU's convolution plans: the CPU's, less those whose reason is the CPU's memory system
# (Winograd's transforms and the blocked im2col's cache-sized blocks); then, where col would be
# large, implicit GEMM (our kernel, no col); else im2col through our kernel, GEMMs through cuBLAS
# (CuPy's matmul).
RULES = [rule for rule in plans.rules("cpu") if rule.make not in (plans.Winograd, plans.BlockedIm2colGemm)] + [
    plans.Rule(plans.ImplicitGemm, plans.col_is_large, "im2col's col would pass THRESHOLDS['implicit_gemm_col_bytes']"
               " (a memory rule): implicit GEMM makes none and keeps x for the backward"),
    plans.Rule(plans.Im2colGemm, lambda p, needs: True, "im2col (our CUDA kernel) + cuBLAS GEMM")]
