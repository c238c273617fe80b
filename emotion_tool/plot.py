"""Drawing an analysis (emotion probabilities stacked over time, valence/arousal/dominance lines) and
reliability diagrams of calibration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .results import EmotionAnalysis, EmotionReading

if TYPE_CHECKING:
    from .calibration import ReliabilitySummary

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


def plot_trace(analysis: EmotionAnalysis, path: str | os.PathLike) -> Path:
    """Saves a PNG of the analysis' trace (or of its windows when no trace was asked for).

    Non-speech trace windows are left blank and shaded.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("plotting requires matplotlib; pip install 'emotion-tool[plot]'") from e

    if analysis.segments:
        spans = [(s.start_s, s.end_s) for s in analysis.segments]
        readings: list[EmotionReading | None] = [s.reading for s in analysis.segments]
    else:
        spans = [(w.start_s, w.end_s) for w in analysis.windows]
        readings = list(analysis.windows)
    centres = np.array([(a + b) / 2 for a, b in spans])
    labels = analysis.labels
    probs = np.array([[r.probabilities[lab] if r else np.nan for lab in labels] for r in readings])
    dims = {d: np.array([getattr(r, d) if r else np.nan for r in readings]) for d in ("valence", "arousal", "dominance")}

    fig, (ax_p, ax_d) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
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
    ax_p.set_ylim(0, 1)
    ax_p.set_ylabel("probability")
    ax_p.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    for d, values in dims.items():
        ax_d.plot(centres, values, label=d, color=DIM_COLOURS[d], marker="o" if len(centres) < 40 else None)
    ax_d.set_ylim(0, 1)
    ax_d.set_ylabel("0..1")
    ax_d.set_xlabel("time (s)")
    ax_d.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    s = analysis.summary
    title = f"{analysis.source or 'audio'}: {s.label} ({s.confidence:.2f})"
    if analysis.random_weights:
        title += " — RANDOM WEIGHTS, readings mean nothing"
    ax_p.set_title(title)
    return save_figure(fig, path)


def plot_reliability(curves: "dict[str, ReliabilitySummary]", path: str | os.PathLike, *, title: str = "") -> Path:
    """Saves a PNG: accuracy against confidence per bin for each named curve (e.g. before and after
    calibration), the diagonal of perfect calibration, and the share of segments per bin."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("plotting requires matplotlib; pip install 'emotion-tool[plot]'") from e

    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
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
