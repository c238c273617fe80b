"""What a session is made of and what `--save` writes: the agent's turns and the session record; the demo's settings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from emotion_tool.engine.results import CalibrationNote, UtteranceReading


PROG = "python -m demos.microphone"
BLOCK_S = 0.05  # seconds of audio per callback block: 50 ms keeps the level meter lively
POLL_S = 0.05  # how often the main loop collects readings and redraws
TRACE_ROWS = 8  # utterances shown in the running trace
_DIMS = ("valence", "arousal", "dominance")


class DemoError(Exception):
    """A problem the user can fix (no PortAudio, no device, bad file...); printed as one line."""


class AgentTurn(BaseModel):
    """The agent's answer to one utterance."""

    index: int = Field(description="The utterance answered (UtteranceReading.index)")
    strategy: str | None = Field(description="The plan's name, e.g. 'de-escalate'; null if the agent failed")
    reply: str = Field(description="What the agent said, or why it could not answer")
    seconds: float = Field(description="Seconds the agent took")


class SessionRecord(BaseModel):
    """What `--save` writes as session.json: the readings of a live session and the agent's answers."""

    model_id: str = Field(description="The checkpoint that read the session")
    operating_point: str = Field(description="How utterances were fed to the network (\"published\" reproduces the model)")
    random_weights: bool = Field(description="True for random-weight test checkpoints: readings mean nothing")
    source: str = Field(description="The input device, or the replayed file")
    input_sample_rate: int = Field(description="Hz of the captured audio (resampled to 16 kHz for analysis)")
    duration_s: float = Field(description="Seconds of stream analysed")
    dropped_s: float = Field(description="Seconds of audio lost because analysis fell behind")
    stream_options: dict[str, Any] = Field(description="The StreamOptions the analyzer ran with")
    calibration: CalibrationNote | None = Field(
        default=None, exclude_if=lambda v: v is None, description="The calibration the readings went through; absent: none"
    )
    utterances: list[UtteranceReading] = Field(description="One final reading per utterance, in order")
    replies: list[AgentTurn] = Field(description="The agent's answers, one per utterance unless disabled")
