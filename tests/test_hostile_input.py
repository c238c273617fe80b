"""Odd numbers, odd arrays, special files and oversized decodes, through the Python API and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion_tool import AnalysisOptions, AudioError
from emotion_tool.audio import audio_info, load_audio, read_frames
from emotion_tool.engine.windows import plan_trace

from test_cli import run

HANG_BOUND_S = 60  # generous: only a blocked open passes it


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), -float("inf"), np.float64("nan"), 1e300])
def test_non_finite_or_huge_sample_rates_are_audio_errors(rate):
    with pytest.raises(AudioError, match="sample_rate") as e:
        load_audio(np.zeros(16000, dtype=np.float32), sample_rate=rate)
    assert e.value.problem == "sample_rate"


@pytest.mark.parametrize("shape", [(0, 0), (2, 0), (0, 5), (0,), (3, 0)])
def test_empty_arrays_of_every_shape_are_audio_errors(shape):
    with pytest.raises(AudioError) as e:
        load_audio(np.zeros(shape, dtype=np.float32), sample_rate=16000)
    assert e.value.problem == "empty"


@pytest.mark.parametrize(
    "field, value", [("hop_s", 1e-6), ("hop_s", 0.05), ("window_s", 0.1), ("hop_s", float("nan")), ("window_s", float("inf"))]
)
def test_trace_options_refuse_too_fine_or_non_finite_values(field, value):
    with pytest.raises(ValueError, match=rf"{field}|finite"):
        AnalysisOptions(trace=True, **{field: value})


def test_a_hop_under_one_sample_does_not_divide_by_zero():
    with pytest.raises(ValueError, match="under one sample"):
        plan_trace(16000 * 10, window_s=1.0, hop_s=1e-6)


def test_a_long_trace_is_refused_before_any_window_is_read(recognizer):
    read = []
    with pytest.raises(ValueError, match=r"plans \d+ windows, over the limit of 240 .* use hop_s >= "):
        recognizer.analyze(
            np.zeros(16000 * 60, dtype=np.float32), sample_rate=16000, trace=True, window_s=0.5, hop_s=0.1,
            progress=lambda done, total: read.append(done),
        )  # fmt: skip
    assert read == []


def _in_thread(fn):
    """Runs fn in a thread; returns what it raised. A call that blocks fails the test instead of hanging it."""
    out: list[BaseException | None] = []

    def target():
        try:
            fn()
            out.append(None)
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(HANG_BOUND_S)
    assert not t.is_alive(), "blocked on a special file"
    return out[0]


def test_special_files_are_refused_by_type_without_blocking(tmp_path: Path):
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    for call in (lambda: load_audio(fifo), lambda: audio_info(fifo), lambda: read_frames(fifo), lambda: load_audio("/dev/zero")):
        error = _in_thread(call)
        assert isinstance(error, AudioError) and error.problem == "type" and "not a regular file" in str(error), error
    error = _in_thread(lambda: load_audio(tmp_path))
    assert isinstance(error, AudioError) and "is a directory" in str(error)


def test_a_manifest_that_is_a_fifo_is_refused(tmp_path: Path):
    from emotion_tool.science.data import read_manifest

    fifo = tmp_path / "manifest.csv"
    os.mkfifo(fifo)
    error = _in_thread(lambda: read_manifest(fifo))
    assert isinstance(error, ValueError) and "not a regular file" in str(error)


@pytest.fixture(scope="module")
def wide_flac(tmp_path_factory) -> Path:
    """Ten seconds of 8-channel 192-kHz silence: a small FLAC that decodes to 15 million samples."""
    path = tmp_path_factory.mktemp("wide") / "wide.flac"
    with sf.SoundFile(path, "w", samplerate=192000, channels=8, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros((192000, 8), dtype=np.float32)
        for _ in range(10):
            f.write(block)
    return path


def test_decoded_size_is_checked_from_the_header(wide_flac: Path):
    with pytest.raises(AudioError, match=r"holds 15,360,000 samples \(8 channels at 192000 Hz") as e:
        load_audio(wide_flac, max_duration_s=10)
    assert e.value.problem == "too_long" and "sox in.flac -r 16000 -c 1 out.wav" in str(e.value)
    wav = load_audio(wide_flac, max_duration_s=200)  # within a larger limit it decodes, to 16 kHz mono
    assert wav.shape == (160000,) and wav.dtype == np.float32


def test_decoding_in_blocks_matches_decoding_at_once(tmp_path: Path):
    import soxr

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((44100 * 5 + 17, 2))).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    whole = soxr.resample(x.mean(axis=1, dtype=np.float32), 44100, 16000, quality="HQ")
    np.testing.assert_array_equal(load_audio(path), whole)


def test_cli_gives_one_line_for_bad_numbers_and_special_files(tiny_checkpoint, speech_wav, tmp_path: Path):
    for extra in (["--trace", "--hop-s", "0.00001"], ["--trace", "--hop-s", "nan"], ["--trace", "--window-s", "inf"]):
        out = run("analyze", speech_wav, "--model", tiny_checkpoint, *extra)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip().count("\n") == 0 and ("hop_s" in out.stderr or "window_s" in out.stderr), out.stderr
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    out = subprocess.run(
        [sys.executable, "-m", "emotion_tool.cli", "analyze", str(fifo), "--model", str(tiny_checkpoint)],
        capture_output=True, text=True, timeout=HANG_BOUND_S * 3, env={**os.environ},
    )  # fmt: skip
    assert out.returncode != 0 and "not a regular file" in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), "16000", 0])
def test_stream_options_refuse_odd_rates_with_a_value_error(rate):
    from emotion_tool.live.streaming import StreamOptions

    with pytest.raises(ValueError, match="sample_rate"):
        StreamOptions(sample_rate=rate)


def test_cli_gives_one_line_when_an_output_cannot_be_written(tiny_checkpoint, speech_wav, tmp_path: Path):
    taken = tmp_path / "x.png"
    taken.mkdir()  # the plot's path is a directory: the write fails
    out = run("analyze", speech_wav, "--model", tiny_checkpoint, "--trace", "--plot", taken)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("emotion-tool: error:"), out.stderr


@pytest.mark.parametrize("limit", [float("inf"), float("1e400")])
def test_an_infinite_duration_limit_means_no_limit(wide_flac: Path, limit: float):
    wav = load_audio(wide_flac, max_duration_s=limit)  # the header's size check has no limit to scale
    assert wav.shape == (160000,)


@pytest.mark.parametrize("limit", ["inf", "1e400"])
def test_cli_reads_a_file_with_no_duration_limit(tiny_checkpoint, speech_wav, limit: str):
    out = run("analyze", speech_wav, "--model", tiny_checkpoint, "--max-duration", limit, "--format", "json")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert '"summary"' in out.stdout


def test_mcp_server_reads_a_file_with_no_duration_limit(tiny_checkpoint, speech_wav):
    from mcp import Client

    from mcp_server import ServerOptions, create_server

    options = ServerOptions(model=str(tiny_checkpoint), device="cpu", allow_dirs=(speech_wav.parent,), max_duration_s=float("inf"))

    async def main():
        async with Client(create_server(options)) as c:
            return await c.call_tool("analyze_emotion", {"audio_path": str(speech_wav)})

    import anyio

    result = anyio.run(main)
    assert not result.is_error, result.content[0].text
    assert result.structured_content["summary"]["label"]


def test_a_calibration_that_is_not_a_regular_file_is_refused_by_type(tmp_path: Path):
    from emotion_tool.science.calibration import load_calibration

    fifo = tmp_path / "calibration.json"
    os.mkfifo(fifo)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    for special in (fifo, empty_dir):
        error = _in_thread(lambda: load_calibration(special))
        assert isinstance(error, ValueError) and "not a regular file" in str(error) and "does not exist" not in str(error), error


def test_a_bad_calibration_file_is_one_line(tiny_checkpoint, tmp_path: Path):
    from emotion_tool.science.calibration import load_calibration

    for text in ('{"temperature": "warm"}', "not json at all", "[]"):
        bad = tmp_path / "calibration.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match="is not an emotion-tool calibration file") as e:
            load_calibration(bad)
        assert "\n" not in str(e.value) and "emotion-tool calibrate" in str(e.value), str(e.value)
    # emotion-mcp loads it at start-up: one line on stderr, no traceback.
    script = Path(sys.executable).with_name("emotion-mcp")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mcp_server"]
    done = subprocess.run(
        command + ["--model", str(tiny_checkpoint), "--device", "cpu", "--calibration", str(bad)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=HANG_BOUND_S * 3,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not an emotion-tool calibration file" in lines[0], done.stderr
