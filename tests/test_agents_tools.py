"""The emotion tool, called by a tool-calling agent (a fake chat model that emits tool calls)."""

from __future__ import annotations

import json

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import Field

from agents import make_emotion_tool
from emotion_tool import LABELS, EmotionAnalysis


class ToolCallingFakeModel(GenericFakeChatModel):
    """GenericFakeChatModel plus bind_tools, which tool-calling agents need; it answers from a script."""

    bound: list = Field(default_factory=list)

    def bind_tools(self, tools, **kwargs):
        self.bound.extend(tools)
        return self


def call(path: str, *, trace: bool = False, call_id: str = "call_1") -> AIMessage:
    args = {"audio_path": path, "trace": trace}
    return AIMessage(content="", tool_calls=[{"name": "analyze_speech_emotion", "args": args, "id": call_id}])


def agent(model, tool):
    chat = model.bind_tools([tool])

    def think(state: MessagesState) -> dict:
        return {"messages": [chat.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("agent", think)
    g.add_node("tools", ToolNode([tool]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    return g.compile()


def test_agent_calls_the_tool_on_speech(recognizer, speech_wav):
    tool = make_emotion_tool(recognizer)
    model = ToolCallingFakeModel(messages=iter([call(str(speech_wav), trace=True), AIMessage("They sound tense.")]))
    out = agent(model, tool).invoke({"messages": [HumanMessage(f"How does the speaker in {speech_wav} sound?")]})

    assert model.bound == [tool]
    result = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert result.status == "success" and result.tool_call_id == "call_1"
    payload = json.loads(result.content)
    assert payload["summary"]["label"] in LABELS and "windows" not in payload
    assert payload["random_weights"] is True and payload["segments"]  # trace asked for
    assert isinstance(result.artifact, EmotionAnalysis) and result.artifact.summary.label == payload["summary"]["label"]
    assert out["messages"][-1].content == "They sound tense."


def test_bad_input_comes_back_to_the_model_as_an_error(recognizer, tmp_path):
    tool = make_emotion_tool(recognizer)
    missing = tmp_path / "missing.wav"
    model = ToolCallingFakeModel(messages=iter([call(str(missing)), AIMessage("Sorry, I could not read it.")]))
    out = agent(model, tool).invoke({"messages": [HumanMessage("analyse it")]})
    result = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert result.status == "error"
    assert result.content.startswith(f"Error: {missing}: no such file") and "Please fix your mistakes." in result.content


def test_audio_root_keeps_the_tool_inside_its_folder(recognizer, speech_wav):
    tool = make_emotion_tool(recognizer, audio_root=speech_wav.parent)
    ok = tool.invoke({"type": "tool_call", "name": tool.name, "id": "c1", "args": {"audio_path": speech_wav.name}})
    assert ok.status == "success" and json.loads(ok.content)["source"] == speech_wav.name
    out = tool.invoke({"type": "tool_call", "name": tool.name, "id": "c2", "args": {"audio_path": "../../etc/passwd"}})
    assert out.status == "error" and "is outside the audio folder" in out.content
