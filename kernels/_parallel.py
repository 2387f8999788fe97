"""Parallel loops whose body compiles once, as an ordinary serial Numba function.

With ``@njit(parallel=True)`` Numba makes a ``prange`` loop's body a function of its own: it types
the body twice (in the kernel, then alone), compiles it, links it into the kernel and optimizes the
whole again. For the large vectorized bodies of the Winograd transforms that is two to three times
the compile of the same loops without ``prange``, and a first run on an empty cache pays it for
every kernel. Here the body is a plain ``@njit`` function doing one chunk of the work,

    body(*args, chunk, chunks)        e.g. channels chunk*C//chunks up to (chunk + 1)*C//chunks

and ``parallel_chunks(body, chunks, *args)`` runs chunk = 0 .. chunks-1 on Numba's threads (the
pool that also runs OpenBLAS's jobs, see minires/blas_pool.py) from one small ``prange`` loop that
calls the body through its address: that loop's compile never sees the body's code, and the body
compiles and caches on its own like any serial kernel. The loop compiles once per tuple of argument
types.
"""
from numba import int64, njit, prange, typeof, types
from numba._dispatcher import compute_fingerprint
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["parallel_chunks"]

_addresses = {}  # (body, its arguments' types) -> the address of its compiled code


@intrinsic
def _call(typingctx, address, args):
    """Call the Numba-compiled function at ``address`` (an integer) with the tuple ``args`` spread,
    in Numba's own calling convention, for a function that returns None. True where it raised."""
    def codegen(context, builder, signature, values):
        argtypes = list(args.types)
        function = context.call_conv.get_function_type(types.none, argtypes)
        pointer = builder.inttoptr(values[0], function.as_pointer())
        status, _ = context.call_conv.call_function(builder, pointer, types.none, argtypes,
                                                    cgutils.unpack_tuple(builder, values[1]))
        return status.is_error
    return types.boolean(address, args), codegen


@njit(cache=True, parallel=True)
def _chunks_loop(address, chunks, args):
    """The number of chunks whose call raised (a parallel loop cannot pass an exception on)."""
    failed = 0
    for chunk in prange(chunks):
        failed += _call(address, args + (int64(chunk), chunks))
    return failed


def parallel_chunks(body, chunks, *args):
    """Run body(*args, chunk, chunks) for chunk in range(chunks) on Numba's threads. ``body`` is an
    @njit function that returns None; it is compiled (or loaded from the cache) for these
    arguments' types, as a call from Python would. Where a chunk raised, the chunks run again one
    after the other from Python, and the first exception comes out."""
    key = body, compute_fingerprint(args)  # the key Numba's dispatchers file argument types under
    address = _addresses.get(key)
    if address is None:
        signature = tuple(typeof(a) for a in args) + (int64, int64)
        body.compile(signature)
        compiled = body.overloads[signature]
        address = _addresses[key] = compiled.library.get_pointer_to_function(compiled.fndesc.mangled_name)
    if _chunks_loop(address, chunks, args):
        for chunk in range(chunks):  # again from Python, where the exception comes out
            body(*args, chunk, chunks)
