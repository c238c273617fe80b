"""The LiveKit Agents plugin with the framework's own rtc.AudioFrame, llm.ChatContext and Agent types."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("livekit.agents", reason="install the livekit extra: pip install 'emotion-tool[livekit]'")

from livekit import rtc  # noqa: E402
from livekit.agents import Agent, AgentSession, APIConnectOptions, llm, stt  # noqa: E402
from livekit.agents.voice import io as voice_io  # noqa: E402

from emotion_tool.integrations.livekit import LiveKitEmotion  # noqa: E402
from emotion_tool.integrations.note import NOTE_PREFIX, is_turn_note  # noqa: E402

from helpers import SENTENCES  # noqa: E402

RATE = 48000  # what a LiveKit room carries


def sentence_frames(sentences_wav, channels: int) -> list[list[rtc.AudioFrame]]:
    """Each sentence (and half the pauses around it) as 10-ms rtc.AudioFrames at 48 kHz."""
    import soxr

    path, bounds = sentences_wav
    wav, sr = sf.read(path, dtype="float32")
    cuts = [0] + [int((bounds[i][1] + bounds[i + 1][0]) / 2 * sr) for i in range(len(bounds) - 1)] + [len(wav)]
    pieces = []
    for a, b in zip(cuts, cuts[1:]):
        pcm = np.round(np.clip(soxr.resample(wav[a:b], sr, RATE), -1, 1) * 32767).astype("<i2")
        pcm = np.repeat(pcm[:, None], channels, axis=1)
        step = RATE // 100
        pieces.append(
            [
                rtc.AudioFrame(pcm[i : i + step].tobytes(), RATE, channels, len(pcm[i : i + step]))
                for i in range(0, len(pcm), step)
            ]
        )
    return pieces


async def turn_by_turn(pieces, turn_over: asyncio.Queue, next_turn: asyncio.Event):
    """The frames of each turn, then a word on `turn_over`, waiting for `next_turn` before the next one."""
    for piece in pieces:
        for frame in piece:
            yield frame
        await turn_over.put(None)
        await next_turn.wait()
        next_turn.clear()


class Assistant(Agent):
    """An agent wired the way the README says."""

    def __init__(self, emotion: LiveKitEmotion):
        super().__init__(instructions="You are a helpful voice assistant.")
        self.emotion = emotion

    async def on_user_turn_completed(self, turn_ctx: llm.ChatContext, new_message: llm.ChatMessage) -> None:
        await self.emotion.on_user_turn_completed(turn_ctx, new_message)


@pytest.mark.parametrize("channels", [1, 2])
def test_each_user_turn_is_read_and_noted_before_the_llm(recognizer, sentences_wav, channels):
    pieces = sentence_frames(sentences_wav, channels)

    async def main():
        emotion = LiveKitEmotion(recognizer)
        agent = Assistant(emotion)
        turn_over, next_turn = asyncio.Queue(), asyncio.Event()

        def microphone():  # the user's audio as the agent's STT input receives it, turn by turn
            return turn_by_turn(pieces, turn_over, next_turn)

        seen: list[rtc.AudioFrame] = []

        async def stt():  # what Agent.default.stt_node does with the teed stream: consume it
            try:
                async for frame in emotion.tee(microphone()):
                    seen.append(frame)
            except Exception as e:  # handed to the test's side, which would wait for the turn forever
                await turn_over.put(e)

        task = asyncio.create_task(stt())
        chat = llm.ChatContext()
        chat.add_message(role="system", content="You are a helpful voice assistant.")
        contexts, messages = [], []
        for text in SENTENCES:
            if isinstance(got := await turn_over.get(), Exception):
                raise got
            turn_ctx = chat.copy()  # LiveKit hands the hook a copy of the agent's context
            message = llm.ChatMessage(role="user", content=[text])
            await agent.on_user_turn_completed(turn_ctx, message)
            contexts.append(turn_ctx)
            messages.append(message)
            chat.add_message(role="user", content=text)
            # A stale note left in the agent's context (say, by an earlier update_chat_ctx) must go.
            chat.add_message(role="system", content=f"{NOTE_PREFIX} an earlier turn's note")
            next_turn.set()
        await task
        await emotion.aclose()
        return emotion, seen, contexts, messages

    emotion, seen, contexts, messages = asyncio.run(main())

    sent = [f for piece in pieces for f in piece]
    assert len(seen) == len(sent) and all(a is b for a, b in zip(seen, sent))  # every frame, unchanged, in order
    assert len(emotion.trace) == len(SENTENCES) and emotion.stats.utterances == len(SENTENCES)
    assert emotion.stats.dropped_s == 0.0
    _, bounds = sentences_wav
    for u, (start_s, end_s) in zip(emotion.trace, bounds):
        assert u.start_s < start_s + 0.3 and u.end_s > end_s - 0.3, (u, start_s, end_s)
    for ctx, message, u in zip(contexts, messages, emotion.trace):
        notes = [m for m in ctx.messages() if is_turn_note(m.text_content)]
        assert len(notes) == 1 and notes[0].role == "system"
        assert u.reading.describe() in notes[0].text_content
        assert message.extra["emotion"]["utterance"] == u.model_dump(mode="json")
        assert message.extra["emotion"]["operating_point"] == "published" and message.extra["emotion"]["random_weights"]


def test_a_turn_without_speech_gets_no_note(recognizer):
    async def main():
        emotion = LiveKitEmotion(recognizer)
        silence = rtc.AudioFrame(bytes(2 * 480), RATE, 1, 480)

        async def microphone():
            for _ in range(100):
                yield silence

        async for _ in emotion.tee(microphone()):
            pass
        ctx = llm.ChatContext()
        ctx.add_message(role="system", content=f"{NOTE_PREFIX} stale")
        msg = llm.ChatMessage(role="user", content=["typed"])
        reading = await emotion.on_user_turn_completed(ctx, msg)
        await emotion.aclose()
        return reading, ctx, msg

    reading, ctx, msg = asyncio.run(main())
    assert reading is None and "emotion" not in msg.extra
    assert not any(is_turn_note(m.text_content) for m in ctx.messages())


class ConsumingSTT(stt.STT):
    """Stands for a streaming STT service (a real one needs the network): takes the audio, says nothing."""

    def __init__(self):
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=False))

    async def _recognize_impl(self, buffer, *, language=None, conn_options=None):
        raise NotImplementedError("streaming only")

    def stream(self, *, language=None, conn_options=APIConnectOptions()):
        return _ConsumingStream(stt=self, conn_options=conn_options)


class _ConsumingStream(stt.RecognizeStream):
    async def _run(self):
        async for _ in self._input_ch:
            pass


class FileInput(voice_io.AudioInput):
    """The session's audio input: the frames given, then nothing more."""

    def __init__(self, frames):
        super().__init__(label="file")
        self._frames = list(frames)

    async def __anext__(self):
        if not self._frames:
            await asyncio.sleep(3600)  # a microphone that went quiet
        await asyncio.sleep(0.001)
        return self._frames.pop(0)


class TeeingAssistant(Assistant):
    """The README's agent: `stt_node` tees the user's audio on its way to the STT."""

    def stt_node(self, audio, model_settings):
        return Agent.default.stt_node(self, self.emotion.tee(audio), model_settings)


def test_the_agents_stt_node_tees_the_audio_in_a_running_session(tiny_checkpoint, recognizer, sentences_wav, tmp_path):
    """A real AgentSession calls the Agent's stt_node with the user's audio; the plugin reads it (with a calibration, named)."""
    from emotion_tool import EmotionRecognizer

    from test_integrations_listener import save_test_calibration

    calibrated = EmotionRecognizer.from_pretrained(
        tiny_checkpoint, device="cpu", calibration=save_test_calibration(recognizer, tmp_path / "cal.json")
    )
    frames = [f for piece in sentence_frames(sentences_wav, 1) for f in piece]
    total_s = sum(f.samples_per_channel for f in frames) / RATE

    async def main():
        emotion = LiveKitEmotion(calibrated)
        session = AgentSession(stt=ConsumingSTT())
        session.input.audio = FileInput(frames)
        await session.start(TeeingAssistant(emotion))
        try:
            async with asyncio.timeout(120):
                while emotion._listener.fed_s < total_s - 0.05:  # every frame has come through stt_node
                    await asyncio.sleep(0.05)
        finally:
            await session.aclose()
        message = llm.ChatMessage(role="user", content=["..."])
        reading = await emotion.on_user_turn_completed(llm.ChatContext(), message)
        await emotion.aclose()
        return emotion, reading, message

    emotion, reading, message = asyncio.run(main())
    _, bounds = sentences_wav
    assert len(emotion.trace) == len(SENTENCES)  # each sentence read, from the audio the session handed stt_node
    for u, (start_s, end_s) in zip(emotion.trace, bounds):
        assert u.start_s < start_s + 0.3 and u.end_s > end_s - 0.3, (u, start_s, end_s)
    assert message.extra["emotion"]["utterances"] == len(SENTENCES) and reading.start_s == emotion.trace[0].start_s
    assert message.extra["emotion"]["calibration"] == calibrated.info().calibration.model_dump(mode="json")
    assert message.extra["emotion"]["calibration"]["source"] == "cal.json"


def test_a_frame_with_a_bad_sample_rate_is_skipped_counted_and_the_audio_after_it_read(recognizer, sentences_wav):
    """A frame at 1 Hz and one at 0 Hz (which once raised ZeroDivisionError in the tee) in the middle
    of the first sentence: the tee yields them on, counts them, and reads every sentence."""
    first, second, third = sentence_frames(sentences_wav, 1)
    bad = [rtc.AudioFrame(bytes(2 * 480), rate, 1, 480) for rate in (1, 0)]
    middle = len(first) * 2 // 3
    sent = [*first[:middle], *bad, *first[middle:], *second, *third]

    async def main():
        emotion = LiveKitEmotion(recognizer)

        async def microphone():
            for frame in sent:
                yield frame

        seen = [frame async for frame in emotion.tee(microphone())]
        await emotion.aclose()
        return emotion, seen

    emotion, seen = asyncio.run(main())
    assert len(seen) == len(sent) and all(a is b for a, b in zip(seen, sent))
    assert emotion.stats.bad_frames == 2 and "sample_rate=0" in emotion.stats.last_bad_frame
    assert len(emotion.trace) == len(SENTENCES) and emotion.stats.errors == []
    _, bounds = sentences_wav
    for u, (start_s, end_s) in zip(emotion.trace, bounds):
        assert u.start_s < start_s + 0.3 and u.end_s > end_s - 0.3, (u, start_s, end_s)


def test_a_refining_plugin_notes_the_fast_reading_and_keeps_the_faithful_one(tiny_checkpoint, recognizer, sentences_wav):
    """The faithful readings are held until every turn is noted: each note and `extra["emotion"]` hold the
    fast reading and say so; after `aclose` the trace holds the faithful readings."""
    from emotion_tool import EmotionRecognizer
    from helpers import HeldRecognizer

    fast = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="trimmed")
    faithful = HeldRecognizer(recognizer)
    pieces = sentence_frames(sentences_wav, 1)

    async def main():
        emotion = LiveKitEmotion(fast, refine_with=faithful)
        agent = Assistant(emotion)
        turn_over, next_turn = asyncio.Queue(), asyncio.Event()

        def microphone():
            return turn_by_turn(pieces, turn_over, next_turn)

        async def consume():
            async for _ in emotion.tee(microphone()):
                pass

        task = asyncio.create_task(consume())
        contexts, messages = [], []
        for text in SENTENCES:
            await turn_over.get()
            ctx, message = llm.ChatContext(), llm.ChatMessage(role="user", content=[text])
            await agent.on_user_turn_completed(ctx, message)
            contexts.append(ctx)
            messages.append(message)
            next_turn.set()
        await task
        faithful.go.set()
        await emotion.aclose()  # reads what is left, the faithful readings included
        return emotion, contexts, messages

    try:
        emotion, contexts, messages = asyncio.run(main())
    finally:
        faithful.go.set()
    for ctx, message in zip(contexts, messages):
        (note,) = [m.text_content for m in ctx.messages() if is_turn_note(m.text_content)]
        assert "fast first reading (operating point trimmed)" in note
        held = message.extra["emotion"]
        assert held["operating_point"] == "trimmed" and held["utterance"]["refined"] is False
    assert [(u.index, u.operating_point, u.refined) for u in emotion.trace] == [(i, "published", True) for i in range(len(SENTENCES))]
    assert emotion.stats.refined == len(SENTENCES)
