"""langchain-mcp-adapters loads the server's tools into a LangGraph agent, which calls analyze_emotion.

langchain-mcp-adapters (up to 0.3.2 at least) is written against mcp 1.x and pins `mcp<2`, while this
server uses mcp 2. The agent therefore runs in its own process with mcp 1.x and the adapters on
PYTHONPATH in front of the project's packages (installed once with pip into pytest's cache), and
starts `emotion-mcp` (mcp 2, the project's environment) over stdio: a real cross-version client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# mcp 1.x, the adapters, and the two dependencies of mcp 1.x that mcp 2 does not share.
OVERLAY_PACKAGES = ["mcp>=1.24,<2", "langchain-mcp-adapters>=0.3,<0.4", "httpx-sse>=0.4", "pydantic-settings>=2.5.2", "python-dotenv>=1.0"]
OVERLAY_ENV = "EMOTION_MCP_V1_OVERLAY"  # a prepared directory to use instead of pytest's cache

AGENT = r'''
import asyncio, json, sys

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

command, args, outside_path, good_path = json.loads(sys.argv[1])


def text_of(message):
    if isinstance(message.content, str):
        return message.content
    return "".join(block.get("text", "") for block in message.content if isinstance(block, dict))


class EmotionAgentModel(GenericFakeChatModel):
    """Calls analyze_emotion (first on a path it may not read), then answers from the tool's result."""

    bound_tools: list = []
    turns: list = []

    def bind_tools(self, tools, **kwargs):
        self.bound_tools = [t.name for t in tools]
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        results = [m for m in messages if isinstance(m, ToolMessage)]
        self.turns.append([type(m).__name__ for m in messages])
        if not results:
            message = AIMessage(content="", tool_calls=[{"name": "analyze_emotion", "args": {"audio_path": outside_path}, "id": "call_1"}])
        elif results[-1].status == "error":
            message = AIMessage(content="", tool_calls=[{"name": "analyze_emotion", "args": {"audio_path": good_path}, "id": "call_2"}])
        else:
            summary = json.loads(text_of(results[-1]))["summary"]
            message = AIMessage(content=f"You sound {summary['label']} ({summary['confidence']:.4f}).")
        return ChatResult(generations=[ChatGeneration(message=message)])


async def main():
    client = MultiServerMCPClient({"emotion": {"transport": "stdio", "command": command, "args": args, "env": {"HF_HUB_OFFLINE": "1"}}})
    async with client.session("emotion") as session:
        tools = await load_mcp_tools(session)
        model = EmotionAgentModel(messages=iter([]))
        bound = model.bind_tools(tools)

        def agent(state):
            return {"messages": [bound.invoke(state["messages"])]}

        graph = StateGraph(MessagesState)
        graph.add_node("agent", agent)
        graph.add_node("tools", ToolNode(tools))
        graph.add_edge(START, "agent")
        graph.add_conditional_edges("agent", tools_condition)
        graph.add_edge("tools", "agent")
        state = await graph.compile().ainvoke({"messages": [HumanMessage("How do I sound in my recording?")]})
    tool_messages = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    print(json.dumps({
        "tools": sorted(t.name for t in tools),
        "bound": model.bound_tools,
        "tool_status": [m.status for m in tool_messages],
        "tool_texts": [text_of(m) for m in tool_messages],
        "artifact": getattr(tool_messages[-1], "artifact", None),
        "final": state["messages"][-1].content,
        "turns": model.turns,
    }, default=str))


asyncio.run(main())
'''


@pytest.fixture(scope="session")
def mcp1_overlay(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding mcp 1.x and langchain-mcp-adapters, for PYTHONPATH."""
    prepared = os.environ.get(OVERLAY_ENV)
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    if prepared:
        directory = Path(prepared)
    elif cache is not None:
        directory = cache.mkdir("mcp1-langchain-overlay")
    else:
        directory = tmp_path_factory.mktemp("mcp1-langchain-overlay")
    marker = directory / ".installed"
    if not marker.exists():
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade", "--target", str(directory), *OVERLAY_PACKAGES],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.skip(
                f"langchain-mcp-adapters needs mcp<2 beside the project's mcp 2; pip could not install it into "
                f"{directory} (no package index?). Prepare it with `pip install --no-deps --target DIR "
                f"{' '.join(repr(p) for p in OVERLAY_PACKAGES)}` and set {OVERLAY_ENV}=DIR.\n{done.stderr[-800:]}"
            )
        marker.write_text("\n".join(OVERLAY_PACKAGES) + "\n")
    return directory


@pytest.mark.subprocess
def test_langgraph_agent_calls_analyze_emotion(mcp1_overlay: Path, tiny_checkpoint: Path, speech_wav: Path, recognizer, tmp_path: Path):
    script = Path(sys.executable).with_name("emotion-mcp")
    command, prefix = (str(script), []) if script.exists() else (sys.executable, ["-m", "mcp_server"])
    args = [*prefix, "--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(speech_wav.parent)]
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(speech_wav.read_bytes())
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(mcp1_overlay)  # the agent's process only; emotion-mcp gets a clean environment
    done = subprocess.run(
        [sys.executable, str(agent), json.dumps([command, args, str(outside), str(speech_wav)])],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    assert {"analyze_emotion", "start_emotion_session", "push_audio", "end_emotion_session"} <= set(out["tools"])
    assert sorted(out["bound"]) == out["tools"]
    # The first call hit the path rule and came back to the agent as a tool error; the retry ran.
    assert out["tool_status"] == ["error", "success"]
    assert "outside the directories" in out["tool_texts"][0]
    expected = recognizer.analyze(speech_wav).summary  # what the tool must have computed
    analysis = json.loads(out["tool_texts"][1])
    assert analysis["model_id"] == str(tiny_checkpoint) and analysis["source"] == "speech.wav"
    assert analysis["summary"]["label"] == expected.label
    assert analysis["summary"]["confidence"] == pytest.approx(expected.confidence, abs=1e-5)
    # The result reached the model: its answer is built from it.
    assert out["final"] == f"You sound {expected.label} ({analysis['summary']['confidence']:.4f})."
    assert out["turns"][-1].count("ToolMessage") == 2
