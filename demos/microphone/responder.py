"""The agent behind the demo: the empathic LangGraph agent, answering each utterance on its own thread."""

from __future__ import annotations

import concurrent.futures
import os
import time
from typing import Any

from emotion_tool import EmotionRecognizer
from emotion_tool.engine.results import UtteranceReading

from .records import AgentTurn, DemoError


# --- the agent ---------------------------------------------------------------------------------------


class Responder:
    """Runs the empathic agent on its own thread, one utterance after another, in order."""

    def __init__(
        self, recognizer: EmotionRecognizer, chat_model: Any, *, thread_id: str, db_path: str | os.PathLike
    ):
        """chat_model: a LangChain chat model, a "provider:model" string, or None for the offline responder."""
        try:
            from agents import build_empathic_agent
        except ImportError as e:
            raise DemoError(
                f"the agent cannot be loaded ({e}); pip install 'emotion-tool[agents]', or run with --no-agent"
            ) from e
        try:
            self._graph = build_empathic_agent(recognizer, chat_model=chat_model, db_path=db_path)
        except (ImportError, RuntimeError, ValueError, TypeError) as e:
            raise DemoError(f"cannot set up the chat model {chat_model!r}: {e}") from e
        self._config = {"configurable": {"thread_id": thread_id}}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent")
        self._pending: list[concurrent.futures.Future[AgentTurn]] = []

    def submit(self, utterance: UtteranceReading) -> None:
        self._pending.append(self._pool.submit(self._answer, utterance))

    def ready(self, *, wait: bool = False) -> list[AgentTurn]:
        """Answers finished so far, in utterance order (all of them with `wait`)."""
        done: list[AgentTurn] = []
        while self._pending and (wait or self._pending[0].done()):
            done.append(self._pending.pop(0).result())
        return done

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _answer(self, utterance: UtteranceReading) -> AgentTurn:
        t0 = time.monotonic()
        try:
            out = self._graph.invoke({"reading": utterance.reading, "transcript": None}, config=self._config)
            text = _text_of(out["messages"][-1].content)
            strategy = out["strategy"].name
        except Exception as e:  # a failing chat model must not end the session; the turn says what failed
            strategy, text = None, f"(agent error: {e})"
        return AgentTurn(index=utterance.index, strategy=strategy, reply=text, seconds=time.monotonic() - t0)


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of content blocks (text blocks kept)."""
    if isinstance(content, str):
        return content
    parts = [p if isinstance(p, str) else p.get("text", "") for p in content if isinstance(p, (str, dict))]
    return " ".join(part for part in parts if part)
