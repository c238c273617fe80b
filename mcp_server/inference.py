"""Model work off the event loop: one job at a time, a bounded number waiting, "busy" beyond that."""

from __future__ import annotations

from typing import Callable, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class ServerBusy(RuntimeError):
    """The queue is full; the message tells the caller to retry."""


class InferenceQueue:
    """Runs blocking model calls in a worker thread, in arrival order, one at a time.

    The network takes its inputs in turns anyway (and CPU inference uses every core), so running
    jobs side by side would only make each slower. At most `max_pending` jobs are admitted (the one
    running included); a job beyond that is refused at once with `ServerBusy`, so a burst of clients
    gets a clear answer instead of a growing wait. A refused job has not started: nothing of it ran.
    """

    def __init__(self, max_pending: int):
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.max_pending = max_pending
        self._admitted = 0
        self._turn = anyio.Lock()  # FIFO: waiters are served in arrival order

    @property
    def pending(self) -> int:
        """Jobs admitted and not finished (running or waiting)."""
        return self._admitted

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Runs `fn(*args)` in a worker thread when its turn comes.

        Raises:
            ServerBusy: `max_pending` jobs are already admitted.
        """
        if self._admitted >= self.max_pending:
            raise ServerBusy(
                f"busy: {self._admitted} requests are already queued for the emotion model (the limit is "
                f"{self.max_pending}); nothing was done with this one, so retry it in a few seconds"
            )
        self._admitted += 1
        try:
            async with self._turn:
                return await anyio.to_thread.run_sync(fn, *args)
        finally:
            self._admitted -= 1
