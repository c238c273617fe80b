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
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import (  # noqa: E402
    LLMUserAggregator,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402
from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import (  # noqa: E402
    SpeechTimeoutUserTurnStopStrategy,
)
from pipecat.turns.user_turn_strategies import UserTurnStrategies  # noqa: E402

from emotion_tool.integrations.listener import PerceptionOptions  # noqa: E402
from emotion_tool.integrations.note import is_turn_note  # noqa: E402
from emotion_tool.integrations.pipecat import EmotionPerceiver, EmotionReadingFrame  # noqa: E402

from helpers import SENTENCES, HeldRecognizer  # noqa: E402

FRAME_S = 0.02  # 20-ms frames, what transports send
HANG_S = 240  # a pipeline that waits on something that never comes fails instead of hanging the suite


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

    def __init__(self, on_run=None):
        super().__init__()
        self.runs: list[list[dict]] = []
        self._on_run = on_run

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            self.runs.append(copy.deepcopy(frame.context.messages))
            if self._on_run is not None:
                self._on_run()
        await self.push_frame(frame, direction)


class Recorder(FrameProcessor):
    """Notes what the next processor sees, at the moment it sees it: each transcription's reading, and the audio."""

    def __init__(self, on_audio=None):
        super().__init__()
        self.tags: list[object] = []  # metadata["emotion"] of each transcription as it arrived
        self.audio: list[InputAudioRawFrame] = []
        self._on_audio = on_audio

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            self.tags.append(frame.metadata.get("emotion"))
        elif isinstance(frame, InputAudioRawFrame):
            self.audio.append(frame)
            if self._on_audio is not None:
                self._on_audio(self)
        await self.push_frame(frame, direction)


def run_pipeline(
    recognizer, sentences_wav, *, turns: str, note_wait_s: float = 5.0, recorder=None, llm=None, gaps_s: float = 1.5, refine_with=None
):
    """transport audio → perceiver → STT → tagger → (recorder) → user aggregator (Pipecat's VAD and turns) → note → LLM."""
    perceiver = EmotionPerceiver(recognizer, options=PerceptionOptions(turns=turns, note_wait_s=note_wait_s), refine_with=refine_with)
    stt = ScriptedSTT(SENTENCES)
    llm = llm or RecordingLLM()
    recorder = recorder or Recorder()
    context = LLMContext(messages=[{"role": "system", "content": "You are a helpful voice assistant."}])
    user = LLMUserAggregator(
        context,
        params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.2)),
            user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.3)]),
        ),
    )
    pipeline = Pipeline([perceiver, stt, perceiver.transcript_tagger(), recorder, user, perceiver.context_note(), llm])
    sent: list[InputAudioRawFrame] = []
    to_send = []
    for piece in sentence_frames(sentences_wav):
        sent += piece
        # As a transport does: in real time (the turn strategies time the end of a turn on the wall clock).
        for f in piece:
            to_send += [f, SleepFrame(sleep=FRAME_S)]
        to_send.append(SleepFrame(sleep=gaps_s))  # the bot's turn: the reading has time to come before the user speaks again
    down, _ = asyncio.run(asyncio.wait_for(run_test(pipeline, frames_to_send=to_send), timeout=HANG_S))
    return perceiver, stt, llm, context, sent, down, recorder


@pytest.mark.parametrize("turns", ["segmenter", "auto"])
def test_pipeline_reads_each_utterance_passes_audio_and_notes_the_llm(recognizer, sentences_wav, turns):
    perceiver, stt, llm, context, sent, down, recorder = run_pipeline(recognizer, sentences_wav, turns=turns)

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

    # Each transcription carries the reading of its own utterance, already when the next processor gets it.
    assert recorder.tags == [f.utterance for f in readings]
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


def _turn_frames(piece):
    """One spoken user turn as the user aggregator announces it (turns="pipeline")."""
    return [UserStartedSpeakingFrame(), *piece, UserStoppedSpeakingFrame()]


def test_a_slow_recognizer_holds_back_no_audio(recognizer, sentences_wav):
    """Readings gated until every audio frame has gone through: the frames still pass, in order, and no
    transcription or LLM run is tagged with a reading that is not its own (they get none)."""
    held = HeldRecognizer(recognizer)
    total = sum(len(piece) for piece in sentence_frames(sentences_wav))

    def on_audio(recorder):  # lets the readings go once all the audio has reached the aggregator
        if len(recorder.audio) == total:
            held.go.set()

    try:
        perceiver, _, llm, _, sent, down, recorder = run_pipeline(
            held, sentences_wav, turns="auto", note_wait_s=0.3, recorder=Recorder(on_audio), gaps_s=1.0
        )
    finally:
        held.go.set()
    assert [f.id for f in recorder.audio] == [f.id for f in sent]  # all of it, in order, while no reading could be made
    assert [f.id for f in down if isinstance(f, InputAudioRawFrame)] == [f.id for f in sent]
    assert recorder.tags == [None] * len(SENTENCES)  # no reading was ready in time: none, never an earlier one
    assert len(llm.runs) == len(SENTENCES) and not any(is_turn_note(m.get("content")) for run in llm.runs for m in run)
    assert len(perceiver.trace) == len(SENTENCES)  # the readings came in the end (read at the EndFrame)


def test_the_llm_runs_without_a_note_while_its_reading_is_held_and_gets_no_stale_one(recognizer, sentences_wav):
    held = HeldRecognizer(recognizer)
    perceiver = EmotionPerceiver(held, options=PerceptionOptions(turns="pipeline", note_wait_s=0.2))
    context = LLMContext(messages=[{"role": "user", "content": SENTENCES[0]}])

    def on_run():
        if len(llm.runs) == 1:  # the first turn's LLM run came while its reading was held: now let it go
            held.go.set()
            context.add_message({"role": "assistant", "content": "I see."})
            context.add_message({"role": "user", "content": "typed, not spoken"})

    llm = RecordingLLM(on_run)
    first = sentence_frames(sentences_wav)[0]
    frames = [*_turn_frames(first), LLMContextFrame(context=context), SleepFrame(sleep=2.0), LLMContextFrame(context=context)]
    try:
        asyncio.run(asyncio.wait_for(run_test(Pipeline([perceiver, perceiver.context_note(), llm]), frames_to_send=frames), HANG_S))
    finally:
        held.go.set()
    assert len(llm.runs) == 2
    assert not any(is_turn_note(m.get("content")) for run in llm.runs for m in run)  # held: none; next turn: not the late one
    assert len(perceiver.trace) == 1  # the held reading did come, between the two runs


def test_a_second_llm_run_in_the_same_turn_keeps_the_turns_note(recognizer, sentences_wav):
    """After a function call the LLM runs again on the same user turn: the note stays until the next turn."""
    perceiver = EmotionPerceiver(recognizer, options=PerceptionOptions(turns="pipeline", note_wait_s=10.0))
    context = LLMContext(messages=[{"role": "user", "content": SENTENCES[0]}])
    call = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}

    def on_run():
        if len(llm.runs) == 1:  # the LLM asks for a function; its result goes in, and the LLM runs again
            context.add_message({"role": "assistant", "content": None, "tool_calls": [call]})
            context.add_message({"role": "tool", "tool_call_id": "call_1", "content": "12:00"})
        elif len(llm.runs) == 2:
            context.add_message({"role": "assistant", "content": "It is noon."})
            context.add_message({"role": "user", "content": SENTENCES[1]})

    llm = RecordingLLM(on_run)
    first, second, _ = sentence_frames(sentences_wav)
    frames = [
        *_turn_frames(first), LLMContextFrame(context=context), SleepFrame(sleep=0.5), LLMContextFrame(context=context),
        SleepFrame(sleep=0.5), *_turn_frames(second), LLMContextFrame(context=context),
    ]  # fmt: skip
    asyncio.run(asyncio.wait_for(run_test(Pipeline([perceiver, perceiver.context_note(), llm]), frames_to_send=frames), HANG_S))
    assert len(llm.runs) == 3 and len(perceiver.trace) == 2
    notes = [[m["content"] for m in run if is_turn_note(m.get("content"))] for run in llm.runs]
    assert [len(n) for n in notes] == [1, 1, 1]
    assert notes[0] == notes[1] and perceiver.trace[0].reading.describe() in notes[1][0]
    assert perceiver.trace[1].reading.describe() in notes[2][0]


def test_a_turn_of_several_utterances_gets_one_note_for_all_of_them(recognizer, sentences_wav):
    """Two sentences with a pause the segmenter cuts at, in one turn: the note combines both readings."""
    from emotion_tool.live.streaming import summarize_utterances as summarize

    perceiver = EmotionPerceiver(recognizer, options=PerceptionOptions(turns="segmenter", note_wait_s=10.0))
    context = LLMContext(messages=[{"role": "user", "content": " ".join(SENTENCES[:2])}])
    llm = RecordingLLM()
    first, second, _ = sentence_frames(sentences_wav)
    frames = [*first, *second, SleepFrame(sleep=1.0), LLMContextFrame(context=context)]
    asyncio.run(asyncio.wait_for(run_test(Pipeline([perceiver, perceiver.context_note(), llm]), frames_to_send=frames), HANG_S))
    assert len(perceiver.trace) == 2
    combined, _ = summarize(perceiver.trace, labels=recognizer.labels, min_confidence=recognizer.min_confidence)
    (note,) = [m["content"] for m in llm.runs[0] if is_turn_note(m.get("content"))]
    assert f"turn (2 utterances over {perceiver.trace[1].end_s - perceiver.trace[0].start_s:.1f} s)" in note
    assert combined.describe() in note


def test_readings_name_the_calibration_they_went_through(tiny_checkpoint, recognizer, sentences_wav, tmp_path):
    from emotion_tool import EmotionRecognizer

    from test_integrations_listener import save_test_calibration

    path = save_test_calibration(recognizer, tmp_path / "cal.json")
    calibrated = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", calibration=path)
    note = calibrated.info().calibration
    assert note is not None and note.source == "cal.json"
    frames = sentence_frames(sentences_wav)[0]
    for rec, expected in ((calibrated, note), (recognizer, None)):
        perceiver = EmotionPerceiver(rec)
        down, _ = asyncio.run(asyncio.wait_for(run_test(perceiver, frames_to_send=frames), HANG_S))
        (reading,) = [f for f in down if isinstance(f, EmotionReadingFrame)]
        assert reading.calibration == expected


def test_a_frame_with_a_bad_sample_rate_is_skipped_counted_and_the_audio_after_it_read(recognizer, sentences_wav):
    """One frame at 1 Hz and one at 0 Hz in the middle of the first sentence: both pass on (the pipeline's
    audio is not the perceiver's to drop), are counted, and every sentence is still read where it is."""
    perceiver = EmotionPerceiver(recognizer)
    first, second, third = sentence_frames(sentences_wav)
    bad = [InputAudioRawFrame(audio=b"\x00\x00" * 320, sample_rate=rate, num_channels=1) for rate in (1, 0)]
    middle = len(first) * 2 // 3
    frames = [*first[:middle], *bad, *first[middle:], *second, *third]
    down, _ = asyncio.run(asyncio.wait_for(run_test(perceiver, frames_to_send=frames), HANG_S))
    assert [f for f in down if isinstance(f, InputAudioRawFrame)] == frames
    assert perceiver.stats.bad_frames == 2 and "sample_rate=0" in perceiver.stats.last_bad_frame
    readings = [f.utterance for f in down if isinstance(f, EmotionReadingFrame)]
    assert len(readings) == len(SENTENCES) and perceiver.stats.errors == []
    _, bounds = sentences_wav
    for u, (start_s, end_s) in zip(readings, bounds):
        assert u.start_s < start_s + 0.3 and u.end_s > end_s - 0.3, (u, start_s, end_s)


def test_a_refining_perceiver_notes_the_fast_reading_the_llm_had_and_keeps_the_faithful_one(tiny_checkpoint, recognizer, sentences_wav):
    """The faithful readings are held until the LLM has answered every turn: each note is the fast reading
    and says so; at the end both readings have gone out as frames and the trace holds the faithful ones."""
    from emotion_tool import EmotionRecognizer

    fast = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="trimmed")
    faithful = HeldRecognizer(recognizer)

    def on_run():
        if len(llm.runs) == len(SENTENCES):
            faithful.go.set()

    llm = RecordingLLM(on_run)
    try:
        perceiver, _, llm, _, _, down, _ = run_pipeline(fast, sentences_wav, turns="auto", llm=llm, refine_with=faithful)
    finally:
        faithful.go.set()
    frames = [f.utterance for f in down if isinstance(f, EmotionReadingFrame)]
    firsts, seconds = [u for u in frames if u.refined is False], [u for u in frames if u.refined is True]
    assert [u.index for u in firsts] == [u.index for u in seconds] == [0, 1, 2]
    assert [f.operating_point for f in down if isinstance(f, EmotionReadingFrame) and f.utterance.refined] == ["published"] * 3
    assert perceiver.trace == seconds and perceiver.stats.refined == 3
    assert len(llm.runs) == len(SENTENCES)
    for run, first in zip(llm.runs, firsts):
        (note,) = [m["content"] for m in run if is_turn_note(m.get("content"))]
        assert first.reading.describe() in note and "fast first reading (operating point trimmed)" in note
