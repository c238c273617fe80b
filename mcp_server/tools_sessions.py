"""Tools over live sessions: start one, push raw PCM chunks, read its trace, end it."""

import logging
from dataclasses import replace
from typing import Annotated

import anyio
import anyio.to_thread
from mcp.types import ToolAnnotations
from pydantic import Field

from emotion_tool.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from emotion_tool.engine.results import UtteranceReading
from emotion_tool.live.segmenter import Utterance, UtteranceSegmenter
from emotion_tool.live.streaming import read_again, summarize_utterances

from .app_view import ICONS, TOOL_UI_META
from .auth import principal
from .context import (
    EmotionContext,
    client_key,
    close_sessions,
    state_of,
    tool_errors,
    trace_of,
)
from .inference import Job, JobCancelled, ServerBusy
from .payloads import BYTES_PER_SAMPLE, PcmEncoding, decode_base64, decode_pcm
from .security import RequestError
from .sessions import PushResult, Session, SessionStarted, SessionSummary, SessionTrace

__all__ = ["start_emotion_session", "push_audio", "get_emotion_trace", "end_emotion_session", "TOOLS"]

_log = logging.getLogger(__name__)
_BUSY_RETRY_S = 0.25  # a refinement that finds the queue full waits this long before it asks again

# Parameters are module-level so the SDK can resolve the annotations.
SessionId = Annotated[str, Field(description="The session_id that start_emotion_session returned", max_length=100)]
SessionRate = Annotated[int, Field(description="Hz of the samples you will push", ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)]
Encoding = Annotated[PcmEncoding, Field(description="Raw mono little-endian samples: pcm_s16le (16-bit) or pcm_f32le (float)")]
ChunkBase64 = Annotated[
    str, Field(description="The next chunk of raw samples as base64, in the session's encoding and rate (100 ms to 1 s is typical)")
]


async def start_emotion_session(
    ctx: EmotionContext, sample_rate: SessionRate = 16000, encoding: Encoding = "pcm_s16le"
) -> SessionStarted:
    """Opens a streaming session for live speech and returns its session_id.

    Then send the audio in order with push_audio (raw mono little-endian samples at sample_rate, as
    base64), and finish with end_emotion_session. Sessions expire when left idle.
    """
    state = state_of(ctx)
    with tool_errors():
        await close_sessions(state.sessions.expire(), state.updates)
        state.sessions.check_room()
        stream_options = replace(state.stream_options, sample_rate=sample_rate)
        segmenter = await anyio.to_thread.run_sync(lambda: UtteranceSegmenter(stream_options))
        session = Session(
            id=state.sessions.new_id(),
            owner=client_key(ctx),
            sample_rate=sample_rate,
            encoding=encoding,
            segmenter=segmenter,
            last_used=0.0,
        )
        try:
            dropped = state.sessions.add(session)
        except RequestError:
            raise
        await close_sessions(dropped, state.updates)
        if state.journal is not None:
            journal, opener = state.journal, principal()
            await anyio.to_thread.run_sync(
                lambda: journal.start(
                    session, model_id=state.recognizer.model_id, random_weights=state.recognizer.random_weights, principal=opener
                )
            )
    return SessionStarted(
        session_id=session.id,
        sample_rate=sample_rate,
        encoding=encoding,
        bytes_per_sample=BYTES_PER_SAMPLE[encoding],
        max_chunk_s=state.options.max_chunk_s,
        idle_timeout_s=state.options.session_idle_s,
    )


async def push_audio(ctx: EmotionContext, session_id: SessionId, chunk_base64: ChunkBase64) -> PushResult:
    """Adds the next chunk of a session's audio; returns readings of the utterances it closed.

    An utterance closes after half a second of silence, so most chunks return no reading and a
    reading arrives shortly after the speaker pauses. If the answer is "busy", nothing was taken:
    send the same chunk again.
    """
    state = state_of(ctx)
    o = state.options
    with tool_errors():
        session = state.sessions.get(session_id, client_key(ctx))
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

        def feed(job: Job) -> list[UtteranceReading]:
            if session.ended:  # end_emotion_session got its turn first
                raise RequestError(f"session {session_id} has ended; start a new one with start_emotion_session")
            closed = session.segmenter.push(samples)
            readings = session.read(
                state.recognizer, closed, min_confidence=state.stream_options.min_confidence, refine_point=_refine_point(state)
            )
            if state.journal is not None:  # recorded before the caller hears of them
                state.journal.utterances(session.id, readings, received_s=(session.received + samples.shape[0]) / session.sample_rate)
            return readings

        session.in_flight += 1
        try:
            readings = await state.queue.run(feed)
            session.received += samples.shape[0]
        finally:
            session.in_flight -= 1
        _refine_later(state, session)
        if state.updates is not None:  # one change of the trace resource per utterance read
            await state.updates.trace_changed(session, times=sum(not r.interim for r in readings))
        refined, session.refined = session.refined, []
        return PushResult(
            session_id=session.id,
            readings=readings,
            received_s=session.received_s,
            speaking=session.segmenter.speaking,
            utterances=len(session.readings),
            refined=refined,
        )


async def get_emotion_trace(ctx: EmotionContext, session_id: SessionId) -> SessionTrace:
    """The session's readings so far: one per utterance, with time, label, probabilities and dimensions.

    With a server started with --session-dir, the trace of an expired session, or of one from
    before a restart, is read back from its file.
    """
    state = state_of(ctx)
    with tool_errors():
        try:
            return trace_of(state, state.sessions.get(session_id, client_key(ctx)))
        except RequestError:
            # Not held (expired, or from before a restart): the session file still has its trace, read back
            # only for the caller the live session was bound to (the same key; see `client_key`).
            recorded = state.journal.read(session_id, owner=client_key(ctx)) if state.journal is not None else None
            if recorded is None:
                raise
            return recorded


async def end_emotion_session(ctx: EmotionContext, session_id: SessionId) -> SessionSummary:
    """Ends a session: reads the utterance still open, and returns the trace with an aggregate.

    `overall` weighs every utterance by its duration; `latest` is the last utterance alone. The
    trace stays readable (get_emotion_trace) until the session expires; no more audio is taken.
    """
    state = state_of(ctx)
    with tool_errors():
        session = state.sessions.get(session_id, client_key(ctx))
        if session.summary is not None:
            return session.summary

        def finish(job: Job) -> bool:  # one job, so no push can slip in between; True: this call ended it
            if session.ended:
                return False
            last = session.read(
                state.recognizer, session.segmenter.flush(), min_confidence=state.stream_options.min_confidence,
                refine_point=_refine_point(state),
            )  # fmt: skip
            if state.journal is not None:
                state.journal.utterances(session.id, last, received_s=session.received_s)
            session.ended = True
            return True

        session.in_flight += 1
        try:
            ended_here = await state.queue.run(finish)
            if ended_here:
                _refine_later(state, session)
            while session.refining:  # the summary is made of the faithful readings
                await anyio.sleep(0.02)
            if ended_here and state.journal is not None:
                journal = state.journal
                await anyio.to_thread.run_sync(lambda: journal.end(session.id, received_s=session.received_s))
        finally:
            session.in_flight -= 1
        if ended_here and state.updates is not None:  # the trace's last change: its watchers hear of it and stop
            await state.updates.sessions_ended([session])
        if session.summary is not None:  # a concurrent end finished first
            return session.summary
        trace = trace_of(state, session)
        overall, counts = summarize_utterances(
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


def _refine_point(state) -> str | None:
    """The faithful point utterances are read again at, if the server refines (--refine-with)."""
    return state.refiner.operating_point(trace=False) if state.refiner is not None else None


def _refine_later(state, session: Session) -> None:
    """Hands the utterances just read fast to the refiner, each as a background job of the inference queue."""
    jobs, session.to_refine = session.to_refine, []
    for utterance, fast in jobs:
        session.refining += 1
        session.in_flight += 1  # a session never expires under its refinements
        if not state.spawn(_refine, state, session, utterance, fast):
            session.refining -= 1
            session.in_flight -= 1
            session.unrefined += 1


async def _refine(state, session: Session, utterance: Utterance, fast: UtteranceReading) -> None:
    """Reads one utterance again at the faithful point and puts that reading in the fast one's place.

    It waits its turn in the inference queue like any request (asking again while the queue is full, and
    taking one of its `--max-pending` places while it waits). If it fails or is stopped, the fast reading
    stays (counted in the trace's warnings).
    """
    refiner = state.refiner
    point = refiner.operating_point(trace=False)
    min_confidence = state.stream_options.min_confidence

    def read(job: Job) -> UtteranceReading:
        return read_again(refiner, utterance, fast, point=point, min_confidence=min_confidence)

    kept = False
    try:
        while True:
            try:
                faithful = await state.queue.run(read, within_passes=True)
                break
            except ServerBusy:
                if state.queue.closed:
                    raise
                await anyio.sleep(_BUSY_RETRY_S)
        if session.replace(faithful):
            kept = True
            if state.journal is not None:
                journal = state.journal
                await anyio.to_thread.run_sync(lambda: journal.refined(session.id, faithful, received_s=session.received_s))
            if state.updates is not None:
                await state.updates.trace_changed(session)
    except (JobCancelled, ServerBusy) as e:  # the server is stopping, or the job ran past its time budget
        _log.warning("utterance %d of session %s keeps its fast reading: %s", fast.index, session.id, e)
    except Exception:  # a background task's failure must not take the server down with it
        _log.exception("utterance %d of session %s keeps its fast reading: reading it again failed", fast.index, session.id)
    finally:
        if not kept:
            session.unrefined += 1
        session.refining -= 1
        session.in_flight -= 1


_WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_VIEWED = dict(icons=ICONS, meta=TOOL_UI_META)  # results the app view draws

# (function, `add_tool` arguments) in the order the server lists them.
TOOLS = (
    (start_emotion_session, dict(annotations=_WRITES, icons=ICONS)),
    (push_audio, dict(annotations=_WRITES, icons=ICONS)),
    (get_emotion_trace, dict(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False), **_VIEWED)),
    (
        end_emotion_session,
        dict(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False), **_VIEWED),
    ),
)
