"""The voice plugins beside realtime speech-to-speech models: Pipecat's `OpenAIRealtimeLLMService` and
LiveKit's `openai.realtime.RealtimeModel`, unchanged, over a real WebSocket to the local stand-in for
the OpenAI Realtime API (`emotion_tool.integrations.fake_realtime`), fed espeak-ng speech in real time.

What each test asks of the model's side: every user turn's note is in the conversation before the
response to that turn is created, and describes that turn's reading; a turn whose reading does not come
within `note_wait_s` is answered without one; the audio reaches the model while no reading can be made.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
import soundfile as sf

from emotion_tool.integrations.fake_realtime import FakeRealtimeServer, FakeRealtimeSession, item_text
from emotion_tool.integrations.listener import PerceptionOptions
from emotion_tool.integrations.note import is_turn_note, split_perception
from helpers import SENTENCES, HeldRecognizer

HANG_S = 240  # a run that waits on something that never comes fails instead of hanging the suite


def turn_notes(session: FakeRealtimeSession) -> list[tuple[list[str], str]]:
    """For each response to a user turn: (the notes that came after that turn's audio, the response's trigger)."""
    out = []
    for response in session.responses:
        users = [k for k, i in enumerate(response.items_before) if i.get("role") == "user" and not item_text(i)]
        if not users:
            continue  # the bot's greeting: no user turn yet
        after = response.items_before[users[-1] + 1 :]
        out.append(([item_text(i) for i in after if is_turn_note(item_text(i))], response.trigger))
    return out


def user_turn_responses(session: FakeRealtimeSession) -> list:
    return [r for r in session.responses if any(i.get("role") == "user" and not item_text(i) for i in r.items_before)]


def check_each_note_precedes_its_response(session: FakeRealtimeSession, trace, *, note_format: str = "prose") -> None:
    assert len(trace) == len(SENTENCES)
    noted = turn_notes(session)
    assert len(noted) == len(SENTENCES), noted
    for (notes, trigger), u in zip(noted, trace):
        assert trigger == "client"  # the model did not answer on its own: the reply was asked for after the note
        assert len(notes) == 1, notes  # this turn's note, right after its audio, before the response
        if note_format == "rcs":
            perception, rest = split_perception(notes[0])
            assert perception is not None and rest == ""
            assert f"[voice_emotion {u.reading.label}={u.reading.confidence:.2f}" in perception
        else:
            assert u.reading.describe() in notes[0]
    for r in user_turn_responses(session):  # and the note was in before the response was created
        note_ids = [i["id"] for i in r.items_before if is_turn_note(item_text(i))]
        assert all(session.item_times[n] <= r.created_at for n in note_ids)


# --- Pipecat ---------------------------------------------------------------------------------------------


def pipecat_run(recognizer, sentences_wav, *, options: PerceptionOptions, release=None):
    """transport audio -> perceiver -> user aggregator -> realtime note -> OpenAIRealtimeLLMService -> assistant aggregator."""
    pytest.importorskip("pipecat", reason="install the pipecat extra")
    from pipecat.frames.frames import LLMRunFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
    from pipecat.services.openai.realtime import events
    from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
    from pipecat.tests.utils import SleepFrame, run_test

    from emotion_tool.integrations.pipecat import EmotionPerceiver
    from test_integrations_pipecat import FRAME_S, sentence_frames

    sent = [f for piece in sentence_frames(sentences_wav) for f in piece]
    total_s = sum(len(f.audio) // 2 for f in sent) / 16000

    async def main():
        def on_event(session, event):  # lets held readings go once the model has all the audio
            if release is not None and session.audio_s >= total_s - 0.05:
                release()

        async with FakeRealtimeServer(on_event=on_event) as server:
            perceiver = EmotionPerceiver(recognizer, options=options)
            llm = OpenAIRealtimeLLMService(
                api_key="sk-local",
                base_url=server.url,
                settings=OpenAIRealtimeLLMService.Settings(
                    system_instruction="You are a helpful voice assistant.",
                    session_properties=events.SessionProperties(
                        audio=events.AudioConfiguration(
                            input=events.AudioInput(turn_detection=events.SemanticTurnDetection(create_response=False))
                        )
                    ),
                ),
            )
            aggregators = LLMContextAggregatorPair(LLMContext())
            note = perceiver.realtime_note()
            pipeline = Pipeline([perceiver, aggregators.user(), note, llm, aggregators.assistant()])
            frames = [LLMRunFrame(), SleepFrame(sleep=0.5)]  # the bot speaks first, as realtime bots do
            for f in sent:  # as a transport sends them: in real time
                frames += [f, SleepFrame(sleep=FRAME_S)]
            frames.append(SleepFrame(sleep=2.0))  # the last turn's reply
            down, _ = await asyncio.wait_for(run_test(pipeline, frames_to_send=frames), HANG_S)
            return perceiver, note, server.sessions[0], down

    perceiver, note, session, down = asyncio.run(main())
    return perceiver, note, session, down, sent, total_s


@pytest.mark.parametrize("note_format", ["prose", "rcs"])
def test_pipecat_realtime_each_turns_note_reaches_the_model_before_its_response(recognizer, sentences_wav, note_format):
    from pipecat.frames.frames import InputAudioRawFrame

    perceiver, note, session, down, sent, total_s = pipecat_run(
        recognizer, sentences_wav, options=PerceptionOptions(note_wait_s=5.0, note_format=note_format)
    )
    passed = [f for f in down if isinstance(f, InputAudioRawFrame)]
    assert [f.id for f in passed] == [f.id for f in sent]  # every frame went on, unchanged, in order
    assert session.audio_s == pytest.approx(total_s, abs=0.05)  # and all of it reached the model
    assert len(session.turns) == len(SENTENCES) and perceiver.stats.turns == "pipeline"  # the model's turn events cut the utterances
    _, bounds = sentences_wav
    for u, (start_s, end_s) in zip(perceiver.trace, bounds):
        assert u.start_s < start_s + 0.3 and u.end_s > end_s - 0.3, (u, start_s, end_s)
    check_each_note_precedes_its_response(session, perceiver.trace, note_format=note_format)
    assert note.notes == [n[0] for n, _ in turn_notes(session)]  # what the processor sent is what the model holds
    assert all(i.get("role") == "system" for r in session.responses for i in r.items_before if is_turn_note(item_text(i)))


def test_pipecat_realtime_turn_without_a_reading_is_answered_without_one(recognizer, sentences_wav):
    held = HeldRecognizer(recognizer)
    try:
        perceiver, note, session, down, sent, total_s = pipecat_run(
            held, sentences_wav, options=PerceptionOptions(note_wait_s=0.3), release=held.go.set
        )
    finally:
        held.go.set()
    assert session.audio_s == pytest.approx(total_s, abs=0.05)  # all the audio reached the model while no reading could be made
    noted = turn_notes(session)
    assert [trigger for _, trigger in noted] == ["client"] * len(SENTENCES)  # each turn was answered ...
    assert all(notes == [] for notes, _ in noted) and note.notes == [None] * len(SENTENCES)  # ... without a note
    assert len(perceiver.trace) == len(SENTENCES)  # the readings came in the end


# --- LiveKit ---------------------------------------------------------------------------------------------


def livekit_frames(sentences_wav) -> list:
    from livekit import rtc

    wav, sr = sf.read(sentences_wav[0], dtype="float32")
    pcm = np.round(np.clip(wav, -1, 1) * 32767).astype("<i2")
    step = sr // 100
    return [rtc.AudioFrame(pcm[i : i + step].tobytes(), sr, 1, len(pcm[i : i + step])) for i in range(0, len(pcm), step)]


def livekit_run(recognizer, sentences_wav, *, mode: str, options: PerceptionOptions, release=None, responses: int = len(SENTENCES)):
    """An AgentSession on the RealtimeModel, its audio input a file in real time; `mode` says who ends turns:
    "model" (server turn detection that does not answer, the session in manual mode), "vad" (LiveKit's
    VAD, the model's turn detection off) or "model-answers" (the model's default)."""
    pytest.importorskip("livekit.plugins.openai", reason="install livekit-plugins-openai (the dev extra has it)")
    from livekit.agents import Agent, AgentSession, TurnHandlingOptions, inference
    from livekit.agents.voice import io as voice_io
    from livekit.plugins.openai.realtime import RealtimeModel
    from openai.types.realtime.realtime_audio_input_turn_detection import ServerVad

    from emotion_tool.integrations.livekit import LiveKitEmotion

    frames = livekit_frames(sentences_wav)
    total_s = sum(f.samples_per_channel for f in frames) / frames[0].sample_rate

    class FileInput(voice_io.AudioInput):
        """The session's audio input: the frames in real time, then a microphone gone quiet."""

        def __init__(self):
            super().__init__(label="file")
            self.pending = list(frames)
            self.t0: float | None = None
            self.k = 0

        async def __anext__(self):
            if not self.pending:
                await asyncio.sleep(3600)
            loop = asyncio.get_running_loop()
            self.t0 = loop.time() if self.t0 is None else self.t0
            self.k += 1
            await asyncio.sleep(max(0.0, self.t0 + self.k * 0.01 - loop.time()))
            return self.pending.pop(0)

    class Assistant(Agent):
        def __init__(self, emotion):
            super().__init__(instructions="You are a helpful voice assistant.")
            self.emotion = emotion

        async def on_enter(self):
            self.emotion.listen(self)

        async def on_user_turn_completed(self, turn_ctx, new_message):
            await self.emotion.on_user_turn_completed(turn_ctx, new_message)

    async def main():
        def on_event(session, event):
            if release is not None and session.audio_s >= total_s - 0.15:  # the last, partial 100-ms chunk may stay in LiveKit's buffer
                release()

        async with FakeRealtimeServer(on_event=on_event) as server:
            if mode == "model":
                model = RealtimeModel(api_key="sk-local", base_url=server.url,
                                      turn_detection=ServerVad(type="server_vad", create_response=False, interrupt_response=False))  # fmt: skip
                session = AgentSession(llm=model, turn_handling=TurnHandlingOptions(turn_detection="manual"))
            elif mode == "vad":
                model = RealtimeModel(api_key="sk-local", base_url=server.url, turn_detection=None)
                session = AgentSession(llm=model, vad=inference.VAD(), turn_handling=TurnHandlingOptions(turn_detection="vad"))
            else:
                model = RealtimeModel(api_key="sk-local", base_url=server.url)
                session = AgentSession(llm=model)
            emotion = LiveKitEmotion(recognizer, options=options)
            source = FileInput()
            session.input.audio = source
            await session.start(Assistant(emotion))
            try:
                async with asyncio.timeout(HANG_S):
                    while source.pending or len(user_turn_responses(server.sessions[0])) < responses or any(
                        r.done_at is None for r in server.sessions[0].responses
                    ):
                        await asyncio.sleep(0.05)
            finally:
                await session.aclose()
                await emotion.aclose()
                await model.aclose()
            return emotion, server.sessions[0], session

    emotion, fake, session = asyncio.run(main())
    return emotion, fake, session, total_s


@pytest.mark.parametrize("mode", ["model", "vad"])
def test_livekit_realtime_each_turns_note_reaches_the_model_before_its_response(recognizer, sentences_wav, mode):
    emotion, fake, session, total_s = livekit_run(recognizer, sentences_wav, mode=mode, options=PerceptionOptions(note_wait_s=5.0))
    # The tap passed every frame on to the model (LiveKit's realtime session sends 100-ms chunks and may
    # still hold the last, partial one when the session closes).
    assert total_s - 0.15 <= fake.audio_s <= total_s + 0.01
    assert emotion.stats.turns == ("pipeline" if mode == "model" else "segmenter")  # the model's turns, where it sends them
    _, bounds = sentences_wav
    for u, (start_s, end_s) in zip(emotion.trace, bounds):
        assert u.start_s < start_s + 0.3 and u.end_s > end_s - 0.3, (u, start_s, end_s)
    # With the model's turn detection off, LiveKit's VAD ended the turns and the model sent no turn events.
    assert len(fake.turns) == (len(SENTENCES) if mode == "model" else 0)
    check_each_note_precedes_its_response(fake, emotion.trace)
    assert emotion.notes == [n[0] for n, _ in turn_notes(fake)]


def test_livekit_realtime_turn_without_a_reading_is_answered_without_one(recognizer, sentences_wav):
    held = HeldRecognizer(recognizer)
    try:
        emotion, fake, _, total_s = livekit_run(
            held, sentences_wav, mode="model", options=PerceptionOptions(note_wait_s=0.3), release=held.go.set
        )
    finally:
        held.go.set()
    assert fake.audio_s >= total_s - 0.15  # the audio reached the model while no reading could be made (held.go came from it)
    noted = turn_notes(fake)
    assert [trigger for _, trigger in noted] == ["client"] * len(SENTENCES) and all(n == [] for n, _ in noted)
    assert emotion.notes == [None] * len(SENTENCES)


def test_livekit_realtime_model_that_answers_by_itself_gets_no_late_notes(recognizer, sentences_wav, caplog):
    with caplog.at_level(logging.WARNING, logger="emotion_tool.integrations"):
        emotion, fake, _, _ = livekit_run(recognizer, sentences_wav, mode="model-answers", options=PerceptionOptions(note_wait_s=1.0))
    assert "answers each turn by itself" in caplog.text
    noted = turn_notes(fake)
    assert [trigger for _, trigger in noted] == ["turn_detection"] * len(SENTENCES)  # the server answered each turn ...
    assert all(n == [] for n, _ in noted)  # ... and was never handed a note after its reply began
    assert len(emotion.trace) == len(SENTENCES)  # the audio was read all the same
