"""Live trace updates: a client watching a session's trace is told each time a reading lands.

The trace resource, `emotion://sessions/{session_id}/trace`, changes once per utterance read (a
`push_audio` whose chunk closed it), once more when the session ends (`end_emotion_session`, or
expiry: the trace is then gone), and never otherwise. Each change is one event, for each era:

- 2025 revisions: `resources/subscribe` and `resources/unsubscribe`, then
  `notifications/resources/updated` on the subscribing connection's standalone channel (the GET
  stream over streamable HTTP, stdout over stdio).
- 2026-07-28: a `subscriptions/listen` stream naming the trace URI in `resourceSubscriptions`;
  events go through the server's subscription bus and the SDK's `ListenHandler` delivers them.

Only a session's opener may watch it, by the ownership check of `SessionStore.get` (its owner
key, or its 128-bit id where no identity exists); another client's, an unknown or an ended
session is refused (2025, -32602) or left out of the acknowledged filter (2026). Watches end
with the session or the connection, and are bounded: `MAX_WATCHED_PER_CLIENT` traces per 2025
connection, `MAX_LISTENS_PER_CLIENT` open listen streams per client, `MAX_BUFFERED_EVENTS` undelivered
events per listen stream (a stream whose client stopped reading is ended; it re-listens).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ListenHandler, ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from .context import client_key
from .security import RequestError

if TYPE_CHECKING:
    from .sessions import Session

__all__ = ["TraceUpdates", "TRACE_TEMPLATE", "trace_uri"]

TRACE_TEMPLATE = "emotion://sessions/{session_id}/trace"
MAX_WATCHED_PER_CLIENT = 16  # traces one 2025 connection may watch at once (--max-sessions is 16 by default)
MAX_LISTENS_PER_CLIENT = 4  # open subscriptions/listen streams per client (2026-07-28)
MAX_LISTENS = 256  # open listen streams in all
MAX_BUFFERED_EVENTS = 64  # events queued for one listen stream before it is ended as stalled
SEND_TIMEOUT_S = 5.0  # one update to one 2025 connection; a client that does not read loses it
_TRACE_URI = re.compile(r"^emotion://sessions/(?P<session_id>[^/]+)/trace$")
_log = logging.getLogger(__name__)


def trace_uri(session_id: str) -> str:
    return TRACE_TEMPLATE.format(session_id=session_id)


@dataclass(eq=False)
class _Watcher:
    """One 2025 connection's watches. Its standalone channel outlives the request that subscribed."""

    channel: ServerSession
    uris: set[str] = field(default_factory=set)


class TraceUpdates:
    """Who watches which session trace, in both eras, and telling them when it changes."""

    def __init__(self, bus: SubscriptionBus):
        self._bus = bus
        self._listen = ListenHandler(bus, max_subscriptions=MAX_LISTENS, max_buffered_events=MAX_BUFFERED_EVENTS)
        self._watchers: dict[int, _Watcher] = {}  # by id() of the SDK's connection object
        self._listens: Counter[str] = Counter()  # open listen streams per client key

    # --- the SDK's request handlers -----------------------------------------------------------------

    async def subscribe(self, ctx: ServerRequestContext[Any], params: SubscribeRequestParams) -> EmptyResult:
        """`resources/subscribe` (2025 revisions)."""
        uri = str(params.uri)
        try:
            self._owned_session(ctx, uri)
        except MCPError as e:
            _log.warning("resources/subscribe refused: %s", e.error.message)
            raise
        connection = _connection_of(ctx)
        watcher = self._watchers.get(id(connection))
        if watcher is None:
            watcher = self._watchers[id(connection)] = _Watcher(channel=ctx.session)
            connection.exit_stack.callback(self._watchers.pop, id(connection), None)  # the connection's end ends its watches
        if uri not in watcher.uris and len(watcher.uris) >= MAX_WATCHED_PER_CLIENT:
            raise _refused(
                INVALID_REQUEST,
                f"this connection already watches {len(watcher.uris)} session traces, the most it may; "
                "unsubscribe from one (resources/unsubscribe) first",
            )
        watcher.uris.add(uri)
        return EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams) -> EmptyResult:
        """`resources/unsubscribe` (2025 revisions): ends a watch; one that does not exist is no error."""
        watcher = self._watchers.get(id(_connection_of(ctx)))
        if watcher is not None:
            watcher.uris.discard(str(params.uri))
        return EmptyResult()

    async def listen(self, ctx: ServerRequestContext[Any], params: SubscriptionsListenRequestParams) -> SubscriptionsListenResult:
        """`subscriptions/listen` (2026-07-28): the SDK's stream, over the traces the caller may watch."""
        key = client_key(Context(request_context=ctx))
        if self._listens[key] >= MAX_LISTENS_PER_CLIENT:
            raise _refused(
                INVALID_REQUEST,
                f"{self._listens[key]} subscriptions/listen streams of this client are open, the most it may have; "
                "close one, or name several resources in one stream",
            )
        wanted = list(params.notifications.resource_subscriptions or ())
        kept = [uri for uri in wanted if self._may_watch(ctx, uri)][:MAX_WATCHED_PER_CLIENT]
        if len(kept) < len(wanted):  # the acknowledgment's filter tells the client which ones it got
            _log.info("subscriptions/listen: %d of %d resources left out (not this client's live session traces)", len(wanted) - len(kept), len(wanted))
        notifications = params.notifications.model_copy(update={"resource_subscriptions": kept or None})
        self._listens[key] += 1
        try:
            return await self._listen(ctx, params.model_copy(update={"notifications": notifications}))
        finally:
            self._listens[key] -= 1
            if self._listens[key] <= 0:
                del self._listens[key]

    # --- what the tools report ----------------------------------------------------------------------

    async def trace_changed(self, session: Session, *, times: int = 1) -> None:
        """Tells the session's watchers its trace changed, `times` events (one per utterance read)."""
        uri = trace_uri(session.id)
        for _ in range(times):
            await self._bus.publish(ResourceUpdated(uri=uri))
            for watcher in [w for w in self._watchers.values() if uri in w.uris]:
                with anyio.move_on_after(SEND_TIMEOUT_S):
                    await watcher.channel.send_resource_updated(uri)

    async def sessions_ended(self, sessions: Iterable[Session]) -> None:
        """One last event per ended session (its trace says `ended`, or is gone), then its watches end."""
        for session in sessions:
            await self.trace_changed(session)
            uri = trace_uri(session.id)
            for watcher in self._watchers.values():
                watcher.uris.discard(uri)

    def watched(self) -> int:
        """How many 2025 watches exist now, over all connections (for tests and bounds)."""
        return sum(len(w.uris) for w in self._watchers.values())

    # --- ownership ----------------------------------------------------------------------------------

    def _owned_session(self, ctx: ServerRequestContext[Any], uri: str) -> Session:
        """The live session whose trace `uri` names, if the caller opened it.

        Raises:
            MCPError: -32602, with the same words whether the session is unknown, someone else's or expired.
        """
        found = _TRACE_URI.match(uri)
        if found is None:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"{uri!r} never changes, so it cannot be watched; watch a live session's trace, "
                f"{TRACE_TEMPLATE}, with the session_id start_emotion_session returned",
            )
        try:
            session = ctx.lifespan_context.sessions.get(found["session_id"], client_key(Context(request_context=ctx)))
        except RequestError as e:
            raise MCPError(code=INVALID_PARAMS, message=str(e)) from e
        if session.ended:
            raise MCPError(code=INVALID_PARAMS, message=f"session {session.id} has ended: its trace no longer changes; read it with resources/read")
        return session

    def _may_watch(self, ctx: ServerRequestContext[Any], uri: str) -> bool:
        try:
            self._owned_session(ctx, uri)
        except MCPError:
            return False
        return True


def _refused(code: int, message: str) -> MCPError:
    _log.warning("subscription refused: %s", message)
    return MCPError(code=code, message=message)


def _connection_of(ctx: ServerRequestContext[Any]) -> Any:
    """The SDK's per-connection object behind a request: its `exit_stack` runs when the client goes.

    The request context carries it only inside its `ServerSession` (SDK 2.x keeps it there unexported).
    """
    return ctx.session._connection  # type: ignore[attr-defined]
