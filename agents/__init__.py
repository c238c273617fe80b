"""LangGraph pieces that make a conversational agent hear how the user sounds, and a ready agent.

Names load on first use: `from agents import EmpathicState` imports the state types without torch;
the nodes and the graph load the recognizer's stack when first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "build_empathic_agent",
    "EmpathicState",
    "EmotionTurn",
    "DialoguePlan",
    "PlanningConfig",
    "EmotionPerceptionNode",
    "PlannerNode",
    "ResponderNode",
    "make_emotion_tool",
]

_LAZY = {
    "build_empathic_agent": ".graph",
    "EmpathicState": ".state",
    "EmotionTurn": ".state",
    "DialoguePlan": ".state",
    "PlanningConfig": ".planning",
    "EmotionPerceptionNode": ".nodes",
    "PlannerNode": ".nodes",
    "ResponderNode": ".nodes",
    "make_emotion_tool": ".tools",
}

if TYPE_CHECKING:
    from .graph import build_empathic_agent
    from .nodes import EmotionPerceptionNode, PlannerNode, ResponderNode
    from .planning import PlanningConfig
    from .state import DialoguePlan, EmotionTurn, EmpathicState
    from .tools import make_emotion_tool


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
