"""Streaming sessions: live audio pushed in chunks, read one utterance at a time.

Each session holds one `emotion_tool.live.segmenter.UtteranceSegmenter` (the same segmentation the
microphone demo uses; synchronous, so a session needs no thread of its own: its work runs as jobs of
the server's inference queue) and keeps its trace. The store bounds how many sessions exist, expires those
left idle, and hands a session only to the client that opened it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from emotion_tool.engine.results import CalibrationNote, EmotionReading, UtteranceReading
from emotion_tool.live.segmenter import Utterance, UtteranceSegmenter
from emotion_tool.live.streaming import read_utterance

from .payloads import PcmEncoding
from .security import RequestError

SESSION_ID_BYTES = 16  # 128 random bits: a session id cannot be guessed


class SessionStarted(BaseModel):
    """A new streaming session and the chunk contract of `push_audio`."""

    model_config = ConfigDict(frozen=True)

    session_id: str = Field(description="Pass it to push_audio, get_emotion_trace and end_emotion_session")
    sample_rate: int = Field(description="Hz of the samples to push")
    encoding: PcmEncoding = Field(description="Raw mono little-endian samples: pcm_s16le or pcm_f32le")
    bytes_per_sample: int = Field(description="2 for pcm_s16le, 4 for pcm_f32le; chunks hold whole samples")
    max_chunk_s: float = Field(description="Longest chunk push_audio takes, seconds (100 ms to 1 s chunks suit live speech)")
    idle_timeout_s: float = Field(description="The session expires after this many seconds without a call")


class PushResult(BaseModel):
    """What one pushed chunk produced."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    readings: list[UtteranceReading] = Field(
        description="Utterances that ended in this chunk (a pause closes an utterance), with their readings"
    )
    received_s: float = Field(description="Seconds of audio received by the session so far")
    speaking: bool = Field(description="Whether an utterance is still going on at the end of this chunk")
    utterances: int = Field(description="Utterances read in the session so far")
    refined: list[UtteranceReading] = Field(
        default_factory=list,
        exclude_if=lambda v: not v,
        description="On a server that refines (--refine-with): faithful readings finished since the last call, each "
        "replacing the fast reading of the same index in the trace; absent: none",
    )


class SessionTrace(BaseModel):
    """A session's utterances so far, each with its time, label, probabilities and dimensions."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    sample_rate: int = Field(description="Hz of the pushed samples")
    encoding: PcmEncoding
    ended: bool = Field(description="True once end_emotion_session was called; no more audio is taken")
    received_s: float = Field(description="Seconds of audio received")
    utterances: list[UtteranceReading] = Field(description="One reading per utterance, in stream order")
    model_id: str = Field(description="The checkpoint that made the readings")
    random_weights: bool = Field(description="True for test checkpoints with random weights: readings mean nothing")
    warnings: list[str] = Field(default_factory=list, description="Caveats about these readings")
    calibration: CalibrationNote | None = Field(
        default=None, exclude_if=lambda v: v is None, description="The calibration the probabilities went through; absent: none"
    )
    refining: int | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="On a server that refines (--refine-with): utterances whose faithful reading is still being "
        "computed (their fast reading stands meanwhile); absent: the server reads once",
    )


class SessionSummary(SessionTrace):
    """The end of a session: its trace plus an aggregate.

    `overall` is the mean of the utterances' probabilities and valence/arousal/dominance weighted by
    each utterance's duration — the rule `analyze_emotion` uses to summarise a recording from its
    windows — so a long utterance counts more than a short interjection. `latest` is the last
    utterance alone: how the speaker sounded most recently, which is often what a reply should meet.
    """

    overall: EmotionReading | None = Field(
        description="All utterances together, weighted by duration; null when no speech was heard"
    )
    latest: EmotionReading | None = Field(description="The last utterance's reading; null when no speech was heard")
    label_counts: dict[str, int] = Field(description="How many utterances were read as each emotion")
    speech_s: float = Field(description="Seconds covered by the utterances")


@dataclass(eq=False)
class Session:
    """One client's live stream. The store owns it; model work on it goes through the inference queue."""

    id: str
    owner: str  # who opened it (see `mcp_server.server._client_key`)
    sample_rate: int
    encoding: PcmEncoding
    segmenter: UtteranceSegmenter
    last_used: float  # store clock
    received: int = 0  # samples received, at `sample_rate`
    in_flight: int = 0  # calls working on it now; such a session never expires under them
    ended: bool = False
    readings: list[UtteranceReading] = field(default_factory=list)  # final readings so far, kept after the end
    summary: SessionSummary | None = None  # set by end_emotion_session; a repeated end returns it
    # With a refinement (--refine-with): utterances read fast and waiting to be read again, ...
    to_refine: list[tuple[Utterance, UtteranceReading]] = field(default_factory=list)
    refining: int = 0  # ... those handed to the refiner and not finished, ...
    refined: list[UtteranceReading] = field(default_factory=list)  # ... faithful readings the next push hands out, ...
    unrefined: int = 0  # ... and those that kept their fast reading (the refinement failed or was stopped)

    @property
    def received_s(self) -> float:
        return self.received / self.sample_rate

    def trace(self) -> list[UtteranceReading]:
        return list(self.readings)

    def read(
        self, recognizer, utterances: list[Utterance], *, min_confidence: float, refine_point: str | None = None
    ) -> list[UtteranceReading]:
        """Reads utterances the segmenter closed (one window each) and adds the final ones to the trace.
        Runs off the event loop, as an inference-queue job.

        With `refine_point` (the server refines), readings are marked as the fast ones (`refined=False`,
        their point named) and the final ones are queued in `to_refine` for the faithful reading.
        """
        out = []
        for u in utterances:
            r = read_utterance(recognizer, u, index=len(self.readings), min_confidence=min_confidence)
            if refine_point is not None:
                r = r.model_copy(update={"operating_point": recognizer.operating_point(trace=False), "refined": False})
            out.append(r)
            if not u.interim:
                self.readings.append(r)
                if refine_point is not None:
                    self.to_refine.append((u, r))
        return out

    def replace(self, faithful: UtteranceReading) -> bool:
        """Puts a faithful reading in the place of the fast one with its index; False if it is gone."""
        for i, kept in enumerate(self.readings):
            if kept.index == faithful.index:
                self.readings[i] = faithful
                self.refined.append(faithful)
                return True
        return False


class SessionStore:
    """At most `max_sessions` sessions; those untouched for `idle_timeout_s` expire.

    Used from the event loop only (not thread-safe). Expired and evicted sessions are handed back to
    the caller, whose job is to drop their segmenters.
    """

    def __init__(self, *, max_sessions: int, idle_timeout_s: float, clock: Callable[[], float] = time.monotonic):
        if max_sessions < 1 or idle_timeout_s <= 0:
            raise ValueError(f"max_sessions must be >= 1 and idle_timeout_s > 0, got {max_sessions}, {idle_timeout_s}")
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def new_id(self) -> str:
        return "ses_" + secrets.token_urlsafe(SESSION_ID_BYTES)

    def check_room(self) -> None:
        """Raises the error `add` would raise now, before the caller builds a session.

        Raises:
            RequestError: every slot holds an open session.
        """
        if len(self._sessions) >= self.max_sessions and not any(self._evictable(s) for s in self._sessions.values()):
            raise RequestError(
                f"{len(self._sessions)} streaming sessions are open, the most this server holds; end one "
                f"with end_emotion_session, or wait until an idle one expires ({self.idle_timeout_s:g} s "
                "without a call)"
            )

    def add(self, session: Session) -> list[Session]:
        """Stores a new session, making room by dropping the oldest ended one if needed.

        Returns:
            Sessions dropped to make room (they had ended).

        Raises:
            RequestError: every slot holds an open session.
        """
        self.check_room()
        dropped: list[Session] = []
        if len(self._sessions) >= self.max_sessions:
            oldest = min((s for s in self._sessions.values() if self._evictable(s)), key=lambda s: s.last_used)
            dropped.append(self._sessions.pop(oldest.id))
        session.last_used = self._clock()
        self._sessions[session.id] = session
        return dropped

    def get(self, session_id: str, owner: str) -> Session:
        """The session, if it exists, has not expired, and belongs to `owner`; touching it.

        Raises:
            RequestError: the same message whether the id is unknown, expired or someone else's.
        """
        session = self._sessions.get(session_id)
        if session is None or session.owner != owner or self._idle(session):
            raise RequestError(
                f"unknown session {session_id!r}: it was never opened, expired after {self.idle_timeout_s:g} s "
                "without a call, or belongs to another client; start one with start_emotion_session"
            )
        session.last_used = self._clock()
        return session

    def owned_by(self, owner: str) -> list[Session]:
        """The sessions `get` would hand `owner` now (without touching them: listing one is no use of it)."""
        return [s for s in self._sessions.values() if s.owner == owner and not self._idle(s)]

    def expire(self) -> list[Session]:
        """Removes and returns the sessions idle for longer than `idle_timeout_s` (none with work in flight)."""
        gone = [s for s in self._sessions.values() if self._idle(s)]
        for s in gone:
            del self._sessions[s.id]
        return gone

    def clear(self) -> list[Session]:
        """Removes and returns every session (at shutdown)."""
        gone = list(self._sessions.values())
        self._sessions.clear()
        return gone

    def _idle(self, session: Session) -> bool:
        return session.in_flight == 0 and self._clock() - session.last_used > self.idle_timeout_s

    @staticmethod
    def _evictable(session: Session) -> bool:
        return session.ended and session.in_flight == 0
