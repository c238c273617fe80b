"""The emotion-tool command, run as a user runs it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.subprocess  # every test here starts the commands in child processes


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "emotion_tool.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        timeout=300,
    )


def test_json_equals_independent_reference(tiny_checkpoint, speech_wav):
    from reference_ser import ReferenceSER

    out = run("analyze", speech_wav, "--model", tiny_checkpoint, "--format", "json", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    a = json.loads(out.stdout)
    s = a["summary"]
    assert set(s) >= {"label", "confidence", "probabilities", "valence", "arousal", "dominance", "start_s", "end_s", "uncertain", "margin", "entropy"}
    assert list(s["probabilities"]) == ["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"]
    assert a["random_weights"] is True and a["operating_point"] == "published"
    assert "random weights" in out.stderr
    wav, _ = sf.read(speech_wav, dtype="float32")
    p_ref, d_ref = ReferenceSER(tiny_checkpoint)(wav)
    assert np.abs(np.array(list(s["probabilities"].values())) - p_ref).max() < 1e-3
    assert np.abs(np.array([s["valence"], s["arousal"], s["dominance"]]) - d_ref).max() < 1e-3


def test_table_trace_and_plot(tiny_checkpoint, sentences_wav, tmp_path):
    path, _ = sentences_wav
    png = tmp_path / "trace.png"
    out = run("analyze", path, "--model", tiny_checkpoint, "--trace", "--window-s", "1", "--hop-s", "0.5", "--plot", png)
    assert out.returncode == 0, out.stderr
    assert "sentences.wav" in out.stdout and "trace (1 s windows, 0.5 s hop)" in out.stdout
    assert "(no speech)" in out.stdout  # the leading pause is marked
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_recording_without_speech_says_so(tiny_checkpoint, tmp_path):
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(16000 * 3, np.float32), 16000)
    table = run("analyze", silence, "--model", tiny_checkpoint)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if "silence.wav" in line and "│" in line)
    assert "(no speech)" in row and not any(label in row for label in ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"))
    a = json.loads(run("analyze", silence, "--model", tiny_checkpoint, "--format", "json").stdout)
    assert a["speech_s"] == 0 and a["summary"]["uncertain"] is True
    assert any("No speech" in w for w in a["warnings"])


def test_several_files_jsonl_and_a_bad_one(tiny_checkpoint, speech_wav, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio at all")
    out = run("analyze", speech_wav, bad, speech_wav, "--model", tiny_checkpoint, "--format", "jsonl")
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["source"] == "speech.wav" for x in lines)
    assert "bad.wav: cannot decode audio" in out.stderr and "Traceback" not in out.stderr


def test_json_list_for_several_files(tiny_checkpoint, speech_wav, sentences_wav):
    out = run("analyze", speech_wav, sentences_wav[0], "--model", tiny_checkpoint, "--format", "json")
    assert out.returncode == 0, out.stderr
    assert [a["source"] for a in json.loads(out.stdout)] == ["speech.wav", "sentences.wav"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["analyze", "missing.wav"], "missing.wav: no such file"),
        (["analyze", "{speech}", "--model", "/no/such/dir"], "is not a checkpoint directory"),
        (["analyze", "{speech}", "--window-s", "1", "--hop-s", "2"], "without gaps"),
        (["analyze", "{speech}", "--device", "toaster"], "unknown device"),
    ],
)
def test_errors_are_one_line(tiny_checkpoint, speech_wav, args, message):
    args = [a.replace("{speech}", str(speech_wav)) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_checkpoint)]
    out = run(*args)
    assert out.returncode != 0
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2  # the error, and at most the random-weights note


def test_unreachable_hub_is_one_line(speech_wav, tmp_path):
    out = run("analyze", speech_wav, env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "EMOTION_TOOL_MODEL": ""})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--model DIR" in out.stderr and "MERaLiON/MERaLiON-SER-v1" in out.stderr


def test_info_and_random_model(tmp_path):
    out = run("random-model", tmp_path / "m")
    assert out.returncode == 0 and "RANDOM weights" in out.stdout
    info = run("info", "--model", tmp_path / "m", "--format", "json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["random_weights"] and data["device"] == "cpu" and len(data["labels"]) == 7
    table = run("info", "--model", tmp_path / "m")
    assert "RANDOM WEIGHTS" in table.stdout and "valence" in table.stdout


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("emotion-tool", path=os.path.dirname(sys.executable))
    assert exe, "emotion-tool is not on the environment's PATH; install the project (pip install -e .)"
    assert subprocess.run([exe, "--help"], capture_output=True, text=True).returncode == 0


def test_every_console_command_names_a_callable():
    import importlib
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"emotion-tool", "emotion-mcp", "emotion-demo-mic", "emotion-demo-file"} <= set(scripts)
    for command, target in scripts.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command


def test_operating_point_option(tiny_checkpoint, speech_wav):
    out = run("analyze", speech_wav, "--model", tiny_checkpoint, "--format", "json", "--device", "cpu", "--operating-point", "int8+trimmed")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["operating_point"] == "trimmed+int8"
    assert "trimmed+int8: readings differ from the published model's" in out.stderr
    bad = run("analyze", speech_wav, "--model", tiny_checkpoint, "--operating-point", "turbo")
    assert bad.returncode == 2 and "unknown operating point 'turbo'" in bad.stderr and "bf16" in bad.stderr
    both = run("analyze", speech_wav, "--model", tiny_checkpoint, "--device", "cpu", "--operating-point", "bf16", "--quantize", "int8")
    assert both.returncode != 0 and "contradict" in both.stderr


def test_a_torch_bf16_point_on_the_cpu_says_how_to_get_the_faster_openvino_path(tiny_checkpoint, speech_wav):
    out = run("analyze", speech_wav, "--model", tiny_checkpoint, "--format", "json", "--device", "cpu", "--operating-point", "bf16")
    assert out.returncode == 0, out.stderr
    assert "tip: --operating-point openvino+bf16" in out.stderr
    live = run("analyze", speech_wav, "--model", tiny_checkpoint, "--format", "json", "--device", "cpu", "--operating-point", "live")
    assert live.returncode == 0 and "tip:" not in live.stderr  # not timed for the trimmed context: nothing claimed


def test_info_shows_the_cpu_features(tiny_checkpoint):
    out = run("info", "--model", tiny_checkpoint, "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert "cpu " in out.stdout and ("avx512_bf16" in out.stdout or "no bf16" in out.stdout)
    js = json.loads(run("info", "--model", tiny_checkpoint, "--device", "cpu", "--format", "json").stdout)
    assert js["cpu"] and js["operating_point"] == "published"
