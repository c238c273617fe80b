"""Speech emotion for a LiveKit Agents `Agent`: the user's audio read, a note before the model answers.

With an STT-LLM-TTS pipeline, the audio is teed from the STT node and the note goes into the turn's
chat context:

    class Assistant(Agent):
        def __init__(self, recognizer):         # the model, loaded once per process (prewarm) and shared
            super().__init__(instructions="...")
            self.emotion = LiveKitEmotion(recognizer)   # one per session: it holds the session's stream

        def stt_node(self, audio, model_settings):
            return Agent.default.stt_node(self, self.emotion.tee(audio), model_settings)

        async def on_user_turn_completed(self, turn_ctx, new_message):
            await self.emotion.on_user_turn_completed(turn_ctx, new_message)

        async def on_exit(self):
            await self.emotion.aclose()

With a realtime speech-to-speech model (`AgentSession(llm=RealtimeModel(...))`) no STT node runs:
`listen(self)` in `on_enter` taps the session's audio input instead (the frames the session forwards
to the model), and follows the model's own turn events (`input_speech_started` / `_stopped`) where
its server sends them. The note reaches the model as a system message in the realtime session's chat
context (`RealtimeSession.update_chat_ctx`, which sends it as a conversation item and waits for the
server to take it), before the reply is asked for. Who asks depends on who ends turns:

- the model's turn detection, set not to answer on its own (`create_response=False`) and the
  session's `turn_detection="manual"`: the plugin asks (`session.generate_reply()`) once the note is in;
- LiveKit's (a VAD, with the model's turn detection off): LiveKit calls `on_user_turn_completed`,
  which puts the note in, and LiveKit asks when the hook returns.

A model that answers each turn by itself (its default) would hear the note after its reply began:
the plugin still reads the audio, warns once, and sends no notes.

The engine's segmenter finds where the user's speech begins (and ends, where no turn events come);
an end of turn closes the utterance at once, and its reading is waited for up to `note_wait_s`. The
models run on the listener's own thread, never on the agent's event loop.

Layer 5, the voice-framework integrations (`emotion_tool.integrations`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any, AsyncIterable, AsyncIterator

try:
    from livekit import rtc
    from livekit.agents import llm
    from livekit.agents.utils import is_given
    from livekit.agents.voice import io as voice_io
except ImportError as e:  # pragma: no cover - depends on the environment
    raise RuntimeError(
        "emotion_tool.integrations.livekit requires LiveKit Agents; pip install 'emotion-tool[livekit]'"
    ) from e

from emotion_tool.engine.results import UtteranceReading
from emotion_tool.integrations.listener import (
    ListenerStats,
    PerceptionOptions,
    TurnListener,
)
from emotion_tool.integrations.note import is_turn_note, split_perception, turn_reading, write_note

__all__ = ["LiveKitEmotion", "PerceptionOptions"]

log = logging.getLogger("emotion_tool.integrations")

EXTRA_KEY = "emotion"  # where the user's ChatMessage.extra carries its reading: {"utterance", "utterances", "operating_point", "random_weights", "calibration"} (JSON)
_MIN_DELIVERY_S = 0.2  # the least a reply waits for the server to take a note in, even once note_wait_s is spent


class LiveKitEmotion:
    """Reads each user turn of a LiveKit agent and tells its LLM (or realtime model) how the turn sounded.

    Make one per session (it holds that session's audio stream and turns); the recognizer can be
    shared by all of them.

    Args:
        recognizer: an `EmotionRecognizer`; its operating point decides speed and fidelity
            (`operating_point="live"` is the recommended one on a CPU).
        options: segmentation and LLM-note settings. `turns` is not used: LiveKit's end of turn always
            closes the open utterance, and a realtime model's turn events cut utterances where it sends them.
        refine_with: a second recognizer at a faithful point (e.g. "published" or "openvino+bf16") with a
            fast `recognizer` (e.g. "live"): each utterance is read fast, then again faithfully on a thread
            of its own; the faithful reading replaces the fast one in `trace`, and a turn's note and
            `extra["emotion"]` use whichever is ready when the turn completes, and say which.
    """

    def __init__(self, recognizer: Any, *, options: PerceptionOptions = PerceptionOptions(), refine_with: Any = None):
        self.options = options
        # LiveKit shows an agent no turn starts, only their ends: the segmenter finds the starts, until a
        # realtime model's turn events come (`listen`); from the first on, the listener follows them.
        self._listener = TurnListener(
            recognizer, options=replace(options, turns="auto"), on_reading=self._on_reading, refine_with=refine_with
        )
        self._bound = False
        self._source: str | None = None  # where the audio comes from: "stt" (tee) or "input" (listen)
        self._agent: Any = None
        self._rt: llm.RealtimeSession | None = None
        self._answers = False  # this plugin asks for each reply (the model's turns, the session's manual mode)
        self._answering: set[asyncio.Task] = set()
        self._tap: _TeeAudioInput | None = None
        self._closed = False
        self.trace: list[UtteranceReading] = []  # every final reading so far, in order
        self.notes: list[str | None] = []  # each realtime turn's note as it was sent (None: no reading, or none sent)

    @property
    def stats(self) -> ListenerStats:
        """Utterances read, latency, dropped audio, skipped bad frames and analysis errors so far."""
        return self._listener.stats

    async def tee(self, audio: AsyncIterable[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
        """Yields every frame of `audio` unchanged, at once, and copies its samples to the listener."""
        self._use("stt")
        self._bind()
        async for frame in audio:
            if not self._closed:
                self._listener.feed_pcm16(frame.data, frame.sample_rate, frame.num_channels)
            yield frame

    def listen(self, agent: Any) -> None:
        """Taps the session's audio input (for a realtime model, which has no STT node) and, with a
        realtime model, its turn events. Call it from the agent's `on_enter`.

        Frames go on to the session unchanged and at once; their samples are copied to the listener.
        """
        self._use("input")
        self._bind()
        self._agent = agent
        session = agent.session
        if session.input.audio is None:
            raise RuntimeError(
                "the session has no audio input to listen to yet: call listen() in on_enter, after "
                "session.start(room=...) (or after setting session.input.audio)"
            )
        if not isinstance(session.input.audio, _TeeAudioInput):
            self._tap = _TeeAudioInput(self, source=session.input.audio)
            session.input.audio = self._tap
        try:
            rt = agent.realtime_llm_session
        except RuntimeError:  # an STT-LLM-TTS agent: the hook adds the note to the turn's context
            return
        self._rt = rt
        rt.on("input_speech_started", self._on_speech_started)
        rt.on("input_speech_stopped", self._on_speech_stopped)
        if rt.capabilities.turn_detection:
            log.warning(
                "the realtime model answers each turn by itself (server turn detection with create_response on), "
                "so a note would reach it after its reply began: none are sent. Give the model "
                "turn_detection with create_response=False and the session turn_detection='manual', or turn the "
                "model's turn detection off and let a VAD end turns (see docs/voice-frameworks.md)"
            )
        turn_detection = agent.turn_detection if is_given(agent.turn_detection) else session.turn_detection
        self._answers = not rt.capabilities.turn_detection and turn_detection == "manual"

    async def on_user_turn_completed(self, turn_ctx: llm.ChatContext, new_message: llm.ChatMessage) -> UtteranceReading | None:
        """Closes the turn's utterance, waits up to `note_wait_s` for its reading, and, if there is
        one, gives the model the note and `new_message.extra["emotion"]` the reading. Returns the turn's
        reading (its utterances combined, see `turn_reading`), or None.

        With an LLM, the note goes into `turn_ctx` (after dropping earlier notes; in the "rcs" wording it
        heads the user's message instead). With a realtime model, which does not read `turn_ctx`, it goes
        into the realtime session's chat context before this returns, so before LiveKit asks for the reply.
        """
        self._bind()
        self._listener.end_turn()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.note_wait_s
        readings = await self._listener.take_readings(wait_s=self.options.note_wait_s)
        if self._rt is None:
            for m in [m for m in turn_ctx.messages() if is_turn_note(m.text_content)]:
                turn_ctx.remove(m)
        reading = turn_reading(readings, min_confidence=self._listener.min_confidence)
        if reading is not None:
            calibration = self._listener.calibration
            new_message.extra[EXTRA_KEY] = {
                "utterance": reading.model_dump(mode="json"),
                "utterances": len(readings),
                "operating_point": reading.operating_point or self._listener.operating_point,
                "random_weights": self._listener.random_weights,
                "calibration": calibration.model_dump(mode="json") if calibration is not None else None,
            }
        note = self._note(reading, len(readings)) if self.options.note else None
        if self._rt is not None:
            await self._send_note(note, deadline)
        elif note is not None:
            text = new_message.text_content
            if self.options.note_format == "rcs" and text and split_perception(text)[0] is None:
                new_message.content = [f"{note} {text}"]  # RCS: the perception heads the user's message
            else:
                turn_ctx.add_message(role=self.options.note_role, content=note)
        return reading

    async def aclose(self) -> None:
        """Reads what is left of the audio, then stops the listener's thread and takes the tap off the input.
        A second call does nothing."""
        if self._closed:
            return
        for task in list(self._answering):
            task.cancel()
        if self._rt is not None:
            self._rt.off("input_speech_started", self._on_speech_started)
            self._rt.off("input_speech_stopped", self._on_speech_stopped)
        if self._bound:
            await self._listener.flush()
        self._closed = True
        if self._tap is not None and self._agent is not None:
            with contextlib.suppress(RuntimeError):  # the agent is no longer running: its session is gone
                session = self._agent.session
                if session.input.audio is self._tap:
                    session.input.audio = self._tap.source
        await self._listener.aclose()

    # --- internals --------------------------------------------------------------------------------------

    def _use(self, source: str) -> None:
        if self._source not in (None, source):
            raise RuntimeError(
                "this LiveKitEmotion already reads the audio "
                + ("from the STT node (tee)" if self._source == "stt" else "from the session's input (listen)")
                + "; use one of tee() and listen(), not both, or each frame is read twice"
            )
        self._source = source

    def _bind(self) -> None:
        if not self._bound:
            self._listener.bind()
            self._bound = True

    def _feed(self, frame: rtc.AudioFrame) -> None:
        if not self._closed:
            self._listener.feed_pcm16(frame.data, frame.sample_rate, frame.num_channels)

    def _on_reading(self, reading: UtteranceReading | None) -> None:
        if reading is None:
            return
        if reading.refined:  # the faithful reading of an utterance read fast before
            self.trace = [reading if r.index == reading.index else r for r in self.trace]
        elif not reading.interim:
            self.trace.append(reading)

    def _note(self, reading: UtteranceReading | None, utterances: int) -> str | None:
        return write_note(
            reading, format=self.options.note_format, operating_point=self._listener.operating_point,
            calibration=self._listener.calibration, random_weights=self._listener.random_weights, utterances=utterances,
        )  # fmt: skip

    def _on_speech_started(self, _: Any) -> None:
        """The realtime model heard the user begin: from now on its turn events cut the utterances."""
        if not self._closed:
            self._listener.turn_started()

    def _on_speech_stopped(self, _: Any) -> None:
        """The realtime model says the user stopped: the utterance closes now; with the model's turns, the
        plugin then gives the note and asks for the reply."""
        if self._closed:
            return
        self._listener.turn_stopped()
        if self._answers:
            task = asyncio.get_running_loop().create_task(self._answer_turn(), name="emotion-realtime-answer")
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _answer_turn(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.note_wait_s
        readings = await self._listener.take_readings(wait_s=self.options.note_wait_s)
        reading = turn_reading(readings, min_confidence=self._listener.min_confidence)
        note = self._note(reading, len(readings)) if self.options.note else None
        await self._send_note(note, deadline)
        try:
            self._agent.session.generate_reply(input_modality="audio")
        except RuntimeError as e:  # the session is closing: nobody is left to answer
            log.warning("no reply asked for after the emotion note: %s", e)

    async def _send_note(self, note: str | None, deadline: float) -> None:
        """Puts the note into the realtime session's chat context, waiting for the server to take it up to
        the deadline (at least `_MIN_DELIVERY_S`); the reply asked for after it is answered after it either
        way, since the connection keeps the order of events."""
        if self._rt is None or self._rt.capabilities.turn_detection:
            self.notes.append(None)
            return
        self.notes.append(note)
        if note is None:
            return
        ctx = self._rt.chat_ctx.copy()
        ctx.add_message(role=self.options.note_role, content=note)
        update = asyncio.ensure_future(self._rt.update_chat_ctx(ctx))
        wait_s = max(_MIN_DELIVERY_S, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(asyncio.shield(update), timeout=wait_s)
        except asyncio.TimeoutError:
            log.warning("the realtime model had not confirmed the emotion note after %.1f s; the reply goes on", wait_s)
        except llm.RealtimeError as e:
            log.warning("the realtime model did not take the emotion note (%s); the reply goes on without it", e)


class _TeeAudioInput(voice_io.AudioInput):
    """The session's audio input, unchanged, with each frame's samples copied to the listener on the way."""

    def __init__(self, emotion: LiveKitEmotion, *, source: voice_io.AudioInput):
        super().__init__(label="emotion", source=source)
        self._emotion = emotion

    async def __anext__(self) -> rtc.AudioFrame:
        frame = await super().__anext__()
        self._emotion._feed(frame)
        return frame
