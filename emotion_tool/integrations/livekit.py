"""Speech emotion for a LiveKit Agents `Agent`: audio teed from the STT input, a note before the LLM runs.

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

The engine's segmenter finds where the user's speech begins; LiveKit's end of turn closes the
utterance at once (`on_user_turn_completed`), and its reading is waited for up to `note_wait_s`.
The models run on the listener's own thread, never on the agent's event loop. Readings come only
from audio that goes through the STT node: a realtime speech-to-speech model, which has none, gets none.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, AsyncIterable, AsyncIterator

try:
    from livekit import rtc
    from livekit.agents import llm
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
from emotion_tool.integrations.note import is_turn_note, turn_note, turn_reading

__all__ = ["LiveKitEmotion", "PerceptionOptions"]

EXTRA_KEY = "emotion"  # where the user's ChatMessage.extra carries its reading: {"utterance", "utterances", "operating_point", "random_weights", "calibration"} (JSON)


class LiveKitEmotion:
    """Reads each user turn of a LiveKit agent and tells its LLM how the turn sounded.

    Make one per session (it holds that session's audio stream and turns); the recognizer can be
    shared by all of them.

    Args:
        recognizer: an `EmotionRecognizer`; its operating point decides speed and fidelity
            (`operating_point="live"` is the recommended one on a CPU).
        options: segmentation and LLM-note settings (`turns` other than "segmenter" are not used:
            LiveKit's end of turn always closes the open utterance).
    """

    def __init__(self, recognizer: Any, *, options: PerceptionOptions = PerceptionOptions()):
        self.options = options
        # LiveKit shows an agent no turn starts, only their ends: the segmenter finds the starts.
        self._listener = TurnListener(recognizer, options=replace(options, turns="segmenter"), on_reading=self._on_reading)
        self._bound = False
        self.trace: list[UtteranceReading] = []  # every final reading so far, in order

    @property
    def stats(self) -> ListenerStats:
        """Utterances read, latency, dropped audio and analysis errors so far."""
        return self._listener.stats

    async def tee(self, audio: AsyncIterable[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
        """Yields every frame of `audio` unchanged, at once, and copies its samples to the listener."""
        self._bind()
        async for frame in audio:
            self._listener.feed_pcm16(frame.data, frame.sample_rate, frame.num_channels)
            yield frame

    async def on_user_turn_completed(self, turn_ctx: llm.ChatContext, new_message: llm.ChatMessage) -> UtteranceReading | None:
        """Closes the turn's utterance, waits up to `note_wait_s` for its reading, and, if there is
        one, adds the note to `turn_ctx` (after dropping earlier notes) and the reading to
        `new_message.extra["emotion"]`. Returns the turn's reading (its utterances combined, see
        `turn_reading`), or None."""
        self._bind()
        self._listener.end_turn()
        readings = await self._listener.take_readings(wait_s=self.options.note_wait_s)
        stale = [m for m in turn_ctx.messages() if is_turn_note(m.text_content)]
        for m in stale:
            turn_ctx.remove(m)
        reading = turn_reading(readings, min_confidence=self._listener.min_confidence)
        if reading is None:
            return None
        calibration = self._listener.calibration
        new_message.extra[EXTRA_KEY] = {
            "utterance": reading.model_dump(mode="json"),
            "utterances": len(readings),
            "operating_point": self._listener.operating_point,
            "random_weights": self._listener.random_weights,
            "calibration": calibration.model_dump(mode="json") if calibration is not None else None,
        }
        if self.options.note:
            note = turn_note(reading, random_weights=self._listener.random_weights, utterances=len(readings))
            turn_ctx.add_message(role=self.options.note_role, content=note)
        return reading

    async def aclose(self) -> None:
        """Reads what is left of the audio, then stops the listener's thread."""
        if self._bound:
            await self._listener.flush()
        await self._listener.aclose()

    def _bind(self) -> None:
        if not self._bound:
            self._listener.bind()
            self._bound = True

    def _on_reading(self, reading: UtteranceReading | None) -> None:
        if reading is not None and not reading.interim:
            self.trace.append(reading)
