"""minires.distributed: training on many processes, one per core group or GPU, on one machine or many.

    mpiexec -n 4 python train.py          (or srun, or mpiexec -f hostfile: see the README)

    import minires.distributed as dist
    dist.init()                                        # rank and world size from MPI; alone: 1
    model = dist.DistributedDataParallel(model)        # same weights everywhere, gradients averaged
    sampler = minires.data.DistributedSampler(len(dataset))   # each rank its own shard
    model = dist.convert_sync_batchnorm(model)         # optional: batch statistics over all ranks

The collectives (all_reduce, broadcast, all_gather, barrier) work on arrays: NumPy arrays over
MPI (mpi4py), CuPy arrays over NCCL, chosen by the array's device (collectives.py). Each is started
non-blocking and waited on with a deadline (work.py), so that a rank that dies or hangs ends the job
with one line instead of leaving the others blocked forever. Modules: collectives.py (the process
group and the collectives), mpi.py and nccl.py (the backends), work.py (waiting with a deadline),
ddp.py (DistributedDataParallel), sync_batchnorm.py (SyncBatchNorm and its op).
"""
from .collectives import (DEFAULT_TIMEOUT, abort, all_gather, all_reduce, barrier, broadcast, broadcast_object,
                          get_local_rank, get_rank, get_world_size, init, is_initialized, launched_world_size)
from .ddp import DistributedDataParallel
from .sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm

__all__ = ["init", "is_initialized", "launched_world_size", "get_rank", "get_world_size", "get_local_rank", "barrier",
           "all_reduce", "broadcast", "all_gather", "broadcast_object", "abort", "DEFAULT_TIMEOUT", "DistributedDataParallel", "SyncBatchNorm",
           "convert_sync_batchnorm"]
