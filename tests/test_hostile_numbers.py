"""Numbers that are not finite, and conversation databases that are not databases.

Loud audio is refused with the fix (never read into NaN readings); a reading holding NaN or inf is
refused wherever it enters; a stored profile that fails validation is set aside, never a reason for
the speaker's later turns to fail. The conversation database is real SQLite on real files: FIFOs,
folders, damaged files, read-only places and a disk that fills up.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from langgraph.store.memory import InMemoryStore
from pydantic import ValidationError
from test_agents_planning import reading

from agents import build_empathic_agent
from agents.scale import (
    PROFILE_KEY,
    SET_ASIDE_KEY,
    SpeakerProfile,
    load_profile,
    profile_namespace,
)
from emotion_tool import LABELS, AudioError, EmotionReading
from emotion_tool.audio.decode import MAX_PEAK


class NoAnalysis:
    random_weights = False

    def analyze(self, *args, **kwargs):
        raise AssertionError("the audio was analysed although a reading was given")


def thread(name: str) -> dict:
    return {"configurable": {"thread_id": name}}


@pytest.fixture(scope="module")
def speech(speech_wav: Path) -> tuple[np.ndarray, int]:
    wav, rate = sf.read(speech_wav, dtype="float32")
    return wav, rate


# --- loud audio ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gain", [1e20, 1e8, 3e4])
def test_audio_far_beyond_full_scale_is_refused_with_the_fix(gain: float, recognizer, speech, tmp_path: Path):
    wav, rate = speech
    path = tmp_path / "loud.wav"
    sf.write(path, wav / np.abs(wav).max() * gain, rate, subtype="DOUBLE")  # finite samples, absurd level
    for audio in (path, (wav / np.abs(wav).max() * gain).astype(np.float32)):
        with pytest.raises(AudioError) as refused:
            recognizer.analyze(audio, sample_rate=rate) if isinstance(audio, np.ndarray) else recognizer.analyze(audio)
        assert refused.value.problem == "out_of_range"
        assert "rescale the audio to ±1" in str(refused.value)
        if gain <= 32768:
            assert "divide by 32768" in str(refused.value)


@pytest.mark.subprocess
def test_loud_audio_is_one_line_from_the_command_line(speech, tmp_path: Path, tiny_checkpoint: Path):
    wav, rate = speech
    path = tmp_path / "loud.wav"
    sf.write(path, wav * 1e20, rate, subtype="FLOAT")
    run = subprocess.run([sys.executable, "-m", "emotion_tool.cli.main", "analyze", str(path), "--model", str(tiny_checkpoint)], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    assert "far beyond full scale" in run.stderr and "nan" not in run.stdout.lower()


def test_loud_pcm_f32le_in_a_stream_is_refused(recognizer):
    from emotion_tool.audio.decode import decode_pcm

    data = (np.full(1600, 1e20, dtype="<f4")).tobytes()
    with pytest.raises(AudioError, match="far beyond full scale"):
        decode_pcm(data, "pcm_f32le")


def test_overshoot_a_little_past_full_scale_is_still_read(recognizer, speech):
    wav, rate = speech
    loud = (wav / np.abs(wav).max() * 4.0).astype(np.float32)  # clipping-level overshoot, as processing leaves it
    s = recognizer.analyze(loud, sample_rate=rate).summary
    assert all(math.isfinite(x) for x in (s.confidence, s.valence, s.arousal, s.dominance))
    assert 4.0 < MAX_PEAK


# --- readings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_reading_holding_a_non_finite_number_cannot_be_made(bad: float):
    good = reading("angry", 0.8).model_dump()
    for field in ("valence", "confidence", "entropy"):
        with pytest.raises(ValidationError, match="finite"):
            EmotionReading.model_validate({**good, field: bad})
    with pytest.raises(ValidationError, match="finite"):
        EmotionReading.model_validate({**good, "probabilities": {**good["probabilities"], LABELS[0]: bad}})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_an_agent_turn_with_a_non_finite_reading_is_refused_and_the_profile_stays_clean(bad: float, tmp_path: Path):
    graph = build_empathic_agent(NoAnalysis(), db_path=tmp_path / "agent.sqlite")
    for i in range(3):
        graph.invoke({"reading": reading("neutral", 0.8, valence=0.4, t=float(i)), "speaker": "ann"}, config=thread("t"))
    poisoned = {**reading("angry", 0.8).model_dump(), "valence": bad}
    with pytest.raises(Exception, match="finite") as refused:
        graph.invoke({"reading": poisoned, "speaker": "ann"}, config=thread("t"))
    assert "state['reading']" in str(refused.value)
    # The speaker's later turns are read as before, against a profile of the three good readings.
    out = graph.invoke({"reading": reading("happy", 0.8, valence=0.9, t=9.0), "speaker": "ann"}, config=thread("t2"))
    assert out["strategy"].scale.speaker_turns == 3
    assert all(math.isfinite(z) for z in out["strategy"].scale.z.values())


def test_a_reading_made_around_validation_is_not_folded_into_a_profile():
    nan = EmotionReading.model_construct(**{**reading("sad").model_dump(), "arousal": float("nan")})
    with pytest.raises(ValueError, match="must be finite numbers"):
        SpeakerProfile(speaker="ann").add(nan)


@pytest.mark.parametrize(
    "stored",
    [
        {"speaker": "ann", "turns": 5, "mean": {"valence": float("nan"), "arousal": 0.5, "dominance": 0.5}, "m2": {"valence": 0, "arousal": 0, "dominance": 0}},
        {"speaker": "ann", "turns": 5, "mean": {"valence": 0.5, "arousal": 0.5, "dominance": 0.5}, "m2": {"valence": float("inf"), "arousal": 0, "dominance": 0}},
        {"speaker": "ann", "turns": -1},
        {"speaker": "ann", "turns": 5, "mean": {"valence": 0.5}, "m2": {"valence": 0, "arousal": 0, "dominance": 0}},
        {"speaker": "ann", "turns": 5, "mean": {"valence": 0.5, "arousal": 0.5, "dominance": 0.5}, "m2": {"valence": -3, "arousal": 0, "dominance": 0}},
        {"speaker": "ann", "turns": "many"},
    ],
)
def test_a_stored_profile_that_fails_validation_is_set_aside_and_turns_go_on(stored, caplog):
    store = InMemoryStore()
    namespace = profile_namespace("ann")
    store.put(namespace, PROFILE_KEY, stored)
    graph = build_empathic_agent(NoAnalysis(), checkpointer=False, store=store)
    with caplog.at_level(logging.WARNING, logger="agents.scale"):
        out = graph.invoke({"reading": reading("sad", 0.8), "speaker": "ann"})
    assert out["strategy"].scale.source == "population"
    assert "set aside" in caplog.text
    kept = store.get(namespace, SET_ASIDE_KEY).value
    assert kept["value"] is stored or kept["value"] == stored  # kept as it was, for a person to look at
    assert "validation error" in kept["error"]
    assert load_profile(store, "ann").turns == 1  # a fresh profile, the good turn folded in


# --- conversation databases --------------------------------------------------------------------------


def _build(db: Path):
    return build_empathic_agent(NoAnalysis(), db_path=db)


def test_a_fifo_a_folder_or_a_device_is_refused_naming_the_path(tmp_path: Path):
    fifo = tmp_path / "fifo.sqlite"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.sqlite"
    folder.mkdir()
    for path in (fifo, folder, Path("/dev/null")):
        with pytest.raises(ValueError, match="is not a regular file") as refused:
            _build(path)
        assert str(path) in str(refused.value)


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_file_that_is_not_a_database_is_one_clear_error(content: bytes, tmp_path: Path):
    db = tmp_path / "agent.sqlite"
    db.write_bytes(content)
    with pytest.raises(RuntimeError, match="cannot use it as the conversation database") as refused:
        _build(db)
    assert str(db) in str(refused.value) and "move it aside" in str(refused.value)
    assert db.read_bytes() == content  # nothing written over it


def test_an_empty_file_is_a_new_database(tmp_path: Path):
    db = tmp_path / "agent.sqlite"
    db.write_bytes(b"")
    graph = _build(db)
    out = graph.invoke({"reading": reading("happy"), "speaker": "ann"}, config=thread("t"))
    assert out["strategy"] is not None


def test_a_folder_that_cannot_be_made_is_refused(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot create its folder"):
        _build(blocker / "sub" / "agent.sqlite")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 512-KiB tmpfs, so the disk really fills; skipped where this process may not mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> Path:
    filler = path / "filler"
    f = open(filler, "wb")
    try:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    except OSError:
        pass
    try:
        f.close()
    except OSError:
        pass
    return filler


@pytest.mark.subprocess
def test_a_full_disk_is_a_clear_error_and_the_database_recovers_once_space_is_back(small_disk: Path):
    db = small_disk / "agent.sqlite"
    graph = _build(db)
    graph.invoke({"reading": reading("angry", 0.8), "transcript": "first", "speaker": "ann"}, config=thread("t"))
    filler = _fill(small_disk)
    with pytest.raises(RuntimeError, match="could not be saved") as refused:
        for i in range(200):  # until a write no longer fits
            graph.invoke({"reading": reading("sad", 0.8, t=float(i)), "transcript": "x" * 4000, "speaker": "ann"}, config=thread("t"))
    assert str(db) in str(refused.value) and "Free space" in str(refused.value)
    saved = len(graph.get_state(thread("t")).values["emotion_history"])
    assert saved >= 1
    filler.unlink()
    # The same graph goes on, and so does a new one on the same file: nothing saved before is lost.
    graph.invoke({"reading": reading("happy", 0.8), "transcript": "after", "speaker": "ann"}, config=thread("t"))
    again = _build(db)
    history = again.get_state(thread("t")).values["emotion_history"]
    assert len(history) == saved + 1 and history[0].reading.label == "angry"


@pytest.mark.subprocess
def test_a_read_only_place_is_refused_at_build_time(tmp_path: Path):
    """A database on a read-only mount (a bind mount remounted read-only), and a new one there."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a read-only bind mount")
    writable, read_only = tmp_path / "rw", tmp_path / "ro"
    writable.mkdir()
    read_only.mkdir()
    graph = _build(writable / "agent.sqlite")
    graph.invoke({"reading": reading("happy"), "speaker": "ann"}, config=thread("t"))
    for steps in (["mount", "--bind", str(writable), str(read_only)], ["mount", "-o", "remount,ro,bind", str(read_only)]):
        done = subprocess.run(steps, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", str(read_only)], capture_output=True)
            pytest.skip(f"cannot make a read-only bind mount here: {done.stderr.strip()}")
    try:
        for db in (read_only / "agent.sqlite", read_only / "new.sqlite"):
            with pytest.raises((ValueError, RuntimeError), match="read-only") as refused:
                _build(db)
            assert str(read_only) in str(refused.value)
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False)


# --- odd strings in the LangChain tool ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["speech\x00.wav", "\x00", "speech\udc80.wav", "\ud800"])
@pytest.mark.parametrize("rooted", [True, False])
def test_the_langchain_tool_answers_a_path_that_is_no_path_with_an_error_the_model_can_act_on(path: str, rooted: bool, recognizer, speech_wav: Path):
    from langchain_core.messages import ToolMessage

    from agents import make_emotion_tool

    tool = make_emotion_tool(recognizer, audio_root=speech_wav.parent if rooted else None)
    message = tool.invoke({"type": "tool_call", "name": tool.name, "id": "c1", "args": {"audio_path": path}})
    assert isinstance(message, ToolMessage) and message.status == "error", message
    assert "is not a file path" in message.content and "Please fix your mistakes" in message.content
    good = tool.invoke({"type": "tool_call", "name": tool.name, "id": "c2", "args": {"audio_path": str(speech_wav)}})
    assert good.status != "error", good.content
