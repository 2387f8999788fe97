"""The process group (this process's rank among how many) and the collectives on arrays.

init() reads the MPI environment once; each collective then goes to the backend of its array's
device (minires.device.device_of(a).name): "cpu" (NumPy) over MPI, "cuda" (CuPy) over NCCL, made
the first time an array of that device is reduced. Over one process (no launcher, or no mpi4py)
every device's backend is SingleProcess, and the collectives give back what they were given.

Every collective is non-blocking underneath (a Work, see work.py); async_op=False waits for it.
"""
import os
import pickle

import numpy as np

from ..device import device_of
from .mpi import OPS, MPIBackend
from .nccl import NCCLBackend, use_local_gpu
from .work import done, fail

DEFAULT_TIMEOUT = 60.0  # seconds a collective may take before the job is aborted (init's timeout)
# the variables in which launchers give each process the number they started: MPICH's and Intel MPI's
# mpiexec and Slurm's srun --mpi=pmi2 (PMI_SIZE), Open MPI's mpirun (OMPI_COMM_WORLD_SIZE)
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")

_BACKENDS = {"cpu": MPIBackend, "cuda": NCCLBackend}  # device name -> backend class
_group = None


class _Group:
    def __init__(self, comm, rank, world_size, local_rank, timeout):
        self.comm, self.rank, self.world_size, self.local_rank, self.timeout = comm, rank, world_size, local_rank, timeout
        self.backends = {}  # device name -> backend, made on first use

    def backend(self, name):
        """The backend of device ``name``."""
        if name not in self.backends:
            if self.world_size == 1:
                self.backends[name] = SingleProcess()
            elif name in _BACKENDS:
                self.backends[name] = _BACKENDS[name](self.comm, self.timeout)
            else:
                raise ValueError(f"minires.distributed: no collectives for device {name!r} (only {sorted(_BACKENDS)})")
        return self.backends[name]


class SingleProcess:
    """The collectives over one process: all_reduce and broadcast leave the array as it is."""

    def all_reduce(self, a, op):
        return done(a)

    def broadcast(self, a, src):
        return done(a)

    def all_gather(self, a):
        return done(a[None].copy())

    def barrier(self):
        return done(None)

    def abort(self):
        """Nothing to end but this process, which fail() ends."""


def init(timeout=DEFAULT_TIMEOUT):
    """Join the process group the launcher started (mpiexec, srun: rank and world size from MPI),
    or make a group of one when there is none: the same script then runs alone, unchanged. Where
    the ranks have GPUs, each takes GPU local_rank of its machine. Any collective that takes longer
    than ``timeout`` seconds (a rank died or hangs) ends the job with one line on stderr.
    A second call changes nothing."""
    global _group
    if _group is not None:
        return
    if timeout <= 0:
        raise ValueError(f"init: timeout must be positive seconds, got {timeout}")
    MPI = _mpi()
    if MPI is None or MPI.COMM_WORLD.size == 1:
        _group = _Group(None, 0, 1, 0, timeout)
        return
    comm = MPI.COMM_WORLD
    local_rank = comm.Split_type(MPI.COMM_TYPE_SHARED).rank  # rank among the processes of this machine
    _group = _Group(comm, comm.rank, comm.size, local_rank, timeout)
    use_local_gpu(local_rank)


def _mpi():
    """mpi4py's MPI module, or None where it is missing or finds no MPI library: a group of one.
    (Started by a launcher without mpi4py, each process would then train alone: pip install 'minires[dist]'.)"""
    try:
        from mpi4py import MPI
        return MPI
    except (ImportError, RuntimeError):  # RuntimeError: mpi4py without an MPI library (pip install mpich)
        return None


def launched_world_size():
    """The number of processes that a launcher says it started with this one (its environment
    variables, read without starting MPI), or 1 where none says so: a process started alone."""
    for name in LAUNCHER_SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def is_initialized():
    return _group is not None


def _require(caller):
    if _group is None:
        raise RuntimeError(f"{caller}: call minires.distributed.init() first")
    return _group


def get_rank():
    """This process's rank, 0 .. world size - 1 (0 before init)."""
    return _group.rank if _group else 0


def get_world_size():
    """The number of processes (1 before init)."""
    return _group.world_size if _group else 1


def get_local_rank():
    """This process's rank among those on its machine (its GPU, one rank per GPU)."""
    return _group.local_rank if _group else 0


def _checked(caller, a):
    """a's backend, after checking that a is a C-contiguous array (MPI and NCCL reduce raw memory)."""
    group = _require(caller)
    if not hasattr(a, "flags") or not a.flags.c_contiguous:
        raise ValueError(f"{caller}: expected a C-contiguous array, got {type(a).__name__}")
    return group.backend(device_of(a).name)


def _finish(work, async_op):
    return work if async_op else work.wait()


def all_reduce(array, op="sum", async_op=False):
    """array <- op ("sum", "max", "min", "prod") over every rank's array, in place; returns array, or
    with async_op a Work whose wait() returns it."""
    if op not in OPS:
        raise ValueError(f"all_reduce: op must be one of {OPS}, got {op!r}")
    return _finish(_checked("all_reduce", array).all_reduce(array, op), async_op)


def broadcast(array, src=0, async_op=False):
    """array <- rank src's array, in place on every rank; returns array (or a Work)."""
    if not 0 <= src < get_world_size():
        raise ValueError(f"broadcast: src must be a rank in [0, {get_world_size()}), got {src}")
    return _finish(_checked("broadcast", array).broadcast(array, src), async_op)


def all_gather(array, async_op=False):
    """Every rank's array (all of one shape), stacked: a new array (world size, *array.shape) (or a Work)."""
    return _finish(_checked("all_gather", array).all_gather(array), async_op)


def barrier():
    """Wait until every rank has reached this call (over the host, MPI)."""
    _require("barrier").backend("cpu").barrier().wait()


def broadcast_object(obj, src=0):
    """Rank src's ``obj`` (anything that pickles: a path, a checkpoint, an exception) on every rank,
    as PyTorch's broadcast_object_list: its pickled bytes' length, then the bytes, over the host."""
    group = _require("broadcast_object")
    if group.world_size == 1:
        return obj
    payload = np.frombuffer(pickle.dumps(obj), np.uint8).copy() if group.rank == src else None
    size = broadcast(np.array([0 if payload is None else payload.size], np.int64), src)
    payload = broadcast(np.empty(int(size[0]), np.uint8) if payload is None else payload, src)
    return obj if group.rank == src else pickle.loads(payload.tobytes())


def abort(message):
    """Write ``message`` as one line naming this rank, and end every rank of the job (MPI_Abort):
    for what one rank meets alone, which the others would otherwise wait for until their timeout."""
    fail(message, _require("abort").backend("cpu").abort)
