"""The demos given bad files: a damaged conversation database, special files where audio or a database should be."""

from __future__ import annotations

import os
from pathlib import Path

from test_agents_demo import demo

PROG = "python -m demos.conversation"


def test_conversation_demo_reports_a_damaged_database_in_one_line(tiny_checkpoint, speech_wav, tmp_path: Path):
    db = tmp_path / "broken.sqlite"
    db.write_bytes(b"this is not a database, just some bytes " * 100)
    run = demo(str(speech_wav), "--model", str(tiny_checkpoint), "--device", "cpu", "--db", str(db))
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    line = run.stderr.strip()
    assert line.startswith(f"{PROG}: error: {db}: cannot use it as the conversation database") and "move it aside" in line


def test_conversation_demo_refuses_special_files_without_blocking(tiny_checkpoint, speech_wav, tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    as_db = demo(str(speech_wav), "--model", str(tiny_checkpoint), "--device", "cpu", "--db", str(fifo))
    assert as_db.returncode == 2 and "is not a regular file" in as_db.stderr and "Traceback" not in as_db.stderr
    as_turn = demo(str(fifo), "--model", str(tiny_checkpoint), "--device", "cpu", "--db", str(tmp_path / "c.sqlite"))
    assert as_turn.returncode == 2 and "not a regular file" in as_turn.stderr and "Traceback" not in as_turn.stderr


def test_microphone_demo_refuses_a_fifo_and_names_a_missing_file(tiny_checkpoint, tmp_path: Path):
    from test_microphone import run_demo

    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    done = run_demo("--input-file", str(fifo), "--model", str(tiny_checkpoint), "--threads", "1")
    assert done.returncode != 0 and "not a regular file" in done.stderr and "Traceback" not in done.stderr, done.stderr
    done = run_demo("--input-file", str(tmp_path / "missing.wav"), "--model", str(tiny_checkpoint), "--threads", "1")
    assert done.returncode != 0 and "no such file" in done.stderr and "System error" not in done.stderr, done.stderr


def test_microphone_demo_lists_devices_or_says_there_are_none():
    from test_microphone import run_demo

    done = run_demo("--list-devices")
    assert done.returncode == 0 and done.stdout.strip(), done.stderr  # never an empty line
