"""Window planning and aggregation."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emotion_tool.engine.windows import plan_trace, plan_windows, weighted_mean

SR = 16000


def test_short_audio_is_one_window():
    assert plan_windows(SR * 29, [(0, SR * 29)], max_window_s=30) == [(0, SR * 29)]
    assert plan_windows(SR * 30, [], max_window_s=30) == [(0, SR * 30)]


def test_long_audio_is_cut_in_the_latest_pause():
    speech = [(0, 12 * SR), (13 * SR, 25 * SR), (27 * SR, 40 * SR), (41 * SR, 55 * SR)]
    windows = plan_windows(55 * SR, speech, max_window_s=30)
    assert windows == [(0, 26 * SR), (26 * SR, 55 * SR)]  # middle of the 25..27 s pause


def test_speech_without_pauses_is_cut_at_the_limit():
    assert plan_windows(70 * SR, [(0, 70 * SR)], max_window_s=30) == [(0, 30 * SR), (30 * SR, 60 * SR), (60 * SR, 70 * SR)]


def test_pause_too_close_to_the_start_is_not_used():
    speech = [(0, 2 * SR), (3 * SR, 40 * SR)]
    assert plan_windows(40 * SR, speech, max_window_s=30)[0] == (0, 30 * SR)


@given(
    n=st.integers(1, 200 * SR),
    cuts=st.lists(st.integers(0, 200 * SR), max_size=30),
    max_window_s=st.floats(2.0, 30.0),
)
def test_windows_tile_the_audio_within_the_limit(n, cuts, max_window_s):
    bounds = sorted(set(min(c, n) for c in cuts))
    speech = [(a, b) for a, b in zip(bounds[::2], bounds[1::2]) if b > a]
    windows = plan_windows(n, speech, max_window_s=max_window_s)
    assert windows[0][0] == 0 and windows[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))
    assert all(0 < e - s <= round(max_window_s * SR) for s, e in windows)


def test_trace_windows():
    assert plan_trace(5 * SR, window_s=2, hop_s=1) == [(0, 2 * SR), (SR, 3 * SR), (2 * SR, 4 * SR), (3 * SR, 5 * SR)]
    assert plan_trace(SR * 3 // 2, window_s=2, hop_s=1) == [(0, SR * 3 // 2)]
    last = plan_trace(int(5.5 * SR), window_s=2, hop_s=1)[-1]
    assert last == (4 * SR, int(5.5 * SR))
    with pytest.raises(ValueError, match="no gaps"):
        plan_trace(SR, window_s=0, hop_s=1)
    with pytest.raises(ValueError, match="no gaps"):
        plan_trace(SR, window_s=1, hop_s=2)


@given(n=st.integers(1, 120 * SR), window_s=st.floats(0.5, 10), hop_fraction=st.floats(0.05, 1.0))
def test_trace_covers_the_audio(n, window_s, hop_fraction):
    hop_s = window_s * hop_fraction
    spans = plan_trace(n, window_s=window_s, hop_s=hop_s)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(0 < e - s <= round(window_s * SR) for s, e in spans)
    assert all(b[0] <= a[1] for a, b in zip(spans, spans[1:]))  # no gaps


def test_weighted_mean():
    v = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(weighted_mean(v, [3, 1]), [0.75, 0.25])
    np.testing.assert_allclose(weighted_mean(v, [0, 0]), [0.5, 0.5])
