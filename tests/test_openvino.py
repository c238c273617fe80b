"""The OpenVINO runtime for the encoder: exact in f32, named in every result, cached on disk, refused where it cannot run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino", reason="pip install 'emotion-tool[openvino]' to test the OpenVINO runtime")

from emotion_tool import EmotionRecognizer  # noqa: E402
from emotion_tool.engine.operating_point import OperatingPoint  # noqa: E402

EXACT = 1e-4  # the parity rule for a path that counts as exact


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EMOTION_TOOL_CACHE", str(tmp_path_factory.getbasetemp() / "openvino-cache"))


def _largest_difference(a, b) -> float:
    pairs = [(a.summary, b.summary), *zip(a.windows, b.windows), *((x.reading, y.reading) for x, y in zip(a.segments, b.segments) if x.reading and y.reading)]
    worst = 0.0
    for x, y in pairs:
        worst = max(worst, *(abs(x.probabilities[k] - y.probabilities[k]) for k in x.probabilities))
        worst = max(worst, abs(x.valence - y.valence), abs(x.arousal - y.arousal), abs(x.dominance - y.dominance))
    return worst


@pytest.mark.parametrize(("point", "torch_point"), [("openvino", "published"), ("trimmed+openvino", "trimmed")])
def test_f32_openvino_reads_within_1e_4_of_torch(point: str, torch_point: str, tiny_checkpoint: Path, sentences_wav):
    wav, _ = sentences_wav
    reference = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point=torch_point)
    ov = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point=point)
    a = reference.analyze(wav, trace=True)
    b = ov.analyze(wav, trace=True)
    assert b.operating_point == point and a.operating_point == torch_point  # named, although it is exact
    assert len(b.windows) == len(a.windows) and len(b.segments) == len(a.segments)
    assert _largest_difference(a, b) < EXACT


def test_bf16_openvino_is_named_and_close(tiny_checkpoint: Path, speech_wav: Path, recognizer):
    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="openvino+bf16")
    b = rec.analyze(speech_wav)
    assert b.operating_point == "openvino+bf16"
    assert "bf16 hint" in rec.info().encoder_runtime
    assert _largest_difference(recognizer.analyze(speech_wav), b) < 0.1  # bf16 rounding, not another model


def test_the_converted_encoder_is_cached_and_read_back(tiny_checkpoint: Path, speech_wav: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("EMOTION_TOOL_CACHE", str(tmp_path / "empty-cache"))  # nothing converted yet
    first = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="openvino")
    second = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="openvino+bf16")
    assert first.openvino.source == "converted"
    assert second.openvino.source.startswith(f"read from the cache {tmp_path / 'empty-cache'}")
    cached = Path(second.openvino.source.removeprefix("read from the cache "))
    assert (cached / "encoder.xml").is_file() and (cached / "encoder.bin").stat().st_size > 0
    assert second.analyze(speech_wav).summary.label
    # A damaged cache is converted again, with a warning in the log, never an error.
    (cached / "encoder.xml").write_text("<not a model")
    third = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="openvino")
    assert third.openvino.source == "converted" and third.analyze(speech_wav).summary.label


def test_openvino_combinations_it_cannot_run_are_refused():
    for name in ("openvino+int8", "openvino+fp16", "trimmed+openvino+int8"):
        with pytest.raises(ValueError, match="openvino runtime computes in fp32 or bf16"):
            OperatingPoint.parse(name)
    assert str(OperatingPoint.parse("bf16+trimmed+openvino")) == "trimmed+openvino+bf16"


@pytest.mark.subprocess
def test_the_command_line_and_the_model_resource_name_the_runtime(tiny_checkpoint: Path, speech_wav: Path, tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-m", "emotion_tool.cli.main", "info", "--model", str(tiny_checkpoint), "--operating-point", "openvino", "--format", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["operating_point"] == "openvino" and info["encoder_runtime"].startswith("OpenVINO ")
    torch_info = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu").info().model_dump(mode="json")
    assert "encoder_runtime" not in torch_info  # unchanged for torch points


@pytest.mark.anyio
async def test_the_mcp_server_serves_the_openvino_point(tiny_checkpoint: Path, speech_wav: Path):
    from mcp import Client

    from mcp_server import ServerOptions, create_server

    options = ServerOptions(model=str(tiny_checkpoint), device="cpu", allow_dirs=(speech_wav.parent,), operating_point="openvino")
    async with Client(create_server(options)) as c:
        result = await c.call_tool("analyze_emotion", {"audio_path": str(speech_wav)})
        assert not result.is_error, result.content[0].text
        assert result.structured_content["operating_point"] == "openvino"
        model = json.loads((await c.read_resource("emotion://model")).contents[0].text)
        assert model["encoder_runtime"].startswith("OpenVINO ")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
