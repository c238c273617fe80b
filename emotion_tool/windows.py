"""Where windows go: splitting long audio at pauses, trace windows, and aggregation by speech."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .config import SAMPLE_RATE

Span = tuple[int, int]  # [start, end) in samples at 16 kHz


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
    if not 0 < hop_s <= window_s:
        raise ValueError(f"need 0 < hop_s <= window_s so that the trace has no gaps, got window_s={window_s}, hop_s={hop_s}")
    win = int(round(window_s * SAMPLE_RATE))
    hop = int(round(hop_s * SAMPLE_RATE))
    count = 1 if n_samples <= win else math.ceil((n_samples - win) / hop) + 1
    return [(i * hop, min(i * hop + win, n_samples)) for i in range(count)]


def weighted_mean(values: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Mean of rows of `values` (n, k) weighted by `weights` (n,); equal weights if all are zero."""
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        w = np.ones_like(w)
    return (values.astype(np.float64) * w[:, None]).sum(axis=0) / w.sum()
