"""Speakers: one recording's channels (or a diarizer's speakers), each analysed alone, merged into one analysis.

A call-centre recording often holds the agent on one channel and the customer on the other; mixed to
one voice their readings average. `EmotionRecognizer.analyze` with `AnalysisOptions(channels=(...))`
reads each channel as its own recording and hands the per-channel analyses here, which names their
readings, marks the trace windows where another channel speaks too, and aggregates the summaries.
With `AnalysisOptions(diarize=True)` each speaker the diarizer finds in one-channel audio is such a
"channel": the recording with the other speakers' turns silenced, its windows planned inside its turns.
Pure functions over result types and sample spans; no torch.

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from emotion_tool.audio.vad import speech_seconds
from emotion_tool.config import SAMPLE_RATE
from emotion_tool.engine.results import EmotionAnalysis, EmotionReading, SpeakerSummary
from emotion_tool.engine.windows import weighted_mean

Spans = list[tuple[int, int]]  # sample spans, sorted and disjoint, as the voice activity detector gives them

__all__ = ["merge_channels"]


def merge_channels(
    analyses: Sequence[EmotionAnalysis],
    *,
    speakers: Sequence[str],
    speech: Sequence[Spans],
    window_outputs: Sequence[tuple[np.ndarray, np.ndarray, Sequence[float]]],
    min_confidence: float,
    channel_warnings: Sequence[Sequence[str]],
    channels: Sequence[int | None] | None = None,
    turns: Sequence[int] | None = None,
) -> EmotionAnalysis:
    """One analysis of a recording from the analyses of its channels.

    Args:
        analyses: each channel's analysis, in channel order, all of the same recording (same duration).
        speakers: each channel's name.
        speech: each channel's speech spans (samples at 16 kHz).
        window_outputs: each channel's (probabilities (n, labels), dims (n, 3), speech seconds (n,)) of the
            windows its summary aggregates, so that the recording's summary weighs every channel's
            windows by their speech, as a one-channel summary weighs its own.
        min_confidence: the uncertain threshold the readings were made with.
        channel_warnings: the warnings that belong to one channel (e.g. no speech in it); they are named
            after their speaker, the others (random weights, calibration) are kept once.
        channels: each speaker's channel index in the file (default: 0, 1, ...); None for a diarized speaker,
            whose "channel" is the recording with the other speakers' turns silenced.
        turns: each diarized speaker's number of turns; None for channels.

    Returns:
        The analysis: `speakers` holds a summary per channel, `windows` and `segments` every channel's
        (ordered by time, then channel) with their `speaker`, and segments marked `overlap` where another
        channel's window at the same time holds speech.
    """
    first = analyses[0]
    duration_s = first.duration_s
    others = [_union([s for j, spans in enumerate(speech) if j != c for s in spans]) for c in range(len(speech))]
    overlap = [sum(speech_seconds(speech[c], s, e) for s, e in others[c]) for c in range(len(speech))]
    together = _union([s for spans in speech for s in spans])
    speech_s = sum(e - s for s, e in together) / SAMPLE_RATE
    both = _union([(max(a, c), min(b, d)) for i, x in enumerate(speech) for y in speech[i + 1 :] for a, b in x for c, d in y if max(a, c) < min(b, d)])

    probs = np.concatenate([p for p, _, _ in window_outputs])
    dims = np.concatenate([d for _, d, _ in window_outputs])
    weights = [w for _, _, ws in window_outputs for w in ws]
    summary = EmotionReading.from_outputs(
        weighted_mean(probs, weights), weighted_mean(dims, weights), labels=first.labels,
        start_s=0.0, end_s=duration_s, min_confidence=min_confidence,
    )  # fmt: skip
    if not together:  # no channel holds speech: never let the reading look confident
        summary = summary.model_copy(update={"uncertain": True})

    windows, segments, summaries = [], [], []
    speaking = [[seg.is_speech for seg in a.segments] for a in analyses]
    for c, (a, name) in enumerate(zip(analyses, speakers)):
        summaries.append(SpeakerSummary(
            speaker=name, channel=c if channels is None else channels[c], summary=a.summary.model_copy(update={"speaker": name}),
            speech_s=a.speech_s, speech_ratio=a.speech_ratio, overlap_s=overlap[c], turns=None if turns is None else turns[c],
        ))  # fmt: skip
        windows += [(w.start_s, c, w.model_copy(update={"speaker": name})) for w in a.windows]
        for i, seg in enumerate(a.segments):
            other_speaks = any(speaking[j][i] for j in range(len(analyses)) if j != c)
            reading = seg.reading.model_copy(update={"speaker": name}) if seg.reading is not None else None
            update = {"speaker": name, "overlap": seg.is_speech and other_speaks, "reading": reading}
            segments.append((seg.start_s, c, seg.model_copy(update=update)))

    own = [f"{name}: {w}" for name, ws in zip(speakers, channel_warnings) for w in ws]
    shared = [w for a, ws in zip(analyses, channel_warnings) for w in a.warnings if w not in ws]
    return first.model_copy(
        update={
            "summary": summary,
            "windows": [w for _, _, w in sorted(windows, key=lambda t: t[:2])],
            "segments": [s for _, _, s in sorted(segments, key=lambda t: t[:2])],
            "speech_s": speech_s,
            "speech_ratio": speech_s / duration_s,
            "warnings": own + list(dict.fromkeys(shared)),
            "speakers": summaries,
            "overlap_s": sum(e - s for s, e in both) / SAMPLE_RATE,
        }
    )


def _union(spans: Sequence[tuple[int, int]]) -> Spans:
    """The sorted, disjoint spans that cover exactly what `spans` cover."""
    out: Spans = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out
