"""LangGraph nodes: perceive how the user sounds, plan the reply, respond.

Each node is a callable object configured at construction and reading/writing plain state keys,
so it drops into any `StateGraph` whose state has those keys (`EmpathicState` has them all).
"""

from __future__ import annotations

import base64
import os
import warnings
from typing import TYPE_CHECKING, Any, Callable, Collection

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.messages.content import create_audio_block
from langchain_core.runnables import Runnable, RunnableConfig

from emotion_tool.audio import AudioError, AudioProblem, encode_wav, load_audio
from emotion_tool.config import SAMPLE_RATE

from .planning import PlanningConfig, plan_dialogue
from .scale import SpeakerProfile, load_profile, save_profile
from .prompts import AUDIO_ONLY, NO_TRANSCRIPT, SYSTEM_PROMPT, offline_reply, system_message_text
from .state import EmotionTurn, history_of, plan_of, reading_of
from .turns import profile_lock

if TYPE_CHECKING:
    from emotion_tool import AnalysisOptions, EmotionRecognizer

Transcriber = Callable[[np.ndarray], str]
"""Speech-to-text: 16 kHz mono float32 samples (N,) in, the words out."""


class EmotionPerceptionNode:
    """Reads the emotion of the turn's audio and records the turn in the emotion history.

    Writes `reading` (the turn's `EmotionReading`, or None) and appends one `EmotionTurn` to the
    history. If the caller passed a new `reading` for the turn (a streaming analyser already read
    the audio), that reading is used and the audio is not analysed again. A `reading` equal to the
    previous turn's is taken as left over from that turn, not as new input, unless `reading_consumed`
    says the key is cleared after each turn.

    Audio stays in the state until something clears it (the ready agent's responder does, as the
    turn ends); clear it yourself in graphs without that responder, or each run reads it again.

    Example:
        >>> graph = StateGraph(EmpathicState)
        >>> graph.add_node("perceive", EmotionPerceptionNode(recognizer))
    """

    def __init__(
        self,
        recognizer: "EmotionRecognizer",
        *,
        options: "AnalysisOptions | None" = None,
        skip_problems: Collection[AudioProblem] = ("too_short",),
        audio_key: str = "audio",
        sample_rate_key: str = "sample_rate",
        transcript_key: str = "transcript",
        speaker_key: str = "speaker",
        reading_key: str = "reading",
        history_key: str = "emotion_history",
        reading_consumed: bool = False,
    ):
        """
        Args:
            recognizer: the engine.
            options: analysis options (defaults: the recognizer's).
            skip_problems: audio problems that leave the turn without a reading (with a warning)
                instead of failing the run; the default skips clips too short to judge.
            audio_key, sample_rate_key, transcript_key, speaker_key: state keys read.
            reading_key, history_key: state keys written (`reading_key` is also read).
            reading_consumed: the graph clears `reading_key` after each turn (`EmotionMiddleware`
                does), so a reading found there is always this turn's, even one equal to the last.
        """
        self.recognizer = recognizer
        self.options = options
        self.skip_problems = frozenset(skip_problems)
        self.audio_key = audio_key
        self.sample_rate_key = sample_rate_key
        self.transcript_key = transcript_key
        self.speaker_key = speaker_key
        self.reading_key = reading_key
        self.history_key = history_key
        self.reading_consumed = reading_consumed

    def __call__(self, state: dict[str, Any]) -> dict[str, Any]:
        history = history_of(state, self.history_key)
        given = reading_of(state, self.reading_key)
        turn = dict(
            turn=len(history) + 1,
            speaker=state.get(self.speaker_key) or "user",
            transcript=_user_words(state, transcript_key=self.transcript_key),
        )
        audio = state.get(self.audio_key)
        if given is not None and (self.reading_consumed or not history or given != history[-1].reading):
            entry = EmotionTurn(**turn, reading=given, source="precomputed")
        elif audio is not None:
            entry = self._analyze(audio, state.get(self.sample_rate_key), turn)
        else:
            entry = EmotionTurn(**turn, source="none", notes=["No audio arrived this turn; respond to the words alone."])
        return {self.reading_key: entry.reading, self.history_key: entry}

    def _analyze(self, audio: Any, sample_rate: int | None, turn: dict[str, Any]) -> EmotionTurn:
        try:
            analysis = self.recognizer.analyze(
                _turn_audio(audio), sample_rate=sample_rate, options=self.options, name=_audio_name(audio)
            )
        except AudioError as e:
            if e.problem not in self.skip_problems:
                raise
            warnings.warn(f"no emotion reading this turn: {e}", stacklevel=2)
            return EmotionTurn(**turn, source="none", notes=[f"No emotion reading this turn: {e}"])
        return EmotionTurn(
            **turn,
            reading=analysis.summary,
            source="audio",
            speech_s=analysis.speech_s,
            random_weights=analysis.random_weights,
            calibration=analysis.calibration,
            notes=analysis.warnings,
        )


class TranscriptionNode:
    """Fills in the user's words from the turn's audio when they are not known yet."""

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        audio_key: str = "audio",
        sample_rate_key: str = "sample_rate",
        transcript_key: str = "transcript",
    ):
        """
        Args:
            transcriber: 16 kHz mono float32 samples in, text out (e.g. `agents.stt.WhisperTranscriber`).
            audio_key, sample_rate_key: state keys read.
            transcript_key: state key written.
        """
        self.transcriber = transcriber
        self.audio_key = audio_key
        self.sample_rate_key = sample_rate_key
        self.transcript_key = transcript_key

    def __call__(self, state: dict[str, Any]) -> dict[str, Any]:
        audio = state.get(self.audio_key)
        if audio is None or _user_words(state, transcript_key=self.transcript_key):
            return {}
        wav = load_audio(_turn_audio(audio), sample_rate=state.get(self.sample_rate_key), name=_audio_name(audio))
        text = self.transcriber(wav).strip()
        return {self.transcript_key: text or None}


class PlannerNode:
    """Chooses the dialogue strategy for the turn from its reading and the speaker's history.

    Runs after perception: the last history entry is the current turn when its reading is the
    state's `reading`; otherwise the state's `reading` is planned as a new turn.

    With a LangGraph store (the graph's, or a LangGraph server's), the turn is compared with the
    speaker's profile across all their conversations, and then folded into it, under the speaker's
    `profile_lock` so that concurrent conversations of one speaker lose no update; without a store,
    with the speaker's earlier turns in this conversation.
    """

    def __init__(
        self,
        config: PlanningConfig = PlanningConfig(),
        *,
        reading_key: str = "reading",
        history_key: str = "emotion_history",
        speaker_key: str = "speaker",
        strategy_key: str = "strategy",
    ):
        """
        Args:
            config: thresholds and mappings of the planner.
            reading_key, history_key, speaker_key: state keys read.
            strategy_key: state key written (a `DialoguePlan`).
        """
        self.config = config
        self.reading_key = reading_key
        self.history_key = history_key
        self.speaker_key = speaker_key
        self.strategy_key = strategy_key

    def __call__(self, state: dict[str, Any], config: RunnableConfig, runtime: Any = None) -> dict[str, Any]:
        current, earlier = self._turn(state)
        store = getattr(runtime, "store", None)
        if store is None:
            return {self.strategy_key: plan_dialogue(current, earlier, self.config)}
        # Load, fold in, save: one speaker's conversations running at once would otherwise each save
        # their own update over the other's.
        with profile_lock(store, current.speaker):
            profile = load_profile(store, current.speaker)
            plan = plan_dialogue(current, earlier, self.config, profile=profile)
            if current.reading is not None:
                thread = (config.get("configurable") or {}).get("thread_id")
                turn_id = f"{thread}:{current.turn}" if thread is not None else None
                updated = (profile or SpeakerProfile(speaker=current.speaker)).add(current.reading, turn_id=turn_id)
                save_profile(store, updated)
        return {self.strategy_key: plan}

    def _turn(self, state: dict[str, Any]) -> tuple[EmotionTurn, list[EmotionTurn]]:
        history = history_of(state, self.history_key)
        reading = reading_of(state, self.reading_key)
        if history and history[-1].reading == reading:
            current, earlier = history[-1], history[:-1]
        else:
            current = EmotionTurn(
                turn=len(history) + 1,
                speaker=state.get(self.speaker_key) or "user",
                reading=reading,
                source="precomputed" if reading is not None else "none",
            )
            earlier = history
        return current, earlier


class ResponderNode:
    """Writes the agent's reply from the plan: with a chat model, or deterministically offline.

    The chat model gets a system message with the emotion context and the strategy, the recent
    conversation, and the user's turn: their words, and with `send_audio` their audio as a
    standard audio content block (base64 WAV, 16 kHz mono). Appends the user's message (words
    only, so the checkpoint stays small) and the reply to `messages`; with `end_turn` it then
    clears the turn's audio and transcript so the next turn starts clean.
    """

    def __init__(
        self,
        chat_model: BaseChatModel | Runnable | None = None,
        *,
        send_audio: bool = False,
        system_prompt: str = SYSTEM_PROMPT,
        max_history_messages: int = 20,
        end_turn: bool = True,
        audio_key: str = "audio",
        sample_rate_key: str = "sample_rate",
        transcript_key: str = "transcript",
        reading_key: str = "reading",
        strategy_key: str = "strategy",
        messages_key: str = "messages",
    ):
        """
        Args:
            chat_model: the model that writes replies; None writes a short reply from the strategy.
            send_audio: pass the user's audio to the model as an audio content block; only for
                models that accept audio input (e.g. gpt-4o-audio-preview, Gemini).
            system_prompt: template with `{emotion_context}` and `{strategy}` fields.
            max_history_messages: earlier messages sent along with the turn.
            end_turn: clear `audio`, `sample_rate` and `transcript` after replying.
            audio_key, sample_rate_key, transcript_key, reading_key, strategy_key: state keys read.
            messages_key: state key of the conversation (read and appended to).
        """
        for field in ("{emotion_context}", "{strategy}"):
            if field not in system_prompt:
                raise ValueError(f"system_prompt must contain {field}, where the turn's context is filled in")
        if max_history_messages < 0:
            raise ValueError(f"max_history_messages must be 0 or more, got {max_history_messages}")
        self.chat_model = chat_model
        self.send_audio = send_audio
        self.system_prompt = system_prompt
        self.max_history_messages = max_history_messages
        self.end_turn = end_turn
        self.audio_key = audio_key
        self.sample_rate_key = sample_rate_key
        self.transcript_key = transcript_key
        self.reading_key = reading_key
        self.strategy_key = strategy_key
        self.messages_key = messages_key

    def __call__(self, state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        plan = plan_of(state, self.strategy_key)
        if plan is None:
            raise ValueError(f"state[{self.strategy_key!r}] is empty; run the planner node before the responder")
        messages: list[AnyMessage] = list(state.get(self.messages_key) or [])
        if messages and isinstance(messages[-1], HumanMessage):  # the caller put the user's turn there
            user, earlier, new = messages[-1], messages[:-1], []
        else:
            user = HumanMessage(state.get(self.transcript_key) or NO_TRANSCRIPT)
            earlier, new = messages, [user]

        if self.chat_model is None:
            reply: BaseMessage = AIMessage(offline_reply(plan))
        else:
            system = SystemMessage(system_message_text(reading_of(state, self.reading_key), plan, self.system_prompt))
            prompt = [system, *_recent(earlier, self.max_history_messages), self._model_turn(user, state)]
            reply = self.chat_model.invoke(prompt, config)
            if not isinstance(reply, BaseMessage):
                reply = AIMessage(str(reply))
        out: dict[str, Any] = {self.messages_key: [*new, reply]}
        if self.end_turn:  # only keys that are set: a custom state need not have them all
            keys = (self.audio_key, self.sample_rate_key, self.transcript_key)
            out.update({key: None for key in keys if state.get(key) is not None})
        return out

    def _model_turn(self, user: HumanMessage, state: dict[str, Any]) -> HumanMessage:
        audio = state.get(self.audio_key)
        if not self.send_audio or audio is None:
            return user
        if isinstance(user.content, str):
            blocks: list[Any] = [{"type": "text", "text": AUDIO_ONLY if user.content == NO_TRANSCRIPT else user.content}]
        else:
            blocks = list(user.content)
        wav_b64 = _wav_base64(audio, sample_rate=state.get(self.sample_rate_key))
        blocks.append(create_audio_block(base64=wav_b64, mime_type="audio/wav"))
        return HumanMessage(content=blocks, id=user.id)


def _user_words(state: dict[str, Any], *, transcript_key: str = "transcript", messages_key: str = "messages") -> str | None:
    """The user's words this turn: the transcript, else the text of a trailing user message."""
    if state.get(transcript_key):
        return state[transcript_key]
    messages = state.get(messages_key) or []
    if messages and isinstance(messages[-1], HumanMessage):
        return messages[-1].text or None
    return None


def _turn_audio(audio: Any) -> Any:
    """The turn's audio as the engine takes it: lists become arrays (``data:`` URLs `load_audio` reads itself)."""
    if isinstance(audio, (list, tuple)):
        return np.asarray(audio, dtype=np.float32)
    return audio


def _audio_name(audio: Any) -> str | None:
    """How to call the audio in results and errors."""
    if isinstance(audio, str) and audio.startswith("data:"):
        return "audio (data: URL)"
    if isinstance(audio, (str, os.PathLike)):
        return os.fspath(audio)
    return None


def _wav_base64(audio: Any, *, sample_rate: int | None = None) -> str:
    """The audio as a base64 16-bit PCM WAV file, 16 kHz mono (what audio-capable chat models take)."""
    wav = load_audio(_turn_audio(audio), sample_rate=sample_rate, name=_audio_name(audio))
    return base64.b64encode(encode_wav(wav, sample_rate=SAMPLE_RATE)).decode("ascii")


def _recent(messages: list[AnyMessage], limit: int) -> list[AnyMessage]:
    """The last `limit` messages, starting at a user message so the model sees whole exchanges."""
    if limit == 0:
        return []
    tail = messages[-limit:]
    for i, m in enumerate(tail):
        if isinstance(m, HumanMessage):
            return tail[i:]
    return []
