"""Batches moved to a device one step ahead: batch i+1's host-to-device copy runs while batch i computes.

    for x, y in prefetch(loader, "cuda"): ...

A GPU copies host memory on its own (its copy engines) only from pinned, page-locked, host memory,
and only overlaps the copy with compute when the copy is on a stream other than the compute
stream. So on a device with asynchronous copies (a ``copier`` on its minires.device.Device, as the
GPU has), each batch is staged into a pinned buffer and copied on the copier's stream; the compute
stream waits for that copy's event before it touches the batch. Two pinned buffers alternate (double
buffering): batch i+2 is staged into batch i's buffer only once the host has seen batch i's copy
finish reading it. A device without a copier gets plain synchronous copies; on the CPU nothing moves.

A copier (``device.copier()`` makes one per pass) has four methods:
    pinned(shape, dtype)  -> a host array the device copies from asynchronously
    copy(host)            -> (device array, event): starts the copy of host (a pinned array)
    wait(event)           the compute stream waits for the event (the host does not)
    synchronize(event)    the host waits for the event
"""
from ..autograd.tensor import Tensor
from ..device import get_device, to_device

__all__ = ["prefetch"]

SLOTS = 2  # pinned buffers per batch tensor: one being copied from while the next is filled


def prefetch(batches, device):
    """Yield each batch of ``batches`` (tuples of host Tensors) as a tuple of Tensors on ``device``,
    in order; with the device's copier the next batch's copy is started before a batch is yielded."""
    target = get_device(device)
    if target.copier is None:
        for batch in batches:
            yield tuple(t if t.device == target.name else Tensor(to_device(t.data, target.name)) for t in batch)
        return
    copier, slots = target.copier(), [_Slot() for _ in range(SLOTS)]
    try:
        pending = None
        for i, batch in enumerate(batches):
            started = slots[i % SLOTS].start(copier, batch)
            if pending is not None:
                yield _ready(copier, pending)
            pending = started
        if pending is not None:
            yield _ready(copier, pending)
    finally:  # at the end, or a loop left early: the pinned buffers go back only once no copy reads them
        for slot in slots:
            slot.finish(copier)


def _ready(copier, started):
    """The batch of ``started`` ((device array, event) per tensor), once the compute stream waits for it."""
    for _, event in started:
        copier.wait(event)
    return tuple(Tensor(a) for a, _ in started)


class _Slot:
    """One set of pinned buffers (one per tensor of a batch) and the events of the copies last made from them."""

    def __init__(self):
        self.buffers, self.events = [], []

    def start(self, copier, batch):
        """Stage ``batch`` in this slot's buffers and start its copies: [(device array, event)]."""
        self.finish(copier)
        hosts = [t.data for t in batch]
        if len(self.buffers) != len(hosts):
            self.buffers = [None] * len(hosts)
        started = []
        for k, host in enumerate(hosts):
            self.buffers[k] = _fitting(copier, self.buffers[k], host)
            staged = self.buffers[k][:host.shape[0]] if host.ndim else self.buffers[k]
            staged[...] = host
            started.append(copier.copy(staged))
        self.events = [event for _, event in started]
        return started

    def finish(self, copier):
        """Wait (on the host) until the copies last made from this slot's buffers have read them."""
        for event in self.events:
            copier.synchronize(event)
        self.events = []


def _fitting(copier, buffer, host):
    """``buffer`` where its leading rows can hold ``host`` (the last batch may be shorter), else a new
    pinned buffer of host's shape and dtype."""
    if (buffer is not None and buffer.dtype == host.dtype and buffer.ndim == host.ndim
            and buffer.shape[1:] == host.shape[1:] and buffer.shape[:1] >= host.shape[:1]):
        return buffer
    return copier.pinned(host.shape, host.dtype)
