"""Channels as speakers: a real stereo call (two espeak-ng voices, one per channel) through the Python
API, the CLI, the MCP tool and batch. With random weights the readings mean nothing, so each channel's
reading is checked against the same channel analysed alone, as a mono file cut from the stereo one."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import speak, voiced
from emotion_tool import EmotionAnalysis
from emotion_tool.audio import AudioError
from emotion_tool.engine.options import AnalysisOptions

SPEAKERS = ("agent", "customer")
OVERLAP_S = 1.0  # the customer starts talking this long before the agent stops
TOL_S = 0.4  # voice activity detection may move a speech edge by this much


@dataclass(frozen=True)
class Call:
    stereo: Path
    alone: tuple[Path, Path]  # each channel cut from `stereo` into its own mono file (sox remix)
    agent_speech: tuple[float, float]  # (start_s, end_s) where the agent's voice sounds
    customer_speech: tuple[float, float]


@pytest.fixture(scope="module")
def call(tmp_path_factory: pytest.TempPathFactory) -> Call:
    """A calm, slow, low agent on the left; a fast, high, upset customer on the right, talking over the
    agent's last second. Built as two mono files merged by `sox -M`, then cut apart again by `sox remix`."""
    d = tmp_path_factory.mktemp("call")
    agent = voiced(speak("Thank you for calling. I will look into your order right away.", d / "a.wav", voice="en-gb", speed_wpm=130, pitch=25))
    customer = voiced(speak("No! This is the third time it broke and I want my money back now!", d / "c.wav", voice="en-us", speed_wpm=210, pitch=85))
    rate, lead = 16000, 0.5
    agent_start = int(lead * rate)
    customer_start = agent_start + len(agent) - int(OVERLAP_S * rate)
    n = customer_start + len(customer) + int(lead * rate)
    left, right = np.zeros(n, np.float32), np.zeros(n, np.float32)
    left[agent_start : agent_start + len(agent)] = agent
    right[customer_start : customer_start + len(customer)] = customer
    sf.write(d / "left.wav", left, rate, subtype="PCM_16")
    sf.write(d / "right.wav", right, rate, subtype="PCM_16")
    stereo = d / "call.wav"
    subprocess.run(["sox", "-M", str(d / "left.wav"), str(d / "right.wav"), str(stereo)], check=True, capture_output=True)
    alone = tuple(d / f"channel{c + 1}.wav" for c in range(2))
    for c, path in enumerate(alone):
        subprocess.run(["sox", str(stereo), str(path), "remix", str(c + 1)], check=True, capture_output=True)
    return Call(
        stereo, alone,  # type: ignore[arg-type]
        (agent_start / rate, (agent_start + len(agent)) / rate),
        (customer_start / rate, (customer_start + len(customer)) / rate),
    )  # fmt: skip


@pytest.fixture(scope="module")
def alone(recognizer, call: Call) -> list[EmotionAnalysis]:
    """Each channel's own analysis, with a trace."""
    return [recognizer.analyze(p, trace=True) for p in call.alone]


def _probs(reading) -> np.ndarray:
    return np.array(list(reading.probabilities.values()))


def check_speakers(a: EmotionAnalysis, alone: list[EmotionAnalysis], *, atol: float = 1e-5) -> None:
    """Each speaker's summary and trace are its channel's alone; the two differ as the channels do."""
    assert [p.speaker for p in a.speakers] == list(SPEAKERS) and [p.channel for p in a.speakers] == [0, 1]
    for p, own in zip(a.speakers, alone):
        np.testing.assert_allclose(_probs(p.summary), _probs(own.summary), atol=atol)
        np.testing.assert_allclose([p.summary.valence, p.summary.arousal], [own.summary.valence, own.summary.arousal], atol=atol)
        assert p.summary.speaker == p.speaker
        assert p.speech_s == pytest.approx(own.speech_s, abs=0.05)
        if a.segments:
            mine = [s for s in a.segments if s.speaker == p.speaker]
            assert [(s.start_s, s.is_speech) for s in mine] == [(s.start_s, s.is_speech) for s in own.segments]
            for s, o in zip(mine, own.segments):
                if o.reading is not None:
                    np.testing.assert_allclose(_probs(s.reading), _probs(o.reading), atol=atol)
                    assert s.reading.speaker == p.speaker
    gap = np.abs(_probs(a.speakers[0].summary) - _probs(a.speakers[1].summary)).max()
    assert gap == pytest.approx(np.abs(_probs(alone[0].summary) - _probs(alone[1].summary)).max(), abs=10 * atol)
    assert gap > 1e-3  # two voices, two readings: not one channel copied to both


def test_each_channel_is_read_as_its_own_speaker(recognizer, call: Call, alone):
    a = recognizer.analyze(call.stereo, options=AnalysisOptions(trace=True, channels=SPEAKERS))
    check_speakers(a, alone)
    # The recording's summary weighs every channel's windows by their speech.
    assert all(len(o.windows) == 1 for o in alone)  # a short call: each channel's summary is one window, weighed by its speech
    weights = np.array([o.speech_s for o in alone])
    expected = (weights[:, None] * np.stack([_probs(o.summary) for o in alone])).sum(0) / weights.sum()
    np.testing.assert_allclose(_probs(a.summary), expected, atol=1e-5)
    assert {w.speaker for w in a.windows} == set(SPEAKERS)
    assert a.windows == sorted(a.windows, key=lambda w: w.start_s)


def test_overlap_is_where_both_channels_speak(recognizer, call: Call):
    a = recognizer.analyze(call.stereo, options=AnalysisOptions(trace=True, channels=SPEAKERS))
    assert a.overlap_s == pytest.approx(OVERLAP_S, abs=2 * TOL_S)
    assert all(p.overlap_s == pytest.approx(a.overlap_s) for p in a.speakers)
    both = (call.customer_speech[0], call.agent_speech[1])  # the second both are talking
    for s in a.segments:
        if not s.is_speech:
            assert s.overlap is False
        elif s.speaker == "agent" and s.end_s < both[0] - TOL_S:  # the agent alone
            assert s.overlap is False, s
        elif s.speaker == "customer" and s.start_s > both[1] + TOL_S:  # the customer alone
            assert s.overlap is False, s
    marked = [s for s in a.segments if s.overlap]
    assert {s.speaker for s in marked} == set(SPEAKERS)
    assert all(s.start_s < both[1] + TOL_S and s.end_s > both[0] - TOL_S for s in marked)


def test_mixing_stays_the_default_and_its_output_unchanged(recognizer, call: Call, speech_wav: Path):
    mixed = recognizer.analyze(call.stereo, trace=True)
    text = mixed.model_dump_json()
    assert '"speaker"' not in text and '"speakers"' not in text and '"overlap' not in text
    assert recognizer.analyze(speech_wav).model_dump_json() == recognizer.analyze(
        speech_wav, options=AnalysisOptions(channels=None)
    ).model_dump_json()
    one = recognizer.analyze(speech_wav, options=AnalysisOptions(channels=("only",)))  # a mono file is one speaker
    assert [p.speaker for p in one.speakers] == ["only"]
    np.testing.assert_allclose(_probs(one.summary), _probs(recognizer.analyze(speech_wav).summary), atol=1e-5)


def test_names_must_match_the_channels(recognizer, call: Call):
    with pytest.raises(AudioError, match=r"2 channel\(s\), but 3 speaker names"):
        recognizer.analyze(call.stereo, options=AnalysisOptions(channels=("a", "b", "c")))
    with pytest.raises(ValueError, match="name each channel once"):
        AnalysisOptions(channels=("agent", "agent"))
    assert AnalysisOptions(channels=["agent", "customer"]).channels == SPEAKERS  # type: ignore[arg-type]


@pytest.mark.subprocess
def test_cli(tiny_checkpoint: Path, call: Call, alone):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "emotion_tool.cli", "analyze", str(call.stereo), "--model", str(tiny_checkpoint),
             "--device", "cpu", "--channels", ",".join(SPEAKERS), "--trace", *args],
            capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"}, timeout=300,
        )  # fmt: skip

    out = cli("--format", "json")
    assert out.returncode == 0, out.stderr
    check_speakers(EmotionAnalysis.model_validate_json(out.stdout), alone, atol=1e-4)
    plot = call.stereo.with_name("trace.png")
    table = cli("--plot", str(plot))
    assert table.returncode == 0, table.stderr
    assert "speaker" in table.stdout and "customer*" in table.stdout and "agent*" in table.stdout
    from PIL import Image

    assert Image.open(plot).height > 700  # one PNG: a strip of who speaks when, then a lane per speaker (a mono trace is 600 px high)
    bad = subprocess.run(
        [sys.executable, "-m", "emotion_tool.cli", "analyze", str(call.stereo), "--channels", "agent,"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "--channels" in bad.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_tool(tiny_checkpoint: Path, call: Call, alone):
    from mcp import Client

    from mcp_server import ServerOptions, create_server

    options = ServerOptions(model=str(tiny_checkpoint), device="cpu", allow_dirs=(call.stereo.parent,))
    async with Client(create_server(options)) as client:
        args = {"audio_path": call.stereo.name, "trace": True}
        result = await client.call_tool("analyze_emotion", {**args, "channels": list(SPEAKERS)})
        assert not result.is_error, result.content[0].text
        check_speakers(EmotionAnalysis.model_validate(result.structured_content), alone)
        mixed = await client.call_tool("analyze_emotion", args)
        assert "speakers" not in mixed.structured_content
        wrong = await client.call_tool("analyze_emotion", {**args, "channels": ["agent"]})
        assert wrong.is_error and "2 channel(s)" in wrong.content[0].text


def test_batch_rows_carry_the_speaker(tiny_checkpoint: Path, call: Call, alone, tmp_path: Path):
    import torch

    from emotion_tool import EmotionRecognizer
    from emotion_tool.jobs.batch import BatchOptions, collect_items, read_table, run_batch

    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", options=AnalysisOptions(trace=True, channels=SPEAKERS))
    out = tmp_path / "calls.parquet"
    summary = run_batch(rec, collect_items([call.stereo, call.alone[0]]), out, options=BatchOptions(workers=1, threads=torch.get_num_threads(), progress=False))
    assert summary.written == 2 and summary.failed == 1  # the mono file has one channel for two names
    rows = [r for r in read_table(out) if r["audio"] == str(call.stereo.resolve()) or r["audio"] == str(call.stereo)]
    people = sorted((r for r in rows if r["kind"] == "speaker"), key=lambda r: r["segment"])
    assert [(r["segment"], r["speaker"]) for r in people] == [(0, "agent"), (1, "customer")]
    labels = rec.labels
    for r, own in zip(people, alone):
        np.testing.assert_allclose([r[f"p_{k}"] for k in labels], _probs(own.summary), atol=1e-5)
    segments = [r for r in rows if r["kind"] == "segment"]
    assert {r["speaker"] for r in segments} == set(SPEAKERS)
    assert len(segments) == sum(len(o.segments) for o in alone)
    (recording,) = [r for r in rows if r["kind"] == "recording"]
    assert recording["speaker"] is None and recording["error"] is None
