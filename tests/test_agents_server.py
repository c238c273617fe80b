"""The ready agent served by the real LangGraph development server (`langgraph dev`), driven over HTTP.

The server runs as README says, on a free local port, with the tiny random checkpoint
($EMOTION_TOOL_MODEL), an offline chat model that echoes its emotion context
($EMOTION_TOOL_AGENT_LLM_FACTORY). langgraph.json turns on strict checkpoint deserialisation
(LANGGRAPH_STRICT_MSGPACK=true), so a state type missing from the allowlist would come back as a
plain dict and be logged, as would, without it, a warning about each unregistered type.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from test_agents_planning import reading

langgraph_sdk = pytest.importorskip("langgraph_sdk", reason='pip install "emotion-tool[agents]"')

REPO = Path(__file__).resolve().parents[1]
START_DEADLINE_S = 240  # give up waiting for the server after this long (2 busy cores, cold imports)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path, tiny_checkpoint: Path):
    cli = Path(sys.executable).with_name("langgraph")
    if not cli.exists():
        pytest.skip('langgraph dev needs langgraph-cli[inmem]; pip install "emotion-tool[agents]"')
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "LANGGRAPH_STRICT_MSGPACK"},  # langgraph.json sets it
        "EMOTION_TOOL_MODEL": str(tiny_checkpoint),
        "EMOTION_TOOL_AGENT_LLM_FACTORY": "fake_chat:context_echo_model",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        "LANGSMITH_TRACING": "false",
        "HF_HUB_OFFLINE": "1",
    }
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(cli), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port),
             "--config", str(REPO / "langgraph.json")],  # fmt: skip
            cwd=tmp_path,  # the server's own files (.langgraph_api) land here
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not answer on {url}:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.subprocess
def test_langgraph_dev_serves_two_turns_with_schemas(server, speech_wav: Path):
    url, log = server
    client = langgraph_sdk.get_sync_client(url=url)
    (assistant,) = client.assistants.search(graph_id="empathic_agent")
    schemas = client.assistants.get_schemas(assistant["assistant_id"])
    inputs = schemas["input_schema"]["properties"]
    assert {"audio", "transcript", "speaker", "reading", "messages"} <= set(inputs)
    assert {"strategy", "emotion_history", "reading", "messages"} <= set(schemas["output_schema"]["properties"])

    thread = client.threads.create()
    first = client.runs.wait(
        thread["thread_id"], assistant["assistant_id"],
        input={"audio": str(speech_wav), "transcript": "I would like to talk about my order", "speaker": "caller-7"},
    )  # fmt: skip
    assert first["emotion_history"][0]["source"] == "audio" and first["emotion_history"][0]["random_weights"]
    assert first["messages"][-1]["type"] == "ai" and "- Emotion:" in first["messages"][-1]["content"]

    angry = reading("angry", 0.8, valence=0.2, arousal=0.85)
    second = client.runs.wait(
        thread["thread_id"], assistant["assistant_id"],
        input={"reading": angry.model_dump(mode="json"), "transcript": "Fine, thanks.", "speaker": "caller-7"},
    )  # fmt: skip
    # The history came back from the checkpoint whole: the planner saw turn 1.
    assert [t["turn"] for t in second["emotion_history"]] == [1, 2]
    assert second["strategy"]["trend"] is None and second["strategy"]["scale"]["speaker_turns"] == 1
    assert second["strategy"]["words_against_voice"]["voice"] == "negative"
    assert "WORDS AGAINST VOICE: the words are positive" in second["messages"][-1]["content"]
    assert [m["type"] for m in second["messages"]] == ["human", "ai", "human", "ai"]

    # A new conversation of the same speaker starts from their profile in the server's store.
    other = client.threads.create()
    third = client.runs.wait(
        other["thread_id"], assistant["assistant_id"],
        input={"reading": angry.model_dump(mode="json"), "speaker": "caller-7"},
    )  # fmt: skip
    assert len(third["emotion_history"]) == 1 and third["strategy"]["scale"]["speaker_turns"] == 2
    state = client.threads.get_state(thread["thread_id"])
    assert state["values"]["strategy"]["name"] == "de-escalate"

    text = log.read_text()
    for problem in ("unregistered type", "Blocked deserialization", "BlockingError", "Failed to get", "Traceback"):
        assert problem not in text, f"{problem!r} in the server's log:\n{text[-4000:]}"


class _ReadingsOnly:
    random_weights = False


def test_served_graph_keeps_its_allowlist_in_copies_and_degrades_without_one(monkeypatch):
    from langgraph._internal import _serde

    from agents import build_empathic_agent
    from agents.serve import _served

    monkeypatch.setattr(_serde, "STRICT_MSGPACK_ENABLED", True)  # as LANGGRAPH_STRICT_MSGPACK=true in langgraph.json
    graph = build_empathic_agent(_ReadingsOnly(), checkpointer=False, store=False)
    allowlist = graph._serde_allowlist
    assert any("EmotionTurn" in entry for entry in allowlist)  # the state's own types, derived at compile
    assert _served(graph).copy()._serde_allowlist == allowlist  # what the server's copy for each run keeps

    bare = build_empathic_agent(_ReadingsOnly(), checkpointer=False, store=False)
    del bare._serde_allowlist  # a langgraph that keeps no such attribute
    with pytest.warns(UserWarning, match=r"keeps no checkpoint allowlist .*unset LANGGRAPH_STRICT_MSGPACK"):
        served = _served(bare)
    out = served.copy().invoke({"reading": reading("sad"), "transcript": "hello"})
    assert out["strategy"].name == "comfort" and out["messages"][-1].type == "ai"
