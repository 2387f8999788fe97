"""Work: the handle of a collective in flight, waited on with a deadline.

Every collective is started non-blocking and waited on by polling: a rank that died or hangs
otherwise leaves the others blocked in MPI or NCCL forever. Past the deadline the waiting rank
writes one line saying which collective timed out, and takes the whole job down (the backend's
abort: MPI_Abort, which the launcher turns into the end of every rank), so that no rank is left
behind, blocked.
"""
import os
import sys
import time


class Work:
    """A collective started at ``started`` (time.monotonic()); is_done() polls it (which is also what
    lets MPI make progress on it); wait() returns ``result`` once it is done, within ``timeout``
    seconds of the start, or aborts the job."""

    def __init__(self, what, is_done, result, timeout, abort):
        self.what, self.is_done, self.result = what, is_done, result
        self.timeout, self._abort = timeout, abort
        self.started = time.monotonic()

    def wait(self):
        """Block until done, sleeping between polls: from 20 us, doubling up to 1 ms, so that a
        short collective costs no more than a few polls and a long wait leaves the CPU to others."""
        pause, deadline = 20e-6, self.started + self.timeout
        while not self.is_done():
            if time.monotonic() > deadline:
                fail(f"{self.what} did not complete within {self.timeout:g} s: another rank died or hangs", self._abort)
            time.sleep(pause)
            pause = min(2 * pause, 1e-3)
        return self.result


def done(result):
    """A Work that is already complete (a collective over one process)."""
    return Work("a local collective", lambda: True, result, timeout=0, abort=None)


def fail(message, abort):
    """Write ``message`` as one line on stderr, prefixed with this rank, and end the job: abort()
    (which should not return), then this process in case it does."""
    from . import get_rank, get_world_size
    sys.stderr.write(f"minires.distributed: rank {get_rank()} of {get_world_size()}: {message}; aborting\n")
    sys.stderr.flush()
    if abort is not None:
        abort()
    os._exit(1)
