"""The synchronous utterance segmenter on real espeak-ng speech (no network involved)."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from emotion_tool import AudioError
from emotion_tool.live.segmenter import StreamOptions, UtteranceSegmenter
from emotion_tool.audio.vad import VadOptions

SR = 16000
TOLERANCE_S = 0.3  # utterance boundaries vs where espeak-ng's voice sounds


def segment(wav, chunk, options=StreamOptions(), seg=None):
    """(start, end, interim, cut) of every utterance, and their audio, with chunks of `chunk` samples."""
    seg = seg or UtteranceSegmenter(options)
    out = []
    for i in range(0, len(wav), chunk):
        out += seg.push(wav[i : i + chunk], received_at=(i + chunk) / options.sample_rate)
    out += seg.flush(received_at=len(wav) / options.sample_rate)
    return out


@pytest.mark.parametrize("chunk", [1, 160, 511, 512, 1600, 48000])
def test_same_utterances_whatever_the_chunk_size(sentences, chunk):
    wav, bounds = sentences
    ref = segment(wav, 512)
    got = segment(wav[: 4 * SR] if chunk == 1 else wav, chunk)  # one sample at a time: the first sentence only
    if chunk == 1:
        ref = [u for u in ref if u.end <= 4 * SR]
    assert len(ref) == (3 if chunk != 1 else 1)
    assert [(u.start, u.end, u.interim, u.cut) for u in got] == [(u.start, u.end, u.interim, u.cut) for u in ref]
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a.audio, b.audio)


def test_utterances_match_the_speech(sentences):
    wav, bounds = sentences
    got = segment(wav, 1600)
    assert len(got) == len(bounds)
    for u, (start, end) in zip(got, bounds):
        assert abs(u.start_s - start) < TOLERANCE_S and abs(u.end_s - end) < TOLERANCE_S
        np.testing.assert_array_equal(u.audio, wav[u.start : u.end])
        # Latency starts at the last voiced frame, not when the closing pause was heard.
        assert abs(u.speech_end_at - end) < TOLERANCE_S


def test_resampled_input_gives_nearly_the_same_utterances(sentences):
    wav, _ = sentences
    rate = 48000
    up = soxr.resample(wav, SR, rate).astype(np.float32)
    opts = StreamOptions(sample_rate=rate)
    a, b = segment(up, 4800, opts), segment(up, 333, opts)
    assert [(u.start, u.end) for u in a] == [(u.start, u.end) for u in b]
    ref = segment(wav, 1600)
    assert len(a) == len(ref)
    assert all(abs(x.start - y.start) <= 2 * 512 and abs(x.end - y.end) <= 2 * 512 for x, y in zip(a, ref))


def test_segmenters_share_the_model_but_not_the_state(sentences):
    from emotion_tool.audio import vad

    wav, _ = sentences
    one, two = UtteranceSegmenter(), UtteranceSegmenter()
    assert one._scorer._session is not None and one._scorer._session is two._scorer._session  # one ONNX session
    assert vad.shared_vad_model() is vad.shared_vad_model()
    got_one, got_two = [], []
    for i in range(0, len(wav), 800):  # interleaved pushes: neither sees the other's frames
        got_one += one.push(wav[i : i + 800], received_at=0.0)
        got_two += two.push(wav[::-1][i : i + 800].copy(), received_at=0.0)
    got_one += one.flush(received_at=0.0)
    alone = segment(wav, 800)
    assert [(u.start, u.end) for u in got_one] == [(u.start, u.end) for u in alone]


def test_reset_and_skip(sentences):
    wav, bounds = sentences
    seg = UtteranceSegmenter()
    seg.push(wav[: int(bounds[0][1] * SR)])
    assert seg.speaking
    seg.reset()
    assert not seg.speaking and seg.stream_s == 0
    first = seg.push(wav[: int((bounds[0][1] + 1.0) * SR)])
    assert len(first) == 1
    mid = int((bounds[1][0] + 0.5) * SR)  # inside the second sentence
    seg.push(wav[int((bounds[0][1] + 1.0) * SR) : mid])
    closed = seg.skip(SR)  # one second lost: the open sentence closes at the gap
    assert len(closed) == 1 and closed[0].end <= mid
    assert seg.stream_s == pytest.approx(mid / SR + 1.0, abs=1 / SR)


def test_interim_and_cut(sentences):
    wav, _ = sentences
    got = segment(wav, 1600, StreamOptions(interim_every_s=1.0, max_utterance_s=1.5))
    assert any(u.interim for u in got) and any(u.cut for u in got)
    assert all(u.end - u.start <= 1.5 * SR for u in got if not u.interim)


def test_the_chunk_contract_is_checked():
    seg = UtteranceSegmenter()
    assert seg.push(np.zeros(0, dtype=np.float32)) == []
    seg.push((np.zeros((160, 1)) ).astype(np.int16))
    with pytest.raises(AudioError, match="mono"):
        seg.push(np.zeros((160, 2), dtype=np.float32))
    with pytest.raises(AudioError, match="dtype"):
        seg.push(np.zeros(160, dtype=np.int32))
    with pytest.raises(AudioError, match="NaN"):
        seg.push(np.full(160, np.nan, dtype=np.float32))


def test_stream_options_embed_the_one_vad_options_type():
    o = StreamOptions(vad=VadOptions(min_silence_ms=300))
    assert o.vad.min_silence_ms == 300 and StreamOptions().vad.min_silence_ms == 500
    with pytest.raises(ValueError, match="speech_pad_ms"):
        StreamOptions(vad=VadOptions(speech_pad_ms=900), max_utterance_s=1.0)


def test_read_ahead_hands_out_each_utterance_as_it_will_close(sentences):
    wav, _ = sentences
    plain = segment(wav, 1600)
    both = segment(wav, 1600, StreamOptions(read_ahead=True))
    closed = [u for u in both if not u.ahead]
    # Reading ahead changes nothing about the utterances themselves.
    assert [(u.start, u.end, u.cut) for u in closed] == [(u.start, u.end, u.cut) for u in plain]
    for u in closed:
        k = next(i for i, x in enumerate(both) if x is u)
        ahead = both[k - 1]  # handed out earlier in the same pause: same span, same samples
        assert ahead.ahead and (ahead.start, ahead.end) == (u.start, u.end)
        np.testing.assert_array_equal(ahead.audio, u.audio)
    assert not any(u.ahead for u in plain)


def test_read_ahead_of_a_pause_that_speech_ends_differs_from_the_close(sentences):
    wav, bounds = sentences
    # The first two sentences with a 250-ms pause between them: shorter than min_silence_ms (500 ms), so
    # they close as one utterance, but the pause is long enough to hand out a read-ahead copy.
    (s0, e0), (s1, e1) = bounds[:2]
    joined = np.concatenate([wav[: int(e0 * SR)], np.zeros(int(0.25 * SR), np.float32), wav[int(s1 * SR) : int(e1 * SR) + SR]])
    got = segment(joined, 1600, StreamOptions(read_ahead=True))
    closed = [u for u in got if not u.ahead]
    assert len(closed) == 1
    early = [u for u in got if u.ahead]
    assert len(early) >= 2 and (early[-1].start, early[-1].end) == (closed[0].start, closed[0].end)
    assert all(u.end < closed[0].end for u in early[:-1])  # the copy from the short pause is not what closed
