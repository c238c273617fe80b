"""`logging/setLevel` for the 2025 revisions: a client reads the server's log records about its own requests.

After `logging/setLevel`, the records the server makes while it serves that connection's requests
(its own loggers, `mcp_server.*` and `emotion-mcp`) at that level or above reach the client as
`notifications/message` on the request's stream, as they happen. What the server records at all is
still `--log-level` (default WARNING): a client sees its share of that log, never more of it.

Nothing else leaves: records made outside the client's requests (start-up, expiry sweeps, other
clients' calls) are not sent, absolute paths outside `--allow-dir` read `<path>`, and bearer
tokens (the `EMOTION_MCP_TOKEN` value, any `Bearer ...`) read `<token>`.

The 2026-07-28 revision deprecates logging: the server does not offer it there (no `logging`
capability in `server/discover`, and `logging/setLevel` is no method of that revision).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import anyio
import anyio.lowlevel
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import EmptyResult, LoggingLevel, SetLevelRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .security import TOKEN_ENV_VAR

__all__ = ["ClientLogs", "RELAYED_LOGGERS"]

RELAYED_LOGGERS = ("mcp_server", "emotion-mcp")  # the server's own records; the SDK's and libraries' stay local
MAX_QUEUED_RECORDS = 64  # per request, waiting to be sent; past it records are dropped, not waited for
SEND_TIMEOUT_S = 5.0  # one record to a client that does not read
_STATE_KEY = "emotion_mcp.log_level"  # in the SDK connection's per-connection state
# The specification's levels (RFC 5424) and the stdlib's numbers they are compared by.
_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO + 5, "warning": logging.WARNING,
    "error": logging.ERROR, "critical": logging.CRITICAL, "alert": logging.CRITICAL + 5, "emergency": logging.CRITICAL + 9,
}  # fmt: skip
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])(?:/[^\s'\"():,;]+)+")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")


@dataclass
class _Relay:
    """Where one request's records go: a bounded queue the request's task drains to its client."""

    level: int
    loop: asyncio.AbstractEventLoop
    send: Any  # the memory stream's send side

    def put(self, level: LoggingLevel, logger: str, text: str) -> None:
        """Queues a record; callable from any thread (the model runs in worker threads)."""

        def enqueue() -> None:
            try:
                self.send.send_nowait((level, logger, text))
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # a client that does not keep up loses records rather than holding the server

        try:
            self.loop.call_soon_threadsafe(enqueue)
        except RuntimeError:  # the loop has closed: the request is long gone
            pass


_current: contextvars.ContextVar[_Relay | None] = contextvars.ContextVar("emotion_mcp_log_relay", default=None)


class _RelayHandler(logging.Handler):
    """Hands each record made inside a relayed request to that request's relay."""

    def __init__(self, scrub: "_Scrubber"):
        super().__init__()
        self.scrub = scrub

    def emit(self, record: logging.LogRecord) -> None:
        relay = _current.get()
        if relay is None or record.levelno < relay.level:
            return
        try:
            text = self.scrub(record.getMessage())
        except Exception:  # a record whose arguments do not format: skip it, as logging itself would report it
            return
        relay.put(_level_name(record.levelno), record.name, text)


class _Scrubber:
    """Replaces paths outside the allowed directories and bearer tokens in a record's text."""

    def __init__(self, allow_dirs: Sequence[Path]):
        self.allowed = tuple(str(Path(d).expanduser().resolve()) for d in allow_dirs)
        self.token = os.environ.get(TOKEN_ENV_VAR) or None

    def __call__(self, text: str) -> str:
        if self.token:
            text = text.replace(self.token, "<token>")
        text = _BEARER.sub("Bearer <token>", text)
        return _ABSOLUTE_PATH.sub(self._path, text)

    def _path(self, found: re.Match[str]) -> str:
        path = found.group(0)
        inside = any(path == d or path.startswith(d.rstrip("/") + "/") for d in self.allowed)
        return path if inside else "<path>"


class ClientLogs:
    """The `logging/setLevel` handler and the middleware that relays a connection's records to it."""

    def __init__(self, allow_dirs: Sequence[Path] = ()):
        self._handler = _RelayHandler(_Scrubber(allow_dirs))
        # Serving 2025 clients the logging they ask for is the point here, not a use of a deprecated API.
        warnings.filterwarnings("ignore", category=MCPDeprecationWarning, module=__name__)
        for name in RELAYED_LOGGERS:
            logger = logging.getLogger(name)
            # One relay handler per logger, however many servers a process builds (tests build many).
            for old in [h for h in logger.handlers if isinstance(h, _RelayHandler)]:
                logger.removeHandler(old)
            logger.addHandler(self._handler)

    async def set_level(self, ctx: ServerRequestContext[Any], params: SetLevelRequestParams) -> EmptyResult:
        """`logging/setLevel`: records at `params.level` and above, for this connection's later requests."""
        ctx.session._connection.state[_STATE_KEY] = _LEVELS[params.level]  # type: ignore[attr-defined]
        return EmptyResult()

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: relays the records a request makes to its client, if the client asked."""
        level = None
        if ctx.request_id is not None and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            level = ctx.session._connection.state.get(_STATE_KEY)  # type: ignore[attr-defined]
        if level is None:
            return await call_next(ctx)
        send, receive = anyio.create_memory_object_stream[tuple[LoggingLevel, str, str]](MAX_QUEUED_RECORDS)

        async def forward() -> None:
            async with receive:
                async for record_level, logger, text in receive:
                    with anyio.move_on_after(SEND_TIMEOUT_S):
                        await ctx.session.send_log_message(record_level, text, logger=logger, related_request_id=ctx.request_id)

        token = _current.set(_Relay(level=level, loop=asyncio.get_running_loop(), send=send))
        result: HandlerResult = None
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(forward)
            try:
                result = await call_next(ctx)
            except Exception as e:  # re-raised below as itself, not inside the task group's exception group
                failure = e
            finally:
                _current.reset(token)
                await anyio.lowlevel.checkpoint()  # records queued from worker threads just now reach the stream
                send.close()  # forward() sends what is queued, then ends
        if failure is not None:
            raise failure
        return result


def _level_name(levelno: int) -> LoggingLevel:
    """The specification's level for a stdlib level number (the highest not above it)."""
    name = "debug"
    for candidate, number in _LEVELS.items():
        if levelno >= number:
            name = candidate
    return name  # type: ignore[return-value]
