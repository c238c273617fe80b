"""The opt-in fast operating points: named, exact where they must be, and measured."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from emotion_tool import AnalysisOptions, EmotionRecognizer
from emotion_tool.science.agreement import measure_agreement


def _p(r):
    return np.array(list(r.probabilities.values()))


@pytest.fixture(scope="module")
def int8(tiny_checkpoint):
    return EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", quantize="int8")


def test_names(recognizer, int8):
    assert recognizer.operating_point() == "published"
    assert recognizer.operating_point(AnalysisOptions(context="trimmed")) == "trimmed"
    shared = AnalysisOptions(trace_mode="shared-encoder")
    assert recognizer.operating_point(shared) == "published"  # no trace, nothing shared
    assert recognizer.operating_point(shared, trace=True) == "shared-encoder"
    assert int8.operating_point(AnalysisOptions(context="trimmed"), trace=False) == "trimmed+int8"
    assert int8.info().operating_point == "int8" and "operating_point='int8'" in repr(int8)


def test_trimmed_equals_padded_for_a_full_window(tiny_checkpoint):
    padded = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu")
    trimmed = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", options=AnalysisOptions(context="trimmed"))
    wav = (0.1 * np.random.default_rng(0).standard_normal(16000 * 30)).astype(np.float32)
    np.testing.assert_allclose(_p(trimmed.classify_batch([wav])[0]), _p(padded.classify_batch([wav])[0]), atol=1e-5)


def test_trimmed_changes_short_windows_and_ignores_the_batch(tiny_checkpoint, speech_wav):
    trimmed = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", options=AnalysisOptions(context="trimmed", batch_size=3))
    padded = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu")
    wav, _ = sf.read(speech_wav, dtype="float32")
    clips = [wav, wav[:16000], wav[5000:]]
    together = trimmed.classify_batch(clips)
    for clip, r in zip(clips, together):
        np.testing.assert_allclose(_p(r), _p(trimmed.classify_batch([clip])[0]), atol=1e-5)
    assert np.abs(_p(together[0]) - _p(padded.classify_batch([wav])[0])).max() > 1e-3


def test_trimmed_shared_trace_of_one_whole_window_is_the_window(tiny_checkpoint):
    """With trimmed context, a trace window equal to its host window pools exactly the host's frames."""
    wav = (0.1 * np.random.default_rng(1).standard_normal(16000 * 4)).astype(np.float32)
    opts = AnalysisOptions(context="trimmed", trace_mode="shared-encoder", trace=True, window_s=4.0, hop_s=4.0, min_speech_ratio=0)
    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", options=opts)
    a = rec.analyze(wav, sample_rate=16000)
    assert a.operating_point == "trimmed+shared-encoder" and len(a.segments) == 1
    np.testing.assert_allclose(_p(a.segments[0].reading), _p(a.windows[0]), atol=1e-5)


def test_shared_encoder_keeps_the_summary_exact(recognizer, sentences_wav):
    path, _ = sentences_wav
    exact = recognizer.analyze(path, trace=True)
    shared = recognizer.analyze(path, options=AnalysisOptions(trace=True, trace_mode="shared-encoder"))
    assert shared.operating_point == "shared-encoder"
    # The same padded pass, batched differently: equal up to float32 rounding.
    np.testing.assert_allclose(_p(shared.summary), _p(exact.summary), atol=1e-4)
    assert [s.is_speech for s in shared.segments] == [s.is_speech for s in exact.segments]
    assert [(s.start_s, s.end_s) for s in shared.segments] == [(s.start_s, s.end_s) for s in exact.segments]
    readings = [s.reading for s in shared.segments if s.reading]
    assert len({round(r.confidence, 4) for r in readings}) > 1  # segments pooled from different frames


def test_shared_encoder_on_long_audio(recognizer, sentences_wav):
    path, _ = sentences_wav
    wav, _ = sf.read(path, dtype="float32")
    long = np.concatenate([wav] * 4)  # ~42 s: two host windows
    calls = []
    a = recognizer.analyze(long, sample_rate=16000, options=AnalysisOptions(trace=True, trace_mode="shared-encoder"),
                           progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert len(a.windows) == 2 and calls[-1] == (2, 2)  # one encoder pass per host window
    assert a.segments[-1].end_s == pytest.approx(a.duration_s)
    assert all(s.reading for s in a.segments if s.is_speech)


def test_int8_quantizes_linear_layers(int8, recognizer, speech_wav):
    kinds = {type(m).__name__ for m in int8.model.modules()}
    assert "Linear" in kinds or "DynamicQuantizedLinear" in kinds
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())
    r8, r32 = int8.analyze(speech_wav).summary, recognizer.analyze(speech_wav).summary
    assert abs(sum(r8.probabilities.values()) - 1) < 1e-5
    assert np.abs(_p(r8) - _p(r32)).max() > 0  # it is a different operating point


def test_int8_needs_the_cpu(tiny_checkpoint):
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CPU only"):
            EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cuda", quantize="int8")
    with pytest.raises(ValueError, match="unknown quantization"):
        EmotionRecognizer(EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu").model, model_id="x", quantize="int4")


def test_options_refuse_unknown_modes():
    with pytest.raises(ValueError, match="context"):
        AnalysisOptions(context="short")
    with pytest.raises(ValueError, match="trace_mode"):
        AnalysisOptions(trace_mode="fast")


def test_measure_agreement(recognizer, int8, speech_wav):
    report = measure_agreement(recognizer, [str(speech_wav)], quantized=int8, points=["trimmed", "int8", "shared-encoder"])
    by = {a.operating_point: a for a in report.points}
    assert set(by) == {"trimmed", "int8", "shared-encoder"}
    assert by["trimmed"].compared == "windows" and by["trimmed"].readings == 1
    assert by["shared-encoder"].compared == "trace segments" and by["shared-encoder"].readings >= 2
    for a in report.points:
        assert 0 <= a.label_agreement <= 1 and a.max_probability_diff >= 0 and a.speedup > 0
    assert by["trimmed"].max_probability_diff > 1e-3  # short clip: trimming changes the numbers
    with pytest.raises(ValueError, match="unknown operating point"):
        measure_agreement(recognizer, [str(speech_wav)], points=["turbo"])


@pytest.mark.subprocess
def test_agree_command(tiny_checkpoint, speech_wav):
    out = subprocess.run(
        [sys.executable, "-m", "emotion_tool.cli", "agree", str(speech_wav), "--model", str(tiny_checkpoint),
         "--points", "trimmed,int8", "--format", "json"],
        capture_output=True, text=True, env={**os.environ}, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [p["operating_point"] for p in report["points"]] == ["trimmed", "int8"]
    assert "random weights" in out.stderr


@pytest.mark.subprocess
def test_analyze_command_names_the_fast_point(tiny_checkpoint, speech_wav):
    out = subprocess.run(
        [sys.executable, "-m", "emotion_tool.cli", "analyze", str(speech_wav), "--model", str(tiny_checkpoint),
         "--context", "trimmed", "--quantize", "int8", "--format", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["operating_point"] == "trimmed+int8"
    assert "fast operating point trimmed+int8" in out.stderr


# bf16 keeps fp32 accumulation and fp32 heads; on these tiny random weights the readings stay within
# BF16_ATOL of fp32 (bf16 has an 8-bit mantissa: relative error ~4e-3 per operation).
BF16_ATOL = 0.05


def test_bf16_reads_close_to_fp32(tiny_checkpoint, recognizer, speech_wav):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU without bf16 units warns; parity is what is checked here
        bf16 = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="bf16")
    assert bf16.encoder_dtype == torch.bfloat16 and bf16.dtype == torch.float32  # heads stay fp32
    assert bf16.model.whisper.encoder.conv1.weight.dtype == torch.bfloat16
    assert bf16.model.downstream_model.proj_in[0].weight.dtype == torch.float32
    a, b = recognizer.analyze(speech_wav), bf16.analyze(speech_wav)
    assert b.operating_point == "bf16" and a.operating_point == "published"
    diff = np.abs(_p(a.summary) - _p(b.summary)).max()
    assert 0 < diff < BF16_ATOL  # different arithmetic, close numbers
    assert abs(a.summary.valence - b.summary.valence) < BF16_ATOL
    assert bf16.info().dtype == "bfloat16"


def test_operating_point_argument_sets_context_and_precision(tiny_checkpoint):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="live")
    assert rec.operating_point() == "trimmed+bf16" and rec.options.context == "trimmed"
    q = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="trimmed+int8")
    assert q.operating_point() == "trimmed+int8" and q.quantization == "int8"
    with pytest.raises(ValueError, match="unknown operating point 'turbo'"):
        EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="turbo")
    with pytest.raises(ValueError, match="contradicts"):
        EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="bf16", quantize="int8")


def test_bf16_warns_on_a_cpu_without_bf16_units(tiny_checkpoint, monkeypatch):
    from emotion_tool.engine import operating_point as op

    monkeypatch.setenv("EMOTION_TOOL_CPU_FLAGS", "avx2 fma")
    op.cpu_features.cache_clear()
    try:
        with pytest.warns(UserWarning, match="no bf16 matrix units"):
            rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="bf16")
        assert rec.operating_point() == "bf16"  # it still works
    finally:
        op.cpu_features.cache_clear()
