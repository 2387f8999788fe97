"""Every process-wide setting minires makes or reads, in one place.

Applied once, when ``import minires`` runs this module (its first import, before minires loads NumPy).
Nothing else in the package reads environment variables, tunes malloc or configures thread pools.
Measurements behind each choice: benchmarks/RESULTS.md.

Made at import (each kept as the user set it, or turned off, by an environment variable set before):
- OPENBLAS_THREAD_TIMEOUT=4: OpenBLAS's idle threads sleep at once after a GEMM instead of spinning,
  so the kernel that follows has the cores. OpenBLAS reads it when NumPy loads it; where NumPy was
  imported first (by the user, or by PyTorch), minires has NumPy's OpenBLAS read its environment
  again and restart its threads (openblas_read_env, blas_thread_shutdown_: the next GEMM starts
  them with the new timeout), so the import order does not matter; only while no other Python
  thread runs (one might be inside a GEMM). Off: set the variable yourself (any value is kept).
- glibc malloc keeps freed large blocks (mmap threshold 32 MB, trim threshold 2 GB): a training
  step's arrays reuse the memory the previous step freed instead of page-faulting fresh pages. The
  price: up to 2 GB of freed memory stay with the process. Off: MINIRES_MALLOC=default.
- One thread pool: Numba's kernels on its OpenMP threading layer, and NumPy's OpenBLAS running its
  parallel jobs on those same OpenMP threads (minires/blas_pool.py) instead of threads of its own,
  so no idle thread of one pool spins on the cores the other needs, whatever was imported first
  (PyTorch's GNU OpenMP included: its threads become the one pool). OpenMP's own wait policy is
  kept: its idle threads spin briefly, and the next GEMM or kernel finds them awake. Applied on
  64-bit Linux where NumPy's OpenBLAS takes a threads callback (0.3.29 and later), libgomp loads,
  and OMP_DYNAMIC and OMP_THREAD_LIMIT are unset (a GEMM's jobs must all run at once). A forked
  child gives BLAS its own threads back; GNU OpenMP is not fork-safe, so programs that fork after
  a parallel GEMM or kernel and run kernels in the child should set NUMBA_THREADING_LAYER=workqueue,
  and a GEMM must not be called inside an OpenMP parallel region of its own. Off:
  NUMBA_THREADING_LAYER=workqueue (or tbb): BLAS keeps its threads. Where it does not apply:
  OMP_WAIT_POLICY=PASSIVE (idle OpenMP workers sleep instead of spinning against BLAS's threads;
  read when libgomp loads, so where PyTorch loaded it first, Numba runs on workqueue instead;
  off: set OMP_WAIT_POLICY yourself).
- WARMUP: `minires train` on the CPU starts a second process that compiles the first epoch's
  kernels into Numba's cache from the epoch's end backwards while the training compiles them from
  its start (minires/warmup.py). Off: MINIRES_WARMUP=0.

Switches (an environment variable for the start value, a function to change it at run time):
- kernels: MINIRES_KERNELS / set_kernels("numba" | "numpy"), the CPU kernels' implementation.
- winograd: MINIRES_WINOGRAD / set_winograd(True | False), whether convolutions may run Winograd.
- plans: MINIRES_PLANS / set_plans("fast" | "reference"): "reference" runs every convolution with
  the reference plan (im2col + GEMM), the plain version a student reads.
"""
import ctypes
import os
import sys
import threading

__all__ = ["set_kernels", "get_kernels", "set_winograd", "get_winograd", "set_plans", "get_plans",
           "CPU_BACKENDS", "PLAN_MODES", "MALLOC_TUNED", "WARMUP",
           "OPENMP_LOADED_BEFORE", "BLAS_ON_OPENMP", "OPENBLAS_TIMEOUT_SET", "openblas"]

CPU_BACKENDS = ("numpy", "numba")
PLAN_MODES = ("fast", "reference")


def _env_choice(name, default, choices):
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def openblas():
    """NumPy's OpenBLAS as a ctypes library, found among the libraries mapped into this process (once
    NumPy is loaded; Linux), or None: NumPy not loaded yet, another BLAS, another system. Its
    ``integer``: ctypes.c_int64 where its configuration says USE64BITINT (NumPy's), else c_int32; its
    ``config()``: that configuration, bytes."""
    global _openblas
    if _openblas is None and "numpy" in sys.modules:
        _openblas = _find_openblas() or False
    return _openblas or None


_openblas = None
_CONFIG_NAMES = ("openblas_get_config", "scipy_openblas_get_config64_", "scipy_openblas_get_config",
                 "openblas_get_config64_")  # as plain OpenBLAS and NumPy's scipy-openblas builds name it


def _mapped_files():
    """The paths of the files mapped into this process, from /proc/self/maps (Linux; elsewhere none)."""
    try:
        with open("/proc/self/maps") as f:
            return {row[5].rstrip("\n") for row in (line.split(maxsplit=5) for line in f) if len(row) == 6}
    except OSError:
        return set()


def _find_openblas():
    paths = [path for path in _mapped_files() if "openblas" in os.path.basename(path).lower()]
    numpy_dir = os.path.dirname(os.path.abspath(sys.modules["numpy"].__file__))
    numpys = (numpy_dir + os.sep, numpy_dir + ".libs" + os.sep)  # its own, or its wheel's bundled copy
    for path in sorted(paths, key=lambda path: (not path.startswith(numpys), path)):  # NumPy's first
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same library, not a second copy
        except OSError:
            continue
        config = next((getattr(lib, n) for n in _CONFIG_NAMES if hasattr(lib, n)), None)
        if config is not None:
            config.restype, config.argtypes = ctypes.c_char_p, []
            lib.config = config
            lib.integer = ctypes.c_int64 if b"USE64BITINT" in config() else ctypes.c_int32
            return lib
    return None


def _openblas_threads_timeout():
    """Set OPENBLAS_THREAD_TIMEOUT=4 unless the user set it; where NumPy's OpenBLAS has already read
    its environment, have it read it again and restart its threads. -> whether the timeout is in effect."""
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return False
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
    if "numpy" not in sys.modules:  # OpenBLAS reads it when NumPy loads it
        return True
    lib = openblas()
    if lib is None or not all(hasattr(lib, f) for f in ("openblas_read_env", "blas_thread_shutdown_")):
        return False
    if threading.active_count() > 1:  # another thread may be inside a GEMM: its threads must not stop
        return False
    lib.openblas_read_env()
    lib.blas_thread_shutdown_()
    return True


# --- made at import --------------------------------------------------------------------------
OPENBLAS_TIMEOUT_SET = _openblas_threads_timeout()


def _tune_malloc():
    """Raise glibc's mmap and trim thresholds; True when glibc took them (Linux with glibc only)."""
    if _env_choice("MINIRES_MALLOC", "tuned", ("tuned", "default")) == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: other C libraries' mallopt differs or does nothing
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt's parameter numbers (malloc.h)
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 2 ** 31 - 1))


def _openmp_loaded():
    """Whether GNU OpenMP (libgomp) is already loaded in this process (Linux; elsewhere False)."""
    return any("libgomp" in os.path.basename(path) for path in _mapped_files())


def _threads():
    """Put Numba on its OpenMP layer and NumPy's OpenBLAS on the same OpenMP threads (blas_pool.py)
    where both can; else the passive wait policy, and workqueue where GNU OpenMP came first.
    -> (whether BLAS runs on OpenMP's threads, whether GNU OpenMP was loaded before with its own policy)"""
    loaded_before = _openmp_loaded() and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
    chosen = os.environ.get("NUMBA_THREADING_LAYER")
    lib = openblas()
    share = (chosen in (None, "omp") and lib is not None and blas_pool.has_callback(lib)
             and sys.platform.startswith("linux") and sys.maxsize > 2 ** 32
             and not any(v in os.environ for v in ("OMP_DYNAMIC", "OMP_THREAD_LIMIT")))  # all jobs at once
    gomp = None
    if share:
        already = "numba.np.ufunc.omppool" in sys.modules  # bound before: maybe not to the global scope's
        try:
            from numba.np.ufunc import omppool  # noqa: F401  loads and binds GNU OpenMP; starts no thread
            gomp = blas_pool.libgomp(already)
        except (ImportError, OSError):  # no libgomp on this machine
            pass
    if gomp is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if chosen is None:
        first = "workqueue" if loaded_before and gomp is None else "omp"
        numba.config.THREADING_LAYER_PRIORITY = [first] + [n for n in ("omp", "workqueue", "tbb") if n != first]
        numba.config.THREADING_LAYER = "omp" if gomp is not None else "default"  # default: the first that loads
    try:
        return gomp is not None and blas_pool.install(lib, gomp), loaded_before
    except Exception:  # noqa: BLE001  (a failed compile or symbol lookup: BLAS keeps its own threads)
        return False, loaded_before


MALLOC_TUNED = _tune_malloc()
import numba  # noqa: E402  (after the settings above: it loads NumPy)
from . import blas_pool  # noqa: E402
BLAS_ON_OPENMP, OPENMP_LOADED_BEFORE = _threads()

WARMUP = _env_choice("MINIRES_WARMUP", "1", ("0", "1")) == "1"

# --- switches --------------------------------------------------------------------------------
_settings = {
    "kernels": _env_choice("MINIRES_KERNELS", "numba", CPU_BACKENDS),
    "winograd": _env_choice("MINIRES_WINOGRAD", "1", ("0", "1")) == "1",
    "plans": _env_choice("MINIRES_PLANS", "fast", PLAN_MODES),
}


def set_kernels(name):
    """Select the CPU kernels' implementation: "numba" (the default) or "numpy" (the reference)."""
    if name not in CPU_BACKENDS:
        raise ValueError(f"set_kernels: expected one of {CPU_BACKENDS}, got {name!r}")
    _settings["kernels"] = name


def get_kernels():
    """The name of the CPU kernels' implementation in use."""
    return _settings["kernels"]


def set_winograd(enabled):
    """Let stride-1 3x3 convolutions run Winograd F(4x4, 3x3) where it pays (True, the default), or
    never (False): slower, closer to exact in float32."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_winograd: expected True or False, got {enabled!r}")
    _settings["winograd"] = enabled


def get_winograd():
    """Whether stride-1 3x3 convolutions may run Winograd F(4x4, 3x3)."""
    return _settings["winograd"]


def set_plans(mode):
    """"fast" (the default): each convolution runs the plan its shape favours; "reference": every
    convolution runs the reference plan, im2col + GEMM (minires/plans/im2col_gemm.py)."""
    if mode not in PLAN_MODES:
        raise ValueError(f"set_plans: expected one of {PLAN_MODES}, got {mode!r}")
    _settings["plans"] = mode


def get_plans():
    """"fast" or "reference": see set_plans."""
    return _settings["plans"]
