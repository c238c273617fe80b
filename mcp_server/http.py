"""Serving over streamable HTTP: the socket, the request guards, time limits and shutdown.

Requests pass, outermost first: header framing (a header that may come once sent twice, a body framed two
ways, a Host that is not host[:port]: 400), Host/Origin check (loopback binds and binds without a token),
bearer token (when one is set), the body deadline, then the MCP app (which checks OAuth tokens
itself in OAuth resource-server mode: such a server counts as tokened here). Headers that do not arrive
within `ServerOptions.header_timeout_s` close the connection; SIGTERM or SIGINT stop taking connections and
cancel running tool calls (they stop at their next window) after `SHUTDOWN_GRACE_S`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from types import FrameType
from typing import TYPE_CHECKING, Sequence

from .inference import stop_all
from .security import (
    TOKEN_ENV_VAR,
    BearerTokenMiddleware,
    BodyDeadlineMiddleware,
    HeaderFramingMiddleware,
    HostOriginMiddleware,
    needs_host_check,
    url_authority_host,
    url_host,
)

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from .auth import OAuthOptions
    from .server import ServerOptions

SHUTDOWN_GRACE_S = 2  # on SIGTERM/SIGINT, responses under way get this long before their calls are cancelled
_log = logging.getLogger("emotion-mcp")
_BACKLOG = 2048  # uvicorn's default


def _timed_h11_protocol(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol with a deadline on each request's headers (uvicorn itself has none)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._between_requests():
                self._arm()
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before and self.cycle is not None:  # a request's headers are complete
                self._disarm()

        def connection_lost(self, exc):  # type: ignore[no-untyped-def]
            self._disarm()
            super().connection_lost(exc)

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self._between_requests() and not self.transport.is_closing():
                _log.warning("closed a connection whose request headers did not arrive within %g s", header_timeout_s)
                self.transport.close()

    return TimedH11Protocol


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        def __init__(self, config: uvicorn.Config, app: _EndsQuietlyOnShutdown):
            super().__init__(config)
            self.guarded = app

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            self.guarded.stopping = True
            stop_all()  # running calls stop at their next window, so their responses end and shutdown goes on
            # uvicorn re-raises the signal once it has stopped, which would end the process before the
            # session manager cancels the calls still running; the signal has done its work here.
            getattr(self, "_captured_signals", []).clear()

    return Server


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host` (IPv4, IPv6 with or without brackets, or a name) and `port`."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bare, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host") from e
    # Listening now, not when uvicorn starts: a client that connects as soon as the server says it is
    # serving waits in the backlog instead of being refused.
    sock.listen(_BACKLOG)
    return sock


class _EndsQuietlyOnShutdown:
    """ASGI wrapper: a request that uvicorn cancels as it shuts down ends without a logged traceback."""

    def __init__(self, app):  # type: ignore[no-untyped-def]
        self.app = app
        self.stopping = False

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            _log.info("cancelled a request still open at shutdown")


def guarded_app(  # type: ignore[no-untyped-def]
    app, *, host: str, token: str | None, allowed_origins: Sequence[str], options: "ServerOptions", oauth: "OAuthOptions | None" = None
):
    """`app` behind the body deadline, the bearer token (if any), the Host/Origin check (where needed) and,
    outermost, the refusal of headers that can be read two ways.

    With `oauth` the app itself refuses requests without an issuer's token, so the bind counts as
    tokened, and the host of the public resource URL is one of this server's names.
    """
    guarded = BodyDeadlineMiddleware(app, timeout_s=options.body_timeout_s, max_bytes=options.max_message_bytes)
    if token:
        guarded = BearerTokenMiddleware(guarded, token)
    tokened = bool(token) or oauth is not None
    check_host = needs_host_check(host, tokened)
    if check_host or allowed_origins:
        names = (url_authority_host(oauth.resource_url),) if oauth is not None else ()
        guarded = HostOriginMiddleware(
            guarded, bind_host=host, allowed_origins=allowed_origins, check_host=check_host, server_names=names
        )
    return _EndsQuietlyOnShutdown(HeaderFramingMiddleware(guarded))


async def serve_http(
    server: "MCPServer",
    options: "ServerOptions",
    host: str,
    port: int,
    token: str | None,
    *,
    prog: str,
    allowed_origins: Sequence[str] = (),
    oauth: "OAuthOptions | None" = None,
) -> None:
    """Serves `server` on http://host:port/mcp until SIGTERM or SIGINT.

    `oauth`: the options `server` was created with in OAuth resource-server mode (its app then
    verifies tokens itself); None without OAuth.
    """
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    from .departures import DEPARTURES
    from .events import RETRY_MS, ResumableEvents

    events = ResumableEvents()  # SSE event ids, so a 2025 client whose stream drops resumes it (events.py)
    app = server.streamable_http_app(
        host=host,
        max_request_body_size=options.max_message_bytes,
        # the SDK checks only some spellings of loopback; HostOriginMiddleware checks every one
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        event_store=events,
        retry_interval=RETRY_MS,
    )
    app = DEPARTURES.watch(events.scoped(app))  # a 2025 client gone for good has its calls stopped (departures.py)
    sock = bind(host, port)  # before the model loads: a taken port fails at once
    guarded = guarded_app(app, host=host, token=token, allowed_origins=allowed_origins, options=options, oauth=oauth)
    config = uvicorn.Config(
        guarded,
        lifespan="off",  # the session manager's run() below is the lifespan
        log_level=options.log_level.lower(),
        http=_timed_h11_protocol(options.header_timeout_s),
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    async with server.session_manager.run():  # loads the model; on exit, cancels the calls still running
        if oauth is not None:
            note = f"OAuth tokens from {oauth.issuer_url} required"
        else:
            note = "bearer token required" if token else f"no {TOKEN_ENV_VAR}: any local process can call it"
        url = f"http://{url_host(host)}:{sock.getsockname()[1]}/mcp"
        print(f"{prog}: serving on {url} ({note})", file=sys.stderr, flush=True)
        import anyio

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(DEPARTURES.sweep_forever)
            await _server_class()(config, guarded).serve(sockets=[sock])
            tasks.cancel_scope.cancel()
    _log.info("stopped")
