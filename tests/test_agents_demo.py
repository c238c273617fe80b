"""The command-line conversation demo (as a subprocess) and the LangGraph server entry point."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import speak

pytestmark = pytest.mark.subprocess  # every test here starts the commands in child processes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_turns(audio_dir: Path) -> list[Path]:
    return [
        speak("Hello, I am calling about my delivery.", audio_dir / "turn1.wav"),
        speak("It still has not arrived and I am getting annoyed.", audio_dir / "turn2.wav", pitch=70, speed_wpm=190),
    ]


def demo(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EMOTION_TOOL_AGENT_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "demos.conversation", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_demo_runs_two_turns_on_one_thread(tiny_checkpoint, two_turns, tmp_path):
    db = tmp_path / "demo.sqlite"
    args = [*map(str, two_turns), "--model", str(tiny_checkpoint), "--device", "cpu", "--db", str(db), "--thread", "t1"]
    run = demo(*args, "--text", "Hello, I am calling about my delivery.")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "RANDOM WEIGHTS" in out and "the readings are random and mean nothing" in out
    assert re.search(r"^turn 1: turn1\.wav$", out, re.M) and re.search(r"^turn 2: turn2\.wav$", out, re.M)
    assert "words:    Hello, I am calling about my delivery." in out
    for field in ("reading:", "strategy:", "tone:", "goal:", "reply:"):
        assert len(re.findall(rf"^  {field}", out, re.M)) >= 2, field
    readings = re.findall(r"^  reading:  (?:possibly )?(\w+) \(", out, re.M)
    assert len(readings) == 2 and all(label in {"neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"} for label in readings)

    # The same thread continues in a new process: turn 3, with the earlier turns as its baseline.
    again = demo(str(two_turns[0]), "--model", str(tiny_checkpoint), "--device", "cpu", "--db", str(db), "--thread", "t1")
    assert again.returncode == 0, again.stderr
    assert re.search(r"^turn 3: turn1\.wav$", again.stdout, re.M)
    assert "against a baseline of 2 earlier turns" in again.stdout


def test_demo_reports_bad_input_in_one_line(tiny_checkpoint, tmp_path):
    run = demo(str(tmp_path / "missing.wav"), "--model", str(tiny_checkpoint), "--db", str(tmp_path / "x.sqlite"))
    assert run.returncode == 2
    assert run.stderr.strip() == f"python -m demos.conversation: error: {tmp_path / 'missing.wav'}: no such file; give one audio file per turn"


def test_langgraph_json_points_at_a_lazy_async_factory(tiny_checkpoint, monkeypatch):
    spec = json.loads((REPO / "langgraph.json").read_text())["graphs"]["empathic_agent"]
    module, _, attr = spec.partition(":")
    serve = importlib.import_module(module)
    assert serve._graph is None  # importing loads nothing
    assert inspect.iscoroutinefunction(getattr(serve, attr))  # the server awaits it on its event loop
    monkeypatch.setenv("EMOTION_TOOL_MODEL", str(tiny_checkpoint))
    monkeypatch.delenv("EMOTION_TOOL_AGENT_LLM", raising=False)
    monkeypatch.delenv("EMOTION_TOOL_AGENT_LLM_FACTORY", raising=False)
    try:
        graph = asyncio.run(getattr(serve, attr)())
        assert graph.checkpointer is None and graph.store is None  # the server keeps both
        assert {"perceive", "plan", "respond"} <= set(graph.get_graph().nodes)
        assert asyncio.run(getattr(serve, attr)()) is graph  # built, and the weights loaded, once
    finally:
        monkeypatch.setattr(serve, "_graph", None)
