"""LangChain's own MCP adapter (`langchain.mcp`, on FastMCP and mcp 2) loads emotion-mcp's tools in
the project's environment: a create_agent agent calls analyze_emotion, and a whole streaming session
runs through the adapted tools over one persistent MCP connection (stdio)."""

from __future__ import annotations

import base64
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage

from fake_chat import ToolCallingModel

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # langchain.mcp announces that it is in beta
    mcp_adapter = pytest.importorskip("langchain.mcp", reason='pip install "langchain[mcp]" (FastMCP)')
from fastmcp.client.transports import StdioTransport  # noqa: E402

CHUNK_S = 0.5  # push_audio chunk length


def _transport(tiny_checkpoint: Path, allow_dir: Path) -> StdioTransport:
    script = Path(sys.executable).with_name("emotion-mcp")
    command, prefix = (str(script), []) if script.exists() else (sys.executable, ["-m", "mcp_server"])
    args = [*prefix, "--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(allow_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return StdioTransport(command, args, env=env)


def _structured(message: ToolMessage) -> dict:
    return message.artifact["structured_content"]


async def _call(tools: dict, name: str, args: dict) -> ToolMessage:
    return await tools[name].ainvoke({"type": "tool_call", "name": name, "args": args, "id": f"{name}-1"})


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.subprocess
@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore::langchain_core._api.LangChainBetaWarning")
async def test_langchain_mcp_adapter_runs_analysis_and_a_streaming_session(
    tiny_checkpoint: Path, speech_wav: Path, sentences_wav, recognizer
):
    sentences, bounds = sentences_wav
    adapter = mcp_adapter.MCPAdapter(_transport(tiny_checkpoint, speech_wav.parent))
    # One `async with` holds one MCP connection for everything inside it: the adapted tools reuse
    # it (FastMCP clients are reentrant), so the streaming session opened below stays reachable.
    async with adapter:
        tools = {t.name: t for t in await adapter.list_tools()}
        assert {"analyze_emotion", "start_emotion_session", "push_audio", "end_emotion_session"} <= set(tools)

        model = ToolCallingModel(messages=iter(()), script=[{"name": "analyze_emotion", "args": {"audio_path": str(speech_wav)}}],
                                 answer="Analysed.")  # fmt: skip
        agent = create_agent(model, list(tools.values()))
        out = await agent.ainvoke({"messages": [HumanMessage("How do I sound?")]})
        result = next(m for m in out["messages"] if isinstance(m, ToolMessage))
        assert result.status == "success" and "analyze_emotion" in model.bound
        expected = recognizer.analyze(speech_wav).summary
        summary = _structured(result)["summary"]
        assert summary["label"] == expected.label
        assert summary["confidence"] == pytest.approx(expected.confidence, abs=1e-5)

        started = _structured(await _call(tools, "start_emotion_session", {"sample_rate": 16000}))
        sid = started["session_id"]
        wav, sr = sf.read(sentences, dtype="int16")
        assert sr == 16000
        step = int(CHUNK_S * sr)
        closed = []
        for i in range(0, len(wav), step):
            chunk = base64.b64encode(wav[i : i + step].astype("<i2").tobytes()).decode()
            pushed = _structured(await _call(tools, "push_audio", {"session_id": sid, "chunk_base64": chunk}))
            closed += pushed["readings"]
        ended = _structured(await _call(tools, "end_emotion_session", {"session_id": sid}))
        assert ended["ended"] and len(ended["utterances"]) == len(bounds)  # one reading per sentence
        assert len(closed) >= len(bounds) - 1  # all but the last closed while streaming
        assert sum(ended["label_counts"].values()) == len(bounds) and ended["random_weights"]
        assert pushed["received_s"] == pytest.approx(len(wav) / sr, abs=1e-3)

        # After the end, the session takes no more audio: the error reaches the caller as a tool error.
        again = await _call(tools, "push_audio", {"session_id": sid, "chunk_base64": base64.b64encode(np.zeros(160, "<i2").tobytes()).decode()})
        assert again.status == "error" and "has ended" in again.text
