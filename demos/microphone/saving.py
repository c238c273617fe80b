"""Keeping a session: session.json and a plot of its utterances."""

from __future__ import annotations

import os
from pathlib import Path

from emotion_tool.science.plot import plot_utterances

from .records import DemoError, SessionRecord


def plot_session(record: SessionRecord, path: str | os.PathLike) -> Path:
    """Saves a PNG of a session: probabilities stacked per utterance, valence/arousal/dominance lines."""
    strategies = {t.index: f"plan: {t.strategy}" for t in record.replies if t.strategy}
    try:
        return plot_utterances(
            record.utterances,
            path,
            title=f"live session: {record.source} — {len(record.utterances)} utterances",
            duration_s=record.duration_s,
            notes=strategies,
            random_weights=record.random_weights,
        )
    except RuntimeError as e:  # no matplotlib
        raise DemoError("--save draws a plot with matplotlib; pip install 'emotion-tool[demo]'") from e


def save_session(record: SessionRecord, directory: str | os.PathLike) -> tuple[Path, Path]:
    """Writes session.json and session.png into `directory`."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "session.json"
    json_path.write_text(record.model_dump_json(indent=2), encoding="utf-8")
    return json_path, plot_session(record, out / "session.png")
