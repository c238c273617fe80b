"""EmotionRecognizer.analyze: windows, aggregation, traces, options and errors."""

import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from emotion_tool import AnalysisOptions, AudioError, EmotionAnalysis, EmotionRecognizer
from emotion_tool.engine.recognizer import pick_device, pick_dtype


def _probs(reading):
    return np.array(list(reading.probabilities.values()))


def test_short_clip_is_one_padded_window(recognizer, speech_wav):
    a = recognizer.analyze(speech_wav)
    assert isinstance(a, EmotionAnalysis)
    assert len(a.windows) == 1 and a.segments == []
    wav, _ = sf.read(speech_wav, dtype="float32")
    direct = recognizer.classify_batch([wav])[0]
    np.testing.assert_allclose(_probs(a.summary), _probs(direct), atol=1e-6)
    assert a.summary.label == max(a.summary.probabilities, key=a.summary.probabilities.get)
    assert abs(sum(a.summary.probabilities.values()) - 1) < 1e-6
    assert a.summary.start_s == 0 and a.summary.end_s == pytest.approx(len(wav) / 16000)
    assert 0.5 < a.speech_ratio <= 1 and a.operating_point == "published"
    assert a.random_weights and any("random weights" in w for w in a.warnings)
    assert a.source == "speech.wav" and a.labels == recognizer.labels


def test_long_audio_is_split_and_weighted_by_speech(recognizer, sentences_wav):
    path, _ = sentences_wav
    wav, _ = sf.read(path, dtype="float32")
    long = np.concatenate([wav] * 5 + [np.zeros(16000 * 20, np.float32)])  # ~72 s, 20 s of silence at the end
    a = recognizer.analyze(long, sample_rate=16000)
    assert len(a.windows) >= 2
    assert all(w.end_s - w.start_s <= 30 for w in a.windows)
    assert a.windows[-1].end_s < a.duration_s - 10  # the silent tail carries no weight and is not read
    speech = recognizer._detector(recognizer.options.vad).speech_spans(long)
    weights = [sum(max(0, min(e, w.end_s * 16000) - max(s, w.start_s * 16000)) for s, e in speech) for w in a.windows]
    expected = np.average([_probs(w) for w in a.windows], axis=0, weights=weights)
    np.testing.assert_allclose(_probs(a.summary), expected, atol=1e-6)
    assert a.summary.end_s == pytest.approx(a.duration_s)


def test_trace_marks_non_speech(recognizer, sentences_wav):
    path, truth = sentences_wav
    a = recognizer.analyze(path, trace=True, window_s=1.0, hop_s=0.5)
    assert a.trace_window_s == 1.0 and a.trace_hop_s == 0.5
    starts = [s.start_s for s in a.segments]
    assert starts == pytest.approx([0.5 * i for i in range(len(starts))])
    assert a.segments[-1].end_s == pytest.approx(a.duration_s)
    first = a.segments[0]  # 0..1 s is the leading pause
    assert not first.is_speech and first.reading is None and first.speech_ratio < 0.25
    middle = [s for s in a.segments if truth[0][0] + 0.2 < s.start_s and s.end_s < truth[0][1] - 0.2]
    assert middle and all(s.is_speech and s.reading is not None for s in middle)
    for s in a.segments:
        if s.reading:
            assert (s.reading.start_s, s.reading.end_s) == (s.start_s, s.end_s)
    labels = {s.reading.label for s in a.segments if s.reading}
    confidences = {round(s.reading.confidence, 3) for s in a.segments if s.reading}
    assert len(confidences) > 1, labels  # readings follow the audio


def test_trace_windows_equal_their_clips(recognizer, speech_wav):
    a = recognizer.analyze(speech_wav, trace=True)
    wav, _ = sf.read(speech_wav, dtype="float32")
    seg = next(s for s in a.segments if s.reading)
    clip = wav[int(seg.start_s * 16000) : int(seg.end_s * 16000)]
    np.testing.assert_allclose(_probs(seg.reading), _probs(recognizer.classify_batch([clip])[0]), atol=1e-4)


def test_too_short_and_silence(recognizer):
    with pytest.raises(AudioError, match="too short to judge") as info:
        recognizer.analyze(np.zeros(4000, np.float32), sample_rate=16000)
    assert info.value.problem == "too_short"
    a = recognizer.analyze(np.zeros(16000 * 2, np.float32), sample_rate=16000)
    assert a.speech_s == 0 and any("No speech" in w for w in a.warnings)
    # The network names an emotion for silence too, however sure it is: the reading says it means nothing.
    assert a.summary.uncertain and a.windows and all(w.uncertain for w in a.windows)


def test_speech_keeps_its_default_uncertain_flag(recognizer, speech_wav):
    a = recognizer.analyze(speech_wav)
    assert a.speech_s > 0 and a.summary.uncertain == (a.summary.confidence < 0.5)


def test_uncertain_flag_follows_the_threshold(recognizer, speech_wav):
    conf = recognizer.analyze(speech_wav).summary.confidence
    assert recognizer.analyze(speech_wav, options=AnalysisOptions(min_confidence=conf + 0.01)).summary.uncertain
    assert not recognizer.analyze(speech_wav, options=AnalysisOptions(min_confidence=conf - 0.01)).summary.uncertain


def test_margin_and_entropy(recognizer, speech_wav):
    s = recognizer.analyze(speech_wav).summary
    p = sorted(s.probabilities.values(), reverse=True)
    assert s.margin == pytest.approx(p[0] - p[1])
    assert s.entropy == pytest.approx(-sum(x * np.log(x) for x in p) / np.log(7))


def test_results_round_trip_as_json(recognizer, speech_wav):
    a = recognizer.analyze(speech_wav, trace=True)
    assert EmotionAnalysis.model_validate_json(a.model_dump_json()) == a


def test_threads_take_turns(recognizer, speech_wav):
    expected = recognizer.analyze(speech_wav).summary
    results, errors = [], []

    def work():
        try:
            results.append(recognizer.analyze(speech_wav).summary)
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 4
    for r in results:
        np.testing.assert_allclose(_probs(r), _probs(expected), atol=1e-6)


def test_progress_is_reported(recognizer, speech_wav):
    calls = []
    recognizer.analyze(speech_wav, trace=True, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]


def test_options_are_validated():
    with pytest.raises(ValueError, match="max_window_s"):
        AnalysisOptions(max_window_s=45)
    with pytest.raises(ValueError, match="without gaps"):
        AnalysisOptions(hop_s=0)
    with pytest.raises(ValueError, match="without gaps"):
        AnalysisOptions(window_s=1.0, hop_s=2.0)
    with pytest.raises(ValueError, match="batch_size"):
        AnalysisOptions(batch_size=0)
    assert AnalysisOptions().batch_size is None  # the device decides: 1 on the CPU, 8 on a GPU


def test_classify_batch_checks_its_input(recognizer):
    with pytest.raises(AudioError, match="1-D waveforms"):
        recognizer.classify_batch([np.zeros(16000 * 31, np.float32)])
    with pytest.raises(AudioError, match="1-D waveforms"):
        recognizer.classify_batch([np.zeros((2, 100), np.float32)])


def test_devices_and_dtypes():
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_dtype(torch.device("cpu"), "int3")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_reduced_precision_runs(tiny_checkpoint, speech_wav):
    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", dtype="bfloat16")
    assert rec.dtype == torch.bfloat16 and rec.info().dtype == "bfloat16"
    s = rec.analyze(speech_wav).summary
    assert abs(sum(s.probabilities.values()) - 1) < 1e-5 and 0 <= s.valence <= 1


def test_info(recognizer):
    info = recognizer.info()
    assert info.labels == recognizer.labels and info.random_weights
    assert set(info.dimensions) == {"valence", "arousal", "dominance"}
    assert info.parameters == sum(p.numel() for p in recognizer.model.parameters())
    assert "random weights" in repr(recognizer)
