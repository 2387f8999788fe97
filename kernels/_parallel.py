"""Parallel loops whose body compiles once, as an ordinary serial Numba function.

With ``@njit(parallel=True)`` Numba makes a ``prange`` loop's body a function of its own: it types
the body twice (in the kernel, then alone), compiles it, links it into the kernel and optimizes the
whole again. For large vectorized bodies such as the Winograd transforms' that is several times the
compile of the same loops without ``prange`` (benchmarks/RESULTS.md), and a first run on an empty
cache pays it for every kernel. Here the body is a plain ``@njit`` function doing one chunk of the work,

    body(*args, chunk, chunks)        e.g. channels chunk*C//chunks up to (chunk + 1)*C//chunks

and ``parallel_chunks(body, chunks, *args)`` runs chunk = 0 .. chunks-1 on Numba's threads (the
pool that also runs OpenBLAS's jobs, see minires/blas_pool.py). Three pieces, none of which
compiles the body's code into its own:
- _chunks_loop, the one ``prange`` loop, compiled once: it calls trampoline(data, body, chunk,
  chunks) through the trampoline's address, for every chunk;
- a trampoline per tuple of argument types, a few LLVM instructions (_trampoline): it loads the
  arguments from ``data`` and calls the body through the body's address, the arrays borrowed;
- _launch, an ordinary function compiled per tuple of argument types: it stores the arguments in
  its frame (``data``) and runs _chunks_loop with its trampoline.
The body compiles and caches on its own like any serial kernel. The flat element-wise loops
(elementwise.py, optim.py) keep a plain ``prange``: their bodies are a few operations, cheap to
compile twice, and LLVM vectorizes that loop form as it is.
"""
import numpy as np
from llvmlite import ir
from numba import get_num_threads, int64, njit, prange, typeof, types
from numba._dispatcher import compute_fingerprint
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["parallel_chunks", "chunk_count", "chunk_range"]

_addresses = {}  # (body, its arguments' types) -> the address of its compiled code
_CHUNK = (types.int64, types.int64)  # the body's last two arguments: chunk, chunks


def _call_at(context, builder, address, argtypes, values):
    """Call the Numba-compiled function at integer ``address``, which returns None, in Numba's own
    calling convention; its status (is_error: it raised)."""
    function = context.call_conv.get_function_type(types.none, argtypes)
    pointer = builder.inttoptr(address, function.as_pointer())
    status, _ = context.call_conv.call_function(builder, pointer, types.none, argtypes, values)
    return status


@intrinsic
def _call(typingctx, address, args):
    """address(*args) for a Numba-compiled function returning None; True where it raised (the
    exception itself is dropped: parallel_chunks raises it again from Python)."""
    def codegen(context, builder, signature, values):
        status = _call_at(context, builder, values[0], list(args.types), cgutils.unpack_tuple(builder, values[1]))
        return status.is_error
    return types.boolean(address, args), codegen


@intrinsic
def _stored(typingctx, args):
    """The address of a copy of ``args`` in the calling function's frame (valid until it returns)."""
    def codegen(context, builder, signature, values):
        return builder.ptrtoint(cgutils.alloca_once_value(builder, values[0]), ir.IntType(64))
    return types.int64(args), codegen


def _borrowed(context, builder, typ, value):
    """An array argument without its owner (meminfo and parent null), as Numba's own parallel loops
    hand arrays to their bodies: the views a body takes (a plane, a row) then do no reference
    counting, which would be atomic operations on one count that every thread shares. The caller
    holds the arrays for the call; the body returns nothing that could keep one."""
    if not isinstance(typ, types.Array):
        return value
    array = context.make_array(typ)(context, builder, value=value)
    array.meminfo = context.get_constant_null(types.MemInfoPointer(typ.dtype))
    array.parent = context.get_constant_null(types.pyobject)
    return array._getvalue()


@intrinsic
def _trampoline(typingctx, args):
    """The address of trampoline(data, body, chunk, chunks), a Numba-convention function defined
    here for ``args``'s types: body(*arguments, chunk, chunks) with the arguments stored at data."""
    def codegen(context, builder, signature, values):
        module = builder.module
        own = [types.int64] * 4
        function = ir.Function(module, context.call_conv.get_function_type(types.none, own),
                               module.get_unique_name("minires_chunk_trampoline"))
        function.linkage = "internal"
        b = ir.IRBuilder(function.append_basic_block())
        data, body, chunk, chunks = context.call_conv.decode_arguments(b, own, function)
        stored = b.load(b.inttoptr(data, context.get_value_type(args).as_pointer()))
        values = [_borrowed(context, b, t, v) for t, v in zip(args.types, cgutils.unpack_tuple(b, stored))]
        status = _call_at(context, b, body, list(args.types) + list(_CHUNK), values + [chunk, chunks])
        with cgutils.if_unlikely(b, status.is_error):
            context.call_conv.return_status_propagate(b, status)
        context.call_conv.return_value(b, context.get_dummy_value())
        return builder.ptrtoint(function, ir.IntType(64))
    return types.int64(args), codegen


@njit(cache=True, parallel=True)
def _chunks_loop(trampoline, data, body, failed):
    """Every chunk; failed[chunk] = whether its call raised (a parallel loop cannot pass an exception on)."""
    chunks = failed.size
    for chunk in prange(chunks):
        failed[chunk] = _call(trampoline, (data, body, int64(chunk), chunks))


@njit(cache=True)
def _launch(body, failed, args):
    """_chunks_loop over ``args`` (a tuple) with their trampoline: the part compiled per argument types."""
    _chunks_loop(_trampoline(args), _stored(args), body, failed)


def parallel_chunks(body, chunks, *args):
    """Run body(*args, chunk, chunks) for chunk in range(chunks) on Numba's threads. ``body`` is an
    @njit function that returns None; ``args`` are arrays and scalars (Numba's parallel loops take no
    tuple inside the tuple of arguments); it is compiled (or loaded from the cache) for these
    arguments' types, as a call from Python would. A chunk that raised runs again from Python, where
    its exception comes out."""
    key = body, _types_key(args)
    address = _addresses.get(key)
    if address is None:
        signature = tuple(typeof(a) for a in args) + _CHUNK
        body.compile(signature)
        compiled = body.overloads[signature]
        if compiled.signature.return_type != types.none:
            raise TypeError(f"parallel_chunks: {body.py_func.__name__} returns {compiled.signature.return_type}, "
                            f"not None (the chunks' results would be lost)")
        address = _addresses[key] = compiled.library.get_pointer_to_function(compiled.fndesc.mangled_name)
    failed = np.zeros(chunks, np.bool_)
    _launch(address, failed, args)
    if failed.any():
        for chunk in np.flatnonzero(failed):  # again from Python, where the exception comes out
            body(*args, int(chunk), chunks)
        raise RuntimeError(f"parallel_chunks: {body.py_func.__name__} raised in the parallel loop but not when "
                           f"run again")


def _types_key(args):
    """What tells the arguments' Numba types apart: the fingerprint Numba's dispatchers file them
    under, or, for values it has none for, the types themselves."""
    try:
        return compute_fingerprint(args)
    except NotImplementedError:
        return tuple(typeof(a) for a in args)


def chunk_count(n):
    """How many chunks to deal n units of work (channels, rows) out in: one per thread (Numba's
    parallel loop gives each thread one contiguous block of the chunks), each chunk allocating its
    scratch arrays once."""
    return min(n, get_num_threads())


@njit(inline="always")
def chunk_range(n, chunk, chunks):
    """(lo, hi): chunk's part of range(n), the chunks in order and as even as integers allow.
    Inlined into the kernels: Numba's disk cache does not notice edits here from the kernels' side
    (clear kernels/__pycache__ after changing it)."""
    return chunk * n // chunks, (chunk + 1) * n // chunks
