"""Collectives on NumPy arrays over MPI, through mpi4py's non-blocking calls (Iallreduce, Ibcast,
Iallgather, Ibarrier) on the arrays' own memory: buffers, not pickled objects. MPI moves a
non-blocking collective forward only inside MPI calls; Work.wait's polling (Request.Test) is such
a call, and so is every is_done() that DistributedDataParallel makes while the backward goes on.
"""
import numpy as np

from .work import Work

OPS = ("sum", "max", "min", "prod")


class MPIBackend:
    """The collectives of one MPI communicator ``comm`` (mpi4py), each returning a Work that
    aborts the job past ``timeout`` seconds."""

    def __init__(self, comm, timeout):
        from mpi4py import MPI
        self._mpi, self.comm, self.timeout = MPI, comm, timeout

    def _started(self, what, request, result):
        return Work(what, request.Test, result, self.timeout, self.abort)

    def all_reduce(self, a, op):
        """a (any shape, C-contiguous) <- op over the ranks' a, elementwise, in place."""
        mpi_op = getattr(self._mpi, op.upper())
        return self._started(f"all_reduce of {a.nbytes} bytes", self.comm.Iallreduce(self._mpi.IN_PLACE, a, mpi_op), a)

    def broadcast(self, a, src):
        """a <- rank src's a, in place."""
        return self._started(f"broadcast of {a.nbytes} bytes from rank {src}", self.comm.Ibcast(a, root=src), a)

    def all_gather(self, a):
        """-> (world size, *a.shape): row r is rank r's a."""
        out = np.empty((self.comm.size, *a.shape), a.dtype)
        return self._started(f"all_gather of {a.nbytes} bytes", self.comm.Iallgather(a, out), out)

    def barrier(self):
        return self._started("barrier", self.comm.Ibarrier(), None)

    def abort(self):
        """End every rank of the job (MPI_Abort: the launcher kills the others)."""
        self.comm.Abort(1)
