"""Serving over stdio: the protocol on stdin and stdout until stdin closes, or SIGTERM or SIGINT.

The SDK's stdio transport reads stdin in a worker thread that nothing can interrupt, so a server
whose client keeps stdin open could not be stopped by a signal. Here a line is read only once the
event loop sees stdin readable, so cancelling a read ends it at once. On SIGTERM or SIGINT the
server stops taking model work and running calls stop at their next window (their callers are
told, as over HTTP); after at most `SHUTDOWN_GRACE_S` whatever is left is cancelled and the
process exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Iterator

import anyio
import anyio.to_thread

from .http import SHUTDOWN_GRACE_S
from .inference import jobs_admitted, stop_all

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

_log = logging.getLogger("emotion-mcp")
_READ_BYTES = 1 << 16
_POLL_S = 0.05  # how often shutdown looks whether the stopped calls have answered
_FLUSH_S = 0.2  # after the last call has answered: time for its answer to reach stdout


async def serve_stdio(server: "MCPServer") -> None:
    """Serves `server` over stdin and stdout until stdin closes, or SIGTERM or SIGINT arrives."""
    if sys.platform == "win32":  # no fcntl and no POSIX signals: the SDK's transport as it is
        await server.run_stdio_async()
        return
    from mcp.server.stdio import stdio_server

    lowlevel = server._lowlevel_server  # what MCPServer.run_stdio_async serves, here with a stdin a signal can stop
    with _claim_stdin() as wire, anyio.CancelScope() as everything:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, everything)
            async with stdio_server(stdin=_Lines(wire)) as (read, write):  # type: ignore[arg-type]
                await lowlevel.run(read, write, lowlevel.create_initialization_options())
            tg.cancel_scope.cancel()  # stdin closed: the client has gone
    _log.info("stopped")


async def _stop_on_signal(everything: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            _log.info("%s: stopping", signal.Signals(received).name)
            stop_all()  # new model work is refused; running calls stop at their next window and answer
            with anyio.move_on_after(SHUTDOWN_GRACE_S):
                while jobs_admitted():
                    await anyio.sleep(_POLL_S)
                await anyio.sleep(_FLUSH_S)
            everything.cancel()
            return


@contextlib.contextmanager
def _claim_stdin() -> Iterator[int]:
    """Yields a private descriptor of the protocol's stdin; fd 0 reads the null device meanwhile.

    As in the SDK's transport, children and stray reads of fd 0 then never take the protocol's bytes.
    """
    import fcntl

    wire = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        yield wire
    finally:
        os.dup2(wire, 0)
        os.close(wire)


class _Lines:
    """The lines (str, newline kept) arriving on descriptor `fd`, read when the event loop sees it readable.

    A regular file or the null device cannot be watched (and never blocks): those are read in a
    worker thread instead.
    """

    def __init__(self, fd: int):
        self._fd = fd
        self._buffer = bytearray()
        self._watchable = True

    def __aiter__(self) -> "_Lines":
        return self

    async def __anext__(self) -> str:
        searched = 0
        while (newline := self._buffer.find(b"\n", searched)) < 0:
            searched = len(self._buffer)
            data = await self._read()
            if not data:  # end of input: a last line without its newline still counts
                if not self._buffer:
                    raise StopAsyncIteration
                newline = len(self._buffer) - 1
                break
            self._buffer += data
        line = bytes(self._buffer[: newline + 1])
        del self._buffer[: newline + 1]
        return line.decode("utf-8", errors="replace")

    async def _read(self) -> bytes:
        if self._watchable:
            try:
                await anyio.wait_readable(self._fd)
            except PermissionError:  # epoll refuses regular files and the null device
                self._watchable = False
            else:
                return os.read(self._fd, _READ_BYTES)  # readable: this read does not block
        return await anyio.to_thread.run_sync(os.read, self._fd, _READ_BYTES)
