"""An offline stand-in for `langchain-openai`, on the path only while README examples are tested.

README examples name a real provider (`"openai:gpt-4o-mini"`), which needs the provider package, a
key and the network. `init_chat_model` imports `langchain_openai.ChatOpenAI`; this one answers at
once without calling any tool, so the examples run as written, offline.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict

__all__ = ["ChatOpenAI"]


class ChatOpenAI(BaseChatModel):
    """Replies "(offline reply from <model>)" to every prompt; takes and ignores OpenAI's options."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str = "gpt-4o-mini"

    @property
    def _llm_type(self) -> str:
        return "readme-fake-openai"

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ChatOpenAI":
        return self

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(f"(offline reply from {self.model})"))])
