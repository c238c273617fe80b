"""LangGraph pieces that make a conversational agent hear how the user sounds, and a ready agent.

Names load on first use: `from agents import EmpathicState` imports the state types without torch;
the nodes and the graph load the recognizer's stack when first touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emotion_tool._lazy import lazy_names

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

if TYPE_CHECKING:
    from .graph import build_empathic_agent
    from .nodes import EmotionPerceptionNode, PlannerNode, ResponderNode
    from .planning import PlanningConfig
    from .state import DialoguePlan, EmotionTurn, EmpathicState
    from .tools import make_emotion_tool

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        ".graph": ("build_empathic_agent",),
        ".state": ("EmpathicState", "EmotionTurn", "DialoguePlan"),
        ".planning": ("PlanningConfig",),
        ".nodes": ("EmotionPerceptionNode", "PlannerNode", "ResponderNode"),
        ".tools": ("make_emotion_tool",),
    },
)
