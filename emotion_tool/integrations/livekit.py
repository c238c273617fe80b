"""Speech emotion for a LiveKit Agents `Agent`: audio teed from the STT input, a note before the LLM runs.

    emotion = LiveKitEmotion(EmotionRecognizer.from_pretrained(operating_point="live"))

    class Assistant(Agent):
        def stt_node(self, audio, model_settings):
            return Agent.default.stt_node(self, emotion.tee(audio), model_settings)

        async def on_user_turn_completed(self, turn_ctx, new_message):
            await emotion.on_user_turn_completed(turn_ctx, new_message)

The engine's segmenter finds where the user's speech begins; LiveKit's end of turn closes the
utterance at once (`on_user_turn_completed`), and its reading is waited for up to `note_wait_s`.
The models run on the listener's own thread, never on the agent's event loop.
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

from ..results import UtteranceReading
from .listener import ListenerStats, PerceptionOptions, TurnListener
from .note import is_turn_note, turn_note

__all__ = ["LiveKitEmotion", "PerceptionOptions"]

EXTRA_KEY = "emotion"  # where the user's ChatMessage.extra carries its reading: {"utterance", "operating_point", "random_weights"} (JSON)


class LiveKitEmotion:
    """Reads each user turn of a LiveKit agent and tells its LLM how the turn sounded.

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
        `new_message.extra["emotion"]`. Returns the reading, or None."""
        self._bind()
        self._listener.end_turn()
        readings = await self._listener.take_readings(wait_s=self.options.note_wait_s)
        stale = [m for m in turn_ctx.messages() if is_turn_note(m.text_content)]
        for m in stale:
            turn_ctx.remove(m)
        if not readings:
            return None
        reading = readings[-1]
        new_message.extra[EXTRA_KEY] = {
            "utterance": reading.model_dump(mode="json"),
            "operating_point": self._listener.operating_point,
            "random_weights": self._listener.random_weights,
        }
        if self.options.note:
            turn_ctx.add_message(role=self.options.note_role, content=turn_note(reading, random_weights=self._listener.random_weights))
        return reading

    async def aclose(self) -> None:
        """Reads what is left of the audio, then stops the listener's thread."""
        if self._bound:
            await self._listener.flush()
        self._listener.close()

    def _bind(self) -> None:
        if not self._bound:
            self._listener.bind()
            self._bound = True

    def _on_reading(self, reading: UtteranceReading | None) -> None:
        if reading is not None and not reading.interim:
            self.trace.append(reading)
