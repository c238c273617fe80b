"""EmotionMiddleware in a create_agent agent with its own tool, driven by a fake tool-calling model."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from agents.middleware import EmotionMiddleware
from agents.scale import load_profile
from emotion_tool import LABELS, EmotionReading

from fake_chat import ToolCallingModel
from test_agents_planning import reading


@tool
def order_status(order_id: str) -> str:
    """Where an order is."""
    return f"Order {order_id} left the warehouse yesterday."


def agent_with(model, recognizer=None, **kwargs):
    return create_agent(
        model,
        [order_status],
        system_prompt="You are the support desk of a shop.",
        middleware=[EmotionMiddleware(recognizer)],
        checkpointer=InMemorySaver(),
        store=InMemoryStore(),
        **kwargs,
    )


def test_agent_answers_with_the_emotion_context_in_its_system_message(recognizer, speech_wav):
    model = ToolCallingModel(messages=iter(()), script=[{"name": "order_status", "args": {"order_id": "A7"}}],
                             answer="It left yesterday; it should be with you soon.")  # fmt: skip
    agent = agent_with(model, recognizer)
    out = agent.invoke(
        {"messages": [HumanMessage("Where is my order A7?")], "audio": str(speech_wav), "speaker": "ana"},
        config={"configurable": {"thread_id": "m1"}},
    )
    assert model.bound == ["order_status"]
    assert out["messages"][-1].content == "It left yesterday; it should be with you soon."
    assert any(isinstance(m, ToolMessage) and "left the warehouse" in m.content for m in out["messages"])
    # Perceived once; both model calls of the turn (before and after the tool) carried the context.
    assert len(out["emotion_history"]) == 1 and out["emotion_history"][0].source == "audio"
    heard = out["emotion_history"][0].reading
    assert isinstance(heard, EmotionReading) and heard.label in LABELS
    assert out["audio"] is None and out["reading"] is None  # the turn's inputs were consumed
    assert len(model.calls) == 2
    for prompt in model.calls:
        system = prompt[0]
        assert isinstance(system, SystemMessage)
        assert system.text.startswith("You are the support desk of a shop.")
        assert f"- Emotion: {heard.label}, confidence {heard.confidence:.2f}" in system.text
        assert f"Dialogue strategy: {out['strategy'].name}" in system.text
        assert "random weights" in system.text  # the test checkpoint's caveat reaches the model


def test_words_against_voice_and_the_speaker_profile_across_threads():
    model = ToolCallingModel(messages=iter(()), answer="I'm sorry about that.")
    agent = agent_with(model)
    angry = reading("angry", 0.8, valence=0.2, arousal=0.85)
    out = agent.invoke(
        {"messages": [HumanMessage("Fine, thanks.")], "reading": angry, "speaker": "ben"},
        config={"configurable": {"thread_id": "w1"}},
    )
    system = model.calls[-1][0].text
    assert 'WORDS AGAINST VOICE: the words are positive ("Fine, thanks.") but the voice sounds angry' in system
    assert out["strategy"].words_against_voice.cues == ["fine", "thanks"]
    assert any(n.startswith("Words against voice:") for n in out["strategy"].notes)
    assert load_profile(agent.store, "ben").turns == 1
    agent.invoke({"messages": [HumanMessage("Hello again.")], "reading": angry, "speaker": "ben"},
                 config={"configurable": {"thread_id": "w2"}})  # fmt: skip
    assert load_profile(agent.store, "ben").turns == 2
    assert "(this speaker: 1 earlier turn, 4 needed" in model.calls[-1][0].text


def test_the_same_reading_passed_on_two_turns_counts_for_both():
    model = ToolCallingModel(messages=iter(()), answer="Sure.")
    agent = agent_with(model)
    calm = reading("neutral", 0.8, valence=0.26, arousal=0.3, dominance=0.4)  # a streaming analyser's two equal readings
    for words in ("Hello.", "Are you still there?"):
        out = agent.invoke({"messages": [HumanMessage(words)], "reading": calm, "speaker": "cleo"},
                           config={"configurable": {"thread_id": "r1"}})  # fmt: skip
    assert [t.source for t in out["emotion_history"]] == ["precomputed", "precomputed"]
    assert [t.reading for t in out["emotion_history"]] == [calm, calm]
    assert load_profile(agent.store, "cleo").turns == 2
    assert "- Emotion: neutral, confidence 0.80" in model.calls[-1][0].text


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_agent_perceives_once_and_tells_every_model_call():
    model = ToolCallingModel(messages=iter(()), script=[{"name": "order_status", "args": {"order_id": "B2"}}],
                             answer="It is on its way.")  # fmt: skip
    agent = agent_with(model)
    angry = reading("angry", 0.8, valence=0.15, arousal=0.85)
    config = {"configurable": {"thread_id": "a1"}}
    out = await agent.ainvoke({"messages": [HumanMessage("Where is B2?")], "reading": angry, "speaker": "dan"}, config=config)
    assert out["messages"][-1].content == "It is on its way."
    assert any(isinstance(m, ToolMessage) and "Order B2" in m.content for m in out["messages"])
    assert out["strategy"].name == "de-escalate" and [t.reading for t in out["emotion_history"]] == [angry]
    assert len(model.calls) == 2  # before and after the tool call, both with the context
    assert all("- Emotion: angry, confidence 0.80" in p[0].text and "Dialogue strategy: de-escalate" in p[0].text
               for p in model.calls)  # fmt: skip
    assert (await agent.aget_state(config)).values["reading"] is None
    assert load_profile(agent.store, "dan").turns == 1
    again = await agent.ainvoke({"messages": [HumanMessage("Hello?")], "reading": angry, "speaker": "dan"}, config=config)
    assert len(again["emotion_history"]) == 2 and again["emotion_history"][-1].source == "precomputed"


def test_audio_without_a_recognizer_is_a_clear_error(speech_wav):
    agent = agent_with(ToolCallingModel(messages=iter(())))
    with pytest.raises(ValueError, match="has no recognizer; pass one"):
        agent.invoke({"messages": [HumanMessage("hi")], "audio": str(speech_wav)}, config={"configurable": {"thread_id": "e"}})
    with pytest.raises(ValueError, match=r"must contain \{strategy\}"):
        EmotionMiddleware(section="{emotion_context}")
