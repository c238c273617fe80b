"""Kernels with a per-CPU winner: the choice follows the stated CPU features, else a cached measurement.

No timing here: the measurement is replaced by stated seconds, and the features by stated flags.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from emotion_tool.engine import kernels
from emotion_tool.engine.kernels import attention_by_features, choose_kernels
from emotion_tool.engine.operating_point import CpuFeatures


def features(**flags: bool) -> CpuFeatures:
    names = ("avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx512_fp16", "arm_bf16")
    return CpuFeatures(capability=flags.pop("capability", "AVX512"), **{n: flags.get(n, False) for n in names})


AMX = features(avx512_bf16=True, amx_bf16=True, amx_int8=True, avx512_vnni=True, avx512_fp16=True)
ZEN4 = features(avx512_bf16=True, avx512_vnni=True)
AVX2 = features(capability="AVX2")
ARM = features(capability="DEFAULT", arm_bf16=True)


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv("EMOTION_TOOL_CPU_ATTENTION", raising=False)


def never_measure() -> dict[str, float]:
    raise AssertionError("the features decide on this CPU; nothing is measured")


@pytest.mark.parametrize(
    ("cpu", "attention", "reason"),
    [
        (AMX, "bf16", "amx_bf16"),
        (ZEN4, "fp32", "avx512_bf16 without amx_bf16"),
        (AVX2, "fp32", "no bf16 units"),
    ],
)
def test_the_features_decide_where_they_can(cpu, attention, reason, tmp_path):
    choice = choose_kernels(cpu, cache_path=tmp_path / "kernels.json", torch_version="x", measure=never_measure)
    assert choice.attention == attention and reason in choice.decided_by
    assert attention in choice.describe() and reason in choice.describe()
    assert not (tmp_path / "kernels.json").exists()  # nothing measured, nothing cached


def test_arm_bf16_is_measured_once_and_the_result_kept(tmp_path):
    assert attention_by_features(ARM) is None
    path = tmp_path / "cache" / "kernels.json"
    calls = []

    def measure():
        calls.append(1)
        return {"bf16": 0.010, "fp32": 0.020}

    first = choose_kernels(ARM, cache_path=path, torch_version="2.13.0", measure=measure)
    assert first.attention == "bf16" and "measured on this machine" in first.decided_by and "10.0 ms" in first.decided_by
    kept = json.loads(path.read_text())
    (entry,) = kept.values()
    assert entry == {"attention": "bf16", "bf16_s": 0.010, "fp32_s": 0.020}

    second = choose_kernels(ARM, cache_path=path, torch_version="2.13.0", measure=measure)
    assert second.attention == "bf16" and "cached measurement" in second.decided_by
    assert len(calls) == 1

    # Another torch build is another machine as far as kernels go: measured again, kept beside the first.
    third = choose_kernels(ARM, cache_path=path, torch_version="2.14.0", measure=lambda: {"bf16": 0.03, "fp32": 0.02})
    assert third.attention == "fp32" and len(json.loads(path.read_text())) == 2


def test_an_unreadable_cache_is_measured_again_with_a_warning(tmp_path):
    path = tmp_path / "kernels.json"
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable kernel cache"):
        choice = choose_kernels(ARM, cache_path=path, torch_version="x", measure=lambda: {"bf16": 2.0, "fp32": 1.0})
    assert choice.attention == "fp32"
    assert json.loads(path.read_text())  # rewritten whole


def test_a_cache_that_cannot_be_written_still_gives_a_choice(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="could not cache"):
        choice = choose_kernels(ARM, cache_path=blocker / "kernels.json", torch_version="x", measure=lambda: {"bf16": 1.0, "fp32": 2.0})
    assert choice.attention == "bf16" and "not cached" in choice.decided_by


@pytest.mark.parametrize("value", ["bf16", "FP32 "])
def test_the_environment_overrides_the_features(value, monkeypatch, tmp_path):
    monkeypatch.setenv("EMOTION_TOOL_CPU_ATTENTION", value)
    choice = choose_kernels(AMX, cache_path=tmp_path / "k.json", measure=never_measure)
    assert choice.attention == value.strip().lower() and choice.decided_by == "EMOTION_TOOL_CPU_ATTENTION"


def test_a_bad_override_names_the_values(monkeypatch):
    monkeypatch.setenv("EMOTION_TOOL_CPU_ATTENTION", "int4")
    with pytest.raises(ValueError, match="EMOTION_TOOL_CPU_ATTENTION='int4'; use one of bf16, fp32"):
        choose_kernels(AMX, measure=never_measure)


def test_the_cache_lives_in_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("EMOTION_TOOL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kernels.cache_dir() == tmp_path / "emotion-tool"
    monkeypatch.setenv("EMOTION_TOOL_CACHE", str(tmp_path / "mine"))
    assert kernels.cache_dir() == tmp_path / "mine"


@pytest.mark.parametrize("attention", ["bf16", "fp32"])
def test_a_bf16_recognizer_on_the_cpu_attends_as_chosen(attention, tiny_checkpoint, speech_wav, monkeypatch):
    from emotion_tool.engine import recognizer as recognizer_module
    from emotion_tool.engine.kernels import KernelChoice
    from emotion_tool.engine.recognizer import EmotionRecognizer

    choice = KernelChoice(attention=attention, decided_by="stated for this test")
    monkeypatch.setattr(recognizer_module, "cpu_kernels", lambda: choice)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU without bf16 units warns
        rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="bf16")
    assert rec.kernels == choice
    assert {layer.self_attn.cpu_attention for layer in rec.model.whisper.encoder.layers} == {attention}
    reading = rec.analyze(speech_wav)
    assert reading.operating_point == "bf16"  # the kernel choice does not rename the operating point
    s = reading.summary
    assert all(torch.isfinite(torch.tensor([s.valence, s.arousal, s.dominance, s.confidence])))


def test_an_fp32_recognizer_leaves_the_attention_alone(recognizer):
    assert recognizer.kernels is None
    assert {layer.self_attn.cpu_attention for layer in recognizer.model.whisper.encoder.layers} == {"fp32"}


def bf16_encoder(tiny_checkpoint):
    from emotion_tool.engine.recognizer import EmotionRecognizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU without bf16 units warns
        return EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="bf16").model.whisper.encoder


def test_bf16_and_fp32_attention_stay_close(tiny_checkpoint):
    """The two CPU attention paths of a bf16 encoder compute the same states within bf16's rounding."""
    encoder = bf16_encoder(tiny_checkpoint)
    frames = 2 * encoder.embed_positions.num_embeddings
    mels = torch.randn(1, encoder.conv1.in_channels, frames, generator=torch.Generator().manual_seed(0)).bfloat16()
    with torch.inference_mode():
        encoder.set_cpu_attention("fp32")
        a = encoder(mels).float()
        encoder.set_cpu_attention("bf16")
        b = encoder(mels).float()
    assert a.shape == b.shape and torch.isfinite(b).all()
    assert (a - b).abs().max() < 0.25 * a.abs().max()
    assert not torch.equal(a, b)  # two different kernels ran


def test_a_bad_attention_precision_is_refused(tiny_checkpoint):
    with pytest.raises(ValueError, match="'bf16' or 'fp32'"):
        bf16_encoder(tiny_checkpoint).set_cpu_attention("fp8")
