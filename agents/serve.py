"""The ready agent for a LangGraph server (``langgraph dev``; see langgraph.json at the repository root).

Configuration comes from the environment, read when the server first builds the graph, not at
import:

- $EMOTION_TOOL_MODEL: the checkpoint (default MERaLiON/MERaLiON-SER-v1).
- $EMOTION_TOOL_CALIBRATION: a calibration.json from `emotion-tool calibrate`; unset: none.
- $EMOTION_TOOL_OPERATING_POINT: the operating point (default published); with
  $EMOTION_TOOL_REFINE_WITH, a second, faithful one: turns are answered on the first point's reading
  and the second's replaces it in the history at the thread's next turn (a refinement).
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
import importlib.metadata
import os
import threading
import warnings

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langgraph.graph.state import CompiledStateGraph

# Absolute imports: the server may load this file by path rather than as part of the package.
from agents.graph import build_empathic_agent

LLM_ENV_VAR = "EMOTION_TOOL_AGENT_LLM"
CALIBRATION_ENV_VAR = "EMOTION_TOOL_CALIBRATION"
REFINE_ENV_VAR = "EMOTION_TOOL_REFINE_WITH"
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
    from the state's type hints (our readings, turns and plans among them) and keeps them in the
    private `_serde_allowlist`. A LangGraph server copies the graph for every run with
    `Pregel.copy()`, which (langgraph 1.2) rebuilds it without that list, so the server would read
    our state types back as plain dicts. Langgraph versions without the attribute are left as they are.
    """

    def copy(self, update: dict | None = None) -> "_ServedGraph":
        clone = super().copy(update)
        allowlist = getattr(self, "_serde_allowlist", None)
        if allowlist is not None and getattr(clone, "_serde_allowlist", None) is None:
            clone._serde_allowlist = allowlist
        return clone


def _served(graph: CompiledStateGraph) -> _ServedGraph:
    """`graph` as a `_ServedGraph` (the same object), warning when this langgraph keeps no allowlist."""
    if not hasattr(graph, "_serde_allowlist"):  # None is fine: strict checkpoints are off
        warnings.warn(
            f"langgraph {_langgraph_version()} keeps no checkpoint allowlist on the compiled graph "
            "(`_serde_allowlist`): with LANGGRAPH_STRICT_MSGPACK=true the server may read readings, turns and plans "
            "back as plain dicts. Install a langgraph that keeps it (1.2 does: pip install 'langgraph~=1.2.0') or "
            "unset LANGGRAPH_STRICT_MSGPACK",
            stacklevel=2,
        )
    graph.__class__ = _ServedGraph  # the same graph; only `copy` changes (as build_empathic_agent does for turns)
    return graph


def _langgraph_version() -> str:
    try:
        return importlib.metadata.version("langgraph")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


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
            refine = os.environ.get(REFINE_ENV_VAR) or None
            faithful = None
            if refine is not None:  # a second, faithful point: the fast reading answers, this one is kept
                faithful = EmotionRecognizer.from_pretrained(calibration=os.environ.get(CALIBRATION_ENV_VAR) or None, operating_point=refine)
            graph = build_empathic_agent(
                recognizer, chat_model=chat_model_from_env(), checkpointer=False, store=False, refine_with=faithful
            )
            _graph = _served(graph)
        return _graph


async def make_graph() -> CompiledStateGraph:
    """The graph factory named in langgraph.json: builds the agent on a worker thread the first time."""
    if _graph is not None:
        return _graph
    return await asyncio.to_thread(build_graph)
