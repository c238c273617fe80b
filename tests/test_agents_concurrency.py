"""Concurrent turns on one conversation thread: none is lost, in one process or in two sharing the SQLite file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agents import build_empathic_agent
from agents.graph import sqlite_checkpointer
from agents.turns import ConcurrentTurnError, turn_lock

TURNS_EACH = 8
RUN_BOUND_S = 300  # generous: only a hang passes it
PROFILE_TURNS = 15  # turns of one speaker per process or thread, each on a conversation of its own

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from agents import build_empathic_agent
    from emotion_tool import EmotionRecognizer

    ckpt, db, wav, go, name, turns = sys.argv[1:7]
    graph = build_empathic_agent(EmotionRecognizer.from_pretrained(ckpt, device="cpu"), db_path=db)
    while not Path(go).exists():  # both processes start their turns together
        time.sleep(0.01)
    for i in range(int(turns)):
        graph.invoke({"audio": wav, "transcript": f"{name} {i}"}, config={"configurable": {"thread_id": "shared"}})
    """
)


def _run_together(commands: list[list[str]], go: Path) -> None:
    """Starts each command, lets them all begin at once (they wait for `go` to exist), and checks each succeeded."""
    procs = [subprocess.Popen(c, stderr=subprocess.PIPE, text=True) for c in commands]
    time.sleep(0.5)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=RUN_BOUND_S)
        assert p.returncode == 0, err


def _in_threads(body, names: str) -> list[BaseException]:
    """Runs body(name) for each name on a thread of its own, all at once; returns what they raised."""
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            body(name)
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=run, args=(n,)) for n in names]
    for w in workers:
        w.start()
    for w in workers:
        w.join(RUN_BOUND_S)
    return errors


def _history(db: Path, recognizer) -> list:
    saver = sqlite_checkpointer(db)
    try:
        graph = build_empathic_agent(recognizer, checkpointer=saver)
        return graph.get_state({"configurable": {"thread_id": "shared"}}).values["emotion_history"]
    finally:
        saver.conn.close()


def test_two_processes_on_one_thread_keep_every_turn(tiny_checkpoint: Path, speech_wav: Path, recognizer, tmp_path: Path):
    db, go = tmp_path / "conversations.sqlite", tmp_path / "go"
    _run_together(
        [[sys.executable, "-c", CHILD, str(tiny_checkpoint), str(db), str(speech_wav), str(go), name, str(TURNS_EACH)] for name in "ab"],
        go,
    )
    history = _history(db, recognizer)
    words = sorted(t.transcript for t in history)
    assert words == sorted(f"{n} {i}" for n in "ab" for i in range(TURNS_EACH))  # every turn, once
    assert [t.turn for t in history] == list(range(1, 2 * TURNS_EACH + 1))


def test_threads_in_one_process_on_one_thread_keep_every_turn(recognizer, speech_wav: Path, tmp_path: Path):
    graph = build_empathic_agent(recognizer, db_path=tmp_path / "c.sqlite")
    config = {"configurable": {"thread_id": "shared"}}
    def run(name: str) -> None:
        for i in range(TURNS_EACH):
            graph.invoke({"audio": str(speech_wav), "transcript": f"{name} {i}"}, config=config)

    assert not _in_threads(run, "ab")
    history = graph.get_state(config).values["emotion_history"]
    assert sorted(t.transcript for t in history) == sorted(f"{n} {i}" for n in "ab" for i in range(TURNS_EACH))
    graph.checkpointer.conn.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_turns_on_one_thread_keep_every_turn(recognizer, speech_wav: Path, tmp_path: Path):
    import anyio

    from langgraph.checkpoint.memory import InMemorySaver

    graph = build_empathic_agent(recognizer, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "shared"}}

    async def run(name: str) -> None:
        for i in range(3):
            await graph.ainvoke({"audio": str(speech_wav), "transcript": f"{name} {i}"}, config=config)

    async with anyio.create_task_group() as tg:
        for n in "ab":
            tg.start_soon(run, n)
    history = graph.get_state(config).values["emotion_history"]
    assert sorted(t.transcript for t in history) == sorted(f"{n} {i}" for n in "ab" for i in range(3))


def test_a_turn_that_waits_too_long_fails_clearly(tmp_path: Path):
    saver = sqlite_checkpointer(tmp_path / "c.sqlite")
    try:
        with turn_lock(saver, "t1"):
            outcome: list[BaseException] = []

            def other() -> None:
                try:
                    with turn_lock(saver, "t1", wait_s=0.2):
                        pass
                except ConcurrentTurnError as e:
                    outcome.append(e)

            t = threading.Thread(target=other)
            t.start()
            t.join(RUN_BOUND_S)
            with turn_lock(saver, "t2", wait_s=0.2):  # another thread of the conversation store is free
                pass
        assert outcome and "another turn on thread 't1'" in str(outcome[0]) and "send the turn again" in str(outcome[0])
    finally:
        saver.conn.close()


# --- one speaker in several conversations at once: every turn lands in their profile ----------------

PROFILE_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from langgraph.checkpoint.memory import InMemorySaver
    from agents import build_empathic_agent
    from agents.graph import sqlite_store
    from emotion_tool import LABELS, EmotionReading

    class ReadingsOnly:  # every turn brings its reading; no audio is analysed
        random_weights = False

    db, go, name, turns = sys.argv[1:5]
    # Profiles in the shared SQLite store; each process keeps its own conversations.
    graph = build_empathic_agent(ReadingsOnly(), checkpointer=InMemorySaver(), store=sqlite_store(db))
    while not Path(go).exists():  # both processes start their turns together
        time.sleep(0.01)
    for i in range(int(turns)):
        probs = [0.8 if x == "neutral" else 0.2 / (len(LABELS) - 1) for x in LABELS]
        r = EmotionReading.from_outputs(probs, (0.2 + 0.01 * i, 0.3, 0.4), labels=LABELS, start_s=0, end_s=3, min_confidence=0.5)
        graph.invoke({"reading": r, "speaker": "caller-7"}, config={"configurable": {"thread_id": f"{name}-{i}"}})
    """
)


def test_two_processes_with_one_speaker_lose_no_profile_update(tmp_path: Path):
    from agents.graph import sqlite_store
    from agents.scale import load_profile

    db, go = tmp_path / "conversations.sqlite", tmp_path / "go"
    _run_together([[sys.executable, "-c", PROFILE_CHILD, str(db), str(go), name, str(PROFILE_TURNS)] for name in "ab"], go)
    store = sqlite_store(db)
    try:
        assert load_profile(store, "caller-7").turns == 2 * PROFILE_TURNS  # every conversation's turns, none lost
    finally:
        store.conn.close()


def test_threads_with_one_speaker_lose_no_profile_update(tmp_path: Path):
    from langgraph.checkpoint.memory import InMemorySaver

    from agents.graph import sqlite_store
    from agents.scale import load_profile
    from test_agents_planning import reading

    class ReadingsOnly:
        random_weights = False

    graph = build_empathic_agent(ReadingsOnly(), checkpointer=InMemorySaver(), store=sqlite_store(tmp_path / "c.sqlite"))
    def run(name: str) -> None:
        for i in range(PROFILE_TURNS):
            r = reading("neutral", valence=0.2 + 0.01 * i, arousal=0.3, dominance=0.4)
            graph.invoke({"reading": r, "speaker": "caller-7"}, config={"configurable": {"thread_id": f"{name}-{i}"}})

    assert not _in_threads(run, "abcd")
    assert load_profile(graph.store, "caller-7").turns == 4 * PROFILE_TURNS
    graph.store.conn.close()
