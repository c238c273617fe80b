"""The emotion MCP server: tools, resources and a prompt over one loaded `EmotionRecognizer`.

Build it with `create_server(ServerOptions(...))`; run it with `emotion-mcp` (see `__main__.py`).
The model loads once, in the server's lifespan; every request shares it through a bounded queue.
The tools are plain functions over the lifespan's `AppContext`, grouped by what they serve:
`tools_recordings.py`, `tools_sessions.py`, and `resources.py` (resources and the prompt). The rest of
the protocol has a module each: `completions.py` (completion/complete), `subscriptions.py` (live trace
updates, both eras), `client_logs.py` (logging/setLevel, 2025 revisions), `errors.py` (-32602 for
unknown names) and `events.py` (resumable HTTP streams, used by `http.py`).
"""

import time
from typing import Any, Callable

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.types import (
    CompleteRequestParams,
    DiscoverResult,
    RequestParams,
    SetLevelRequestParams,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from . import completions, resources, tools_recordings, tools_sessions
from .app_view import ICONS, apps_extension
from .client_logs import ClientLogs
from .context import AppContext, ModelLifespan
from .errors import InvalidParams
from .options import ServerOptions
from .security import PathPolicy
from .subscriptions import TRACE_TEMPLATE, TraceUpdates

__all__ = ["create_server", "ServerOptions", "AppContext", "SERVER_NAME"]

SERVER_NAME = "emotion"
_INSTRUCTIONS = (
    "Hears how the user sounds. analyze_emotion reads a recording (file path or base64) and returns the "
    "7 emotions (neutral, happy, sad, angry, fearful, disgusted, surprised) with valence, arousal and "
    "dominance in 0..1. For live speech, start_emotion_session, push_audio raw PCM chunks (each reply "
    "holds the utterances a pause just closed), then end_emotion_session. Readings are cues, not facts: "
    "check `uncertain`, and the empathetic_reply prompt turns a reading into reply guidance."
)


def create_server(
    options: ServerOptions = ServerOptions(),
    *,
    auth: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> MCPServer[AppContext]:
    """Builds the server. Nothing is loaded until a transport starts it (its lifespan).

    Args:
        options: what the server loads and the limits it enforces.
        auth: OAuth resource-server settings, `mcp_server.auth.OAuthOptions.server_kwargs()`; None: none.
        clock: monotonic seconds that session expiry measures idleness by (tests pass a manual one).
    """
    bus = InMemorySubscriptionBus()  # the SDK's fan-out to subscriptions/listen streams
    updates = TraceUpdates(bus)
    logs = ClientLogs(options.allow_dirs)
    lifespan = ModelLifespan(options, PathPolicy(options.allow_dirs), clock=clock, updates=updates)
    server: MCPServer[AppContext] = MCPServer(
        SERVER_NAME,
        title="Speech emotion perception",
        instructions=_INSTRUCTIONS,
        lifespan=lifespan,
        log_level=options.log_level,
        version=_package_version(),
        icons=ICONS,
        extensions=[apps_extension()],
        subscriptions=bus,
        middleware=[logs],  # outermost: what the others log about a request reaches its client
        **(auth or {}),
    )
    _serve_protocol(server, updates, logs)
    for fn, kwargs in (*tools_recordings.TOOLS, *tools_sessions.TOOLS):
        server.add_tool(fn, **kwargs)

    @server.resource(
        "emotion://model",
        name="model",
        title="The emotion model",
        description="Model id, labels, dimensions and their meaning, operating point, languages, limitations",
        mime_type="application/json",
    )
    def model_info() -> str:  # static resources get no request context: this one reads the lifespan's state
        return resources.model_info(lifespan.state)

    server.resource(
        TRACE_TEMPLATE,
        name="session_trace",
        title="Emotion trace of a streaming session",
        description="One reading per utterance (time, label, probabilities, valence/arousal/dominance), as JSON",
        mime_type="application/json",
    )(resources.session_trace)
    server.prompt(
        title="Empathetic reply",
        description="Tells the assistant how the user sounds (with the reading's uncertainty) and how to adapt its "
        "reply. Arguments: the user's words, and the JSON that analyze_emotion, get_emotion_trace or "
        "end_emotion_session returned.",
    )(resources.empathetic_reply)
    return server


def _serve_protocol(server: MCPServer[AppContext], updates: TraceUpdates, logs: ClientLogs) -> None:
    """The requests beyond tools, resources and prompts, in the SDK's low-level server (MCPServer has no API for them)."""
    low = server._lowlevel_server
    low.middleware.append(InvalidParams(server))
    low.add_request_handler("completion/complete", CompleteRequestParams, completions.complete)
    low.add_request_handler("resources/subscribe", SubscribeRequestParams, updates.subscribe)  # 2025 revisions
    low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, updates.unsubscribe)
    low.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, updates.listen)  # 2026-07-28
    low.add_request_handler("logging/setLevel", SetLevelRequestParams, logs.set_level)  # 2025 revisions only

    async def discover(ctx: ServerRequestContext[AppContext], params: RequestParams) -> DiscoverResult:
        # The SDK's answer, less logging: deprecated in 2026-07-28, so not offered to its clients.
        capabilities = low.get_capabilities(protocol_version=ctx.protocol_version)
        return DiscoverResult(
            supported_versions=list(MODERN_PROTOCOL_VERSIONS),
            capabilities=capabilities.model_copy(update={"logging": None}),
            instructions=low.instructions,
        )

    low.add_request_handler("server/discover", RequestParams, discover)


def _package_version() -> str:
    """The installed distribution's version, for `serverInfo`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emotion-tool")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
