"""OperatingPoint names: parsed, validated and printed in one place; CPU features detected at run time."""

import os
import subprocess
import sys

import pytest

from emotion_tool.engine.operating_point import LIVE, PRESETS, OperatingPoint, _features_from_flags, cpu_features


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("published", "published"),
        ("bf16", "bf16"),
        ("int8+trimmed", "trimmed+int8"),
        ("shared-encoder+int8+trimmed", "trimmed+int8+shared-encoder"),
        (" Trimmed + BF16 ", "trimmed+bf16"),
        ("padded+fp32+windows", "published"),  # published values spelled out
        ("fp16", "fp16"),
    ],
)
def test_parse_and_print_round_trip(name, canonical):
    point = OperatingPoint.parse(name)
    assert str(point) == point.name == canonical
    assert OperatingPoint.parse(str(point)) == point


def test_fields_and_presets():
    assert OperatingPoint.parse("trimmed+int8") == OperatingPoint(context="trimmed", precision="int8")
    assert OperatingPoint.parse("published").published and not OperatingPoint.parse("bf16").published
    assert OperatingPoint.parse("live") == LIVE == PRESETS["live"]
    assert str(LIVE) != "live"  # results carry what the preset stands for
    assert OperatingPoint.parse(None) == OperatingPoint()
    assert OperatingPoint.parse(LIVE) is LIVE
    assert OperatingPoint().with_(precision="bf16") == OperatingPoint.parse("bf16")


@pytest.mark.parametrize(
    "bad, words",
    [
        ("fast", ["'fast'", "published", "bf16", "trimmed"]),
        ("bf16+int8", ["two precisions", "'bf16'", "'int8'"]),
        ("trimmed+", ["part ''"]),
        ("", ["part ''"]),
        (3, ["int"]),
    ],
)
def test_bad_names_say_what_is_accepted(bad, words):
    with pytest.raises(ValueError) as e:
        OperatingPoint.parse(bad)
    for w in words:
        assert w in str(e.value)


def test_fields_are_validated():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, int8"):
        OperatingPoint(precision="fp8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="context"):
        OperatingPoint(context="cropped")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        LIVE.precision = "fp32"  # frozen


def test_cpu_features_from_flags():
    intel = _features_from_flags({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx512_vnni"}, "AVX512")
    assert intel.amx_bf16 and intel.amx_int8 and intel.fast_bf16
    zen4 = _features_from_flags({"avx512f", "avx512_bf16", "avx512_vnni"}, "AVX512")
    assert zen4.fast_bf16 and not zen4.amx_bf16
    old = _features_from_flags({"avx2", "fma"}, "AVX2")
    assert not old.fast_bf16 and "no bf16/int8 matrix units" in old.describe()
    assert not _features_from_flags({"amx_bf16"}, "AVX512").amx_bf16  # tiles are needed too


def test_cpu_features_of_this_machine_match_proc_cpuinfo():
    f = cpu_features()
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags here")
    assert f.avx512_bf16 == ("avx512_bf16" in flags)
    assert f.amx_bf16 == ("amx_bf16" in flags and "amx_tile" in flags)
    assert f.capability != "unknown"


def test_detection_can_be_overridden():
    code = "from emotion_tool.engine.operating_point import cpu_features as c; f = c(); print(f.fast_bf16, f.avx512_vnni)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "EMOTION_TOOL_CPU_FLAGS": "avx2 avx512_vnni"}
    ).stdout.split()
    assert out == ["False", "True"]



def test_from_flags_adds_spelled_out_choices_and_refuses_contradictions():
    assert str(OperatingPoint.from_flags(None, context="trimmed", precision="int8")) == "trimmed+int8"
    assert str(OperatingPoint.from_flags("bf16", context="trimmed")) == "trimmed+bf16"
    assert str(OperatingPoint.from_flags("trimmed", context="trimmed")) == "trimmed"
    with pytest.raises(ValueError, match="contradict"):
        OperatingPoint.from_flags("bf16", precision="int8")


def test_a_torch_bf16_point_with_the_padded_context_on_a_cpu_points_to_openvino():
    from emotion_tool.engine.operating_point import faster_point_hint

    assert "--operating-point openvino+bf16" in faster_point_hint("bf16")
    assert "openvino+bf16" in faster_point_hint("bf16+shared-encoder")
    for point, device in (("published", "cpu"), ("openvino+bf16", "cpu"), ("trimmed+bf16", "cpu"), ("int8", "cpu"), ("bf16", "cuda:0")):
        assert faster_point_hint(point, device=device) is None, point
