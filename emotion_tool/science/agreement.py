"""How far each fast operating point moves the readings from the published one, and how much faster it is.

Random weights cannot tell how the published model reacts to a change of operating point, so this
runs on the user's own audio and weights: `emotion-tool agree clip.wav ... --model ID_OR_DIR`.

Layer 3, science (`emotion_tool.science`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from emotion_tool.audio import AudioInput, load_audio
from emotion_tool.config import SAMPLE_RATE
from emotion_tool.engine.operating_point import OperatingPoint
from emotion_tool.engine.options import FAST_POINTS, AnalysisOptions
from emotion_tool.engine.recognizer import EmotionRecognizer
from emotion_tool.engine.results import EmotionAnalysis, EmotionReading


class Agreement(BaseModel):
    """One fast operating point against the published one, on the same weights and audio."""

    model_config = ConfigDict(frozen=True)

    operating_point: str = Field(description="The fast operating point measured")
    compared: str = Field(description="What was compared: the windows behind the summaries, or the trace segments")
    readings: int = Field(description="Number of readings compared")
    max_probability_diff: float = Field(description="Largest absolute difference of any emotion probability")
    label_agreement: float = Field(description="Share of readings whose top label is the same, 0..1")
    mean_dim_diff: float = Field(description="Mean absolute difference of valence, arousal and dominance")
    max_dim_diff: float = Field(description="Largest absolute difference of valence, arousal or dominance")
    published_s: float = Field(description="Seconds the published operating point took for the same audio")
    fast_s: float = Field(description="Seconds this operating point took")
    speedup: float = Field(description="published_s / fast_s")


class AgreementReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    model_id: str
    random_weights: bool
    audio: list[str] = Field(description="The recordings measured")
    audio_s: float = Field(description="Their total duration, seconds")
    trace_window_s: float
    trace_hop_s: float
    points: list[Agreement]


def _options(point: OperatingPoint, base: AnalysisOptions) -> AnalysisOptions:
    return replace(base, context=point.context, trace_mode=point.trace_mode)


def _readings(a: EmotionAnalysis, trace: bool) -> list[EmotionReading]:
    return [s.reading for s in a.segments if s.reading] if trace else list(a.windows)


def compare_readings(exact: list[EmotionReading], fast: list[EmotionReading]) -> tuple[float, float, float, float]:
    """(max |Δ probability|, label agreement 0..1, mean |Δ dim|, max |Δ dim|) of paired readings."""
    if len(exact) != len(fast):
        raise RuntimeError(f"operating points read different windows ({len(exact)} vs {len(fast)})")
    p0 = np.array([list(r.probabilities.values()) for r in exact])
    p1 = np.array([list(r.probabilities.values()) for r in fast])
    d0 = np.array([[r.valence, r.arousal, r.dominance] for r in exact])
    d1 = np.array([[r.valence, r.arousal, r.dominance] for r in fast])
    agree = float(np.mean([a.label == b.label for a, b in zip(exact, fast)]))
    return float(np.abs(p0 - p1).max()), agree, float(np.abs(d0 - d1).mean()), float(np.abs(d0 - d1).max())


def measure_agreement(
    recognizer: EmotionRecognizer,
    audio: Sequence[AudioInput],
    *,
    points: Sequence[str] = FAST_POINTS,
    quantized: EmotionRecognizer | None = None,
    window_s: float = 2.0,
    hop_s: float = 1.0,
    names: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> AgreementReport:
    """Analyses `audio` at the published operating point and at each of `points`, and compares.

    Args:
        recognizer: a recognizer without quantization (its options' other fields are kept).
        audio: recordings (paths, bytes, or 16 kHz arrays).
        points: operating point names to measure (see `emotion_tool.engine.operating_point`).
        quantized: the same weights at precision "int8", for points that include "int8"; made on
            the CPU from `recognizer` when not given (other precisions are always made from it).
        window_s, hop_s: the trace used for points that change the trace ("shared-encoder").
        log: called with a line of progress per measurement.
    """
    if recognizer.precision != "fp32":
        raise ValueError(f"measure against an fp32 recognizer (the published operating point), not {recognizer.precision}")
    parsed = [OperatingPoint.parse(p) for p in points]  # every name checked before anything runs
    names = list(names) if names is not None else [a if isinstance(a, str) else f"audio {i}" for i, a in enumerate(audio)]
    waves = [load_audio(a, sample_rate=SAMPLE_RATE if isinstance(a, np.ndarray) else None, name=n) for a, n in zip(audio, names)]
    base = replace(recognizer.options, window_s=window_s, hop_s=hop_s)
    say = log or (lambda _line: None)

    def run(rec: EmotionRecognizer, options: AnalysisOptions, trace: bool) -> tuple[list[EmotionReading], float]:
        readings, start = [], time.perf_counter()
        for w, n in zip(waves, names):
            readings += _readings(rec.analyze(w, sample_rate=SAMPLE_RATE, options=replace(options, trace=trace), name=n), trace)
        return readings, time.perf_counter() - start

    exact: dict[bool, tuple[list[EmotionReading], float]] = {}
    results = []
    copies: dict[str, EmotionRecognizer] = {"fp32": recognizer}
    if quantized is not None:
        copies["int8"] = quantized
    for parsed_point in parsed:
        point = str(parsed_point)
        options = _options(parsed_point, base)
        trace = options.trace_mode == "shared-encoder"
        if trace not in exact:
            say(f"published operating point ({'trace' if trace else 'windows'}) ...")
            exact[trace] = run(recognizer, base, trace)
        if parsed_point.precision not in copies:
            copies[parsed_point.precision] = _copy_at(recognizer, parsed_point.precision)
        rec = copies[parsed_point.precision]
        say(f"{point} ...")
        fast, fast_s = run(rec, options, trace)
        max_p, agree, mean_d, max_d = compare_readings(exact[trace][0], fast)
        results.append(
            Agreement(
                operating_point=point,
                compared="trace segments" if trace else "windows",
                readings=len(fast),
                max_probability_diff=max_p,
                label_agreement=agree,
                mean_dim_diff=mean_d,
                max_dim_diff=max_d,
                published_s=exact[trace][1],
                fast_s=fast_s,
                speedup=exact[trace][1] / fast_s if fast_s > 0 else float("inf"),
            )
        )
    return AgreementReport(
        model_id=recognizer.model_id,
        random_weights=recognizer.random_weights,
        audio=names,
        audio_s=sum(len(w) for w in waves) / SAMPLE_RATE,
        trace_window_s=window_s,
        trace_hop_s=hop_s,
        points=results,
    )


def _copy_at(recognizer: EmotionRecognizer, precision: str) -> EmotionRecognizer:
    import copy

    if precision == "int8" and recognizer.device.type != "cpu":
        raise ValueError("int8 operating points run on the CPU; load the recognizer with device='cpu'")
    return EmotionRecognizer(
        copy.deepcopy(recognizer.model),
        model_id=recognizer.model_id,
        random_weights=recognizer.random_weights,
        options=recognizer.options,
        precision=precision,  # type: ignore[arg-type]
    )
