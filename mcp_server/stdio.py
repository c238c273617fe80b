"""Serving over stdio: the protocol on stdin and stdout until stdin closes, or SIGTERM or SIGINT.

The SDK's stdio transport reads stdin in a worker thread that nothing can interrupt, so a server
whose client keeps stdin open could not be stopped by a signal; and it drops a line it cannot parse,
so the request on it is never answered. Here a line is read only once the event loop sees stdin
readable, so cancelling a read ends it at once; every line is parsed by `wire.parse_frame`, and one
that is not a JSON-RPC message is answered with the JSON-RPC error for it (-32700, -32600 or
-32602, with the request's id where it can be read). A line longer than `max_message_bytes` is
skipped as it arrives, never held, and answered with -32600. On SIGTERM or SIGINT the server stops
taking model work and running calls stop at their next window (their callers are told, as over
HTTP); after at most `SHUTDOWN_GRACE_S` whatever is left is cancelled and the process exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, AsyncIterator, Iterator

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from mcp.types import INTERNAL_ERROR, INVALID_REQUEST, ErrorData, JSONRPCError, JSONRPCRequest, JSONRPCResponse

from .http import SHUTDOWN_GRACE_S
from .inference import jobs_admitted, stop_all
from .wire import FrameError, parse_frame

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

_log = logging.getLogger("emotion-mcp")
_READ_BYTES = 1 << 16
_POLL_S = 0.05  # how often shutdown looks whether the stopped calls have answered
_FLUSH_S = 0.2  # after the last call has answered: time for its answer to reach stdout
_MIB = 1024 * 1024


async def serve_stdio(server: "MCPServer", *, max_message_bytes: int) -> None:
    """Serves `server` over stdin and stdout until stdin closes, or SIGTERM or SIGINT arrives.

    Args:
        server: the MCP server.
        max_message_bytes: the longest line taken (`ServerOptions.max_message_bytes`, as over HTTP).
    """
    if sys.platform == "win32":  # no fcntl and no POSIX signals: the SDK's transport as it is
        await server.run_stdio_async()
        return
    lowlevel = server._lowlevel_server  # what MCPServer.run_stdio_async serves, here over streams a signal can stop
    with _claim_stdio() as (wire_in, wire_out), anyio.CancelScope() as everything:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, everything)
            async with _stdio_streams(wire_in, wire_out, max_message_bytes) as (read, write):
                await lowlevel.run(read, write, lowlevel.create_initialization_options())
            tg.cancel_scope.cancel()  # stdin closed: the client has gone
    _log.info("stopped")


@contextlib.asynccontextmanager
async def _stdio_streams(
    wire_in: int, wire_out: int, max_message_bytes: int
) -> AsyncIterator[tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]]:
    """The server's read and write streams over the two descriptors, with the tasks that move them."""
    inbound_send, inbound = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    outbound, outbound_receive = anyio.create_memory_object_stream[SessionMessage](0)
    answers = outbound.clone()  # the reader answers bad lines itself, on the same wire as the server

    async def read_lines() -> None:
        async with inbound_send, answers:
            async for line in _Lines(wire_in, max_message_bytes):
                if line is _TOO_LONG:
                    limit = max_message_bytes / _MIB
                    error = FrameError(
                        INVALID_REQUEST,
                        f"a message over the limit of {limit:.1f} MiB arrived and was dropped unread; send less audio "
                        "per call (or in chunks with push_audio), or restart the server with a higher --max-request-mb",
                    )
                elif not line.strip():
                    continue
                else:
                    try:
                        await inbound_send.send(SessionMessage(parse_frame(line)))
                        continue
                    except FrameError as e:
                        error = e
                _log.warning("answered a malformed message with JSON-RPC error %d: %s", error.code, error)
                await answers.send(SessionMessage(error.response()))

    async def write_messages() -> None:
        async with outbound_receive:
            async for session_message in outbound_receive:
                data = _serialized(session_message.message)
                await anyio.to_thread.run_sync(_write_all, wire_out, data)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_lines)
        tg.start_soon(write_messages)
        yield inbound, outbound


def _serialized(message: object) -> bytes:
    """One line of JSON for `message`; a response that cannot be written becomes an internal error for its id."""
    try:
        return (message.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode()  # type: ignore[attr-defined]
    except (ValueError, TypeError) as e:  # e.g. a string that is not Unicode in a result
        if not isinstance(message, (JSONRPCResponse, JSONRPCError, JSONRPCRequest)):
            raise
        _log.warning("could not write the answer to request %r (%s); sent an internal error instead", message.id, e)
        error = JSONRPCError(jsonrpc="2.0", id=message.id, error=ErrorData(code=INTERNAL_ERROR, message=f"the answer could not be encoded as JSON ({e})"))
        return (error.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
def _claim_stdio() -> Iterator[tuple[int, int]]:
    """Yields private descriptors of the protocol's stdin and stdout; meanwhile fd 0 reads the null
    device and fd 1 writes to stderr.

    As in the SDK's transport, children and stray reads of fd 0 then never take the protocol's
    bytes, and stray prints never land between its messages.
    """
    import fcntl

    wire_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    wire_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout.flush()
    os.dup2(2, 1)
    try:
        yield wire_in, wire_out
    finally:
        sys.stdout.flush()
        os.dup2(wire_in, 0)
        os.dup2(wire_out, 1)
        os.close(wire_in)
        os.close(wire_out)


_TOO_LONG = b"\0too long"  # what `_Lines` yields for a line it skipped (compared by identity)


class _Lines:
    """The lines (bytes, without the newline) arriving on descriptor `fd`, read when the event loop sees it readable.

    A line longer than `max_bytes` is dropped as it arrives (memory holds at most `max_bytes` plus
    one read) and yields `_TOO_LONG` once its newline, or the end of input, comes. A regular file or
    the null device cannot be watched (and never blocks): those are read in a worker thread instead.
    """

    def __init__(self, fd: int, max_bytes: int):
        self._fd = fd
        self._max_bytes = max_bytes
        self._buffer = bytearray()
        self._searched = 0  # bytes of the buffer already searched for a newline
        self._dropping = False  # inside a line over the limit: its bytes are thrown away
        self._watchable = True

    def __aiter__(self) -> "_Lines":
        return self

    async def __anext__(self) -> bytes:
        while (newline := self._buffer.find(b"\n", self._searched)) < 0:
            if self._dropping or len(self._buffer) > self._max_bytes:
                self._dropping = True
                self._buffer.clear()
            self._searched = len(self._buffer)
            data = await self._read()
            if not data:  # end of input: a last line without its newline still counts
                if self._dropping:
                    self._dropping = False
                    return _TOO_LONG
                if not self._buffer:
                    raise StopAsyncIteration
                newline = len(self._buffer)
                break
            self._buffer += data
        line = bytes(self._buffer[:newline])
        del self._buffer[: newline + 1]
        self._searched = 0
        if self._dropping or len(line) > self._max_bytes:
            self._dropping = False
            return _TOO_LONG
        return line

    async def _read(self) -> bytes:
        if self._watchable:
            try:
                await anyio.wait_readable(self._fd)
            except PermissionError:  # epoll refuses regular files and the null device
                self._watchable = False
            else:
                return os.read(self._fd, _READ_BYTES)  # readable: this read does not block
        return await anyio.to_thread.run_sync(os.read, self._fd, _READ_BYTES)
