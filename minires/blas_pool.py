"""One thread pool: NumPy's OpenBLAS runs its parallel jobs on the OpenMP threads of Numba's kernels.

Left alone, OpenBLAS has threads of its own and Numba's parallel kernels run on GNU OpenMP's: on a
few cores the two pools take turns badly (idle threads of one spin while the other needs the cores),
worst where PyTorch loaded GNU OpenMP first with its default, spinning, wait policy. OpenBLAS 0.3.28
and later let a program run its jobs on threads of its choosing: once a callback is registered
(openblas_set_threads_callback_function), every parallel BLAS call becomes

    callback(sync, dojob, numjobs, size, jobdata, dojob_data)

which must run dojob(i, jobdata + i * size, dojob_data) for every i in range(numjobs) at the same
time (a GEMM's jobs wait for one another's packed panels: one after the other they never finish)
and return when all are done. The callback here opens an OpenMP parallel region of numjobs threads
(GOMP_parallel, the call `#pragma omp parallel num_threads(numjobs)` compiles to), whose thread t
runs job t. It is a C function, compiled by Numba from the LLVM IR below and cached like the kernels.

The region must be opened in the GNU OpenMP that Numba's kernels use: two libgomp can be loaded
(PyTorch bundles one), and jobs on the other's threads would bring back two pools. Numba's OpenMP
pool binds its calls the way the dynamic linker does, first in the process's global scope (where
PyTorch puts its libgomp), else among its own dependencies: ``libgomp`` resolves the same way.
"""
import ctypes
import os
import re

from llvmlite import binding, ir
from numba import cfunc, types
from numba.core import cgutils
from numba.extending import intrinsic

I32, I64, BYTES = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
DOJOB = ir.FunctionType(ir.VoidType(), [I32, BYTES, I32])  # OpenBLAS's job: (thread, job, dojob_data)
REGION = ir.FunctionType(ir.VoidType(), [BYTES])  # an OpenMP region's body: fn(data)
# GNU OpenMP's two functions and a mutex, under names of our own bound to their addresses (``install``)
PARALLEL, THREAD_NUM = "minires_GOMP_parallel", "minires_omp_get_thread_num"
LOCK, UNLOCK, MUTEX = "minires_mutex_lock", "minires_mutex_unlock", "minires_blas_mutex"
_mutex = ctypes.create_string_buffer(64)  # a pthread_mutex_t, zeros: PTHREAD_MUTEX_INITIALIZER (glibc)


def libgomp(loaded_before=False):
    """The GNU OpenMP library whose threads run Numba's parallel kernels (its OpenMP layer loaded), or
    None: none, or, where that layer was loaded before (``loaded_before``) and the global scope has
    another libgomp now, no telling which one it bound to."""
    from numba.np.ufunc import omppool
    found = [lib for lib in (ctypes.CDLL(None), ctypes.CDLL(omppool.__file__))  # global scope, then its own
             if hasattr(lib, "GOMP_parallel") and hasattr(lib, "omp_get_thread_num")]
    if loaded_before and len({ctypes.cast(lib.GOMP_parallel, ctypes.c_void_p).value for lib in found}) > 1:
        return None
    return found[0] if found else None


def _run_job(builder):
    """Define, in builder's module, the region body: thread t reads context = (dojob, jobdata, size,
    dojob_data) and runs dojob(t, jobdata + t * size, dojob_data)."""
    module = builder.module
    body = ir.Function(module, REGION, name=module.get_unique_name("minires_blas_job"))
    body.linkage = "internal"
    b = ir.IRBuilder(body.append_basic_block())
    thread = b.call(cgutils.get_or_insert_function(module, ir.FunctionType(I32, []), THREAD_NUM), [])
    slots = b.bitcast(body.args[0], I64.as_pointer())
    dojob, jobdata, size, data = (b.load(b.gep(slots, [ir.Constant(I32, i)])) for i in range(4))
    job = b.add(jobdata, b.mul(b.sext(thread, I64), size))
    b.call(b.inttoptr(dojob, DOJOB.as_pointer()), [thread, b.inttoptr(job, BYTES), b.trunc(data, I32)])
    b.ret_void()
    return body


@intrinsic
def _parallel_jobs(typingctx, dojob, numjobs, size, jobdata, data):
    """GOMP_parallel(run_job, &context, numjobs, 0): numjobs threads, one job each, all done on return;
    one call at a time (a job's packing buffer is OpenBLAS's per thread number, which a second team,
    from another Python thread, would share)."""
    def codegen(context, builder, signature, args):
        dojob, numjobs, size, jobdata, data = args
        module = builder.module
        mutex = module.globals.get(MUTEX) or ir.GlobalVariable(module, ir.IntType(8), name=MUTEX)
        locking = [cgutils.get_or_insert_function(module, ir.FunctionType(I32, [BYTES]), name) for name in (LOCK, UNLOCK)]
        builder.call(locking[0], [mutex])
        slots = cgutils.alloca_once(builder, I64, size=4)
        values = (builder.ptrtoint(dojob, I64), builder.ptrtoint(jobdata, I64), size, builder.sext(data, I64))
        for i, value in enumerate(values):
            builder.store(value, builder.gep(slots, [ir.Constant(I32, i)]))
        gomp_parallel = cgutils.get_or_insert_function(
            module, ir.FunctionType(ir.VoidType(), [REGION.as_pointer(), BYTES, I32, I32]), PARALLEL)
        builder.call(gomp_parallel, [_run_job(builder), builder.bitcast(slots, BYTES), numjobs, ir.Constant(I32, 0)])
        builder.call(locking[1], [mutex])
        return context.get_dummy_value()
    return types.void(types.voidptr, types.int32, types.uint64, types.voidptr, types.int32), codegen


def _callback(sync, dojob, numjobs, size, jobdata, data):
    _parallel_jobs(dojob, numjobs, size, jobdata, data)  # every call waits for its jobs, so `sync` is moot


CALLBACK = types.void(types.int32, types.voidptr, types.int32, types.uint64, types.voidptr, types.int32)
_installed = []  # the compiled callback, kept alive while OpenBLAS holds its address


SETTERS = ("openblas_set_threads_callback_function", "scipy_openblas_set_threads_callback_function64_",
           "scipy_openblas_set_threads_callback_function")  # as plain OpenBLAS and NumPy's builds name it


def _setter(openblas):
    """``openblas``'s (a ctypes library, see runtime.openblas) function that registers a threads
    callback, where it takes one safely: OpenBLAS 0.3.29 and later (0.3.28 added it, and could run a
    job without its buffer); else None."""
    found = re.search(rb"OpenBLAS (\d+)\.(\d+)\.(\d+)", openblas.config())
    if found is None or tuple(map(int, found.groups())) < (0, 3, 29):
        return None
    return next((getattr(openblas, name) for name in SETTERS if hasattr(openblas, name)), None)


def has_callback(openblas):
    """Whether ``openblas`` takes a threads callback safely (see _setter)."""
    return _setter(openblas) is not None


def install(openblas, gomp):
    """Register the callback with ``openblas`` (a ctypes library) to run its jobs on ``gomp``'s threads.
    -> whether it is registered (False where this OpenBLAS takes no callback safely)."""
    setter = _setter(openblas)
    if setter is None:
        return False
    libc = ctypes.CDLL(None)
    for name, function in ((PARALLEL, gomp.GOMP_parallel), (THREAD_NUM, gomp.omp_get_thread_num),
                           (LOCK, libc.pthread_mutex_lock), (UNLOCK, libc.pthread_mutex_unlock)):
        binding.add_symbol(name, ctypes.cast(function, ctypes.c_void_p).value)
    binding.add_symbol(MUTEX, ctypes.addressof(_mutex))
    compiled = cfunc(CALLBACK, cache=True)(_callback)
    setter.argtypes = [ctypes.c_void_p]
    setter(compiled.address)
    _installed[:] = [compiled]
    os.register_at_fork(after_in_child=lambda: setter(None))  # the child has no OpenMP threads: OpenBLAS's own
    return True
