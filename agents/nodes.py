"""LangGraph nodes: perceive how the user sounds, plan the reply, respond.

Each node is a callable object configured at construction and reading/writing plain state keys,
so it drops into any `StateGraph` whose state has those keys (`EmpathicState` has them all).
"""

from __future__ import annotations

import base64
import os
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
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

    With `refine_with` (a second recognizer at a faithful point, beside a fast `recognizer`), the turn
    is planned and answered on the fast reading (`refined=False`), and the same audio is read again at
    the faithful point on a thread of its own. The faithful reading takes the fast one's place in the
    history (`refined=True`) at the thread's next turn, or when `refinements` is asked for it; the
    planner then corrects the speaker's profile with it.

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
        refine_with: "EmotionRecognizer | None" = None,
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
            refine_with: a faithful recognizer (e.g. at "published") that reads each turn's audio again
                after the fast reading; its reading replaces the fast one in the history.
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
        self.refine_with = refine_with
        self._pending: dict[str | None, list[tuple[EmotionTurn, Future]]] = {}  # per thread: fast turns being read again
        self._pending_lock = threading.Lock()
        self._refiner = ThreadPoolExecutor(1, thread_name_prefix="emotion-refiner") if refine_with is not None else None

    def refinements(self, thread_id: str | None = None, *, wait_s: float = 0.0) -> list[EmotionTurn]:
        """The faithful turns of `thread_id` finished so far (waiting up to `wait_s` for those still being
        read), each to take its fast turn's place: the node hands them to the history itself at the
        thread's next turn; after the last turn, write them with
        `graph.update_state(config, {"emotion_history": turns}, as_node="perceive")`. A turn whose
        faithful reading failed keeps its fast reading (with a warning)."""
        with self._pending_lock:
            jobs = list(self._pending.get(thread_id, []))
        if wait_s > 0 and jobs:
            wait_futures([f for _, f in jobs], timeout=wait_s)
        out = []
        with self._pending_lock:
            left = []
            for fast, future in self._pending.get(thread_id, []):
                if not future.done():
                    left.append((fast, future))
                    continue
                try:
                    out.append(future.result())
                except Exception as e:  # the fast reading stays
                    warnings.warn(f"turn {fast.turn} keeps its fast reading: reading it again failed: {e}", stacklevel=2)
            if left:
                self._pending[thread_id] = left
            else:
                self._pending.pop(thread_id, None)
        return out

    def pending(self, thread_id: str | None = None) -> int:
        """How many turns of `thread_id` are still being read again at the faithful point."""
        with self._pending_lock:
            return sum(not f.done() for _, f in self._pending.get(thread_id, []))

    def __call__(self, state: dict[str, Any], config: RunnableConfig = None) -> dict[str, Any]:  # type: ignore[assignment]
        thread = (config or {}).get("configurable", {}).get("thread_id") if self.refine_with is not None else None
        refined = self.refinements(thread) if self.refine_with is not None else []
        update = self._perceive(state)
        entry = update[self.history_key]
        if self.refine_with is not None and entry.source == "audio" and entry.reading is not None:
            entry = entry.model_copy(update={"operating_point": self.recognizer.operating_point(self.options), "refined": False})
            audio, rate = state.get(self.audio_key), state.get(self.sample_rate_key)
            future = self._refiner.submit(self._read_again, entry, audio, rate)  # type: ignore[union-attr]
            with self._pending_lock:
                self._pending.setdefault(thread, []).append((entry, future))
        return {self.reading_key: update[self.reading_key], self.history_key: [*refined, entry] if refined else entry}

    def _read_again(self, fast: EmotionTurn, audio: Any, sample_rate: int | None) -> EmotionTurn:
        """The faithful reading of a turn read fast (on the refiner's thread)."""
        assert self.refine_with is not None
        analysis = self.refine_with.analyze(_turn_audio(audio), sample_rate=sample_rate, options=self.options, name=_audio_name(audio))
        return fast.model_copy(update={
            "reading": analysis.summary, "speech_s": analysis.speech_s, "notes": analysis.warnings, "calibration": analysis.calibration,
            "operating_point": self.refine_with.operating_point(self.options), "refined": True, "replaces": fast.reading,
        })  # fmt: skip

    def _perceive(self, state: dict[str, Any]) -> dict[str, Any]:
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
    with the speaker's earlier turns in this conversation. Earlier turns whose faithful reading has
    replaced the fast one (a refinement, `EmotionPerceptionNode(refine_with=...)`) correct the profile
    first: the fast reading is taken out, the faithful one put in.
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
        refined = [t for t in earlier if t.refined and t.replaces is not None]  # faithful readings not in the profiles yet
        corrected = [t.model_copy(update={"replaces": None}) for t in refined]
        if store is None:
            plan = plan_dialogue(current, earlier, self.config)
            return {self.strategy_key: plan, self.history_key: corrected} if corrected else {self.strategy_key: plan}
        # Load, fold in, save: one speaker's conversations running at once would otherwise each save
        # their own update over the other's.
        thread = (config.get("configurable") or {}).get("thread_id")
        for speaker in dict.fromkeys(t.speaker for t in refined if t.speaker != current.speaker and t.reading is not None):
            with profile_lock(store, speaker):  # another speaker's turns of this thread
                profile = load_profile(store, speaker)
                if profile is not None:
                    save_profile(store, _corrected(profile, [t for t in refined if t.speaker == speaker], thread))
        with profile_lock(store, current.speaker):
            profile = load_profile(store, current.speaker)
            if profile is not None:
                profile = _corrected(profile, [t for t in refined if t.speaker == current.speaker], thread)
            plan = plan_dialogue(current, earlier, self.config, profile=profile)
            if current.reading is not None:
                turn_id = f"{thread}:{current.turn}" if thread is not None else None
                profile = (profile or SpeakerProfile(speaker=current.speaker)).add(current.reading, turn_id=turn_id)
            if profile is not None:
                save_profile(store, profile)
        return {self.strategy_key: plan, self.history_key: corrected} if corrected else {self.strategy_key: plan}

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


def _corrected(profile: SpeakerProfile, turns: list[EmotionTurn], thread: str | None) -> SpeakerProfile:
    """`profile` with each turn's fast reading (`replaces`) replaced by its faithful one."""
    for t in turns:
        if t.replaces is not None and t.reading is not None:
            profile = profile.replace(t.replaces, t.reading, turn_id=f"{thread}:{t.turn}" if thread is not None else None)
    return profile


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
