"""The voice-framework demos run offline on a file (as subprocesses, the way a user starts them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

from helpers import SENTENCES, speak_with_pauses

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "demo, framework, realtime",
    [("pipecat_file", "pipecat", False), ("livekit_file", "livekit.agents", False),
     ("pipecat_file", "pipecat", True), ("livekit_file", "livekit.plugins.openai", True)],
    ids=["pipecat", "livekit", "pipecat-realtime", "livekit-realtime"],
)  # fmt: skip
def test_demo_reads_each_turn_and_notes_the_llm(demo, framework, realtime, tiny_checkpoint, recognizer, audio_dir, tmp_path_factory, tmp_path):
    """Each turn read, and its note handed to the LLM (with --realtime: to the stand-in realtime model,
    as it received the note when it was asked to reply)."""
    from test_integrations_listener import save_test_calibration

    pytest.importorskip(framework, reason=f"install the {framework.split('.')[0]} extra")
    calibration = save_test_calibration(recognizer, tmp_path_factory.mktemp("calibration") / "cal.json")
    # Pauses long enough that a slow reading still comes before the user speaks again (which would
    # interrupt the reply, note and all, as it should).
    texts = SENTENCES[:2]
    wav, _ = speak_with_pauses(texts, audio_dir / "demo_turns.wav", pause_s=2.5)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-m", f"demos.{demo}", str(wav), "--model", str(tiny_checkpoint), "--device", "cpu",
         "--note-wait-s", "10", "--calibration", str(calibration), *(["--realtime"] if realtime else [])],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert "random weights" in lines[0]
    assert lines[1].startswith("calibrated with cal.json (sha256 ")  # the readings went through it
    readings = [ln for ln in lines if ln.startswith("reading #")]
    notes = [ln for ln in lines if "[voice emotion]" in ln]
    assert len(readings) == len(notes) == len(texts), run.stdout
    if realtime:
        assert all("the realtime model was asked to reply holding: [voice emotion]" in n for n in notes), run.stdout
    for reading, note in zip(readings, notes):  # each turn's note describes that turn's reading
        assert reading.split(": ", 1)[1].rsplit(" (latency", 1)[0] in note
    assert f"{len(texts)} utterances read" in run.stdout and "0.0 s of audio dropped" in run.stdout
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_demo_without_the_file_says_so_in_one_line(tiny_checkpoint, tmp_path):
    pytest.importorskip("pipecat")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-m", "demos.pipecat_file", str(tmp_path / "missing.wav"), "--model", str(tiny_checkpoint)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("python -m demos.pipecat_file: error: ")
    assert "missing.wav" in run.stderr
