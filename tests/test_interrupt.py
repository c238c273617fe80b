"""A model call stopped inside an encoder pass: after the layer it is in, in its own thread only."""

from __future__ import annotations

import threading

import pytest

from emotion_tool.engine.interrupt import checkpoint, interruptible


class Stop(Exception):
    pass


def test_an_analysis_stops_after_the_layer_that_asked(recognizer, speech_wav):
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 2:
            raise Stop

    with interruptible(check), pytest.raises(Stop):
        recognizer.analyze(speech_wav)
    assert len(calls) == 2  # stopped at the second checkpoint, not at the end of the pass or the recording
    # Outside the block nothing is checked, and the recognizer reads as before.
    before = len(calls)
    assert recognizer.analyze(speech_wav).summary.label
    assert len(calls) == before


def test_the_check_belongs_to_the_thread_that_installed_it(recognizer, speech_wav):
    other: list[object] = []

    def elsewhere():
        other.append(recognizer.analyze(speech_wav).summary.label)

    def refuse():
        raise Stop

    with interruptible(refuse):
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join()
        with pytest.raises(Stop):
            checkpoint()
    assert other and isinstance(other[0], str)
    checkpoint()  # restored: nothing installed


def test_blocks_nest_and_restore_the_outer_check():
    seen = []
    with interruptible(lambda: seen.append("outer")):
        with interruptible(lambda: seen.append("inner")):
            checkpoint()
        checkpoint()
    checkpoint()
    assert seen == ["inner", "outer"]
