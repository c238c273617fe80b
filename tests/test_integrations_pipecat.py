"""The Pipecat plugin in real Pipecat pipelines (the framework's runner and run_test), fed espeak-ng speech."""

from __future__ import annotations

import asyncio
import copy

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pipecat", reason="install the pipecat extra: pip install 'emotion-tool[pipecat]'")

from pipecat.audio.vad.silero import SileroVADAnalyzer  # noqa: E402
from pipecat.audio.vad.vad_analyzer import VADParams  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    InputAudioRawFrame,
    LLMContextFrame,
    TranscriptionFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import (  # noqa: E402
    LLMUserAggregator,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402
from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import (  # noqa: E402
    SpeechTimeoutUserTurnStopStrategy,
)
from pipecat.turns.user_turn_strategies import UserTurnStrategies  # noqa: E402

from emotion_tool.integrations.listener import PerceptionOptions  # noqa: E402
from emotion_tool.integrations.note import is_turn_note  # noqa: E402
from emotion_tool.integrations.pipecat import EmotionPerceiver, EmotionReadingFrame  # noqa: E402

from helpers import SENTENCES  # noqa: E402

FRAME_S = 0.02  # 20-ms frames, what transports send


def audio_frames(wav, rate: int, channels: int) -> list[InputAudioRawFrame]:
    pcm = np.round(np.clip(wav, -1, 1) * 32767).astype("<i2")
    if channels > 1:
        pcm = np.repeat(pcm[:, None], channels, axis=1)
    step = int(FRAME_S * rate)
    return [
        InputAudioRawFrame(audio=pcm[i : i + step].tobytes(), sample_rate=rate, num_channels=channels)
        for i in range(0, len(pcm), step)
    ]


def sentence_frames(sentences_wav, rate: int = 16000, channels: int = 1) -> list[list[InputAudioRawFrame]]:
    """The three sentences' audio as frames, cut in the middle of each pause: one list per sentence."""
    path, bounds = sentences_wav
    wav, sr = sf.read(path, dtype="float32")
    assert sr == 16000
    cuts = [0] + [int((bounds[i][1] + bounds[i + 1][0]) / 2 * sr) for i in range(len(bounds) - 1)] + [len(wav)]
    pieces = []
    for a, b in zip(cuts, cuts[1:]):
        piece = wav[a:b]
        if rate != sr:
            import soxr

            piece = soxr.resample(piece, sr, rate)
        pieces.append(audio_frames(piece, rate, channels))
    return pieces


class ScriptedSTT(FrameProcessor):
    """Stands for a speech-to-text service (a real one needs the network or its weights): says the
    next scripted sentence when the pipeline's VAD reports the end of speech, as STT services do."""

    def __init__(self, texts):
        super().__init__()
        self._texts = list(texts)
        self.sent: list[TranscriptionFrame] = []

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, VADUserStoppedSpeakingFrame) and self._texts:
            t = TranscriptionFrame(text=self._texts.pop(0), user_id="user", timestamp="", finalized=True)
            self.sent.append(t)
            await self.push_frame(t)


class RecordingLLM(FrameProcessor):
    """Stands for an LLM service: keeps a copy of the messages of every context it is asked to answer."""

    def __init__(self):
        super().__init__()
        self.runs: list[list[dict]] = []

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            self.runs.append(copy.deepcopy(frame.context.messages))
        await self.push_frame(frame, direction)


def run_pipeline(recognizer, sentences_wav, *, turns: str):
    """transport audio → perceiver → STT → tagger → user aggregator (Pipecat's VAD and turns) → note → LLM."""
    perceiver = EmotionPerceiver(recognizer, options=PerceptionOptions(turns=turns, note_wait_s=5.0))
    stt = ScriptedSTT(SENTENCES)
    llm = RecordingLLM()
    context = LLMContext(messages=[{"role": "system", "content": "You are a helpful voice assistant."}])
    user = LLMUserAggregator(
        context,
        params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.2)),
            user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.3)]),
        ),
    )
    pipeline = Pipeline([perceiver, stt, perceiver.transcript_tagger(), user, perceiver.context_note(), llm])
    sent: list[InputAudioRawFrame] = []
    to_send = []
    for piece in sentence_frames(sentences_wav):
        sent += piece
        # As a transport does: in real time (the turn strategies time the end of a turn on the wall clock).
        for f in piece:
            to_send += [f, SleepFrame(sleep=FRAME_S)]
        to_send.append(SleepFrame(sleep=1.5))  # the bot's turn: the reading has time to come before the user speaks again
    down, _ = asyncio.run(run_test(pipeline, frames_to_send=to_send))
    return perceiver, stt, llm, context, sent, down


@pytest.mark.parametrize("turns", ["segmenter", "auto"])
def test_pipeline_reads_each_utterance_passes_audio_and_notes_the_llm(recognizer, sentences_wav, turns):
    perceiver, stt, llm, context, sent, down = run_pipeline(recognizer, sentences_wav, turns=turns)

    # Every audio frame reaches the end of the pipeline: the same frames, unchanged, in order.
    passed = [f for f in down if isinstance(f, InputAudioRawFrame)]
    assert [f.id for f in passed] == [f.id for f in sent]
    assert all(p is s and p.audio == s.audio for p, s in zip(passed, sent))

    # One reading per utterance, in stream order, where the sentences are.
    readings = [f for f in down if isinstance(f, EmotionReadingFrame)]
    assert len(readings) == len(SENTENCES) == len(perceiver.trace)
    _, bounds = sentences_wav
    for frame, (start_s, end_s) in zip(readings, bounds):
        u = frame.utterance
        assert u.start_s < start_s + 0.3 and u.end_s > end_s - 0.3, (u, start_s, end_s)
        assert frame.random_weights and frame.operating_point == "published"
        assert frame.dropped_s == 0.0 and u.latency_s >= 0.0
    assert [f.utterance.index for f in readings] == [0, 1, 2]
    assert perceiver.stats.utterances == 3 and perceiver.stats.dropped_s == 0.0
    assert len(perceiver.stats.latencies_s) == 3
    assert perceiver.stats.turns == ("pipeline" if turns == "auto" else "segmenter")  # auto follows Pipecat's turns

    # Each transcription carries the reading of its own utterance.
    assert [t.metadata.get("emotion") for t in stt.sent] == [f.utterance for f in readings]

    # The LLM ran once per turn, with exactly one note: this turn's reading; earlier notes are gone.
    assert len(llm.runs) == len(SENTENCES)
    for run, frame, text in zip(llm.runs, readings, SENTENCES):
        notes = [m for m in run if is_turn_note(m.get("content"))]
        assert len(notes) == 1, run
        assert notes[0]["role"] == "system"
        assert frame.utterance.reading.describe() in notes[0]["content"]
        assert "random test weights" in notes[0]["content"]
        assert run[-2]["role"] == "user" and text in run[-2]["content"]  # the note follows the user's words
    assert sum(is_turn_note(m.get("content")) for m in context.messages) == 1


def test_stereo_frames_at_48k_without_a_vad_give_the_same_utterances(recognizer, sentences_wav):
    from pipecat.frames.frames import MetricsFrame
    from pipecat.pipeline.worker import PipelineParams

    perceiver = EmotionPerceiver(recognizer)  # "auto" with no turn frames: the engine's segmenter alone
    frames = [f for piece in sentence_frames(sentences_wav, rate=48000, channels=2) for f in piece]
    down, _ = asyncio.run(run_test(perceiver, frames_to_send=frames, pipeline_params=PipelineParams(enable_metrics=True)))
    latencies = [m.data[0] for m in down if isinstance(m, MetricsFrame) and m.data and m.data[0].processor == perceiver.name]
    assert [m.value for m in latencies] == perceiver.stats.latencies_s and latencies[0].model == "published"
    assert [f for f in down if isinstance(f, InputAudioRawFrame)] == frames
    readings = [f.utterance for f in down if isinstance(f, EmotionReadingFrame)]
    assert len(readings) == len(SENTENCES)
    _, bounds = sentences_wav
    for u, (start_s, end_s) in zip(readings, bounds):
        assert u.start_s < start_s + 0.3 and u.end_s > end_s - 0.3


def test_no_note_without_a_reading_and_stale_notes_are_dropped(recognizer):
    """A text-only turn (no audio): the earlier note goes, and no new one is made up."""
    from emotion_tool.integrations.note import NOTE_PREFIX

    perceiver = EmotionPerceiver(recognizer, options=PerceptionOptions(note_wait_s=0.0))
    llm = RecordingLLM()
    context = LLMContext(
        messages=[
            {"role": "user", "content": "hello"},
            {"role": "system", "content": f"{NOTE_PREFIX} an earlier turn's note"},
            {"role": "user", "content": "typed, not spoken"},
        ]
    )
    asyncio.run(run_test(Pipeline([perceiver, perceiver.context_note(), llm]), frames_to_send=[LLMContextFrame(context=context)]))
    assert llm.runs == [[{"role": "user", "content": "hello"}, {"role": "user", "content": "typed, not spoken"}]]
