"""Model work off the event loop: one job at a time, a bounded number waiting, "busy" beyond that.

A job stops between windows when its caller goes away (an MCP cancel, a client disconnect, the
server shutting down) or its time budget runs out: the worker thread checks its `Job` each time a
window has been read, and the next job starts only once the stopped one has let go of the model.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
import time
import weakref
from typing import Callable, TypeVar

import anyio
import anyio.to_thread

from emotion_tool.engine.interrupt import interruptible

T = TypeVar("T")

_log = logging.getLogger(__name__)
_QUEUES: "weakref.WeakSet[InferenceQueue]" = weakref.WeakSet()  # signals are process-wide: stop_all() reaches every queue
_POLL_S = 0.02  # how often a cancelled caller looks whether its worker has stopped


class ServerBusy(RuntimeError):
    """The queue is full or the server is stopping; the message tells the caller what to do."""


class JobCancelled(RuntimeError):
    """A job stopped between windows: its caller went away, the server stopped, or its time ran out."""


class _Turns:
    """Who holds the model: jobs in arrival order, the first holding it, passing it on between windows.

    A job that has read a window and sees others waiting moves to the back of the line, so a short
    request behind a long trace waits for one window, not for the whole trace. Used from worker
    threads only.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._line: deque[Job] = deque()

    def join(self, job: "Job") -> None:
        with self._cv:
            self._line.append(job)

    def wait_turn(self, job: "Job") -> None:
        """Blocks until `job` holds the model; raises `JobCancelled` if it is cancelled meanwhile."""
        with self._cv:
            while job not in self._line or self._line[0] is not job:
                if job not in self._line:  # it left the line before its worker started
                    raise JobCancelled(job.reason)
                if job.cancelled:
                    self._line.remove(job)
                    self._cv.notify_all()
                    raise JobCancelled(job.reason)
                self._cv.wait(_POLL_S)

    def pass_turn(self, job: "Job") -> None:
        """Between windows: lets the jobs waiting go first, then waits for the turn again."""
        with self._cv:
            if len(self._line) < 2 or self._line[0] is not job:
                return
            self._line.remove(job)
            self._line.append(job)
            self._cv.notify_all()
        self.wait_turn(job)

    def leave(self, job: "Job") -> None:
        with self._cv:
            if job in self._line:
                self._line.remove(job)
            self._cv.notify_all()


class Job:
    """What a running model call checks between windows (`check`), from its worker thread."""

    def __init__(self, time_budget_s: float | None, turns: _Turns | None = None):
        self._stop = threading.Event()
        self._turns = turns
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

    def check_stop(self) -> None:
        """Inside an encoder pass (`emotion_tool.engine.interrupt`): raises `JobCancelled` once the job
        should stop; never waits for a turn."""
        if self.deadline is not None and time.monotonic() > self.deadline and not self.cancelled:
            self.check(more_to_do=False)
        if self._stop.is_set():
            raise JobCancelled(self.reason)

    def check(self, *, more_to_do: bool = True) -> None:
        """Between windows: raises `JobCancelled` once the job should stop, and (with `more_to_do`) lets
        waiting jobs go first."""
        if self.deadline is not None and time.monotonic() > self.deadline and not self.cancelled:
            self.cancel(
                f"the request ran past its time budget of {self.time_budget_s:g} s and was stopped; ask for less work "
                "(a shorter recording, no trace or a larger hop_s), or restart the server with a larger --time-budget"
            )
        if self._stop.is_set():
            raise JobCancelled(self.reason)
        if self._turns is not None and more_to_do:
            self._turns.pass_turn(self)
            if self._stop.is_set():
                raise JobCancelled(self.reason)


class InferenceQueue:
    """Runs blocking model calls in worker threads, one holding the model at a time, taking turns by window.

    The network takes its inputs in turns anyway (and CPU inference uses every core), so running
    windows side by side would only make each slower. Jobs start in arrival order; between windows
    a running job lets the waiting ones go first (`Job.check`), so one long trace cannot keep a
    short request waiting for more than a window. At most `max_pending` jobs are admitted (the
    running ones included); a job beyond that is refused at once with `ServerBusy`, so a burst of
    clients gets a clear answer instead of a growing wait. A refused job has not started.
    """

    def __init__(self, max_pending: int, *, time_budget_s: float | None = None):
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if time_budget_s is not None and not time_budget_s > 0:
            raise ValueError(f"time_budget_s must be positive (or None for no budget), got {time_budget_s}")
        self.max_pending = max_pending
        self.time_budget_s = time_budget_s
        self._admitted = 0
        self._turns = _Turns()
        self._running: set[Job] = set()
        self._closed = False
        _QUEUES.add(self)

    @property
    def closed(self) -> bool:
        """Whether the queue refuses new jobs for good (the server is stopping)."""
        return self._closed

    @property
    def pending(self) -> int:
        """Jobs admitted and not finished (running or waiting)."""
        return self._admitted

    async def run(self, fn: Callable[[Job], T], *, within_passes: bool = False) -> T:
        """Runs `fn(job)` in a worker thread when its turn comes; `fn` calls `job.check()` between windows.

        With `within_passes` the job may also stop inside an encoder pass, after any layer (a cancelled
        analysis then stops within a fraction of a second, not at the end of a 30-s window's pass);
        leave it off for work whose state must not be left half done (a streaming session's segmenter).

        If the calling task is cancelled, the job is told to stop and the call waits (shielded)
        until the worker has stopped, so the model is free when the cancellation goes on.

        Raises:
            ServerBusy: `max_pending` jobs are already admitted, or the server is stopping.
            JobCancelled: the job ran past its time budget, or the server is stopping.
        """
        if self._closed:
            raise ServerBusy("the server is shutting down; nothing was done with this request, retry it once it is back")
        if self._admitted >= self.max_pending:
            raise ServerBusy(
                f"busy: {self._admitted} requests are already queued for the emotion model (the limit is "
                f"{self.max_pending}); nothing was done with this one, so retry it in a few seconds"
            )
        self._admitted += 1
        job = Job(self.time_budget_s, self._turns)
        finished = threading.Event()
        self._turns.join(job)  # the place in line is taken now, in arrival order
        self._running.add(job)

        started = threading.Event()

        def call() -> T:
            started.set()
            try:
                self._turns.wait_turn(job)
                job.check()
                if not within_passes:
                    return fn(job)
                with interruptible(job.check_stop):
                    return fn(job)
            except JobCancelled:
                _log.warning("stopped a model call at its next window: %s", job.reason)
                raise
            finally:
                self._turns.leave(job)
                finished.set()

        try:
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            job.cancel("the caller went away")
            if not started.is_set():  # its worker may never start: give up its place now
                self._turns.leave(job)
            else:
                with anyio.CancelScope(shield=True):
                    while not finished.is_set():  # the worker stops at its next window
                        await anyio.sleep(_POLL_S)
            raise
        finally:
            self._running.discard(job)
            self._admitted -= 1


def jobs_admitted() -> int:
    """Jobs admitted and not finished (running or waiting), over every queue of this process."""
    return sum(queue.pending for queue in list(_QUEUES))


def stop_all(reason: str = "the server is shutting down; retry the request once it is back") -> None:
    """Closes every queue of this process: new jobs are refused, running ones stop at their next window.

    Safe to call from a signal handler (it only sets flags).
    """
    for queue in list(_QUEUES):
        queue._closed = True
        for job in list(queue._running):
            job.cancel(reason)
