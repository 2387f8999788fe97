"""minires.data.prefetch: the batches, in order, on the device; with a copier, the next batch's copy
started before a batch is yielded, the compute side waiting for each copy, and no pinned buffer
refilled while a copy may still read it. A fake device whose copies happen as late as they may (when
an event is waited for) makes any of those mistakes show as wrong values or a failed assertion."""
import importlib

import numpy as np
import pytest

import minires
from minires.data import ArrayDataset, DataLoader, prefetch
from minires.device import Device, register_device

import testdev

NAME = "recording"


class FakeArray(np.ndarray):
    """The recording device's arrays."""
    __test__ = False


class Pinned(np.ndarray):
    """A pinned buffer that refuses a write while a started copy has not yet read it."""

    def __setitem__(self, key, value):
        busy = [e for e in Copier.current.pending if np.shares_memory(e.source, self)]
        assert not busy, "a pinned buffer was refilled while a copy from it was still pending"
        super().__setitem__(key, value)


class Event:
    def __init__(self, source, target):
        self.source, self.target = source, target


class Copier:
    """Copies that happen only when their event is waited for (by the compute side or the host),
    with a log of every call."""
    current = None

    def __init__(self):
        self.log, self.pending, self.batch = [], [], 0
        Copier.current = self

    def pinned(self, shape, dtype):
        self.log.append(("pinned", shape))
        return np.empty(shape, dtype).view(Pinned)

    def copy(self, host):
        target = np.full(host.shape, -1, host.dtype).view(FakeArray)  # -1: a batch yielded before its copy
        event = Event(host, target)
        self.pending.append(event)
        self.log.append(("copy", event))
        return target, event

    def _finish(self, event):
        if event in self.pending:
            event.target.view(np.ndarray)[...] = event.source
            self.pending.remove(event)

    def wait(self, event):
        self.log.append(("wait", event))
        self._finish(event)

    def synchronize(self, event):
        self.log.append(("synchronize", event))
        self._finish(event)


@pytest.fixture(scope="module", autouse=True)
def device():
    register_device(Device(NAME, FakeArray, np, to_host=lambda a: a.view(np.ndarray), from_host=None, copier=Copier))
    testdev.install()


def loader(n=7, batch_size=3):
    images = np.arange(n * 2 * 2 * 2, dtype=np.float32).reshape(n, 2, 2, 2)
    return DataLoader(ArrayDataset(images, np.arange(n) % 3, ["a", "b", "c"]), batch_size)


def test_batches_come_in_order_on_the_device_after_their_copies():
    batches = list(loader())
    got = list(prefetch(loader(), NAME))
    assert len(got) == len(batches) == 3
    for (x, y), (hx, hy) in zip(got, batches):
        assert type(x.data) is FakeArray and type(y.data) is FakeArray and x.device == NAME
        np.testing.assert_array_equal(x.numpy(), hx.numpy())
        np.testing.assert_array_equal(y.numpy(), hy.numpy())


def test_the_next_copy_starts_before_a_batch_is_yielded_and_buffers_alternate():
    log = []
    for k, _ in enumerate(prefetch(loader(), NAME)):
        log = Copier.current.log
        log.append(("yield", k))
    steps = [(what, arg if what in ("pinned", "yield") else None) for what, arg in log]
    staged = [("pinned", (3, 2, 2, 2)), ("copy", None), ("pinned", (3,)), ("copy", None)]
    copies, waits, syncs = [("copy", None)] * 2, [("wait", None)] * 2, [("synchronize", None)] * 2
    assert steps == (staged + staged  # batches 0 and 1 (images, labels) staged in two sets of buffers
                     + waits + [("yield", 0)]
                     + syncs + copies  # batch 2 (shorter) in batch 0's buffers, once batch 0's copy is done
                     + waits + [("yield", 1)]
                     + waits + [("yield", 2)]
                     + syncs + syncs)  # the end: no pinned buffer is given back while a copy may read it
    copied = [arg for what, arg in log if what == "copy"]
    waited = [arg for what, arg in log if what == "wait"]
    assert waited == copied  # each batch waited for by the compute side, in order
    assert [arg for what, arg in log if what == "synchronize"] == copied[:2] + copied[4:] + copied[2:4]


def test_a_pinned_buffer_is_not_refilled_during_its_copy(monkeypatch):
    """The check above can fail: one set of buffers would refill batch 0's before its copy is done."""
    module = importlib.import_module("minires.data.prefetch")  # minires.data.prefetch is also the function
    monkeypatch.setattr(module, "SLOTS", 1)
    monkeypatch.setattr(module._Slot, "finish", lambda slot, copier: None)
    with pytest.raises(AssertionError, match="refilled while a copy from it was still pending"):
        list(prefetch(loader(), NAME))


def test_a_loop_left_early_waits_for_the_copies_under_way():
    batches = prefetch(loader(), NAME)
    next(batches)  # batch 1's copy has started
    assert Copier.current.pending
    batches.close()  # as a training loop stopped by an error does
    assert not Copier.current.pending


def test_on_the_cpu_the_batches_pass_through():
    batches = [(minires.tensor(np.ones(2)), minires.tensor(np.zeros(2)))]
    (x, y), = prefetch(iter(batches), "cpu")
    assert x is batches[0][0] and y is batches[0][1]


def test_a_device_without_a_copier_gets_plain_copies():
    got = list(prefetch(loader(), testdev.NAME))
    for (x, y), (hx, hy) in zip(got, loader()):
        assert type(x.data) is testdev.TestArray
        np.testing.assert_array_equal(x.numpy(), hx.numpy())


def test_an_empty_loader_yields_nothing():
    assert list(prefetch(iter([]), NAME)) == []
