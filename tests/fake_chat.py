"""Offline chat models for agent tests: they record what they were sent and can call tools."""

from __future__ import annotations

import itertools
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

CONTEXT_LINES = ("- Emotion:", "- Level:", "- WORDS AGAINST VOICE:", "Dialogue strategy:")
"""Lines of the system message that `ContextEchoModel` repeats in its reply."""


class ContextEchoModel(GenericFakeChatModel):
    """Replies with the emotion-context lines of its system message, so a test over HTTP can see them."""

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        system = next((m.text for m in messages if isinstance(m, SystemMessage)), "")
        lines = [line for line in system.splitlines() if line.startswith(CONTEXT_LINES)]
        text = "\n".join(lines) or "(no emotion context)"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


def context_echo_model() -> ContextEchoModel:
    """The factory a LangGraph server's $EMOTION_TOOL_AGENT_LLM_FACTORY names."""
    return ContextEchoModel(messages=iter(()))


class ToolCallingModel(GenericFakeChatModel):
    """Calls each scripted tool once, in order, then answers; records every prompt it was sent.

    GenericFakeChatModel has no `bind_tools`; agents built by create_agent need one.
    """

    script: list[dict[str, Any]] = Field(default_factory=list)  # tool calls: {"name": ..., "args": {...}}
    answer: str = "Done."
    bound: list[str] = Field(default_factory=list)
    calls: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools, **kwargs: Any):
        self.bound = [getattr(t, "name", None) or t["name"] for t in tools]
        return self

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        self.calls.append(list(messages))
        done = sum(1 for m in messages if isinstance(m, ToolMessage))
        if done < len(self.script):
            call = self.script[done]
            message = AIMessage("", tool_calls=[{"name": call["name"], "args": call["args"], "id": f"call_{done}"}])
        else:
            message = AIMessage(self.answer)
        return ChatResult(generations=[ChatGeneration(message=message)])


def scripted(*replies: str) -> GenericFakeChatModel:
    """A plain fake model that answers with `replies` in turn, forever."""
    return GenericFakeChatModel(messages=itertools.cycle(replies))
