"""The ready agent for a LangGraph server (``langgraph dev``; see langgraph.json at the repository root).

Configuration comes from the environment, read when the server builds the graph, not at import:
$EMOTION_TOOL_MODEL (the checkpoint, default MERaLiON/MERaLiON-SER-v1) and $EMOTION_TOOL_AGENT_LLM
(a "provider:model" chat model for init_chat_model; unset: the offline responder). The server keeps
conversations itself, so the graph is compiled without a checkpointer.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from langgraph.graph.state import CompiledStateGraph

# Absolute imports: the server may load this file by path rather than as part of the package.
from agents.graph import build_empathic_agent

if TYPE_CHECKING:
    from emotion_tool import EmotionRecognizer

LLM_ENV_VAR = "EMOTION_TOOL_AGENT_LLM"


@functools.cache
def _recognizer() -> "EmotionRecognizer":
    from emotion_tool import EmotionRecognizer

    return EmotionRecognizer.from_pretrained()  # $EMOTION_TOOL_MODEL or the published model


def make_graph() -> CompiledStateGraph:
    """Builds the agent, loading the recognizer on the first call (once per process)."""
    return build_empathic_agent(_recognizer(), chat_model=os.environ.get(LLM_ENV_VAR) or None, checkpointer=False)
