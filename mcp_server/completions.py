"""`completion/complete`: values for the arguments of the trace template and the prompt, as the user types.

What can be completed, and from what:

- `emotion://sessions/{session_id}/trace`, argument `session_id`: the caller's own streaming sessions
  that are still held (newest first), then the session files under `--session-dir` it opened. A
  session id is a bearer capability, so nothing of another client's is ever offered: where the caller
  has no identity (stateless HTTP without OAuth) no session id is offered at all, and session files
  only to a caller the file names (OAuth, or a 2025-era transport session).
- the `empathetic_reply` prompt: `note_format` is completed from its values ("prose", "rcs"); the
  other two arguments are free text (the user's words, a JSON result), so their answer is empty.

Values are prefix-matched and capped at `MAX_VALUES` (the specification's limit); `hasMore` says whether
some were left out, and `total` counts the matches where all were counted (none were left out). An unknown prompt, template or argument is
-32602 (invalid params), naming the bad value and what exists.
"""

from __future__ import annotations

import itertools
import logging
from typing import Iterable, Iterator

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    PromptReference,
    ResourceTemplateReference,
)

from .context import ANONYMOUS, AppContext, client_key
from .subscriptions import TRACE_TEMPLATE

__all__ = ["complete", "MAX_VALUES", "PROMPT_ARGUMENTS"]

MAX_VALUES = 100  # the most values one completion may carry (the specification's cap)
PROMPT_ARGUMENTS = {"empathetic_reply": ("user_words", "analysis_json", "note_format")}  # prompt -> its arguments
PROMPT_VALUES = {("empathetic_reply", "note_format"): ("prose", "rcs")}  # the arguments with a known set of values
_TEMPLATE_ARGUMENTS = {TRACE_TEMPLATE: ("session_id",)}
_log = logging.getLogger(__name__)


async def complete(ctx: ServerRequestContext[AppContext], params: CompleteRequestParams) -> CompleteResult:
    """The `completion/complete` handler."""
    ref, argument = params.ref, params.argument
    if isinstance(ref, PromptReference):
        _check_argument("prompt", ref.name, argument.name, PROMPT_ARGUMENTS)
        values = PROMPT_VALUES.get((ref.name, argument.name), ())  # none: free text, nothing to offer
        return _result([v for v in values if v.startswith(argument.value)], argument.value)
    assert isinstance(ref, ResourceTemplateReference)
    _check_argument("resource template", ref.uri, argument.name, _TEMPLATE_ARGUMENTS)
    return _result(_session_ids(ctx, argument.value), argument.value)


def _check_argument(kind: str, name: str, argument: str, known: dict[str, tuple[str, ...]]) -> None:
    if name not in known:
        raise _invalid(f"unknown {kind} {name!r}; this server's are: {', '.join(map(repr, known))}")
    if argument not in known[name]:
        raise _invalid(f"{kind} {name!r} has no argument {argument!r}; its arguments are: {', '.join(map(repr, known[name]))}")


def _invalid(message: str) -> MCPError:
    _log.warning("completion/complete refused: %s", message)
    return MCPError(code=INVALID_PARAMS, message=message)


def _session_ids(ctx: ServerRequestContext[AppContext], prefix: str) -> Iterator[str]:
    """The session ids the caller may read, live ones newest first, then its session files, newest first."""
    state = ctx.lifespan_context
    owner = client_key(Context(request_context=ctx))
    if owner == ANONYMOUS and getattr(ctx.request, "headers", None) is not None:
        # Stateless HTTP without OAuth: every caller is "anonymous", so listing would hand one client
        # another's session ids, which are bearer capabilities. Over stdio the one client is the owner.
        return
    live = sorted(state.sessions.owned_by(owner), key=lambda s: s.last_used, reverse=True)
    seen = set()
    for session in live:
        seen.add(session.id)
        yield session.id
    if state.journal is None or owner == ANONYMOUS:  # no caller to match: the session id is the capability
        return
    files = sorted(state.journal.directory.glob(f"{_glob_safe(prefix)}*.jsonl"), key=_mtime, reverse=True)
    for path in files:
        session_id = path.name.removesuffix(".jsonl")
        if session_id not in seen and session_id.startswith(prefix) and state.journal.belongs_to(session_id, owner):
            yield session_id


def _glob_safe(prefix: str) -> str:
    """`prefix` as a literal glob pattern (a session id holds no glob characters; a typed prefix might)."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in prefix)


def _mtime(path) -> float:  # type: ignore[no-untyped-def]
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile
        return 0.0


def _result(candidates: Iterable[str], prefix: str) -> CompleteResult:
    """The first `MAX_VALUES` candidates starting with `prefix`; candidates are drawn lazily, one past the cap at most."""
    matches = list(itertools.islice((v for v in candidates if v.startswith(prefix)), MAX_VALUES + 1))
    more = len(matches) > MAX_VALUES
    # `total` only where every match was counted: past the cap the rest are not looked at.
    return CompleteResult(completion=Completion(values=matches[:MAX_VALUES], total=None if more else len(matches), has_more=more))
