"""LangGraph pieces that make a conversational agent hear how the user sounds, and a ready agent."""

from .graph import build_empathic_agent
from .nodes import EmotionPerceptionNode, PlannerNode, ResponderNode
from .planning import PlanningConfig
from .state import DialoguePlan, EmotionTurn, EmpathicState
from .tools import make_emotion_tool

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
