"""Calls of 2025-era HTTP clients that went away: stopped once they have not come back to resume.

A 2025 client's `tools/call` runs inside its transport session, not inside the HTTP request that
carried it: when the request's connection closes, the SDK lets the call run on, so that a client
whose connection merely dropped can resume its stream (`events.py`). A client that crashed never
comes back, and its analysis would keep the model busy to the end.

So each such POST is watched at the ASGI level (`Departures.watch`): when its connection closes
before the response was sent whole, the call is marked as left, and unless the same transport
session resumes a stream (a GET with `Last-Event-ID`) within `RESUME_GRACE_S`, the call's job is
cancelled; it stops after the encoder layer it is in, and the server logs one line saying so. The
stateless 2026-07-28 protocol needs none of this: there the call is the request, and its connection
closing cancels it at once.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import anyio

from .inference import Job
from .security import header_value

__all__ = ["Departures", "DEPARTURES", "RESUME_GRACE_S"]

RESUME_GRACE_S = 5.0  # a dropped client reconnects after RETRY_MS (1 s); one that has not within this is gone
_SWEEP_S = 0.25
_MAX_BODY_SEEN = 64 * 1024  # the request's id is near the start; the rest (audio as base64) is not kept


class Departures:
    """The running calls of 2025-era HTTP clients, by (transport session, request id), and those left."""

    def __init__(self, grace_s: float = RESUME_GRACE_S):
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], Job] = {}
        self._left: dict[tuple[str, str], float] = {}  # when each call's connection closed

    def register(self, session_id: str | None, request_id: Any, job: Job) -> None:
        """Called by a tool's worker when its job starts (a legacy call: `session_id` is its Mcp-Session-Id)."""
        if session_id:
            with self._lock:
                self._jobs[(session_id, str(request_id))] = job

    def unregister(self, session_id: str | None, request_id: Any) -> None:
        if session_id:
            with self._lock:
                key = (session_id, str(request_id))
                self._jobs.pop(key, None)
                self._left.pop(key, None)

    def left(self, session_id: str, request_id: Any) -> None:
        with self._lock:
            self._left[(session_id, str(request_id))] = time.monotonic()

    def resumed(self, session_id: str) -> None:
        """The session came back for its streams: none of its calls is gone."""
        with self._lock:
            for key in [k for k in self._left if k[0] == session_id]:
                del self._left[key]

    def sweep(self) -> int:
        """Cancels the calls whose clients left more than `grace_s` ago without resuming; returns how many."""
        now, stopped = time.monotonic(), 0
        with self._lock:
            for key, since in list(self._left.items()):
                if now - since < self.grace_s:
                    continue
                del self._left[key]
                job = self._jobs.get(key)
                if job is not None and not job.cancelled:
                    job.cancel(f"the client's connection closed and it did not resume its stream within {self.grace_s:g} s")
                    stopped += 1
        return stopped

    async def sweep_forever(self) -> None:
        while True:
            await anyio.sleep(_SWEEP_S)
            self.sweep()

    def watch(self, app: Any) -> Any:
        """`app` (the SDK's streamable-HTTP ASGI app) with 2025-era POSTs watched for connections that close early."""

        async def watched(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            session_id = header_value(scope.get("headers", ()), b"mcp-session-id")
            if session_id is None:
                await app(scope, receive, send)
                return
            if scope.get("method") == "GET" and header_value(scope.get("headers", ()), b"last-event-id") is not None:
                self.resumed(session_id)
                await app(scope, receive, send)
                return
            if scope.get("method") != "POST":
                await app(scope, receive, send)
                return
            seen = bytearray()
            answered = False
            request_id: list[Any] = []

            async def receive_watching() -> dict[str, Any]:
                message = await receive()
                if message["type"] == "http.request" and len(seen) < _MAX_BODY_SEEN:
                    seen.extend(message.get("body", b"")[: _MAX_BODY_SEEN - len(seen)])
                    if not message.get("more_body", False):
                        request_id.extend(_request_id(bytes(seen)))
                elif message["type"] == "http.disconnect" and not answered and request_id:
                    self.left(session_id, request_id[0])
                return message

            async def send_watching(message: dict[str, Any]) -> None:
                nonlocal answered
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    answered = True
                await send(message)

            await app(scope, receive_watching, send_watching)

        return watched


_ID_FIRST = re.compile(rb'^\s*\{[^{\[]*?"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')


def _request_id(body: bytes) -> list[Any]:
    """[the id of the one JSON-RPC request in `body`], or [] (a notification, a batch, or not JSON).

    A body longer than what is kept of it (audio as base64) is read only for an id that comes before
    the params, where clients write it."""
    try:
        message = json.loads(body)
    except ValueError:
        found = _ID_FIRST.match(body)
        return [json.loads(found.group(1))] if found else []
    if isinstance(message, dict) and "method" in message and isinstance(message.get("id"), (str, int)):
        return [message["id"]]
    return []


DEPARTURES = Departures()  # one per process, like the inference queues: the HTTP app and the tools share it
