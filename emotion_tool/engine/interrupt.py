"""Stopping a model call inside an encoder pass, not only between windows.

One padded window is a whole 30-s encoder pass: seconds on a CPU for the published model. A caller
that must stop sooner (an MCP client that cancelled or went away) runs the call inside
`interruptible(check)`; the encoder calls `checkpoint()` after each of its layers, and `check` raises
whatever exception stops the call. Outside `interruptible` a checkpoint costs one attribute lookup.
The check belongs to the thread that installed it, so calls in other threads are not affected.

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["interruptible", "checkpoint"]

_local = threading.local()


@contextmanager
def interruptible(check: Callable[[], None]) -> Iterator[None]:
    """Within this block, every encoder layer of this thread ends with `check()`, which may raise to stop."""
    previous = getattr(_local, "check", None)
    _local.check = check
    try:
        yield
    finally:
        _local.check = previous


def checkpoint() -> None:
    """Called by the encoder between layers: runs this thread's check, if one is installed."""
    check = getattr(_local, "check", None)
    if check is not None:
        check()
