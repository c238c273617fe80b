"""The option objects (how recordings are analysed, loaded, scored and calibrated) and the operating
points' names. Imports no torch, so command lines take their defaults from here at `--help`.

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

from emotion_tool.audio.vad import VadOptions
from emotion_tool.engine.operating_point import NAMED_POINTS
from emotion_tool.engine.windows import MIN_HOP_S, MIN_TRACE_WINDOW_S

__all__ = ["AnalysisOptions", "EvaluationOptions", "LoadOptions", "CalibrationOptions", "FAST_POINTS"]

Context = Literal["padded", "trimmed"]
TraceMode = Literal["windows", "shared-encoder"]
Quantization = Literal["int8"]
Precision = Literal["fp32", "bf16", "fp16", "int8"]

ECE_BINS = 15  # equal-width bins, as in Guo et al. (2017), "On Calibration of Modern Neural Networks"

FAST_POINTS: tuple[str, ...] = tuple(p for p in NAMED_POINTS if p != "published")
"""The opt-in operating points `emotion-tool agree` measures by default, each compared with "published"."""


@dataclass(frozen=True)
class AnalysisOptions:
    """How recordings are analysed. Defaults reproduce the published model's use."""

    trace: bool = False  # also read windows of `window_s` every `hop_s`
    window_s: float = 2.0  # trace window, seconds (the paper's fine-grained segments)
    hop_s: float = 1.0  # trace hop, seconds
    max_window_s: float = 30.0  # longer audio is split at pauses into windows of at most this many seconds
    min_duration_s: float = 0.5  # shorter audio is refused as too short to judge
    max_duration_s: float = 3600.0  # longer audio is refused before decoding; inf: no limit
    min_confidence: float | None = None  # readings whose top probability is below this are flagged uncertain; None: a loaded calibration's fitted threshold, else 0.5
    min_speech_ratio: float = 0.25  # trace windows with less speech are marked non-speech and not read
    batch_size: int | None = None  # windows per forward pass; None: 1 on the CPU (bigger batches of 30-s windows only thrash its caches: benchmarks/speed.py), 8 on a GPU
    vad: VadOptions = field(default_factory=VadOptions)  # how speech is told from silence
    # Fast operating points (opt-in; they change the numbers — `emotion-tool agree` measures by how much):
    context: Context = "padded"  # "padded": each window zero-padded to 30 s (published); "trimmed": the encoder sees only the window's own frames
    trace_mode: TraceMode = "windows"  # "windows": each trace window read on its own (published); "shared-encoder": one encoder pass per <= 30-s window, pooling and heads over each trace window's frames
    channels: tuple[str, ...] | None = None  # None: channels mixed to one voice (published); speaker names in channel order, e.g. ("agent", "customer"): each channel read as its own speaker
    diarize: bool = False  # opt-in, one-channel audio: speaker turns found by a diarizer (emotion_tool.audio.diarize), each turn read as its own utterance, a summary per speaker
    num_speakers: int | None = None  # with diarize: how many speakers there are; None: found (at most 8)

    def __post_init__(self) -> None:
        if self.channels is not None:
            names = (self.channels,) if isinstance(self.channels, str) else tuple(self.channels)
            if not names or not all(isinstance(n, str) and n.strip() for n in names) or len(set(names)) != len(names):
                raise ValueError(f"channels must name each channel once, in order (e.g. ('agent', 'customer')), got {self.channels!r}")
            object.__setattr__(self, "channels", names)  # a list is kept as a tuple, so the options stay hashable
        if self.diarize and self.channels is not None:
            raise ValueError("diarize reads one voice channel as several speakers, channels reads each channel as one: choose one of them")
        if self.num_speakers is not None:
            n = self.num_speakers
            if not self.diarize:
                raise ValueError("num_speakers (--speakers) counts diarized speakers: add diarize=True (--diarize), or leave num_speakers out")
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 8:
                raise ValueError(f"num_speakers must be a whole number from 1 to 8, or None to find it; got {n!r}")
        if self.diarize and self.trace_mode == "shared-encoder":
            raise ValueError("diarize reads each speaker's turns on their own; use trace_mode='windows' with it")
        for name in ("window_s", "hop_s", "max_window_s", "min_duration_s", "min_confidence", "min_speech_ratio"):
            value = getattr(self, name)
            if value is None and name == "min_confidence":  # the calibration's threshold, else 0.5
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not (isinstance(self.max_duration_s, (int, float)) and self.max_duration_s > 0):  # inf: no limit
            raise ValueError(f"max_duration_s must be a positive number of seconds, got {self.max_duration_s!r}")
        if not 0 < self.max_window_s <= 30:
            raise ValueError(f"max_window_s must be in (0, 30] seconds (the encoder's span), got {self.max_window_s}")
        if not 0 < self.hop_s <= self.window_s:
            raise ValueError(f"need 0 < hop_s <= window_s (a trace without gaps), got window_s={self.window_s}, hop_s={self.hop_s}")
        if self.window_s < MIN_TRACE_WINDOW_S or self.hop_s < MIN_HOP_S:
            raise ValueError(
                f"trace windows of window_s={self.window_s:g} every hop_s={self.hop_s:g} are too fine: use window_s >= "
                f"{MIN_TRACE_WINDOW_S:g} and hop_s >= {MIN_HOP_S:g} seconds"
            )
        if self.window_s > self.max_window_s:
            raise ValueError(f"window_s={self.window_s} exceeds max_window_s={self.max_window_s}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (or None for the device's default), got {self.batch_size}")
        if not 0 <= (self.min_confidence or 0) <= 1 or not 0 <= self.min_speech_ratio <= 1:
            raise ValueError("min_confidence and min_speech_ratio are fractions in [0, 1]")
        if self.context not in ("padded", "trimmed"):
            raise ValueError(f"context must be 'padded' (published) or 'trimmed', got {self.context!r}")
        if self.trace_mode not in ("windows", "shared-encoder"):
            raise ValueError(f"trace_mode must be 'windows' (published) or 'shared-encoder', got {self.trace_mode!r}")


@dataclass(frozen=True)
class LoadOptions:
    """Which model is loaded, and onto what (the arguments of `EmotionRecognizer.from_pretrained`)."""

    model: str | None = None  # Hub id or checkpoint directory; None: $EMOTION_TOOL_MODEL, else the published model
    device: str = "auto"  # "auto" (CUDA, MPS, CPU), "cpu", "cuda", "cuda:N" or "mps"
    dtype: str = "auto"  # "auto" (bf16/fp16 on GPU, fp32 on CPU), "float32", "float16" or "bfloat16"
    offline: bool = False  # never reach the Hub; use the local cache only
    quantize: Quantization | None = None  # "int8": older spelling of operating_point="int8"
    operating_point: str | None = None  # None or "published": reproduces the model; "live", "bf16", "trimmed+int8", ... (emotion_tool.engine.operating_point)
    calibration: str | os.PathLike | None = None  # a calibration.json from `emotion-tool calibrate`; None: the network's own probabilities


Protocol = Literal["segments", "utterances"]
PROTOCOLS: tuple[Protocol, ...] = ("segments", "utterances")


@dataclass(frozen=True)
class EvaluationOptions:
    """How items are cut into the segments that are scored."""

    segment_s: float = 2.0  # length of fine-grained segments, seconds
    min_segment_s: float = 1.0  # a last fine-grained piece shorter than this is left out
    merge_max_s: float = 15.0  # items up to this are read whole; longer ones are split into equal parts
    protocols: tuple[Protocol, ...] = ("segments", "utterances")  # which readings to score
    batch_size: int = 8  # segments per forward pass
    bins: int = ECE_BINS  # equal-width confidence bins of ECE and the reliability diagram
    bootstrap: int = 1000  # resamples for confidence intervals of UAR and CCC; 0: no intervals
    level: float = 0.95  # coverage of the confidence intervals
    seed: int = 0  # seed of the bootstrap

    def __post_init__(self) -> None:
        if not 0 < self.min_segment_s <= self.segment_s:
            raise ValueError(f"need 0 < min_segment_s <= segment_s, got {self.min_segment_s} and {self.segment_s}")
        if self.merge_max_s < self.segment_s:
            raise ValueError(f"merge_max_s={self.merge_max_s} must be at least segment_s={self.segment_s}")
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad or not self.protocols:
            raise ValueError(f"protocols {list(self.protocols)}: choose from {list(PROTOCOLS)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.bins < 1 or self.bootstrap < 0 or not 0 < self.level < 1:
            raise ValueError(f"need bins >= 1, bootstrap >= 0 and 0 < level < 1; got {self.bins}, {self.bootstrap}, {self.level}")


@dataclass(frozen=True)
class CalibrationOptions:
    """How a calibration is fitted on development segments."""

    bias: bool = True  # fit a per-class bias as well as the temperature, where the data supports it
    min_per_class: int = 30  # a bias is fitted only when every label has at least this many segments
    target_precision: float | None = 0.8  # choose the `uncertain` threshold for this precision of unflagged readings; None: keep 0.5
    min_accepted: int = 10  # the threshold must leave at least this many unflagged segments
    bins: int = ECE_BINS  # equal-width bins for ECE and the reliability diagram

    def __post_init__(self) -> None:
        if self.min_per_class < 1 or self.min_accepted < 1 or self.bins < 1:
            raise ValueError(
                f"min_per_class, min_accepted and bins must be at least 1, got {self.min_per_class}, {self.min_accepted}, {self.bins}"
            )
        if self.target_precision is not None and not 0 < self.target_precision < 1:
            raise ValueError(f"target_precision is a fraction in (0, 1), e.g. 0.8; got {self.target_precision}")
