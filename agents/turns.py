"""One turn at a time per conversation thread, in this process and across processes sharing the SQLite file.

A turn reads the thread's latest checkpoint and writes new ones on top. Two turns run side by
side on one thread both start from the same checkpoint, and the one that writes last wins: the
other's turn disappears from the history without an error. So the ready agent takes a lock per
thread for the whole turn: a `threading.Lock` in the process and, for a SQLite file, a POSIX
record lock on one byte of `<db>.turns.lock` (the byte chosen by the thread id; two threads that
share a byte merely wait for each other). The operating system drops the record lock if its
process dies, so a crash never leaves a thread locked.

A speaker's profile (`agents.scale`) has the same hazard across threads: two conversations of one
speaker at once both load the profile, fold in their turn and save it, and one update is lost.
`profile_lock` serializes them the same way, per (store, speaker), on `<db>.profiles.lock`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import zlib
from contextlib import contextmanager, nullcontext
from typing import Any, AsyncIterator, Callable, Iterator

from langgraph.graph.state import CompiledStateGraph

try:
    import fcntl
except ImportError:  # Windows: turns are serialized within one process only
    fcntl = None  # type: ignore[assignment]

TURN_WAIT_S = 600.0  # how long a turn waits for the one before it on its thread before failing
_POLL_S = 0.05
_RANGE = 2**31 - 1  # lock offsets stay within a signed 32-bit file offset

_local_locks: dict[tuple[str, str, str], threading.Lock] = {}
_lock_files: dict[str, int] = {}  # one descriptor per lock file for the process's life (closing any would drop its record locks)
_registry_lock = threading.Lock()


class ConcurrentTurnError(RuntimeError):
    """A turn waited too long for another turn on the same thread; nothing of it was run or recorded."""


def _db_file(owner: Any) -> str | None:
    """The SQLite file behind a SqliteSaver or SqliteStore, else None."""
    conn = getattr(owner, "conn", None)
    if conn is None or not hasattr(conn, "execute"):
        return None
    try:
        rows = conn.execute("PRAGMA database_list").fetchall()
    except Exception:  # not a sqlite3 connection after all
        return None
    for _, name, path in rows:
        if name == "main" and path:
            return os.path.realpath(path)
    return None  # an in-memory database: one process only


def _thread_id(config: Any) -> str | None:
    if not isinstance(config, dict):
        return None
    tid = (config.get("configurable") or {}).get("thread_id")
    return None if tid is None else str(tid)


@contextmanager
def turn_lock(checkpointer: Any, thread_id: str, *, wait_s: float = TURN_WAIT_S) -> Iterator[None]:
    """Holds the lock of `thread_id` (in this process, and across processes for a SQLite file) for one turn.

    Raises:
        ConcurrentTurnError: another turn on the thread held it for longer than `wait_s`.
    """
    with _keyed_lock(checkpointer, thread_id, suffix=".turns.lock", wait_s=wait_s, too_long=_waited_too_long):
        yield


@contextmanager
def profile_lock(store: Any, speaker: str, *, wait_s: float = TURN_WAIT_S) -> Iterator[None]:
    """Holds the lock of `speaker`'s profile in `store` (in this process, and across processes for a
    SQLite store) while it is loaded, updated and saved.

    Raises:
        ConcurrentTurnError: another turn held the profile for longer than `wait_s`.
    """
    with _keyed_lock(store, speaker, suffix=".profiles.lock", wait_s=wait_s, too_long=_profile_waited_too_long):
        yield


@contextmanager
def _keyed_lock(
    owner: Any, key: str, *, suffix: str, wait_s: float, too_long: Callable[[str, float], ConcurrentTurnError]
) -> Iterator[None]:
    """A lock per (owner, key): a `threading.Lock`, and for an owner on a SQLite file a record lock
    on one byte of `<db><suffix>` (each suffix its own file, so locks of different kinds never share
    a byte: a process releasing one would release the other)."""
    db = _db_file(owner)
    local_key = (db or f"memory:{id(owner)}", suffix, key)
    with _registry_lock:
        local = _local_locks.setdefault(local_key, threading.Lock())
    if not local.acquire(timeout=wait_s):
        raise too_long(key, wait_s)
    try:
        if db is None or fcntl is None:
            yield
            return
        fd = _lock_file(db + suffix)
        offset = zlib.crc32(key.encode()) % _RANGE
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset, os.SEEK_SET)
                break
            except OSError:  # another process holds this key (or one sharing its byte)
                if time.monotonic() > deadline:
                    raise too_long(key, wait_s) from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset, os.SEEK_SET)
    finally:
        local.release()


def _lock_file(path: str) -> int:
    with _registry_lock:
        fd = _lock_files.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            _lock_files[path] = fd
        return fd


def _waited_too_long(thread_id: str, wait_s: float) -> ConcurrentTurnError:
    return ConcurrentTurnError(
        f"another turn on thread {thread_id!r} has been running for over {wait_s:g} s; this turn was not run. "
        "Wait for it to finish and send the turn again, or use another thread_id"
    )


def _profile_waited_too_long(speaker: str, wait_s: float) -> ConcurrentTurnError:
    return ConcurrentTurnError(
        f"the profile of speaker {speaker!r} has been held by another turn for over {wait_s:g} s; this turn was not "
        "planned. Send the turn again"
    )


class SerialTurnsGraph(CompiledStateGraph):
    """The compiled agent, running at most one turn at a time per thread_id (see the module's text).

    `invoke`, `ainvoke`, `stream` and `astream` take the thread's lock for the whole run; runs
    without a thread_id or checkpointer are not locked.
    """

    @property
    def perception(self) -> Any:
        """The graph's perception node (an `agents.nodes.EmotionPerceptionNode`), or None."""
        return getattr(getattr(self.builder.nodes.get("perceive"), "runnable", None), "func", None)

    def apply_refinements(self, config: Any, *, wait_s: float = 60.0) -> list[Any]:
        """Writes the thread's faithful readings still outstanding into its history (with a refinement,
        `build_empathic_agent(refine_with=...)`): the next turn does it anyway, so call this after the last
        one. Waits up to `wait_s` for readings still being computed; returns the turns written."""
        perceive = self.perception
        thread_id = _thread_id(config)
        if not hasattr(perceive, "refinements") or thread_id is None:
            return []
        turns = perceive.refinements(thread_id, wait_s=wait_s)
        if turns:
            with turn_lock(self.checkpointer, thread_id) if self.checkpointer else nullcontext():
                self.update_state(config, {"emotion_history": turns}, as_node="perceive")
        return turns

    def stream(self, input: Any, config: Any = None, **kwargs: Any) -> Iterator[Any]:  # type: ignore[override]
        thread_id = _thread_id(config)
        if thread_id is None or not self.checkpointer:
            yield from super().stream(input, config, **kwargs)
            return
        with turn_lock(self.checkpointer, thread_id):
            yield from super().stream(input, config, **kwargs)

    async def astream(self, input: Any, config: Any = None, **kwargs: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        thread_id = _thread_id(config)
        if thread_id is None or not self.checkpointer:
            async for chunk in super().astream(input, config, **kwargs):
                yield chunk
            return
        held = turn_lock(self.checkpointer, thread_id)
        await asyncio.to_thread(held.__enter__)  # waiting for the lock must not block the event loop
        try:
            async for chunk in super().astream(input, config, **kwargs):
                yield chunk
        finally:
            held.__exit__(None, None, None)
