"""The typed context every tool, resource and prompt works over, and the one map of errors to `ToolError`.

`AppContext` is loaded once, in the server's lifespan (`ModelLifespan`), and reached from a request
as `state_of(ctx)`. Domain errors (bad requests, bad audio, a busy queue) become `ToolError`s in
`tool_errors`, so the assistant reads the message instead of a crash.
"""

import contextlib
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator

import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from emotion_tool import EmotionRecognizer
from emotion_tool.live.segmenter import StreamOptions

from .auth import principal
from .inference import InferenceQueue, JobCancelled, ServerBusy
from .journal import SessionJournal
from .options import ServerOptions
from .security import PathPolicy
from .sessions import Session, SessionStore, SessionTrace

__all__ = ["AppContext", "EmotionContext", "ModelLifespan", "state_of", "tool_errors"]

# What a tool call can get wrong and the caller can fix (RequestError and AudioError are ValueErrors),
# or retry (ServerBusy, JobCancelled). Anything else is a bug and reaches the SDK as an internal error.
TOOL_ERRORS: tuple[type[BaseException], ...] = (ValueError, ServerBusy, JobCancelled)


@dataclass
class AppContext:
    """The lifespan state every request shares."""

    recognizer: EmotionRecognizer
    options: ServerOptions
    paths: PathPolicy
    sessions: SessionStore
    queue: InferenceQueue
    journal: SessionJournal | None = None  # --session-dir: where sessions' readings are appended
    stream_options: StreamOptions = field(default_factory=StreamOptions)  # sample_rate set per session
    updates: Any = None  # a subscriptions.TraceUpdates: who watches which session's trace; None: nobody can
    refiner: EmotionRecognizer | None = None  # --refine-with: the faithful recognizer that reads session utterances again
    task_groups: list[anyio.abc.TaskGroup] = field(default_factory=list)  # the serving lifespans' task groups (background work)

    def spawn(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Starts `fn(*args)` (a coroutine function) in the background of the latest serving lifespan;
        False when none is serving (the work is not done)."""
        if not self.task_groups:
            return False
        self.task_groups[-1].start_soon(fn, *args)
        return True


EmotionContext = Context[AppContext, Any]


def state_of(ctx: EmotionContext) -> AppContext:
    """The lifespan state behind a request."""
    return ctx.request_context.lifespan_context


@contextlib.contextmanager
def tool_errors() -> Iterator[None]:
    """Turns the domain errors of a tool's body into `ToolError`s, whose message the caller reads."""
    try:
        yield
    except TOOL_ERRORS as e:
        raise ToolError(str(e)) from e


def client_key(ctx: EmotionContext) -> str:
    """Who is calling, as far as the server can tell; streaming sessions and their files belong to it.

    With OAuth the token's principal (issuer, subject, client) names the caller, on every connection
    and in both protocol eras. Without it, over streamable HTTP with 2025-era MCP sessions, the
    transport's session id (the `Mcp-Session-Id` header, which the transport itself issued and checks)
    does. Over stdio there is one client per process, and the stateless 2026 protocol carries no
    identity at all; there the streaming session id, 128 random bits given only to its opener, is what
    keeps sessions apart.
    """
    who = principal()  # the OAuth subject where tokens carry one (see `auth.py`)
    if who:
        return who
    transport_session = transport_session_of(ctx)
    if transport_session:
        return f"http-session:{transport_session}"
    return ANONYMOUS


def transport_session_of(ctx: EmotionContext) -> str | None:
    """The 2025-era transport session (`Mcp-Session-Id`) the request came in, or None.

    Only a 2025-era request's `Mcp-Session-Id` is one the transport issued and routes by (an unknown one
    is refused with 404 before any handler runs). A stateless (2026-07-28) request may carry any such
    header it likes, copied from another client: there it names no one.
    """
    headers = ctx.headers
    legacy = ctx.request_context.protocol_version not in MODERN_PROTOCOL_VERSIONS
    return (headers.get("mcp-session-id") or None) if headers is not None and legacy else None


ANONYMOUS = "anonymous"  # the caller's key where the transport and the token name no one (stdio, stateless HTTP)


class ModelLifespan:
    """The server's lifespan: loads the model once and sweeps idle sessions while serving.

    Lifespans that overlap on one server object (several in-process clients) share one load; the
    state goes when the last one ends. `state` is what static resources, which get no request
    context, read.
    """

    def __init__(
        self,
        options: ServerOptions,
        paths: PathPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        updates: Any = None,
    ):
        self.options = options
        self.paths = paths
        self.clock = clock  # what session expiry measures idleness by
        self.updates = updates  # told when sessions end
        self.state: AppContext | None = None
        self._users = 0
        self._lock = anyio.Lock()

    @asynccontextmanager
    async def __call__(self, server: MCPServer) -> AsyncIterator[AppContext]:
        async with self._lock:
            if self.state is None:
                self.state = await anyio.to_thread.run_sync(self._load)
            self._users += 1
            state = self.state
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_sweep_sessions, state)
                state.task_groups.append(tg)
                try:
                    yield state
                finally:
                    state.task_groups.remove(tg)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    self._users -= 1
                    if self._users == 0:
                        self.state = None
                        await close_sessions(state.sessions.clear())

    def _load(self) -> AppContext:
        o = self.options
        recognizer = EmotionRecognizer.from_pretrained(
            o.model, device=o.device, dtype=o.dtype, calibration=o.calibration, operating_point=o.operating_point
        )
        refiner = None
        if o.refine_with is not None:
            refiner = EmotionRecognizer.from_pretrained(
                o.model, device=o.device, dtype=o.dtype, calibration=o.calibration, operating_point=o.refine_with
            )
        return AppContext(
            recognizer=recognizer,
            refiner=refiner,
            options=o,
            paths=self.paths,
            sessions=SessionStore(max_sessions=o.max_sessions, idle_timeout_s=o.session_idle_s, clock=self.clock),
            queue=InferenceQueue(o.max_pending, time_budget_s=o.time_budget),
            journal=SessionJournal(o.session_dir) if o.session_dir is not None else None,
            stream_options=StreamOptions(min_confidence=recognizer.min_confidence),
            updates=self.updates,
        )


async def _sweep_sessions(state: AppContext) -> None:
    """Closes sessions left idle, a few times per timeout."""
    interval = min(30.0, max(0.05, state.options.session_idle_s / 4))
    while True:
        await anyio.sleep(interval)
        await close_sessions(state.sessions.expire(), state.updates)


async def close_sessions(sessions: list[Session], updates: Any = None) -> None:
    """Ends sessions that were dropped or expired: a segmenter holds no thread, so dropping it frees it.

    `updates`: told, so that whoever watched their traces hears of the end and stops watching.
    """
    for s in sessions:
        s.ended = True
    if updates is not None:
        await updates.sessions_ended(sessions)


def trace_of(state: AppContext, session: Session) -> SessionTrace:
    warnings = []
    if state.recognizer.random_weights:
        warnings.append("This checkpoint has random weights (a test model): the readings mean nothing.")
    if session.unrefined:
        warnings.append(
            f"{session.unrefined} utterance(s) kept the fast reading: reading them again at the faithful point failed or "
            "was stopped (see each utterance's operating_point and refined)."
        )
    return SessionTrace(
        session_id=session.id,
        sample_rate=session.sample_rate,
        encoding=session.encoding,
        ended=session.ended,
        received_s=session.received_s,
        utterances=session.trace(),
        model_id=state.recognizer.model_id,
        random_weights=state.recognizer.random_weights,
        warnings=warnings,
        calibration=state.recognizer.info().calibration,
        refining=session.refining + len(session.to_refine) if state.refiner is not None else None,
    )


@contextlib.asynccontextmanager
async def progress_reporter(ctx: EmotionContext) -> AsyncIterator[Callable[[int, int], None]]:
    """A progress(done, total) callback for the worker thread that notifies the client.

    The worker never waits on the client: reports go through a small buffer to a task that sends
    them, and a report that finds the buffer full is dropped (a later one supersedes it). A worker
    blocked on a slow or departed client would hold the model.
    """
    send, receive = anyio.create_memory_object_stream[tuple[int, int]](16)

    async def forward() -> None:
        async with receive:
            async for done, total in receive:
                try:
                    await ctx.report_progress(done, total, f"{done} of {total} windows read")
                except Exception:  # a lost progress notification (client gone) must not fail the analysis
                    pass

    def report(done: int, total: int) -> None:
        try:
            anyio.from_thread.run_sync(send.send_nowait, (done, total))
        except Exception:  # buffer full, or the loop is stopping: skip this report
            pass

    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(forward)
        try:
            yield report
        except Exception as e:  # re-raised below as itself, not inside the task group's exception group
            failure = e
        finally:
            send.close()
    if failure is not None:
        raise failure
