"""Collectives on CuPy arrays over NCCL (cupy.cuda.nccl), GPU to GPU, one GPU per rank.

NCCL needs every rank to build its communicator from one unique id: rank 0 makes it and MPI hands it
out; that is all MPI does here. Each collective is queued on the current CUDA stream, after the
kernels that produce its input, and a CUDA event recorded behind it tells when it is done: the
host polls the event with the same deadline as the MPI collectives (Work), and on a timeout the
communicator is aborted (ncclCommAbort), which frees the GPU from a collective that cannot finish,
before the job is taken down through MPI.

Not run by the tests of this project, which have no GPU: written from CuPy's and NCCL's documentation.
"""
import numpy as np

from .work import Work


def use_local_gpu(local_rank):
    """Make GPU local_rank (mod the GPUs this machine has) the current one, so that one rank runs per
    GPU: the arrays a rank puts on "cuda" then land on its own GPU. Nothing without a GPU."""
    from .. import cuda
    count = cuda.device_count()
    if count:
        import cupy
        cupy.cuda.Device(local_rank % count).use()


class NCCLBackend:
    """The collectives of one NCCL communicator over all ranks, built with ``mpi_comm`` (mpi4py),
    each returning a Work that aborts the job past ``timeout`` seconds."""

    def __init__(self, mpi_comm, timeout):
        import cupy
        from cupy.cuda import nccl
        if not nccl.available:
            raise RuntimeError("minires.distributed: CuPy cannot load NCCL (pip install nvidia-nccl-cu13)")
        uid = nccl.get_unique_id() if mpi_comm.rank == 0 else None
        self._cupy, self._nccl, self._mpi_comm, self.timeout = cupy, nccl, mpi_comm, timeout
        self.size = mpi_comm.size
        self.comm = nccl.NcclCommunicator(mpi_comm.size, mpi_comm.bcast(uid, root=0), mpi_comm.rank)

    def _queued(self, what, launch, result):
        """Run launch(stream pointer) on the current stream, and a Work done when the stream gets there."""
        stream = self._cupy.cuda.get_current_stream()
        launch(stream.ptr)
        event = stream.record()
        return Work(what, lambda: event.done, result, self.timeout, self.abort)

    def _dtype(self, a):
        name = "NCCL_" + np.dtype(a.dtype).name.upper()  # NCCL_FLOAT32, NCCL_FLOAT64, NCCL_INT64, ...
        if not hasattr(self._nccl, name):
            raise TypeError(f"minires.distributed: NCCL has no type for dtype {a.dtype}")
        return getattr(self._nccl, name)

    def all_reduce(self, a, op):
        """a (C-contiguous) <- op over the ranks' a, elementwise, in place."""
        nccl_op = getattr(self._nccl, "NCCL_" + op.upper())
        return self._queued(f"all_reduce of {a.nbytes} bytes", lambda s: self.comm.allReduce(
            a.data.ptr, a.data.ptr, a.size, self._dtype(a), nccl_op, s), a)

    def broadcast(self, a, src):
        return self._queued(f"broadcast of {a.nbytes} bytes from rank {src}", lambda s: self.comm.bcast(
            a.data.ptr, a.size, self._dtype(a), src, s), a)

    def all_gather(self, a):
        out = self._cupy.empty((self.size, *a.shape), a.dtype)
        return self._queued(f"all_gather of {a.nbytes} bytes", lambda s: self.comm.allGather(
            a.data.ptr, out.data.ptr, a.size, self._dtype(a), s), out)

    def abort(self):
        """Free the GPU from what cannot finish, then end the job through MPI."""
        self.comm.abort()
        self._mpi_comm.Abort(1)
