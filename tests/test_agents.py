"""The agent's nodes and the ready graph, with fake chat models and the tiny random checkpoint."""

from __future__ import annotations

import base64
import io
import itertools
import logging
import sqlite3
import sys
import types
from typing import Annotated, Any

import numpy as np
import pytest
import soundfile as sf
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from pydantic import Field
from typing_extensions import TypedDict

from agents import (
    DialoguePlan,
    EmotionPerceptionNode,
    EmotionTurn,
    PlannerNode,
    ResponderNode,
    build_empathic_agent,
)
from agents.graph import resolve_chat_model, sqlite_checkpointer
from agents.prompts import AUDIO_ONLY, NO_TRANSCRIPT, OFFLINE_REPLIES
from agents.state import add_turns
from emotion_tool import LABELS, AudioError, EmotionReading

from test_agents_planning import reading


class RecordingChatModel(GenericFakeChatModel):
    """A fake chat model that keeps the messages of every call and answers from a script."""

    calls: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def recording_model(reply: str = "I hear you. Let's fix this together.") -> RecordingChatModel:
    return RecordingChatModel(messages=itertools.cycle([reply]))


class NoAnalysis:
    """Stands in for the recognizer where the audio must not be analysed."""

    random_weights = False

    def analyze(self, *args: Any, **kwargs: Any):
        raise AssertionError("the audio was analysed although a reading was given")


def thread(name: str) -> dict:
    return {"configurable": {"thread_id": name}}


def angry(t: float = 0.0) -> EmotionReading:
    return reading("angry", 0.8, valence=0.2, arousal=0.85, dominance=0.7, t=t)


# --- the responder's prompt --------------------------------------------------------------------------


def test_system_message_carries_the_reading_and_the_strategy():
    model = recording_model()
    graph = build_empathic_agent(NoAnalysis(), chat_model=model, checkpointer=InMemorySaver())
    out = graph.invoke({"reading": angry(), "transcript": "Where is my order?"}, config=thread("t1"))

    assert out["strategy"].name == "de-escalate"
    assert out["messages"][-1].content == "I hear you. Let's fix this together."
    prompt = model.calls[-1]
    assert isinstance(prompt[0], SystemMessage) and isinstance(prompt[-1], HumanMessage)
    system = prompt[0].content
    assert "Emotion: angry, confidence 0.80" in system
    assert "Valence 0.20 (0 negative .. 1 positive)" in system and "arousal 0.85" in system.lower()
    assert "Dominance 0.70" in system and "Certainty: confident" in system
    assert "Dialogue strategy: de-escalate" in system
    assert all(goal in system for goal in out["strategy"].goals)
    assert f"Tone: {out['strategy'].tone}" in system
    assert "Trend: not enough earlier turns" in system
    assert prompt[-1].content == "Where is my order?"


def test_system_message_states_trend_events_and_uncertainty():
    model = recording_model()
    graph = build_empathic_agent(NoAnalysis(), chat_model=model, checkpointer=InMemorySaver())
    calm = [reading("neutral", 0.8, valence=0.6, arousal=0.3, t=i) for i in range(3)]
    for r in calm:
        graph.invoke({"reading": r, "transcript": "fine"}, config=thread("t2"))
    out = graph.invoke({"reading": angry(t=3), "transcript": "This is ridiculous"}, config=thread("t2"))
    system = model.calls[-1][0].content
    assert "Trend: against a baseline of 3 earlier turns: valence -0.40" in system
    assert "arousal +0.55" in system
    # Three earlier turns are too few for the speaker's own scale: the population prior judges.
    assert "Events: arousal 0.85 is +2.3 sd from the model's usual level (population prior) of 0.50" in system
    assert "Level: on the model's population priors (this speaker: 3 earlier turns, 4 needed" in system
    assert [e.kind for e in out["strategy"].events] == ["arousal-rising"]
    # The earlier exchanges come along, in order, after the system message.
    assert [m.content for m in model.calls[-1][1:-1] if isinstance(m, HumanMessage)] == ["fine"] * 3

    graph.invoke({"reading": reading("angry", 0.3, t=4), "transcript": "hm"}, config=thread("t2"))
    system = model.calls[-1][0].content
    assert "Certainty: UNCERTAIN" in system and "leans toward de-escalate, but it is uncertain" in system


# --- perception --------------------------------------------------------------------------------------


def test_perception_node_reads_real_speech(recognizer, speech_wav):
    node = EmotionPerceptionNode(recognizer)
    out = node({"audio": str(speech_wav), "transcript": "not happy"})
    r, entry = out["reading"], out["emotion_history"]
    duration_s = sf.info(speech_wav).duration
    assert isinstance(r, EmotionReading) and r.label in LABELS
    assert r.end_s == pytest.approx(duration_s, abs=0.01)
    assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert entry.turn == 1 and entry.source == "audio" and entry.transcript == "not happy"
    assert entry.random_weights and any("random weights" in n for n in entry.notes)
    assert 1.0 < entry.speech_s <= duration_s
    # The same audio as a data: URL (bytes inside) and as an array gives the same reading.
    url = "data:audio/wav;base64," + base64.b64encode(speech_wav.read_bytes()).decode()
    wav, sr = sf.read(speech_wav, dtype="float32")
    for audio, rate in ((url, None), (wav, sr)):
        again = node({"audio": audio, "sample_rate": rate})["reading"]
        assert again.probabilities == pytest.approx(r.probabilities, abs=1e-5)


def test_perception_uses_a_given_reading_and_does_not_reanalyse(speech_wav):
    given = angry()
    out = EmotionPerceptionNode(NoAnalysis())({"audio": str(speech_wav), "reading": given})
    assert out["reading"] == given and out["emotion_history"].source == "precomputed"
    # Dicts (JSON clients) are accepted too.
    out = EmotionPerceptionNode(NoAnalysis())({"reading": given.model_dump()})
    assert out["reading"] == given


def test_leftover_reading_is_not_taken_for_a_new_one(recognizer, speech_wav):
    graph = build_empathic_agent(recognizer, checkpointer=InMemorySaver())
    first = graph.invoke({"reading": angry(), "transcript": "one"}, config=thread("t3"))
    assert first["emotion_history"][-1].source == "precomputed"
    second = graph.invoke({"audio": str(speech_wav)}, config=thread("t3"))
    assert second["emotion_history"][-1].source == "audio" and second["reading"] != angry()
    third = graph.invoke({"transcript": "just words"}, config=thread("t3"))
    entry = third["emotion_history"][-1]
    assert third["reading"] is None and entry.source == "none" and entry.transcript == "just words"
    assert third["strategy"].name == "neutral" and third["strategy"].uncertain
    assert [t.turn for t in third["emotion_history"]] == [1, 2, 3]
    assert third["audio"] is None and third["transcript"] is None  # the turn's inputs were consumed


def test_too_short_audio_leaves_the_turn_without_a_reading(recognizer):
    short = np.zeros(4000, dtype=np.float32)  # 0.25 s
    with pytest.warns(UserWarning, match="too short to judge"):
        out = EmotionPerceptionNode(recognizer)({"audio": short, "sample_rate": 16000})
    assert out["reading"] is None and "too short" in out["emotion_history"].notes[0]
    with pytest.raises(AudioError, match="too short"):
        EmotionPerceptionNode(recognizer, skip_problems=())({"audio": short, "sample_rate": 16000})
    with pytest.raises(AudioError, match="no such file"):
        EmotionPerceptionNode(recognizer)({"audio": "/nonexistent/turn.wav"})
    with pytest.raises(AudioError, match="base64"):
        EmotionPerceptionNode(recognizer)({"audio": "data:audio/wav,plain"})


# --- audio to the chat model ---------------------------------------------------------------------------


def test_audio_capable_model_receives_the_audio_block(recognizer, speech_wav):
    model = recording_model()
    graph = build_empathic_agent(recognizer, chat_model=model, checkpointer=InMemorySaver(), send_audio=True)
    out = graph.invoke({"audio": str(speech_wav), "transcript": "hello there"}, config=thread("t4"))

    user = model.calls[-1][-1]
    assert isinstance(user, HumanMessage) and isinstance(user.content, list)
    text, audio = user.content
    assert text == {"type": "text", "text": "hello there"}
    assert audio["type"] == "audio" and audio["mime_type"] == "audio/wav"
    wav, sr = sf.read(io.BytesIO(base64.b64decode(audio["base64"])), dtype="float32")
    assert sr == 16000 and len(wav) == pytest.approx(sf.info(speech_wav).frames, abs=1)
    # The conversation keeps the words only, and the turn's audio is cleared.
    assert out["messages"][-2].content == "hello there" and out["audio"] is None


def test_text_only_model_gets_no_audio(recognizer, speech_wav):
    model = recording_model()
    graph = build_empathic_agent(recognizer, chat_model=model, checkpointer=InMemorySaver())
    graph.invoke({"audio": str(speech_wav)}, config=thread("t5"))
    assert model.calls[-1][-1].content == NO_TRANSCRIPT


def test_user_words_can_come_as_a_message():
    model = recording_model()
    graph = build_empathic_agent(NoAnalysis(), chat_model=model, checkpointer=InMemorySaver())
    out = graph.invoke({"messages": [HumanMessage("Can you help?")], "reading": angry()}, config=thread("t6"))
    assert [type(m).__name__ for m in out["messages"]] == ["HumanMessage", "AIMessage"]
    assert out["emotion_history"][-1].transcript == "Can you help?"
    assert model.calls[-1][-1].content == "Can you help?"


# --- persistence ---------------------------------------------------------------------------------------


def test_history_persists_across_invocations_and_a_reopened_sqlite_file(tmp_path, caplog):
    db = tmp_path / "conversations.sqlite"
    saver = sqlite_checkpointer(db)
    graph = build_empathic_agent(NoAnalysis(), checkpointer=saver)
    calm = [reading("neutral", 0.8, valence=0.6, arousal=0.3, t=i) for i in range(2)]
    for r in calm:
        graph.invoke({"reading": r, "transcript": "ok"}, config=thread("a"))
    graph.invoke({"reading": reading("happy", t=9), "transcript": "other"}, config=thread("b"))
    assert len(graph.get_state(thread("a")).values["emotion_history"]) == 2
    saver.conn.close()

    caplog.set_level(logging.WARNING)
    saver = sqlite_checkpointer(db)
    graph = build_empathic_agent(NoAnalysis(), checkpointer=saver)
    stored = graph.get_state(thread("a")).values
    # Pydantic values come back as themselves, not as dicts.
    assert all(isinstance(t, EmotionTurn) for t in stored["emotion_history"])
    assert isinstance(stored["reading"], EmotionReading) and isinstance(stored["strategy"], DialoguePlan)
    assert stored["emotion_history"][1].reading == calm[1]

    out = graph.invoke({"reading": angry(t=5), "transcript": "now angry"}, config=thread("a"))
    assert [t.turn for t in out["emotion_history"]] == [1, 2, 3]
    assert out["strategy"].trend.turns == 2  # the baseline came from the earlier session
    assert [e.kind for e in out["strategy"].events] == ["arousal-rising"]
    assert [m.content for m in out["messages"] if isinstance(m, HumanMessage)] == ["ok", "ok", "now angry"]
    assert len(graph.get_state(thread("b")).values["emotion_history"]) == 1
    assert not [r for r in caplog.records if "eserializ" in r.getMessage()]  # no blocked or unregistered types
    saver.conn.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(distinct thread_id) from checkpoints").fetchone()[0] == 2


def test_default_checkpointer_is_sqlite_at_the_configured_path(tmp_path, monkeypatch):
    from langgraph.checkpoint.sqlite import SqliteSaver

    monkeypatch.setenv("EMOTION_TOOL_AGENT_DB", str(tmp_path / "sub" / "agent.sqlite"))
    graph = build_empathic_agent(NoAnalysis())
    assert isinstance(graph.checkpointer, SqliteSaver)
    graph.invoke({"reading": angry()}, config=thread("d"))
    assert (tmp_path / "sub" / "agent.sqlite").stat().st_size > 0
    graph.checkpointer.conn.close()
    assert build_empathic_agent(NoAnalysis(), checkpointer=False).checkpointer is None
    chosen = build_empathic_agent(NoAnalysis(), db_path=tmp_path / "chosen.sqlite")
    chosen.invoke({"reading": angry()}, config=thread("d"))
    assert (tmp_path / "chosen.sqlite").stat().st_size > 0
    chosen.checkpointer.conn.close()
    with pytest.raises(ValueError, match="pass either it or checkpointer"):
        build_empathic_agent(NoAnalysis(), checkpointer=InMemorySaver(), db_path=tmp_path / "x.sqlite")


# --- composing the nodes into one's own graph -----------------------------------------------------------


class MyState(TypedDict, total=False):
    clip: Any
    mood: EmotionReading | None
    moods: Annotated[list[EmotionTurn], add_turns]
    plan: DialoguePlan | None


def test_nodes_compose_into_a_custom_graph_with_other_keys(recognizer, speech_wav):
    g = StateGraph(MyState)
    g.add_node("hear", EmotionPerceptionNode(recognizer, audio_key="clip", reading_key="mood", history_key="moods"))
    g.add_node("think", PlannerNode(reading_key="mood", history_key="moods", strategy_key="plan"))
    g.add_edge(START, "hear")
    g.add_edge("hear", "think")
    g.add_edge("think", END)
    out = g.compile().invoke({"clip": str(speech_wav)})
    assert isinstance(out["mood"], EmotionReading) and len(out["moods"]) == 1
    assert isinstance(out["plan"], DialoguePlan) and out["plan"].emotion == out["mood"].label


def test_responder_needs_a_plan_and_a_valid_template():
    with pytest.raises(ValueError, match="run the planner node before the responder"):
        ResponderNode()({"messages": []}, {})
    with pytest.raises(ValueError, match=r"must contain \{strategy\}"):
        ResponderNode(system_prompt="Be nice. {emotion_context}")


def test_offline_responder_is_deterministic():
    graph = build_empathic_agent(NoAnalysis(), checkpointer=InMemorySaver())
    a = graph.invoke({"reading": reading("sad", 0.9, valence=0.2)}, config=thread("o1"))
    b = graph.invoke({"reading": reading("sad", 0.9, valence=0.2)}, config=thread("o2"))
    assert a["messages"][-1].content == b["messages"][-1].content == OFFLINE_REPLIES["comfort"]
    assert a["messages"][0].content == NO_TRANSCRIPT


# --- chat model resolution, speech-to-text -------------------------------------------------------------


def test_provider_strings_go_through_init_chat_model(monkeypatch):
    made = []
    fake = types.ModuleType("langchain.chat_models")
    fake.init_chat_model = lambda spec: made.append(spec) or recording_model("from init")
    monkeypatch.setitem(sys.modules, "langchain", types.ModuleType("langchain"))
    monkeypatch.setitem(sys.modules, "langchain.chat_models", fake)
    graph = build_empathic_agent(NoAnalysis(), chat_model="openai:gpt-4o-mini", checkpointer=InMemorySaver())
    assert made == ["openai:gpt-4o-mini"]
    assert graph.invoke({"reading": angry()}, config=thread("p"))["messages"][-1].content == "from init"
    with pytest.raises(TypeError, match="chat_model must be a LangChain chat model"):
        resolve_chat_model(42)


def test_transcriber_fills_in_the_words(recognizer, speech_wav):
    heard = []

    def transcriber(wav: np.ndarray) -> str:
        heard.append(wav)
        return " I am not happy. "

    model = recording_model()
    graph = build_empathic_agent(recognizer, chat_model=model, checkpointer=InMemorySaver(), transcriber=transcriber)
    out = graph.invoke({"audio": str(speech_wav)}, config=thread("s"))
    assert heard[0].dtype == np.float32 and heard[0].ndim == 1
    assert out["emotion_history"][-1].transcript == "I am not happy."
    assert model.calls[-1][-1].content == "I am not happy."
    graph.invoke({"audio": str(speech_wav), "transcript": "known words"}, config=thread("s"))
    assert len(heard) == 1  # words already known: no transcription


def test_reply_tokens_stream_from_the_respond_node():
    model = RecordingChatModel(messages=itertools.cycle(["Let us sort this out."]))
    graph = build_empathic_agent(NoAnalysis(), chat_model=model, checkpointer=InMemorySaver())
    tokens = [
        chunk.content
        for chunk, meta in graph.stream({"reading": angry()}, config=thread("st"), stream_mode="messages")
        if meta["langgraph_node"] == "respond" and isinstance(chunk, AIMessage)
    ]
    assert len(tokens) > 1 and "".join(tokens) == "Let us sort this out."


def test_audio_without_words_is_announced_to_the_model(recognizer, speech_wav):
    model = recording_model()
    graph = build_empathic_agent(recognizer, chat_model=model, checkpointer=InMemorySaver(), send_audio=True)
    out = graph.invoke({"audio": str(speech_wav)}, config=thread("t7"))
    text, audio = model.calls[-1][-1].content
    assert text == {"type": "text", "text": AUDIO_ONLY} and audio["type"] == "audio"
    assert out["messages"][-2].content == NO_TRANSCRIPT
