"""The one place figures are drawn: emotion probabilities stacked over time above valence/arousal/dominance lines.

`plot_trace` draws a recording's analysis, `plot_utterances` a live session's utterances,
`plot_confusion` an evaluation's confusion matrix and `plot_reliability` a calibration's
reliability diagram; all share the colours and saving here.

Layer 3, science (`emotion_tool.science`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from emotion_tool.config import DIMENSIONS
from emotion_tool.engine.results import (
    EmotionAnalysis,
    EmotionReading,
    UtteranceReading,
)

__all__ = ["plot_trace", "plot_utterances", "plot_confusion", "plot_reliability", "save_figure", "LABEL_COLOURS", "DIM_COLOURS"]

if TYPE_CHECKING:
    from emotion_tool.science.calibration import ReliabilitySummary

# One colour per label, stable across plots and demos; labels outside this map get matplotlib's cycle.
LABEL_COLOURS = {
    "neutral": "#9e9e9e",
    "happy": "#f4b400",
    "sad": "#4285f4",
    "angry": "#db4437",
    "fearful": "#8e44ad",
    "disgusted": "#0f9d58",
    "surprised": "#ff7f0e",
}
DIM_COLOURS = {"valence": "#0f9d58", "arousal": "#db4437", "dominance": "#4285f4"}


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend, or an error with the install hint."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("plotting requires matplotlib; pip install 'emotion-tool[plot]'") from e
    return plt


def _two_panels() -> tuple[Any, Any, Any]:
    """A figure with the probability panel (ax_p) above the dimensions panel (ax_d), sharing time."""
    fig, (ax_p, ax_d) = pyplot().subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    return fig, ax_p, ax_d


def _finish(ax_p: Any, ax_d: Any, *, top: float, xlabel: str, title: str, random_weights: bool) -> None:
    ax_p.set_ylim(0, top)
    ax_p.set_ylabel("probability")
    ax_p.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax_d.set_ylim(0, 1)
    ax_d.set_ylabel("0..1")
    ax_d.set_xlabel(xlabel)
    ax_d.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    if random_weights:
        title += " — RANDOM WEIGHTS, readings mean nothing"
    ax_p.set_title(title)


def plot_trace(analysis: EmotionAnalysis, path: str | os.PathLike) -> Path:
    """Saves a PNG of the analysis' trace (or of its windows when no trace was asked for).

    Non-speech trace windows are left blank and shaded. An analysis read by speakers (channels, or
    diarized turns) gets one lane per speaker under a strip of who speaks when.
    """
    if analysis.speakers is not None:
        return _plot_speaker_lanes(analysis, path)
    spans, readings = _spans_and_readings(analysis, analysis.segments, analysis.windows)
    fig, ax_p, ax_d = _two_panels()
    _draw_trace(ax_p, ax_d, spans, readings, analysis.labels)
    s = analysis.summary
    title = f"{analysis.source or 'audio'}: {s.label} ({s.confidence:.2f})"
    _finish(ax_p, ax_d, top=1, xlabel="time (s)", title=title, random_weights=analysis.random_weights)
    return save_figure(fig, path)


def _spans_and_readings(analysis: EmotionAnalysis, segments: Sequence[Any], windows: Sequence[EmotionReading]):
    """The trace's windows and readings (None where not read), or the summary windows when there is no trace."""
    if analysis.segments:
        return [(s.start_s, s.end_s) for s in segments], [s.reading for s in segments]
    return [(w.start_s, w.end_s) for w in windows], list(windows)


def _draw_trace(ax_p: Any, ax_d: Any, spans: Sequence[tuple[float, float]], readings: Sequence[EmotionReading | None], labels: Sequence[str]) -> None:
    """Probabilities stacked over time on `ax_p`, the dimensions as lines on `ax_d`; unread windows shaded."""
    if not spans:
        return
    centres = np.array([(a + b) / 2 for a, b in spans])
    probs = np.array([[r.probabilities[lab] if r else np.nan for lab in labels] for r in readings])
    dims = {d: np.array([getattr(r, d) if r else np.nan for r in readings]) for d in DIMENSIONS}
    if len(centres) == 1:  # one window: draw it across its span
        centres = np.array(spans[0])
        probs = np.repeat(probs, 2, axis=0)
        dims = {d: np.repeat(v, 2) for d, v in dims.items()}
    ax_p.stackplot(
        centres,
        np.nan_to_num(probs.T),
        labels=labels,
        colors=[LABEL_COLOURS.get(lab) for lab in labels] if all(lab in LABEL_COLOURS for lab in labels) else None,
        alpha=0.85,
    )
    for (a, b), r in zip(spans, readings):
        if r is None:
            for ax in (ax_p, ax_d):
                ax.axvspan(a, b, color="#eeeeee", zorder=0, lw=0)
    for d, values in dims.items():
        ax_d.plot(centres, values, label=d, color=DIM_COLOURS[d], marker="o" if len(centres) < 40 else None)


SPEAKER_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]


def _plot_speaker_lanes(analysis: EmotionAnalysis, path: str | os.PathLike) -> Path:
    """Who speaks when (a strip: diarized turns, or each channel's read windows), then per speaker its
    probabilities and dimensions over the same time axis."""
    speakers = analysis.speakers or []
    n = len(speakers)
    fig, axes = pyplot().subplots(
        1 + 2 * n, 1, figsize=(10, 1.4 + 3.4 * n), sharex=True, gridspec_kw={"height_ratios": [0.5 + 0.25 * n] + [2, 1.3] * n}
    )
    strip = axes[0]
    for k, p in enumerate(speakers):
        if analysis.diarization is not None:
            spans = [(t.start_s, t.end_s) for t in analysis.diarization.turns if t.speaker == p.speaker]
        elif analysis.segments:
            spans = [(s.start_s, s.end_s) for s in analysis.segments if s.speaker == p.speaker and s.is_speech]
        else:
            spans = [(w.start_s, w.end_s) for w in analysis.windows if w.speaker == p.speaker]
        strip.broken_barh([(a, b - a) for a, b in spans], (n - 1 - k + 0.15, 0.7), color=SPEAKER_COLOURS[k % len(SPEAKER_COLOURS)])
    strip.set_yticks([n - 1 - k + 0.5 for k in range(n)], [p.speaker for p in speakers])
    strip.set_ylim(0, n)
    strip.set_xlim(0, analysis.duration_s)
    how = f"diarized by {analysis.diarization.backend.split(' voice encoder')[0]}" if analysis.diarization is not None else "one per channel"
    title = f"{analysis.source or 'audio'}: {n} speakers ({how})"
    strip.set_title(title + (" — RANDOM WEIGHTS, readings mean nothing" if analysis.random_weights else ""), fontsize=10)
    for k, p in enumerate(speakers):
        ax_p, ax_d = axes[1 + 2 * k], axes[2 + 2 * k]
        segments = [s for s in analysis.segments if s.speaker == p.speaker]
        windows = [w for w in analysis.windows if w.speaker == p.speaker]
        spans, readings = _spans_and_readings(analysis, segments, windows)
        _draw_trace(ax_p, ax_d, spans, readings, analysis.labels)
        s = p.summary
        ax_p.set_ylim(0, 1)
        ax_p.set_ylabel("probability")
        ax_d.set_ylim(0, 1)
        ax_d.set_ylabel("0..1")
        ax_p.set_title(f"{p.speaker}: {s.label} ({s.confidence:.2f}; valence {s.valence:.2f}, arousal {s.arousal:.2f})", fontsize=9, loc="left")
        if k == 0:
            ax_p.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
            ax_d.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes[-1].set_xlabel("time (s)")
    return save_figure(fig, path)


def plot_utterances(
    utterances: Sequence[UtteranceReading],
    path: str | os.PathLike,
    *,
    title: str,
    duration_s: float = 0.0,
    notes: Mapping[int, str] | None = None,
    random_weights: bool = False,
) -> Path:
    """Saves a PNG of a stream's utterances: probabilities stacked per utterance, dimensions as lines.

    Args:
        utterances: the readings, in time order.
        path: where the PNG goes (folders are created).
        title: the figure's title.
        duration_s: the stream's length, so the time axis covers silence after the last utterance.
        notes: a short text to print above an utterance, by its `index` (e.g. the agent's plan).
        random_weights: the readings came from random weights (said in the title).
    """
    fig, ax_p, ax_d = _two_panels()
    us = list(utterances)
    labels = list(us[0].reading.probabilities) if us else list(LABEL_COLOURS)
    starts = np.array([u.start_s for u in us])
    widths = np.array([u.end_s - u.start_s for u in us])
    bottom = np.zeros(len(us))
    for label in labels:
        p = np.array([u.reading.probabilities[label] for u in us])
        ax_p.bar(starts, p, width=widths, bottom=bottom, align="edge", label=label, color=LABEL_COLOURS.get(label))
        bottom += p
    for u in us:
        if notes and u.index in notes:
            ax_p.text((u.start_s + u.end_s) / 2, 1.02, notes[u.index], ha="center", va="bottom", fontsize=7)
    mids = starts + widths / 2
    for d in DIMENSIONS:
        ax_d.plot(mids, [getattr(u.reading, d) for u in us], label=d, color=DIM_COLOURS[d], marker="o")
    ax_d.set_xlim(0, max(duration_s, float(starts[-1] + widths[-1]) if us else 1.0))
    _finish(ax_p, ax_d, top=1.12, xlabel="stream time (s)", title=title, random_weights=random_weights)
    return save_figure(fig, path)


def plot_confusion(scores: Any, path: str | os.PathLike, *, title: str = "") -> Path:
    """Saves a PNG of a confusion matrix (`ClassificationScores`): colour = share of each reference class, text = counts."""
    counts = np.array(scores.confusion, dtype=np.float64)
    support = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
    k = len(scores.labels)
    fig, ax = pyplot().subplots(figsize=(3.0 + 0.8 * k, 1.5 + 0.7 * k))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(k), scores.labels, rotation=45, ha="right")
    ax.set_yticks(range(k), [f"{lab} ({int(s)})" for lab, s in zip(scores.labels, support[:, 0])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference (segments)")
    ax.set_title(title or ("UAR -" if scores.uar is None else f"UAR {100 * scores.uar:.1f} %"), fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of reference class")
    return save_figure(fig, path)


def plot_reliability(curves: "dict[str, ReliabilitySummary]", path: str | os.PathLike, *, title: str = "") -> Path:
    """Saves a PNG: accuracy against confidence per bin for each named curve (e.g. before and after
    calibration), the diagonal of perfect calibration, and the share of segments per bin."""
    fig, (ax, ax_n) = pyplot().subplots(2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="#9e9e9e", ls="--", lw=1, label="perfectly calibrated")
    colours = ["#db4437", "#4285f4", "#0f9d58", "#f4b400"]
    first = next(iter(curves.values()))
    width = (first.bins[0].high - first.bins[0].low) / (len(curves) + 1)
    for j, (name, s) in enumerate(curves.items()):
        full = [b for b in s.bins if b.segments]
        c = colours[j % len(colours)]
        ax.plot([b.confidence for b in full], [b.accuracy for b in full], marker="o", color=c, label=f"{name}: ECE {100 * s.ece:.1f} %")
        ax_n.bar([b.low + (j + 0.5) * width for b in s.bins], [b.segments / s.segments for b in s.bins], width=width, color=c, align="edge")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax_n.set_xlabel("confidence (top probability)")
    ax_n.set_ylabel("share of segments")
    return save_figure(fig, path)


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Lays out, writes (creating folders) and closes a matplotlib figure; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
