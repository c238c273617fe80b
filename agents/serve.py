"""The ready agent for a LangGraph server (``langgraph dev``; see langgraph.json at the repository root).

Configuration comes from the environment, read when the server first builds the graph, not at
import:

- $EMOTION_TOOL_MODEL: the checkpoint (default MERaLiON/MERaLiON-SER-v1).
- $EMOTION_TOOL_CALIBRATION: a calibration.json from `emotion-tool calibrate`; unset: none.
- $EMOTION_TOOL_AGENT_LLM: a "provider:model" chat model for init_chat_model; unset: the offline
  responder.
- $EMOTION_TOOL_AGENT_LLM_FACTORY: instead, "package.module:function", a function of no arguments
  that returns a chat model (a model of your own, or a fake one for tests).

The server keeps conversations and the speakers' profiles itself (its checkpointer and store), so
the graph is compiled without either. The server refuses blocking calls on its event loop, so the
factory is async and builds the graph, loading the recognizer's weights, on a worker thread, once
per process; later calls return the same graph.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langgraph.graph.state import CompiledStateGraph

# Absolute imports: the server may load this file by path rather than as part of the package.
from agents.graph import build_empathic_agent

LLM_ENV_VAR = "EMOTION_TOOL_AGENT_LLM"
CALIBRATION_ENV_VAR = "EMOTION_TOOL_CALIBRATION"
LLM_FACTORY_ENV_VAR = "EMOTION_TOOL_AGENT_LLM_FACTORY"

_lock = threading.Lock()  # the first callers may arrive together; the weights load once
_graph: CompiledStateGraph | None = None


def chat_model_from_env() -> BaseChatModel | Runnable | str | None:
    """The chat model the environment names: a factory's model, a "provider:model" string, or None."""
    spec = os.environ.get(LLM_FACTORY_ENV_VAR)
    if not spec:
        return os.environ.get(LLM_ENV_VAR) or None
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"${LLM_FACTORY_ENV_VAR}={spec!r} must read 'package.module:function'")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"${LLM_FACTORY_ENV_VAR}={spec!r}: cannot import {attr} from {module_name} ({e})") from e
    return factory()


class _ServedGraph(CompiledStateGraph):
    """The compiled agent, keeping its checkpoint allowlist when the server copies it.

    Under LANGGRAPH_STRICT_MSGPACK=true, `compile()` derives the types a checkpoint may revive
    from the state's type hints (our readings, turns and plans among them). A LangGraph server
    copies the graph for every run with `Pregel.copy()`, which (langgraph 1.2) rebuilds it
    without that list, so the server would read our state types back as plain dicts.
    """

    def copy(self, update: dict | None = None) -> "_ServedGraph":
        clone = super().copy(update)
        clone._serde_allowlist = self._serde_allowlist
        return clone


def build_graph() -> CompiledStateGraph:
    """Builds the agent once per process, loading the recognizer; blocking, so call it off the event loop."""
    global _graph
    with _lock:
        if _graph is None:
            from emotion_tool import EmotionRecognizer

            # $EMOTION_TOOL_MODEL or the published model; $EMOTION_TOOL_OPERATING_POINT or "published"
            recognizer = EmotionRecognizer.from_pretrained(
                calibration=os.environ.get(CALIBRATION_ENV_VAR) or None,
                operating_point=os.environ.get("EMOTION_TOOL_OPERATING_POINT") or None,
            )
            graph = build_empathic_agent(recognizer, chat_model=chat_model_from_env(), checkpointer=False, store=False)
            attrs = {k: v for k, v in graph.__dict__.items() if k not in ("__orig_class__", "_serde_allowlist")}
            _graph = _ServedGraph(**attrs)
            _graph._serde_allowlist = graph._serde_allowlist
        return _graph


async def make_graph() -> CompiledStateGraph:
    """The graph factory named in langgraph.json: builds the agent on a worker thread the first time."""
    if _graph is not None:
        return _graph
    return await asyncio.to_thread(build_graph)
