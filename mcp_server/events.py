"""Resumable streams over streamable HTTP (2025 revisions): SSE event ids, a `retry` field, a bounded store.

Each message the server sends on an SSE stream — a POST's progress notifications and result, or
the GET stream's notifications — gets an event id and is kept in a `ResumableEvents` store (the
SDK's `EventStore` interface). Each POST stream opens with a priming event that carries an id and
`retry: RETRY_MS`. A client whose connection drops, during a long `analyze_emotion` say, reconnects
with `GET` and `Last-Event-ID: <the last id it saw>` and receives what it missed, the result
included, then the rest as it comes; the call itself runs on undisturbed meanwhile.

What is kept: the last `MAX_EVENTS` events, at most `MAX_EVENT_BYTES` of them, none older than
`EVENT_TTL_S`; older ones are dropped first, and a `Last-Event-ID` they held resumes nothing. The
store is memory only: a restart loses every event (and the 2025 transport sessions they belong to).

The SDK names a POST's stream after its JSON-RPC request id, which every client numbers from 0 or
1, so streams are kept apart per transport session (`Mcp-Session-Id`): `scoped(app)` marks each HTTP
request with its session, and a replay reads only the streams of the session that asks.

The stateless 2026-07-28 revision has no resumption (its streams are the requests themselves).
"""

from __future__ import annotations

import contextvars
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.types import JSONRPCMessage

from .security import header_value

__all__ = ["ResumableEvents", "RETRY_MS", "MAX_EVENTS", "MAX_EVENT_BYTES", "EVENT_TTL_S"]

RETRY_MS = 1000  # the `retry` field of each stream's priming event: how long a client waits before reconnecting
MAX_EVENTS = 10_000  # events kept in all, over every session
MAX_EVENT_BYTES = 64 * 1024 * 1024  # their JSON, in all: results of long analyses with a trace are the big ones
EVENT_TTL_S = 600.0  # an event older than this is dropped: ten minutes to reconnect
_MAX_SESSIONS_NAMED = 4096  # transport sessions whose scope is remembered (the oldest are forgotten first)
_EVENT_ID_BYTES = 12  # 96 random bits: another session's event ids cannot be guessed

_scope: contextvars.ContextVar[str | None] = contextvars.ContextVar("emotion_mcp_event_scope", default=None)


@dataclass(frozen=True)
class _Event:
    scope: str
    stream_id: StreamId
    message: JSONRPCMessage | None  # None: a stream's priming event
    size: int  # bytes of its JSON
    at: float  # store clock


class ResumableEvents(EventStore):
    """A bounded in-memory `EventStore` whose streams are kept apart per transport session."""

    def __init__(
        self,
        *,
        max_events: int = MAX_EVENTS,
        max_bytes: int = MAX_EVENT_BYTES,
        ttl_s: float = EVENT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_events < 1 or max_bytes < 1 or not ttl_s > 0:
            raise ValueError(f"max_events, max_bytes and ttl_s must be positive, got {max_events}, {max_bytes}, {ttl_s}")
        self.max_events, self.max_bytes, self.ttl_s = max_events, max_bytes, ttl_s
        self._clock = clock
        self._events: OrderedDict[EventId, _Event] = OrderedDict()  # oldest first
        self._streams: dict[tuple[str, StreamId], deque[EventId]] = {}
        self._bytes = 0
        self._session_scopes: OrderedDict[str, str] = OrderedDict()  # Mcp-Session-Id -> scope

    @property
    def stored(self) -> int:
        """Events held now. (No `__len__`: the SDK tests the store for truth, and an empty one must count.)"""
        return len(self._events)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        scope = _scope.get() or ""
        size = len(message.model_dump_json(by_alias=True, exclude_unset=True)) if message is not None else 0
        event_id = secrets.token_urlsafe(_EVENT_ID_BYTES)
        self._events[event_id] = _Event(scope, stream_id, message, size, self._clock())
        self._streams.setdefault((scope, stream_id), deque()).append(event_id)
        self._bytes += size
        self._drop_old()
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        self._drop_old()
        last = self._events.get(last_event_id)
        if last is None or last.scope != (_scope.get() or ""):  # dropped, unknown, or another session's
            return None
        ids = self._streams[(last.scope, last.stream_id)]
        later = list(ids)[list(ids).index(last_event_id) + 1 :]
        for event_id in later:
            event = self._events.get(event_id)
            if event is not None and event.message is not None:  # priming events carry nothing to resend
                await send_callback(EventMessage(event.message, event_id))
        return last.stream_id

    def _drop_old(self) -> None:
        deadline = self._clock() - self.ttl_s
        while self._events:
            event_id, event = next(iter(self._events.items()))
            if len(self._events) <= self.max_events and self._bytes <= self.max_bytes and event.at >= deadline:
                break
            del self._events[event_id]
            self._bytes -= event.size
            key = (event.scope, event.stream_id)
            stream = self._streams[key]
            stream.popleft()  # streams and the store are both in arrival order: it is this stream's oldest
            if not stream:
                del self._streams[key]

    def scoped(self, app: Any) -> Any:
        """`app` (the SDK's streamable-HTTP ASGI app) with each request marked with its transport session."""

        async def scoped_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            session_id = header_value(scope.get("headers", ()), b"mcp-session-id")
            if session_id is None:  # a new session, maybe: its id comes back in the response headers
                mark = "new:" + secrets.token_urlsafe(_EVENT_ID_BYTES)
            else:  # a session this store has not seen (unknown, or from before a restart) matches nothing
                mark = self._session_scopes.get(session_id) or "unknown:" + secrets.token_urlsafe(_EVENT_ID_BYTES)

            async def send_noting_session(message: dict[str, Any]) -> None:
                if session_id is None and message["type"] == "http.response.start":
                    issued = header_value(message.get("headers", ()), b"mcp-session-id")
                    if issued is not None:
                        self._name_session(issued, mark)
                await send(message)

            token = _scope.set(mark)
            try:
                await app(scope, receive, send_noting_session)
            finally:
                _scope.reset(token)

        return scoped_app

    def _name_session(self, session_id: str, mark: str) -> None:
        self._session_scopes[session_id] = mark
        self._session_scopes.move_to_end(session_id)
        while len(self._session_scopes) > _MAX_SESSIONS_NAMED:
            self._session_scopes.popitem(last=False)
