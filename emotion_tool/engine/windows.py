"""Where windows go: splitting long audio at pauses, trace windows, and aggregation by speech.

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from emotion_tool.config import SAMPLE_RATE

Span = tuple[int, int]  # [start, end) in samples at 16 kHz

MIN_TRACE_WINDOW_S = 0.5  # shorter trace windows are refused: the recognizer judges nothing shorter (min_duration_s)
MIN_HOP_S = 0.1  # finer hops are refused: 100 ms is finer than any change of emotion a reading can show
# Windows one request may plan per minute of audio, by what a window costs. A padded window is a
# whole 30-s encoder pass whatever its length; trimmed windows and the shared-encoder trace cost a
# fraction of one. Short recordings may always plan MIN_WINDOW_BUDGET windows.
WINDOWS_PER_MINUTE = {"padded": 120, "cheap": 600}
MIN_WINDOW_BUDGET = 240


def plan_windows(n_samples: int, speech: Sequence[Span], *, max_window_s: float, min_window_s: float = 5.0) -> list[Span]:
    """Splits [0, n_samples) into contiguous windows of at most `max_window_s`, cutting in pauses.

    Audio that fits one window stays whole, as the published model was used. Longer audio is cut in
    the middle of the latest pause that leaves a window of at least `min_window_s`; where speech runs
    on without a pause, it is cut at the limit.

    Args:
        n_samples: length of the audio.
        speech: speech spans from the voice activity detector, in time order.
        max_window_s: the longest window, seconds (30 for the published model).
        min_window_s: no cut is made in a pause closer than this to the window's start.
    """
    max_len = int(round(max_window_s * SAMPLE_RATE))
    min_len = min(int(round(min_window_s * SAMPLE_RATE)), max_len)
    gaps = _gaps(n_samples, speech)
    windows: list[Span] = []
    start = 0
    while n_samples - start > max_len:
        limit = start + max_len
        cut = limit
        for g0, g1 in reversed(gaps):
            if g0 >= limit:
                continue
            point = min((g0 + g1) // 2, limit)
            if point - start >= min_len:
                cut = point
            break
        windows.append((start, cut))
        start = cut
    windows.append((start, n_samples))
    return windows


def _gaps(n_samples: int, speech: Sequence[Span]) -> list[Span]:
    """The silences between (and around) speech spans."""
    gaps = []
    cursor = 0
    for s, e in speech:
        if s > cursor:
            gaps.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < n_samples:
        gaps.append((cursor, n_samples))
    return gaps


def plan_trace(n_samples: int, *, window_s: float, hop_s: float) -> list[Span]:
    """Windows of `window_s` every `hop_s` (hop ≤ window) covering the audio; the last one ends at its end.

    Audio shorter than one window gives one window over all of it.
    """
    win, hop, count = _trace_shape(n_samples, window_s=window_s, hop_s=hop_s)
    return [(i * hop, min(i * hop + win, n_samples)) for i in range(count)]


def trace_window_count(n_samples: int, *, window_s: float, hop_s: float) -> int:
    """How many windows `plan_trace` would plan, without planning them."""
    return _trace_shape(n_samples, window_s=window_s, hop_s=hop_s)[2]


def _trace_shape(n_samples: int, *, window_s: float, hop_s: float) -> tuple[int, int, int]:
    if not (math.isfinite(window_s) and math.isfinite(hop_s) and 0 < hop_s <= window_s):
        raise ValueError(f"need 0 < hop_s <= window_s so that the trace has no gaps, got window_s={window_s}, hop_s={hop_s}")
    win = max(1, int(round(window_s * SAMPLE_RATE)))
    hop = int(round(hop_s * SAMPLE_RATE))
    if hop < 1:
        raise ValueError(f"hop_s={hop_s} is under one sample at {SAMPLE_RATE} Hz; use hop_s >= {MIN_HOP_S:g}")
    count = 1 if n_samples <= win else math.ceil((n_samples - win) / hop) + 1
    return win, hop, count


def window_budget(duration_s: float, *, padded: bool) -> int:
    """The most windows one request over `duration_s` of audio may plan (see WINDOWS_PER_MINUTE)."""
    per_minute = WINDOWS_PER_MINUTE["padded" if padded else "cheap"]
    return max(MIN_WINDOW_BUDGET, math.ceil(duration_s / 60 * per_minute))


def check_window_budget(count: int, duration_s: float, *, padded: bool, operating_point: str, hop_s: float) -> None:
    """Refuses, before any window is read, a trace that plans more windows than its budget.

    Raises:
        ValueError: saying the count, the budget, and the hop that fits it.
    """
    budget = window_budget(duration_s, padded=padded)
    if count <= budget:
        return
    fitting_hop = math.ceil(hop_s * count / budget * 100) / 100
    cheaper = " or the shared-encoder trace (trace_mode / --trace-mode)," if padded else ""
    raise ValueError(
        f"a trace of {duration_s:.1f} s with hop_s={hop_s:g} plans {count} windows, over the limit of {budget} for "
        f"{duration_s:.1f} s at operating point {operating_point} ({WINDOWS_PER_MINUTE['padded' if padded else 'cheap']} "
        f"per minute of audio); use hop_s >= {fitting_hop:g},{cheaper} or trace a shorter stretch"
    )


def weighted_mean(values: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Mean of rows of `values` (n, k) weighted by `weights` (n,); equal weights if all are zero."""
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        w = np.ones_like(w)
    return (values.astype(np.float64) * w[:, None]).sum(axis=0) / w.sum()
