"""Emotion perception for any `langchain.agents.create_agent` agent, as one middleware.

    agent = create_agent(model, tools, middleware=[EmotionMiddleware(recognizer)])
    agent.invoke({"messages": [HumanMessage("Fine, thanks.")], "audio": "turn.wav"})

Once per invocation (one user turn) the middleware perceives the turn's audio, or takes the
`reading` the caller passed, plans the reply on the speaker's own scale (with the agent's store,
across conversations), and records both in the agent's state (`emotion_history`, `strategy`); at
every model call of the turn (before and after tool calls) it adds the emotion context and the plan
to the system message. The turn's `audio` and `reading` are consumed as it is perceived, so a
reading passed on the next turn is that turn's own, even when it equals this one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain_core.messages import SystemMessage
from langgraph.config import get_config
from typing_extensions import NotRequired

from emotion_tool.engine.results import EmotionReading

from .nodes import EmotionPerceptionNode, PlannerNode
from .planning import PlanningConfig
from .prompts import emotion_context, strategy_text
from .state import DialoguePlan, EmotionTurn, TurnAudio, add_turns, history_of, plan_of

if TYPE_CHECKING:
    from emotion_tool import AnalysisOptions, EmotionRecognizer

SECTION = """## How the user sounds

{emotion_context}

{strategy}

Treat the reading as a cue, not a fact: it tells how something was said, not what. Let it shape your \
tone and priorities; do not tell the user what they feel."""
"""What the middleware appends to the agent's system message; `{emotion_context}` and `{strategy}` are filled in."""


class EmotionAgentState(AgentState):
    """The agent's state with the turn's audio and what was perceived and planned."""

    audio: NotRequired[TurnAudio]  # this turn's audio; consumed as the turn is perceived
    sample_rate: NotRequired[int | None]  # Hz of `audio` when it is an array of samples
    transcript: NotRequired[str | None]  # the user's words, when not in a message
    speaker: NotRequired[str]  # whose voice; their profile is kept across conversations
    reading: NotRequired[EmotionReading | None]  # a reading passed in for this turn; consumed as the turn is perceived
    emotion_history: NotRequired[Annotated[list[EmotionTurn], add_turns]]  # one entry per user turn
    strategy: NotRequired[DialoguePlan | None]  # this turn's plan


class EmotionMiddleware(AgentMiddleware[EmotionAgentState, Any, Any]):
    """Perceives and plans once per turn, and tells the model at each of its calls."""

    state_schema = EmotionAgentState

    def __init__(
        self,
        recognizer: "EmotionRecognizer | None" = None,
        *,
        planning: PlanningConfig = PlanningConfig(),
        options: "AnalysisOptions | None" = None,
        section: str = SECTION,
    ):
        """
        Args:
            recognizer: the engine that reads the turn's audio; None takes only readings passed in.
            planning: thresholds of the planner.
            options: analysis options for perception (defaults: the recognizer's).
            section: template appended to the system message, with `{emotion_context}` and `{strategy}`.
        """
        super().__init__()
        for field in ("{emotion_context}", "{strategy}"):
            if field not in section:
                raise ValueError(f"section must contain {field}, where the turn's context is filled in")
        self.recognizer = recognizer
        self.section = section
        self._perceive = EmotionPerceptionNode(
            recognizer if recognizer is not None else _NoRecognizer(), options=options, reading_consumed=True
        )
        self._plan = PlannerNode(planning)

    def before_agent(self, state: EmotionAgentState, runtime: Any) -> dict[str, Any] | None:
        perceived = self._perceive(state)
        history = [*history_of(state), perceived["emotion_history"]]
        planned = self._plan({**state, **perceived, "emotion_history": history}, get_config(), runtime)
        # The turn's inputs are consumed; its reading stays in `emotion_history` (and the plan).
        done = {key: None for key in ("audio", "sample_rate", "transcript") if state.get(key) is not None}
        return {**perceived, **planned, "reading": None, **done}

    async def abefore_agent(self, state: EmotionAgentState, runtime: Any) -> dict[str, Any] | None:
        # Reading audio is CPU-bound and store access may block: off the event loop.
        return await asyncio.to_thread(self.before_agent, state, runtime)

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        return handler(self._with_context(request))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        return await handler(self._with_context(request))

    def _with_context(self, request: ModelRequest) -> ModelRequest:
        plan = plan_of(request.state)
        if plan is None:
            return request
        history = history_of(request.state)
        reading = history[-1].reading if history else None  # this turn's, perceived or passed in
        text = self.section.format(emotion_context=emotion_context(reading, plan), strategy=strategy_text(plan))
        system = request.system_message
        content = f"{system.text}\n\n{text}" if system is not None and system.text else text
        return request.override(system_message=SystemMessage(content))


class _NoRecognizer:
    """Stands in when the middleware only takes readings: audio without a recognizer is an error."""

    random_weights = False

    def analyze(self, *args: Any, **kwargs: Any):
        raise ValueError(
            "the turn brought audio but EmotionMiddleware has no recognizer; pass one "
            "(EmotionMiddleware(EmotionRecognizer.from_pretrained())) or send a `reading` instead"
        )
