"""Model work off the event loop: one job at a time, a bounded number waiting, "busy" beyond that.

A job stops between windows when its caller goes away (an MCP cancel, a client disconnect, the
server shutting down) or its time budget runs out: the worker thread checks its `Job` each time a
window has been read, and the next job starts only once the stopped one has let go of the model.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Callable, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

_log = logging.getLogger(__name__)
_QUEUES: "weakref.WeakSet[InferenceQueue]" = weakref.WeakSet()  # signals are process-wide: stop_all() reaches every queue
_POLL_S = 0.02  # how often a cancelled caller looks whether its worker has stopped


class ServerBusy(RuntimeError):
    """The queue is full or the server is stopping; the message tells the caller what to do."""


class JobCancelled(RuntimeError):
    """A job stopped between windows: its caller went away, the server stopped, or its time ran out."""


class Job:
    """What a running model call checks between windows (`check`), from its worker thread."""

    def __init__(self, time_budget_s: float | None):
        self._stop = threading.Event()
        self.reason = ""
        self.deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
        self.time_budget_s = time_budget_s

    def cancel(self, reason: str) -> None:
        if not self._stop.is_set():
            self.reason = reason
            self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        """Raises `JobCancelled` once the job should stop."""
        if self.deadline is not None and time.monotonic() > self.deadline and not self.cancelled:
            self.cancel(
                f"the request ran past its time budget of {self.time_budget_s:g} s and was stopped; ask for less work "
                "(a shorter recording, no trace or a larger hop_s), or restart the server with a larger --time-budget"
            )
        if self._stop.is_set():
            raise JobCancelled(self.reason)


class InferenceQueue:
    """Runs blocking model calls in a worker thread, in arrival order, one at a time.

    The network takes its inputs in turns anyway (and CPU inference uses every core), so running
    jobs side by side would only make each slower. At most `max_pending` jobs are admitted (the one
    running included); a job beyond that is refused at once with `ServerBusy`, so a burst of clients
    gets a clear answer instead of a growing wait. A refused job has not started: nothing of it ran.
    """

    def __init__(self, max_pending: int, *, time_budget_s: float | None = None):
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if time_budget_s is not None and not time_budget_s > 0:
            raise ValueError(f"time_budget_s must be positive (or None for no budget), got {time_budget_s}")
        self.max_pending = max_pending
        self.time_budget_s = time_budget_s
        self._admitted = 0
        self._turn = anyio.Lock()  # FIFO: waiters are served in arrival order
        self._running: set[Job] = set()
        self._closed = False
        _QUEUES.add(self)

    @property
    def pending(self) -> int:
        """Jobs admitted and not finished (running or waiting)."""
        return self._admitted

    async def run(self, fn: Callable[[Job], T]) -> T:
        """Runs `fn(job)` in a worker thread when its turn comes; `fn` calls `job.check()` between windows.

        If the calling task is cancelled, the job is told to stop and the call waits (shielded)
        until the worker has stopped, so the model is free when the cancellation goes on.

        Raises:
            ServerBusy: `max_pending` jobs are already admitted, or the server is stopping.
            JobCancelled: the job ran past its time budget.
        """
        if self._closed:
            raise ServerBusy("the server is shutting down; nothing was done with this request, retry it once it is back")
        if self._admitted >= self.max_pending:
            raise ServerBusy(
                f"busy: {self._admitted} requests are already queued for the emotion model (the limit is "
                f"{self.max_pending}); nothing was done with this one, so retry it in a few seconds"
            )
        self._admitted += 1
        try:
            async with self._turn:
                if self._closed:
                    raise ServerBusy("the server is shutting down; nothing was done with this request, retry it once it is back")
                job = Job(self.time_budget_s)
                finished = threading.Event()

                def call() -> T:
                    try:
                        job.check()
                        return fn(job)
                    except JobCancelled:
                        _log.warning("stopped a model call at its next window: %s", job.reason)
                        raise
                    finally:
                        finished.set()

                self._running.add(job)
                try:
                    return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
                except anyio.get_cancelled_exc_class():
                    job.cancel("the caller went away")
                    with anyio.CancelScope(shield=True):
                        while not finished.is_set():  # the worker stops at its next window
                            await anyio.sleep(_POLL_S)
                    raise
                finally:
                    self._running.discard(job)
        finally:
            self._admitted -= 1


def stop_all(reason: str = "the server is shutting down; retry the request once it is back") -> None:
    """Closes every queue of this process: new jobs are refused, running ones stop at their next window.

    Safe to call from a signal handler (it only sets flags).
    """
    for queue in list(_QUEUES):
        queue._closed = True
        for job in list(queue._running):
            job.cancel(reason)
