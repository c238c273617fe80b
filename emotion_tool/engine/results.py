"""Result types shared by the engine, the CLI, the MCP server and the LangGraph nodes.

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

import math
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field

OperatingPointName = str
"""How windows are fed to the network (see `emotion_tool.engine.operating_point`). "published": every window zero-padded to 30 s (3000 mel
frames), exactly as MERaLiON-SER-v1 was used; the only operating point that reproduces it.
Otherwise the opt-in choices in use, joined by "+": "trimmed" (the encoder sees only each window's
frames), "bf16"/"fp16" (the encoder in half precision), "int8" (dynamically quantized linear layers),
"shared-encoder" (trace windows pooled from one encoder pass per 30-s window)."""


class CalibrationNote(BaseModel):
    """Which calibration turned the network's logits into the probabilities of a reading."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)  # nothing non-finite is ever read, stored or served

    source: str = Field(description="The calibration file's name, or \"in memory\"")
    sha256: str = Field(description="First 12 hex digits of the SHA-256 of the calibration's canonical JSON")
    temperature: float = Field(description="Logits were divided by this before the softmax")
    bias: bool = Field(description="Whether a per-class bias was added to the scaled logits")
    min_confidence: float | None = Field(description="The uncertain threshold fitted with it; null: none was fitted")
    fitted_for: str = Field(description="The model and operating point it was fitted for")
    fitted_on: str = Field(description="The development manifest it was fitted on")
    random_weights: bool = Field(description="Fitted on a random-weight checkpoint: it means nothing")


def _absent(value: object) -> bool:
    return value is None


class EmotionReading(BaseModel):
    """What the model says about one stretch of speech: the 7 emotions and valence/arousal/dominance."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)  # nothing non-finite is ever read, stored or served

    start_s: float = Field(description="Start of the stretch in the audio, seconds")
    end_s: float = Field(description="End of the stretch in the audio, seconds")
    label: str = Field(description="Most probable emotion")
    confidence: float = Field(description="Probability of `label`, 0..1")
    probabilities: dict[str, float] = Field(description="Probability of each emotion; sums to 1")
    valence: float = Field(description="0 negative .. 1 positive")
    arousal: float = Field(description="0 calm .. 1 active")
    dominance: float = Field(description="0 weak .. 1 strong")
    margin: float = Field(description="Top-1 minus top-2 probability; small means the model hesitates")
    entropy: float = Field(description="Normalised entropy of the probabilities, 0 certain .. 1 uniform")
    uncertain: bool = Field(description="True when confidence is below the configured minimum, or no speech was detected")
    speaker: str | None = Field(
        default=None,
        exclude_if=_absent,  # left out of the JSON unless channels are read as speakers, so mixed outputs are unchanged
        description="Whose speech this is (a channel's name, or a diarized speaker's); absent: one voice",
    )

    @classmethod
    def from_outputs(
        cls,
        probabilities: Sequence[float],
        dims: Sequence[float],
        *,
        labels: Sequence[str],
        start_s: float,
        end_s: float,
        min_confidence: float,
    ) -> "EmotionReading":
        """Builds a reading from a probability vector (in `labels` order) and (valence, arousal, dominance)."""
        probs = [float(p) for p in probabilities]
        order = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)
        top, second = probs[order[0]], probs[order[1]] if len(probs) > 1 else 0.0
        entropy = -sum(p * math.log(p) for p in probs if p > 0.0)
        return cls(
            start_s=float(start_s),
            end_s=float(end_s),
            label=labels[order[0]],
            confidence=top,
            probabilities=dict(zip(labels, probs)),
            valence=float(dims[0]),
            arousal=float(dims[1]),
            dominance=float(dims[2]),
            margin=top - second,
            entropy=entropy / math.log(len(probs)) if len(probs) > 1 else 0.0,
            uncertain=top < min_confidence,
        )

    def describe(self) -> str:
        """One line for people and LLMs, e.g. 'angry (0.71; valence 0.22, arousal 0.81, dominance 0.64)'."""
        hedge = "possibly " if self.uncertain else ""
        return (
            f"{hedge}{self.label} ({self.confidence:.2f}; valence {self.valence:.2f}, "
            f"arousal {self.arousal:.2f}, dominance {self.dominance:.2f})"
        )


class TraceSegment(BaseModel):
    """One window of a trace. Windows with too little speech are kept and marked, without a reading."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)  # nothing non-finite is ever read, stored or served

    start_s: float = Field(description="Window start, seconds")
    end_s: float = Field(description="Window end, seconds")
    speech_ratio: float = Field(description="Share of the window the voice activity detector marked as speech")
    is_speech: bool = Field(description="Whether the window holds enough speech to be read")
    reading: EmotionReading | None = Field(default=None, description="The reading; null for non-speech windows")
    speaker: str | None = Field(
        default=None, exclude_if=_absent, description="Whose speech this window reads (a channel's, or a diarized speaker's); absent: one voice"
    )
    overlap: bool | None = Field(
        default=None,
        exclude_if=_absent,
        description="True when another speaker also speaks in this window; absent: one voice",
    )


class SpeakerSummary(BaseModel):
    """One speaker of a recording: a channel read on its own, or the turns a diarizer gave one voice."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)  # nothing non-finite is ever read, stored or served

    speaker: str = Field(description="The channel's name, or the diarized speaker's (\"speaker 1\", ... in order of first speech)")
    channel: int | None = Field(
        default=None, exclude_if=_absent, description="The channel's index in the file, from 0; absent: a diarized speaker"
    )
    summary: EmotionReading = Field(description="The speaker's own reading, aggregated over their windows by speech duration")
    speech_s: float = Field(description="Seconds of this speaker's detected speech")
    speech_ratio: float = Field(description="speech_s / the recording's duration_s")
    overlap_s: float = Field(description="Seconds of this speaker's speech during which another speaker speaks too")
    turns: int | None = Field(default=None, exclude_if=_absent, description="How many turns the diarizer gave this speaker; absent: a channel")


class SpeakerTurn(BaseModel):
    """One turn of one speaker, as the diarizer found it."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    speaker: str = Field(description="Whose turn it is")
    start_s: float = Field(description="Start of the turn, seconds")
    end_s: float = Field(description="End of the turn, seconds")


class DiarizationNote(BaseModel):
    """How a one-channel recording was split into speakers, and the turns found."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    backend: str = Field(description="What found the turns (the voice encoder's package and version, the clustering)")
    num_speakers: int = Field(description="How many speakers were found (or given)")
    given: bool = Field(description="True when the number of speakers was given, False when the diarizer found it")
    turns: list[SpeakerTurn] = Field(description="The turns, in time order; each turn's windows are read as its own utterance")
    overlaps_found: bool = Field(
        default=False, description="Whether the backend can find two people speaking at once (this one gives each moment to one speaker)"
    )


class TranscriptLine(BaseModel):
    """One timed line (a cue, a sentence or a word) of a transcript, with the reading of its speaker over it."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    start_s: float = Field(description="Start of the line, seconds")
    end_s: float = Field(description="End of the line, seconds")
    text: str = Field(description="The words")
    speaker: str | None = Field(default=None, exclude_if=_absent, description="Who says it: the transcript's name, or the speaker who talks most during it")
    reading: EmotionReading | None = Field(
        default=None, description="The speaker's readings over the line, weighted by overlap; null where nothing of theirs was read"
    )


class EmotionAnalysis(BaseModel):
    """The analysis of one recording: a summary reading, the windows behind it, and an optional trace."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)  # nothing non-finite is ever read, stored or served

    summary: EmotionReading = Field(description="The whole recording, aggregated over its windows by speech duration")
    windows: list[EmotionReading] = Field(
        description="Readings of the windows (at most 30 s each) that the summary aggregates"
    )
    segments: list[TraceSegment] = Field(default_factory=list, description="The trace; empty unless requested")
    duration_s: float = Field(description="Length of the recording, seconds")
    speech_s: float = Field(description="Seconds of detected speech")
    speech_ratio: float = Field(description="speech_s / duration_s")
    trace_window_s: float | None = Field(default=None, description="Trace window length, seconds")
    trace_hop_s: float | None = Field(default=None, description="Trace hop, seconds")
    source: str | None = Field(default=None, description="Where the audio came from (file name), if known")
    model_id: str = Field(description="The checkpoint: Hub id or directory")
    random_weights: bool = Field(description="True for test checkpoints with random weights: readings mean nothing")
    operating_point: OperatingPointName = Field(description="How windows were fed to the network")
    labels: list[str] = Field(description="Emotion labels in the model's index order")
    warnings: list[str] = Field(default_factory=list, description="Caveats about this analysis")
    calibration: CalibrationNote | None = Field(
        default=None,
        exclude_if=_absent,  # left out of the JSON when none is loaded, so outputs without one are unchanged
        description="The calibration the probabilities went through; absent: the network's own probabilities",
    )
    speakers: list[SpeakerSummary] | None = Field(
        default=None,
        exclude_if=_absent,  # left out of the JSON unless channels (or diarized turns) are read as speakers
        description=(
            "One summary per speaker when channels are read as speakers or turns are diarized; then `windows` and `segments` hold "
            "every channel's, each with its `speaker`, and `summary` aggregates all of them by speech duration"
        ),
    )
    overlap_s: float | None = Field(
        default=None, exclude_if=_absent, description="Seconds in which two or more channels hold speech at once"
    )
    diarization: DiarizationNote | None = Field(
        default=None, exclude_if=_absent, description="With diarize: the backend and the speaker turns it found; absent otherwise"
    )
    transcript: list[TranscriptLine] | None = Field(
        default=None, exclude_if=_absent, description="With a timed transcript: each line with its speaker's reading; absent otherwise"
    )


class ModelInfo(BaseModel):
    """What is loaded and how it reads speech; served to people (CLI) and assistants (MCP)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)  # nothing non-finite is ever read, stored or served

    model_id: str = Field(description="The checkpoint: Hub id or directory")
    random_weights: bool = Field(description="True for test checkpoints with random weights: readings mean nothing")
    labels: list[str] = Field(description="Emotion labels in the model's index order")
    dimensions: dict[str, str] = Field(description="Each dimension and what its 0..1 scale means")
    operating_point: OperatingPointName = Field(description="How windows are fed to the network")
    sample_rate: int = Field(description="Hz; all audio is converted to this, mono")
    max_window_s: float = Field(description="Longest stretch the network reads at once, seconds")
    device: str = Field(description="Where the network runs")
    dtype: str = Field(description="Numeric precision of the encoder (pooling and heads stay fp32 on the CPU)")
    parameters: int = Field(description="Parameters of the loaded network (the unused Whisper decoder is not loaded)")
    cpu: str | None = Field(default=None, description="The CPU's vector and matrix features (bf16/int8 units), when the network runs on the CPU")
    encoder_runtime: str | None = Field(
        default=None,
        exclude_if=_absent,  # left out where torch runs the encoder, so outputs are unchanged
        description="What runs the encoder when it is not torch (OpenVINO's version, plugin, precision hint, threads)",
    )
    languages: list[str] = Field(description="Languages the model was trained for")
    limitations: list[str] = Field(description="Known weaknesses to keep in mind when acting on readings")
    calibration: CalibrationNote | None = Field(
        default=None,
        exclude_if=_absent,  # left out of the JSON when none is loaded, so outputs without one are unchanged
        description="The calibration the probabilities went through; absent: the network's own probabilities",
    )


DIMENSION_MEANINGS = {
    "valence": "0 negative .. 1 positive",
    "arousal": "0 calm .. 1 active",
    "dominance": "0 weak / submissive .. 1 strong / in control",
}
LANGUAGES = ["English", "Chinese (Mandarin)", "Malay", "Tamil", "other South-East Asian languages (weaker)"]
LIMITATIONS = [
    "Speech emotion recognition is uncertain: treat readings as cues, not facts, and check `uncertain`.",
    "Out of domain (acted English corpora) valence spans a narrow range; calm speech can read as sad.",
    "Clips under about 1 s carry little evidence; readings on them are unreliable.",
    "Weak on languages outside its training set (e.g. Vietnamese).",
    "It hears how something is said, not what is said: combine it with the words.",
]


class UtteranceReading(BaseModel):
    """One utterance of a live stream and its reading, as the streaming analyzer produces them.

    Times are seconds in the stream (from its first sample, dropped audio included), in the
    utterance and in its `reading` alike.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)  # nothing non-finite is ever read, stored or served

    index: int = Field(description="Utterance number in the stream, from 0; interim readings share their utterance's")
    start_s: float = Field(description="Start of the utterance in the stream, seconds (speech padding included)")
    end_s: float = Field(description="End of the utterance in the stream, seconds; for an interim reading, so far")
    reading: EmotionReading = Field(description="The model's reading of the utterance, with the same stream times")
    interim: bool = Field(default=False, description="True for a reading of an utterance still in progress")
    cut: bool = Field(
        default=False,
        description="True when the utterance reached the maximum length and was cut; the speech goes on in the next",
    )
    latency_s: float = Field(description="Seconds from the end of the utterance's speech (when its last voiced frame was fed; the closing pause counts) to its reading being ready")
    operating_point: OperatingPointName | None = Field(
        default=None,
        exclude_if=_absent,  # left out unless a stream reads at two points (a refinement)
        description="The operating point this reading was made at, where a stream reads each utterance at two",
    )
    refined: bool | None = Field(
        default=None,
        exclude_if=_absent,
        description="With a refinement: False for the fast first reading, True for the faithful one that replaces it",
    )
