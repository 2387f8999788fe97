"""DistributedDataParallel: the same model on every rank, each on its own share of the batch, its
gradients averaged over the ranks during the backward pass (PyTorch's semantics).

With W ranks, each computing the mean loss L_r over its B samples, the gradient of the mean loss
over all W*B samples is (1/W) sum_r dL_r/dw: an all_reduce (sum) of every gradient, divided by W.
After loss.backward() every rank holds that average, so optimizer.step() keeps the parameters
identical everywhere, as they were made at wrap time (rank 0's, broadcast).

Overlap: the gradients are reduced in buckets of about bucket_cap_mb, filled with the parameters
in reverse order of registration, roughly the order in which the backward pass finishes them. A
parameter's post-accumulate-grad hook (Tensor.register_post_accumulate_grad_hook) counts it ready;
the bucket's last one copies the bucket's gradients into one flat array and starts its all_reduce
(non-blocking), and the backward pass goes on computing earlier layers' gradients meanwhile. The
last bucket's hook waits for all of them and writes the averages back into each .grad.
"""
import contextlib
import time

from ..autograd.tensor import is_grad_enabled
from ..device import array_module
from ..nn.module import Module
from . import collectives as dist


class DistributedDataParallel(Module):
    """Wraps ``module`` (its state_dict keys gain the prefix "module.", as PyTorch's).

    broadcast_buffers: rank 0's buffers (BatchNorm's running statistics) are copied to every rank
    before each forward, so that the ranks' models stay identical. Every parameter that requires a
    gradient must take part in each forward's output; one that does not is named in an error (a
    bucket would otherwise wait forever for its gradient; PyTorch's find_unused_parameters=True,
    which reduces zeros for it instead, is not implemented). last_wait_seconds: how long the last
    backward waited at its end for reductions that the backward pass had not hidden."""

    def __init__(self, module, bucket_cap_mb=25, broadcast_buffers=True):
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel: call minires.distributed.init() first")
        self.module, self.broadcast_buffers = module, broadcast_buffers
        _broadcast_coalesced([p for p in module.parameters()] + [b for b in module.buffers()])
        self._params = {p: name for name, p in module.named_parameters() if p.requires_grad}
        self._buckets = _make_buckets(list(self._params)[::-1], bucket_cap_mb * 2**20)
        self._bucket_of = {p: b for b in self._buckets for p in b.params}
        self._require_sync, self._sync = True, False
        self.last_wait_seconds = 0.0
        for p in self._params:
            p.register_post_accumulate_grad_hook(self._grad_ready)

    def forward(self, *args, **kwargs):
        unfinished = [self._params[p] for b in self._buckets if b.arrived for p in b.params if p not in b.arrived]
        if unfinished:
            raise RuntimeError(f"DistributedDataParallel: the last backward gave no gradient to {unfinished}")
        if self.broadcast_buffers:
            _broadcast_coalesced(list(self.module.buffers()))
        out = self.module(*args, **kwargs)
        self._sync = self._require_sync and is_grad_enabled()
        if self._sync:
            self._check_all_used(out)
        return out

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes of the forwards run inside accumulate each rank's own gradients, unreduced:
        gradient accumulation over several batches pays for one reduction, at the first backward
        after (outside) the block, which averages the accumulated sums."""
        previous, self._require_sync = self._require_sync, False
        try:
            yield
        finally:
            self._require_sync = previous

    def _check_all_used(self, out):
        outputs = out if isinstance(out, (tuple, list)) else (out,)
        reached = _leaves_reached([t for t in outputs if getattr(t, "_node", None) is not None])
        unused = [name for p, name in self._params.items() if p not in reached]
        if unused:
            raise RuntimeError(f"DistributedDataParallel: parameters {unused} take no part in the forward's output, "
                               "so their gradients would never be averaged; set their requires_grad=False")

    def _grad_ready(self, p):
        """Post-accumulate-grad hook: p.grad is final for this backward."""
        if not self._sync:
            return
        bucket = self._bucket_of[p]
        bucket.mark(p)
        in_flight = [b for b in self._buckets if b.work is not None]
        for b in in_flight:  # each poll lets MPI move the reductions forward
            b.work.is_done()
        if len(in_flight) == len(self._buckets):
            self._finish()

    def _finish(self):
        """Wait for every bucket's reduction, in order; .grad <- the averages."""
        start = time.perf_counter()
        for b in self._buckets:
            b.finish(dist.get_world_size())
        self.last_wait_seconds = time.perf_counter() - start


class _Bucket:
    """Parameters of one device and dtype whose gradients are reduced together, in one flat array."""

    def __init__(self, params):
        self.params = params
        self.sizes = [p.numel() for p in params]
        self.flat = array_module(params[0].data).empty(sum(self.sizes), params[0].dtype)
        self.arrived, self.work = set(), None

    def mark(self, p):
        """p's gradient is ready; with the bucket's last, start its all_reduce."""
        self.arrived.add(p)
        if len(self.arrived) == len(self.params):
            _pack(self.flat, [p.grad.data for p in self.params])
            self.work = dist.all_reduce(self.flat, async_op=True)

    def finish(self, world_size):
        self.work.wait()
        self.flat /= world_size
        _unpack(self.flat, [p.grad.data for p in self.params])
        self.arrived, self.work = set(), None


def _make_buckets(params, cap_bytes):
    """Consecutive runs of ``params`` of one device and dtype, each closed once it holds cap_bytes."""
    buckets, current = [], []
    for p in params:
        if current and (_kind(p) != _kind(current[0]) or sum(q.data.nbytes for q in current) >= cap_bytes):
            buckets.append(_Bucket(current))
            current = []
        current.append(p)
    return buckets + ([_Bucket(current)] if current else [])


def _kind(t):
    return type(t.data), t.dtype


def _pack(flat, arrays):
    """flat <- the arrays, raveled one after another."""
    offset = 0
    for a in arrays:
        flat[offset:offset + a.size] = a.reshape(-1)
        offset += a.size


def _unpack(flat, arrays):
    """Each array <- its stretch of flat, in place (the inverse of _pack)."""
    offset = 0
    for a in arrays:
        a[...] = flat[offset:offset + a.size].reshape(a.shape)
        offset += a.size


def _broadcast_coalesced(tensors):
    """Every tensor's data <- rank 0's, in place: one broadcast per device and dtype, not one per tensor."""
    groups = {}
    for t in tensors:
        groups.setdefault(_kind(t), []).append(t.data)
    for arrays in groups.values():
        flat = array_module(arrays[0]).empty(sum(a.size for a in arrays), arrays[0].dtype)
        _pack(flat, arrays)
        dist.broadcast(flat, src=0)
        _unpack(flat, arrays)


def _leaves_reached(outputs):
    """The leaf tensors that the graphs of ``outputs`` (Tensors) reach: those that backward gives a gradient."""
    leaves, seen, stack = set(), set(), [t._node for t in outputs]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for t in node.inputs:
            if t is not None and t._node is None:
                leaves.add(t)
            elif t is not None:
                stack.append(t._node)
    return leaves
