"""Speech emotion inside a Pipecat pipeline: a processor after the transport input, and a note for the LLM.

    emotion = EmotionPerceiver(EmotionRecognizer.from_pretrained(operating_point="live"))
    pipeline = Pipeline([
        transport.input(),
        emotion,                       # reads the user's audio; every frame goes on at once, unchanged
        stt,
        emotion.transcript_tagger(),   # optional: TranscriptionFrame.metadata["emotion"] (holds a transcription up to note_wait_s)
        user_aggregator,
        emotion.context_note(),        # optional: the LLM hears how the turn sounded
        llm, tts, transport.output(), assistant_aggregator,
    ])

With a realtime speech-to-speech service (OpenAI Realtime, whose server turn detection is set not to
answer on its own: `create_response=False`), `emotion.realtime_note()` goes between the user
aggregator and the service instead: at each end of the user's turn it waits up to `note_wait_s` for
the turn's reading, hands the note to the service as an `LLMMessagesAppendFrame` (which the service
sends as a conversation item) and asks for the reply (`run_llm=True`), with or without a note:

    pipeline = Pipeline([
        transport.input(), emotion, context_aggregator.user(),
        emotion.realtime_note(),        # the note reaches the model before it answers the turn
        llm, transport.output(), context_aggregator.assistant(),
    ])

The perceiver pushes an `EmotionReadingFrame` downstream for each utterance. Utterances are cut by
the engine's segmenter until the pipeline announces user turns (`UserStartedSpeakingFrame` /
`UserStoppedSpeakingFrame`, which the user aggregator broadcasts upstream; a realtime service's own
turn detection drives them), then by those turns (`PerceptionOptions.turns`). The models run on the
listener's own thread, never on the loop.

Layer 5, the voice-framework integrations (`emotion_tool.integrations`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

try:
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        Frame,
        InputAudioRawFrame,
        LLMContextFrame,
        LLMMessagesAppendFrame,
        MetricsFrame,
        StartFrame,
        SystemFrame,
        TranscriptionFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
    )
    from pipecat.metrics.metrics import ProcessingMetricsData
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
except ImportError as e:  # pragma: no cover - depends on the environment
    raise RuntimeError(
        "emotion_tool.integrations.pipecat requires Pipecat; pip install 'emotion-tool[pipecat]'"
    ) from e

from emotion_tool.engine.results import CalibrationNote, UtteranceReading
from emotion_tool.integrations.listener import (
    ListenerStats,
    PerceptionOptions,
    TurnListener,
)
from emotion_tool.integrations.note import is_turn_note, split_perception, turn_reading, write_note

__all__ = ["EmotionPerceiver", "EmotionReadingFrame", "PerceptionOptions"]

METADATA_KEY = "emotion"  # where a TranscriptionFrame carries its UtteranceReading
_NO_TURN = object()  # no LLM context annotated yet


@dataclass
class EmotionReadingFrame(SystemFrame):
    """One utterance of the user and its reading.

    A system frame, so an interruption does not drop it and it overtakes queued data.

    Parameters:
        utterance: the utterance's times, reading and latency (seconds from the end of its speech).
        operating_point: how the network read it ("published" reproduces the published model).
        random_weights: the checkpoint has random weights; the reading means nothing.
        dropped_s: seconds of the user's audio dropped so far because analysis fell behind.
        calibration: the calibration the probabilities went through; None: the network's own.
    """

    utterance: UtteranceReading
    operating_point: str
    random_weights: bool
    dropped_s: float
    calibration: CalibrationNote | None = None

    def __str__(self) -> str:
        u = self.utterance
        return f"{self.name}(#{u.index} {u.start_s:.2f}-{u.end_s:.2f} s: {u.reading.describe()}, latency {u.latency_s:.2f} s)"


class EmotionPerceiver(FrameProcessor):
    """Reads the user's audio frames and emits one `EmotionReadingFrame` per utterance.

    Place it right after the transport input. Every frame is pushed on at once and unchanged; the
    audio (`InputAudioRawFrame`, any rate, mono or interleaved stereo) is copied to a worker thread.
    `stats` reports latency and dropped audio; with the pipeline's `enable_metrics`, each reading's
    latency also goes out as a `MetricsFrame` (`ProcessingMetricsData`, model: the operating point).

    Args:
        recognizer: an `EmotionRecognizer`; its operating point decides speed and fidelity
            (`operating_point="live"` is the recommended one on a CPU).
        options: segmentation, turn source and LLM-note settings.
        refine_with: a second recognizer at a faithful point (e.g. "published" or "openvino+bf16") with a
            fast `recognizer` (e.g. "live"): each utterance is read fast, then again faithfully on a thread
            of its own. Both readings go out as frames (`utterance.refined` False, then True); the faithful
            one replaces the fast one in `trace`, and a turn's note uses whichever is ready and says which.
    """

    def __init__(self, recognizer: Any, *, options: PerceptionOptions = PerceptionOptions(), refine_with: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.options = options
        self._listener = TurnListener(recognizer, options=options, on_reading=self._on_reading, refine_with=refine_with)
        self._out: asyncio.Queue[UtteranceReading] | None = None
        self._sender: asyncio.Task | None = None
        self._transcribed_at_s = 0.0  # stream time of the latest transcription tagged
        self._noted_turn: object = _NO_TURN  # the user message whose turn the context's note is for
        self.trace: list[UtteranceReading] = []  # every final reading so far, in order

    @property
    def stats(self) -> ListenerStats:
        """Utterances read, latency, dropped audio and analysis errors so far."""
        return self._listener.stats

    def context_note(self) -> FrameProcessor:
        """A processor for between the user aggregator and the LLM: before each LLM run it waits up to
        `note_wait_s` for a reading still being computed, drops earlier notes from the context and
        adds one for this turn."""
        return _ContextNote(self)

    def realtime_note(self) -> FrameProcessor:
        """A processor for between the user aggregator and a realtime LLM service: at each end of the
        user's turn (`UserStoppedSpeakingFrame`) it waits up to `note_wait_s` for the turn's reading,
        then pushes an `LLMMessagesAppendFrame` with the note (none without a reading) and `run_llm=True`,
        so the service takes the note in before it creates the turn's response. Every frame passes at once;
        the wait runs in a task of its own. The service must leave answering to the pipeline: OpenAI
        Realtime's turn detection with `create_response=False`."""
        return _RealtimeNote(self)

    def transcript_tagger(self) -> FrameProcessor:
        """A processor for between the STT and the user aggregator: sets each final transcription's
        `metadata["emotion"]` to its utterance's reading before passing it on. A transcription whose
        reading is still being computed is held up to `note_wait_s`, then goes on without one (never
        with an earlier utterance's); audio and other system frames pass it at once."""
        return _TranscriptTagger(self)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(frame, direction)
            self._listener.feed_pcm16(frame.audio, frame.sample_rate, frame.num_channels)
        elif isinstance(frame, StartFrame):
            self._start()
            await self.push_frame(frame, direction)
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._listener.turn_started()
            await self.push_frame(frame, direction)
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._listener.turn_stopped()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            await self._finish()  # the last utterance's reading goes out before the pipeline ends
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._stop()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._stop()

    # --- readings ---------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._sender is not None:
            return
        self._listener.bind()
        self._out = asyncio.Queue()
        self._sender = self.create_task(self._send_readings(), name="emotion-readings")

    def _on_reading(self, reading: UtteranceReading | None) -> None:
        """On the loop, as each reading arrives (None: the listener has caught up and no utterance is open)."""
        if reading is None:
            return
        if reading.refined:  # the faithful reading of an utterance read fast before
            self.trace = [reading if r.index == reading.index else r for r in self.trace]
        elif not reading.interim:
            self.trace.append(reading)
        if self._out is not None:
            self._out.put_nowait(reading)

    async def _send_readings(self) -> None:
        assert self._out is not None
        while True:
            reading = await self._out.get()
            try:
                await self.push_frame(
                    EmotionReadingFrame(
                        utterance=reading,
                        operating_point=reading.operating_point or self._listener.operating_point,
                        random_weights=self._listener.random_weights,
                        dropped_s=self._listener.stats.dropped_s,
                        calibration=self._listener.calibration,
                    )
                )
                if self.metrics_enabled and not reading.interim:  # Pipecat's metrics observers see the latency too
                    data = ProcessingMetricsData(processor=self.name, model=reading.operating_point or self._listener.operating_point, value=reading.latency_s)
                    await self.push_frame(MetricsFrame(data=[data]))
            finally:
                self._out.task_done()

    async def _finish(self) -> None:
        if self._sender is None:
            return
        await self._listener.flush()
        assert self._out is not None
        await self._out.join()
        await self._stop()

    async def _stop(self) -> None:
        await self._listener.aclose()  # joins the worker off the loop: the pipeline's other processors run on
        if self._sender is not None:
            sender, self._sender = self._sender, None
            await self.cancel_task(sender)

    # --- what other processors ask -------------------------------------------------------------------------

    async def _tag(self, frame: Frame) -> None:
        """Sets a transcription's reading: its utterance's, once read (waiting up to `note_wait_s`)."""
        since_s, self._transcribed_at_s = self._transcribed_at_s, self._listener.fed_s
        reading = await self._listener.reading_of_now(since_s=since_s, wait_s=self.options.note_wait_s)
        if reading is not None:
            frame.metadata[METADATA_KEY] = reading

    async def _annotate(self, context: Any) -> None:
        """Drops earlier turns' notes from an LLM context and adds this turn's (if it has a reading).

        Another LLM run in the same user turn (after a function call, say) keeps the turn's note as it is.
        """
        users = [m for m in context.messages if isinstance(m, dict) and m.get("role") == "user"]
        turn = users[-1] if users else None
        if turn is self._noted_turn:
            return
        self._noted_turn = turn
        readings = await self._listener.take_readings(wait_s=self.options.note_wait_s)
        kept = [m for m in context.messages if not (isinstance(m, dict) and is_turn_note(m.get("content")))]
        if len(kept) != len(context.messages):
            context.set_messages(kept)
        note = self._note(readings)
        if note is None:
            return
        if self.options.note_format == "rcs" and turn is not None and isinstance(turn.get("content"), str):
            # RCS: the perception heads the user's message, and stays with it in the history.
            if split_perception(turn["content"])[0] is None:
                turn["content"] = f"{note} {turn['content']}"
        else:
            context.add_message({"role": self.options.note_role, "content": note})

    def _note(self, readings: list[UtteranceReading]) -> str | None:
        """The note for a turn's readings, in the options' wording; None without a reading."""
        reading = turn_reading(readings, min_confidence=self._listener.min_confidence)
        return write_note(
            reading, format=self.options.note_format, operating_point=self._listener.operating_point,
            calibration=self._listener.calibration, random_weights=self._listener.random_weights, utterances=len(readings),
        )  # fmt: skip

    async def _realtime_turn_note(self) -> str | None:
        """The note for the turn that just ended, waiting up to `note_wait_s` for its reading."""
        readings = await self._listener.take_readings(wait_s=self.options.note_wait_s)
        return self._note(readings) if self.options.note else None


class _ContextNote(FrameProcessor):
    """Adds the turn's emotion note to each LLM context on its way to the LLM."""

    def __init__(self, perceiver: EmotionPerceiver, **kwargs: Any):
        super().__init__(**kwargs)
        self._perceiver = perceiver

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame) and direction == FrameDirection.DOWNSTREAM and self._perceiver.options.note:
            await self._perceiver._annotate(frame.context)
        await self.push_frame(frame, direction)


class _RealtimeNote(FrameProcessor):
    """Gives a realtime LLM service each turn's note, then asks it to answer the turn."""

    def __init__(self, perceiver: EmotionPerceiver, **kwargs: Any):
        super().__init__(**kwargs)
        self._perceiver = perceiver
        self._pending: set[asyncio.Task] = set()
        self.notes: list[str | None] = []  # each turn's note as it was handed on (None: the turn had no reading)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)  # first: audio and turn frames never wait for a reading
        if isinstance(frame, UserStoppedSpeakingFrame) and direction == FrameDirection.DOWNSTREAM:
            task = self.create_task(self._answer_turn(), name="emotion-realtime-note")
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _answer_turn(self) -> None:
        note = await self._perceiver._realtime_turn_note()
        self.notes.append(note)
        messages = [{"role": self._perceiver.options.note_role, "content": note}] if note is not None else []
        # The service sends the messages as conversation items; the assistant aggregator then pushes the
        # context back upstream, which creates the response: the note is in before the model answers.
        await self.push_frame(LLMMessagesAppendFrame(messages=messages, run_llm=True))

    async def cleanup(self) -> None:
        await super().cleanup()
        for task in list(self._pending):
            await self.cancel_task(task)


class _TranscriptTagger(FrameProcessor):
    """Attaches the matching reading to each final transcription frame's metadata."""

    def __init__(self, perceiver: EmotionPerceiver, **kwargs: Any):
        super().__init__(**kwargs)
        self._perceiver = perceiver

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):  # a data frame: audio (system frames) goes by while it waits
            await self._perceiver._tag(frame)
        await self.push_frame(frame, direction)
