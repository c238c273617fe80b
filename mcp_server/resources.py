"""Resources and the prompt: the model's description, a session's trace, and the empathetic-reply prompt."""

import json

from mcp.server.mcpserver import UserMessage
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

from .context import AppContext, EmotionContext, client_key, state_of, trace_of
from .journal import JournalError
from .prompts import empathetic_reply_text
from .security import RequestError

__all__ = ["model_info", "session_trace", "empathetic_reply"]


def model_info(state: AppContext | None) -> str:
    """The `emotion://model` resource: static, so it reads the lifespan state it is given, not a request's."""
    if state is None:
        raise ResourceNotFoundError("the model is not loaded yet; read emotion://model once the server has started")
    info = state.recognizer.info().model_dump(mode="json")
    if state.refiner is not None:  # --refine-with: sessions' utterances are read a second time, at this point
        info["sessions_refined_at"] = state.refiner.operating_point(trace=False)
    return json.dumps(info, indent=2)


def session_trace(session_id: str, ctx: EmotionContext) -> str:
    """The `emotion://sessions/{session_id}/trace` resource."""
    state = state_of(ctx)
    try:
        session = state.sessions.get(session_id, client_key(ctx))
    except RequestError as e:
        try:
            recorded = state.journal.read(session_id, owner=client_key(ctx)) if state.journal is not None else None  # see get_emotion_trace
        except JournalError as damaged:
            raise ResourceError(str(damaged)) from damaged
        if recorded is None:
            raise ResourceNotFoundError(str(e)) from e
        return recorded.model_dump_json(indent=2)
    return trace_of(state, session).model_dump_json(indent=2)


def empathetic_reply(user_words: str, analysis_json: str, note_format: str = "prose") -> list[UserMessage]:
    """The `empathetic_reply` prompt; `note_format`: "prose" (default) or "rcs" (a perception string)."""
    try:
        return [UserMessage(empathetic_reply_text(user_words, analysis_json, note_format))]
    except ValueError as e:  # the SDK would replace a plain error's message with a generic one
        raise MCPError(code=INVALID_PARAMS, message=str(e)) from e
