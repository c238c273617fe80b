"""The emotion MCP server: tools, resources and a prompt over one loaded `EmotionRecognizer`.

Build it with `create_server(ServerOptions(...))`; run it with `emotion-mcp` (see `__main__.py`).
The model loads once, in the server's lifespan; every request shares it through a bounded queue.
"""

import os
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Callable, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer, UserMessage
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, ToolAnnotations
from pydantic import Field

from emotion_tool import AudioError, EmotionAnalysis, EmotionRecognizer
from emotion_tool.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from emotion_tool.results import UtteranceReading
from emotion_tool.operating_point import OperatingPoint
from emotion_tool.segmenter import StreamOptions, UtteranceSegmenter

from .app_view import ICONS, TOOL_UI_META, apps_extension
from .auth import principal
from .inference import InferenceQueue, ServerBusy
from .payloads import BYTES_PER_SAMPLE, AudioFormat, PcmEncoding, check_container, decode_base64, decode_pcm
from .prompts import empathetic_reply_text
from .security import PathPolicy, RequestError, read_file_bytes
from .sessions import PushResult, Session, SessionStarted, SessionStore, SessionSummary, SessionTrace, summarize

__all__ = ["create_server", "ServerOptions", "AppContext", "SERVER_NAME"]

SERVER_NAME = "emotion"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
_MIB = 1024 * 1024
_JSON_OVERHEAD_BYTES = _MIB  # room for the JSON-RPC envelope around a base64 payload in one HTTP body


@dataclass(frozen=True)
class ServerOptions:
    """What the server loads and the limits it enforces."""

    model: str | None = None  # Hub id or checkpoint directory; None: $EMOTION_TOOL_MODEL, else MERaLiON/MERaLiON-SER-v1
    device: str = "auto"  # "auto" (CUDA, MPS, CPU), "cpu", "cuda", "cuda:N" or "mps"
    dtype: str = "auto"  # "auto" (bf16/fp16 on GPU, fp32 on CPU), "float32", "float16" or "bfloat16"
    operating_point: str | None = None  # None or "published": reproduces the model; "live": the recommended point for live sessions on a CPU; any name of emotion_tool.operating_point
    allow_dirs: tuple[Path, ...] = ()  # directories audio_path may read from; none: no file is read
    max_duration_s: float = 600.0  # longest recording analyze_emotion takes, seconds
    max_request_mb: float = 16.0  # largest base64 payload (audio_base64, chunk_base64) or file, MiB
    max_chunk_s: float = 10.0  # longest chunk push_audio takes, seconds
    max_session_s: float = 3600.0  # audio one streaming session may receive in all, seconds
    max_sessions: int = 16  # streaming sessions held at once (ended ones make room for new ones)
    session_idle_s: float = 300.0  # a session without a call for this long expires
    max_pending: int = 8  # model jobs admitted at once, the running one included; beyond: "busy"
    log_level: LogLevel = "WARNING"  # the server's log on stderr (stdout carries the protocol over stdio)
    calibration: Path | None = None  # a calibration.json from `emotion-tool calibrate`; None: the network's own probabilities

    def __post_init__(self) -> None:
        for name in ("max_duration_s", "max_request_mb", "max_chunk_s", "max_session_s", "session_idle_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.operating_point is not None:
            OperatingPoint.parse(self.operating_point)  # a bad name fails at start-up, not at the first call
        if self.max_sessions < 1 or self.max_pending < 1:
            raise ValueError(f"max_sessions and max_pending must be at least 1, got {self.max_sessions}, {self.max_pending}")

    @property
    def max_request_chars(self) -> int:
        """The base64 limit in characters."""
        return int(self.max_request_mb * _MIB)

    @property
    def max_http_body_bytes(self) -> int:
        """The HTTP body limit: the largest payload plus its JSON envelope (larger bodies get 413)."""
        return self.max_request_chars + _JSON_OVERHEAD_BYTES


@dataclass
class AppContext:
    """The lifespan state every request shares."""

    recognizer: EmotionRecognizer
    options: ServerOptions
    paths: PathPolicy
    sessions: SessionStore
    queue: InferenceQueue
    stream_options: StreamOptions = field(default_factory=StreamOptions)  # sample_rate set per session


EmotionContext = Context[AppContext, Any]

# --- tool parameters (module level, so the SDK can resolve the annotations) -------------------------

AudioPath = Annotated[
    str | None,
    Field(
        description="Path of an audio file (wav, flac, ogg, mp3) inside a directory the server was started "
        "with --allow-dir; relative paths start in the first such directory. Give this or audio_base64."
    ),
]
AudioBase64 = Annotated[
    str | None,
    Field(
        description="The audio as base64: the bytes of a wav/flac/ogg/mp3 file, or raw mono samples "
        "(then audio_format pcm_s16le or pcm_f32le and sample_rate). Give this or audio_path."
    ),
]
FormatHint = Annotated[
    AudioFormat | None,
    Field(description="What audio_base64 holds; optional for files (their header tells), required for raw PCM"),
]
PcmRate = Annotated[
    int | None,
    Field(description="Hz of raw PCM in audio_base64; files carry their own rate", ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE),
]
TraceFlag = Annotated[bool, Field(description="Also read overlapping windows of window_s every hop_s (an emotion trace over time)")]
WindowS = Annotated[float, Field(description="Trace window length, seconds (2 s is the model's fine-grained unit)", gt=0, le=30)]
HopS = Annotated[float, Field(description="Trace hop between window starts, seconds", gt=0, le=30)]
SessionId = Annotated[str, Field(description="The session_id that start_emotion_session returned", max_length=100)]
SessionRate = Annotated[int, Field(description="Hz of the samples you will push", ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)]
Encoding = Annotated[PcmEncoding, Field(description="Raw mono little-endian samples: pcm_s16le (16-bit) or pcm_f32le (float)")]
ChunkBase64 = Annotated[
    str, Field(description="The next chunk of raw samples as base64, in the session's encoding and rate (100 ms to 1 s is typical)")
]


def _client_key(ctx: EmotionContext) -> str:
    """Who is calling, as far as the transport can tell.

    Over streamable HTTP with MCP sessions the transport's session id (the `Mcp-Session-Id` header,
    which the transport itself issued and checks) identifies the client. Over stdio there is one
    client per process, and the stateless 2026 protocol carries no identity at all; there the
    streaming session id, 128 random bits given only to its opener, is what keeps sessions apart.
    """
    headers = ctx.headers
    transport_session = headers.get("mcp-session-id") if headers is not None else None
    if transport_session:
        return f"http-session:{transport_session}"
    return principal() or "anonymous"  # the OAuth subject where tokens carry one (see `auth.py`)


class _ModelLifespan:
    """The server's lifespan: loads the model once and sweeps idle sessions while serving.

    Lifespans that overlap on one server object (several in-process clients) share one load; the
    state goes when the last one ends. `state` is what static resources, which get no request
    context, read.
    """

    def __init__(self, options: ServerOptions, paths: PathPolicy):
        self.options = options
        self.paths = paths
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
                yield state
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    self._users -= 1
                    if self._users == 0:
                        self.state = None
                        await _close_sessions(state.sessions.clear())

    def _load(self) -> AppContext:
        o = self.options
        recognizer = EmotionRecognizer.from_pretrained(
            o.model, device=o.device, dtype=o.dtype, calibration=o.calibration, operating_point=o.operating_point
        )
        return AppContext(
            recognizer=recognizer,
            options=o,
            paths=self.paths,
            sessions=SessionStore(max_sessions=o.max_sessions, idle_timeout_s=o.session_idle_s),
            queue=InferenceQueue(o.max_pending),
            stream_options=StreamOptions(min_confidence=recognizer.min_confidence),
        )


async def _sweep_sessions(state: AppContext) -> None:
    """Closes sessions left idle, a few times per timeout."""
    interval = min(30.0, max(0.05, state.options.session_idle_s / 4))
    while True:
        await anyio.sleep(interval)
        await _close_sessions(state.sessions.expire())


async def _close_sessions(sessions: list[Session]) -> None:
    for s in sessions:
        s.ended = True  # a segmenter holds no thread: dropping the session frees it


def create_server(options: ServerOptions = ServerOptions(), *, auth: dict[str, Any] | None = None) -> MCPServer[AppContext]:
    """Builds the server. Nothing is loaded until a transport starts it (its lifespan).

    Args:
        options: what to load and the limits to enforce.
        auth: OAuth resource-server settings, `mcp_server.auth.OAuthOptions.server_kwargs()`; None: none.
    """
    lifespan = _ModelLifespan(options, PathPolicy(options.allow_dirs))
    server: MCPServer[AppContext] = MCPServer(
        SERVER_NAME,
        title="Speech emotion perception",
        instructions=(
            "Hears how the user sounds. analyze_emotion reads a recording (file path or base64) and returns the "
            "7 emotions (neutral, happy, sad, angry, fearful, disgusted, surprised) with valence, arousal and "
            "dominance in 0..1. For live speech, start_emotion_session, push_audio raw PCM chunks (each reply "
            "holds the utterances a pause just closed), then end_emotion_session. Readings are cues, not facts: "
            "check `uncertain`, and the empathetic_reply prompt turns a reading into reply guidance."
        ),
        lifespan=lifespan,
        log_level=options.log_level,
        version=_package_version(),
        icons=ICONS,
        extensions=[apps_extension()],
        **(auth or {}),
    )

    def state_of(ctx: EmotionContext) -> AppContext:
        return ctx.request_context.lifespan_context

    # --- recordings -------------------------------------------------------------------------------

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False), icons=ICONS, meta=TOOL_UI_META)
    async def analyze_emotion(
        ctx: EmotionContext,
        audio_path: AudioPath = None,
        audio_base64: AudioBase64 = None,
        audio_format: FormatHint = None,
        sample_rate: PcmRate = None,
        trace: TraceFlag = False,
        window_s: WindowS = 2.0,
        hop_s: HopS = 1.0,
    ) -> EmotionAnalysis:
        """Reads the emotions in a recording of speech.

        Returns a summary reading of the whole recording (label, confidence, the 7 probabilities,
        valence/arousal/dominance in 0..1, `uncertain`), the windows of at most 30 s behind it, and,
        with trace=true, a reading every hop_s seconds. Long recordings report progress.
        """
        state = state_of(ctx)
        o = state.options
        try:
            if (audio_path is None) == (audio_base64 is None):
                raise RequestError(
                    "give exactly one of audio_path (a file in an allowed directory) or audio_base64 (the audio bytes)"
                )
            analysis_options = replace(
                state.recognizer.options, trace=trace, window_s=window_s, hop_s=hop_s, max_duration_s=o.max_duration_s
            )
            if audio_path is not None:
                real = state.paths.resolve(audio_path)
                name = os.path.basename(audio_path)

                def load() -> tuple[Any, int | None]:
                    return read_file_bytes(real, max_bytes=o.max_request_chars, shown_as=audio_path), None

            else:
                assert audio_base64 is not None
                raw = decode_base64(audio_base64, max_chars=o.max_request_chars, field="audio_base64")
                name = "audio_base64"
                if audio_format in BYTES_PER_SAMPLE:
                    if sample_rate is None:
                        raise RequestError(f"audio_format {audio_format} is raw samples: give their sample_rate in Hz too")
                    samples = decode_pcm(raw, audio_format, field="audio_base64")  # type: ignore[arg-type]
                    rate: int | None = sample_rate

                    def load() -> tuple[Any, int | None]:
                        return samples, rate

                else:
                    check_container(raw, audio_format, field="audio_base64")

                    def load() -> tuple[Any, int | None]:
                        return raw, None

            progress = _progress_reporter(ctx)

            def work() -> EmotionAnalysis:
                audio, rate = load()
                return state.recognizer.analyze(
                    audio, sample_rate=rate, options=analysis_options, name=name, progress=progress
                )

            return await state.queue.run(work)
        except (RequestError, AudioError, ServerBusy, ValueError) as e:
            raise ToolError(str(e)) from e

    # --- live sessions ----------------------------------------------------------------------------

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False), icons=ICONS)
    async def start_emotion_session(
        ctx: EmotionContext, sample_rate: SessionRate = 16000, encoding: Encoding = "pcm_s16le"
    ) -> SessionStarted:
        """Opens a streaming session for live speech and returns its session_id.

        Then send the audio in order with push_audio (raw mono little-endian samples at sample_rate, as
        base64), and finish with end_emotion_session. Sessions expire when left idle.
        """
        state = state_of(ctx)
        try:
            await _close_sessions(state.sessions.expire())
            state.sessions.check_room()
            stream_options = replace(state.stream_options, sample_rate=sample_rate)
            segmenter = await anyio.to_thread.run_sync(lambda: UtteranceSegmenter(stream_options))
            session = Session(
                id=state.sessions.new_id(),
                owner=_client_key(ctx),
                sample_rate=sample_rate,
                encoding=encoding,
                segmenter=segmenter,
                last_used=0.0,
            )
            try:
                dropped = state.sessions.add(session)
            except RequestError:
                raise
            await _close_sessions(dropped)
        except (RequestError, ValueError) as e:
            raise ToolError(str(e)) from e
        return SessionStarted(
            session_id=session.id,
            sample_rate=sample_rate,
            encoding=encoding,
            bytes_per_sample=BYTES_PER_SAMPLE[encoding],
            max_chunk_s=state.options.max_chunk_s,
            idle_timeout_s=state.options.session_idle_s,
        )

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False), icons=ICONS)
    async def push_audio(ctx: EmotionContext, session_id: SessionId, chunk_base64: ChunkBase64) -> PushResult:
        """Adds the next chunk of a session's audio; returns readings of the utterances it closed.

        An utterance closes after half a second of silence, so most chunks return no reading and a
        reading arrives shortly after the speaker pauses. If the answer is "busy", nothing was taken:
        send the same chunk again.
        """
        state = state_of(ctx)
        o = state.options
        try:
            session = state.sessions.get(session_id, _client_key(ctx))
            if session.ended:
                raise RequestError(f"session {session_id} has ended; start a new one with start_emotion_session")
            raw = decode_base64(chunk_base64, max_chars=o.max_request_chars, field="chunk_base64")
            samples = decode_pcm(raw, session.encoding, field="chunk_base64")
            seconds = samples.shape[0] / session.sample_rate
            if seconds > o.max_chunk_s:
                raise RequestError(
                    f"chunk_base64 holds {seconds:.1f} s of audio at {session.sample_rate} Hz, over the limit of "
                    f"{o.max_chunk_s:g} s per chunk; send smaller chunks (100 ms to 1 s suit live speech)"
                )
            if session.received + samples.shape[0] > o.max_session_s * session.sample_rate:
                raise RequestError(
                    f"session {session_id} has received {session.received_s:.0f} s of audio and this chunk would pass "
                    f"the limit of {o.max_session_s:g} s; end it with end_emotion_session and start a new one"
                )

            def feed() -> list[UtteranceReading]:
                if session.ended:  # end_emotion_session got its turn first
                    raise RequestError(f"session {session_id} has ended; start a new one with start_emotion_session")
                closed = session.segmenter.push(samples)
                return session.read(state.recognizer, closed, min_confidence=state.stream_options.min_confidence)

            session.in_flight += 1
            try:
                readings = await state.queue.run(feed)
                session.received += samples.shape[0]
            finally:
                session.in_flight -= 1
            return PushResult(
                session_id=session.id,
                readings=readings,
                received_s=session.received_s,
                speaking=session.segmenter.speaking,
                utterances=len(session.readings),
            )
        except (RequestError, AudioError, ServerBusy, ValueError) as e:
            raise ToolError(str(e)) from e

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False), icons=ICONS, meta=TOOL_UI_META)
    async def get_emotion_trace(ctx: EmotionContext, session_id: SessionId) -> SessionTrace:
        """The session's readings so far: one per utterance, with time, label, probabilities and dimensions."""
        state = state_of(ctx)
        try:
            return _trace(state, state.sessions.get(session_id, _client_key(ctx)))
        except RequestError as e:
            raise ToolError(str(e)) from e

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False), icons=ICONS, meta=TOOL_UI_META)
    async def end_emotion_session(ctx: EmotionContext, session_id: SessionId) -> SessionSummary:
        """Ends a session: reads the utterance still open, and returns the trace with an aggregate.

        `overall` weighs every utterance by its duration; `latest` is the last utterance alone. The
        trace stays readable (get_emotion_trace) until the session expires; no more audio is taken.
        """
        state = state_of(ctx)
        try:
            session = state.sessions.get(session_id, _client_key(ctx))
            if session.summary is not None:
                return session.summary

            def finish() -> None:  # one job, so no push can slip in between
                if session.ended:
                    return
                session.read(state.recognizer, session.segmenter.flush(), min_confidence=state.stream_options.min_confidence)
                session.ended = True

            session.in_flight += 1
            try:
                await state.queue.run(finish)
            finally:
                session.in_flight -= 1
            if session.summary is not None:  # a concurrent end finished first
                return session.summary
            trace = _trace(state, session)
            overall, counts = summarize(
                trace.utterances, labels=state.recognizer.labels, min_confidence=state.stream_options.min_confidence
            )
            warnings = list(trace.warnings)
            if not trace.utterances:
                warnings.append("No utterance was heard in this session: there is nothing to read.")
            session.summary = SessionSummary(
                **trace.model_dump(exclude={"warnings"}),
                warnings=warnings,
                overall=overall,
                latest=trace.utterances[-1].reading if trace.utterances else None,
                label_counts=counts,
                speech_s=sum(u.end_s - u.start_s for u in trace.utterances),
            )
            return session.summary
        except (RequestError, AudioError, ServerBusy, ValueError) as e:
            raise ToolError(str(e)) from e

    # --- resources --------------------------------------------------------------------------------

    @server.resource(
        "emotion://model",
        name="model",
        title="The emotion model",
        description="Model id, labels, dimensions and their meaning, operating point, languages, limitations",
        mime_type="application/json",
    )
    def model_info() -> str:
        state = lifespan.state
        if state is None:
            raise ResourceNotFoundError("the model is not loaded yet; read emotion://model once the server has started")
        return state.recognizer.info().model_dump_json(indent=2)

    @server.resource(
        "emotion://sessions/{session_id}/trace",
        name="session_trace",
        title="Emotion trace of a streaming session",
        description="One reading per utterance (time, label, probabilities, valence/arousal/dominance), as JSON",
        mime_type="application/json",
    )
    def session_trace(session_id: str, ctx: EmotionContext) -> str:
        state = state_of(ctx)
        try:
            session = state.sessions.get(session_id, _client_key(ctx))
        except RequestError as e:
            raise ResourceNotFoundError(str(e)) from e
        return _trace(state, session).model_dump_json(indent=2)

    # --- prompt -----------------------------------------------------------------------------------

    @server.prompt(
        title="Empathetic reply",
        description="Tells the assistant how the user sounds (with the reading's uncertainty) and how to adapt its "
        "reply. Arguments: the user's words, and the JSON that analyze_emotion, get_emotion_trace or "
        "end_emotion_session returned.",
    )
    def empathetic_reply(user_words: str, analysis_json: str) -> list[UserMessage]:
        try:
            return [UserMessage(empathetic_reply_text(user_words, analysis_json))]
        except ValueError as e:  # the SDK would replace a plain error's message with a generic one
            raise MCPError(code=INVALID_PARAMS, message=str(e)) from e

    return server


def _package_version() -> str:
    """The installed distribution's version, for `serverInfo`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emotion-tool")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def _trace(state: AppContext, session: Session) -> SessionTrace:
    warnings = []
    if state.recognizer.random_weights:
        warnings.append("This checkpoint has random weights (a test model): the readings mean nothing.")
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
    )


def _progress_reporter(ctx: EmotionContext) -> Callable[[int, int], None]:
    """A progress(done, total) callback for the worker thread that notifies the client."""

    def report(done: int, total: int) -> None:
        try:
            anyio.from_thread.run(ctx.report_progress, done, total, f"{done} of {total} windows read")
        except Exception:  # a lost progress notification (client gone) must not fail the analysis
            pass

    return report

