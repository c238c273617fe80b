"""The emotion MCP server: tools, resources and a prompt over one loaded `EmotionRecognizer`.

Build it with `create_server(ServerOptions(...))`; run it with `emotion-mcp` (see `__main__.py`).
The model loads once, in the server's lifespan; every request shares it through a bounded queue.
The tools are plain functions over the lifespan's `AppContext`, grouped by what they serve:
`tools_recordings.py`, `tools_sessions.py`, and `resources.py` (resources and the prompt).
"""

import time
from typing import Any, Callable

from mcp.server.mcpserver import MCPServer

from . import resources, tools_recordings, tools_sessions
from .app_view import ICONS, apps_extension
from .context import AppContext, ModelLifespan
from .options import ServerOptions
from .security import PathPolicy

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
    lifespan = ModelLifespan(options, PathPolicy(options.allow_dirs), clock=clock)
    server: MCPServer[AppContext] = MCPServer(
        SERVER_NAME,
        title="Speech emotion perception",
        instructions=_INSTRUCTIONS,
        lifespan=lifespan,
        log_level=options.log_level,
        version=_package_version(),
        icons=ICONS,
        extensions=[apps_extension()],
        **(auth or {}),
    )
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
        "emotion://sessions/{session_id}/trace",
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


def _package_version() -> str:
    """The installed distribution's version, for `serverInfo`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emotion-tool")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
