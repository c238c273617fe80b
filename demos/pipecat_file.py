"""A Pipecat pipeline fed a recording in real time: a reading per user turn, and the note its LLM gets.

    python -m demos.pipecat_file speech.wav
    python -m demos.pipecat_file speech.wav --operating-point live --model ./checkpoint
    python -m demos.pipecat_file speech.wav --realtime          # a realtime speech-to-speech model

Offline, no API keys: Pipecat's own VAD and turn strategies cut the turns; a stand-in for the STT
says the words were not transcribed, and a stand-in for the LLM prints the context it is handed.
With --realtime, Pipecat's own `OpenAIRealtimeLLMService` talks to a local stand-in for the OpenAI
Realtime API over a WebSocket: its turn detection ends the turns, and each turn's note is printed as
the model received it, when the reply is asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Sequence

import numpy as np

from emotion_tool.cli import run_command

from ._framework import REALTIME_TAIL_S, file_demo_parser, load_file_and_model, print_model_turns, print_stats

try:
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.frames.frames import (
        EndFrame,
        InputAudioRawFrame,
        LLMContextFrame,
        LLMRunFrame,
        TranscriptionFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregator, LLMUserAggregatorParams
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import SpeechTimeoutUserTurnStopStrategy
    from pipecat.turns.user_turn_strategies import UserTurnStrategies
    from pipecat.workers.runner import WorkerRunner
except ImportError:  # main() says what to install
    FrameProcessor = object  # type: ignore[assignment,misc]
    HAVE_PIPECAT = False
else:
    HAVE_PIPECAT = True

PROG = "python -m demos.pipecat_file"
RATE = 16000  # Hz: what Pipecat's silero VAD takes
FRAME_S = 0.02  # 20-ms frames, as a transport sends them


def main(argv: Sequence[str] | None = None) -> int:
    args = file_demo_parser(PROG, __doc__).parse_args(argv)
    return run_command(PROG, lambda: asyncio.run(_run(args)))


async def _run(args: argparse.Namespace) -> int:
    if not HAVE_PIPECAT:
        raise RuntimeError("this demo needs Pipecat; pip install 'emotion-tool[pipecat]'")
    from emotion_tool.integrations.pipecat import EmotionPerceiver

    wav, recognizer, options = load_file_and_model(args)
    emotion = EmotionPerceiver(recognizer, options=options)
    if args.realtime:
        return await _run_realtime(emotion, wav)
    context = LLMContext(messages=[{"role": "system", "content": "You are a helpful voice assistant."}])
    user = LLMUserAggregator(
        context,
        params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(),
            user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy()]),
        ),
    )
    llm = PrintingLLM()
    # The lines a real pipeline adds are `emotion` after the transport input and `emotion.context_note()` before the LLM.
    await play(Pipeline([emotion, NoTranscriber(), user, emotion.context_note(), llm]), wav)
    print_stats(emotion, f"; {llm.runs} LLM runs")
    return 0


async def _run_realtime(emotion: Any, wav: np.ndarray) -> int:
    session = await realtime_session(emotion, wav, on_event=print_model_turns, show_readings=True)
    replies = sum(1 for r in session.responses if r.status == "completed")
    print_stats(emotion, f"; {replies} realtime replies")
    return 0


async def realtime_session(emotion: Any, wav: np.ndarray, *, on_event: Any = None, show_readings: bool = False) -> Any:
    """Runs a realtime bot's pipeline on `wav` in real time: the perceiver, the aggregators, the note, and
    Pipecat's OpenAI Realtime service pointed at a local stand-in; returns the stand-in's `FakeRealtimeSession`.
    `on_event(session, event)` sees each event the model receives."""
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
    from pipecat.services.openai.realtime import events
    from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService

    from emotion_tool.integrations.fake_realtime import FakeRealtimeServer

    async with FakeRealtimeServer(on_event=on_event) as server:
        llm = OpenAIRealtimeLLMService(
            api_key="sk-local",
            base_url=server.url,  # the stand-in; leave base_url out (and give a key) for OpenAI
            settings=OpenAIRealtimeLLMService.Settings(
                system_instruction="You are a helpful voice assistant.",
                session_properties=events.SessionProperties(
                    audio=events.AudioConfiguration(  # the model ends turns, the pipeline asks for each reply
                        input=events.AudioInput(turn_detection=events.SemanticTurnDetection(create_response=False))
                    )
                ),
            ),
        )
        aggregators = LLMContextAggregatorPair(LLMContext())

        class Readings(FrameProcessor):  # prints each reading as it goes by
            async def process_frame(self, frame: Any, direction: Any) -> None:
                await super().process_frame(frame, direction)
                if show_readings:
                    _print_reading(frame)
                await self.push_frame(frame, direction)

        pipeline = Pipeline([emotion, Readings(), aggregators.user(), emotion.realtime_note(), llm, aggregators.assistant()])
        await play(pipeline, wav, first=LLMRunFrame(), tail_s=REALTIME_TAIL_S)
    return server.sessions[0]


def _print_reading(frame: Any) -> None:
    from emotion_tool.integrations.pipecat import EmotionReadingFrame

    if isinstance(frame, EmotionReadingFrame) and not frame.utterance.interim:
        u = frame.utterance
        calibrated = f", calibrated with {frame.calibration.source}" if frame.calibration is not None else ""
        print(f"reading #{u.index} {u.start_s:5.1f}-{u.end_s:5.1f} s: {u.reading.describe()} (latency {u.latency_s:.2f} s{calibrated})")


class NoTranscriber(FrameProcessor):
    """Stands for an STT: at each end of speech (Pipecat's VAD), says the words were not transcribed."""

    async def process_frame(self, frame: Any, direction: Any) -> None:
        from agents.prompts import NO_TRANSCRIPT

        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            await self.push_frame(TranscriptionFrame(text=NO_TRANSCRIPT, user_id="user", timestamp="", finalized=True))


class PrintingLLM(FrameProcessor):
    """Stands for an LLM: prints each reading, and the note in each context it is asked to answer."""

    def __init__(self) -> None:
        super().__init__()
        self.runs = 0

    async def process_frame(self, frame: Any, direction: Any) -> None:
        from emotion_tool.integrations.note import is_turn_note
        from emotion_tool.integrations.pipecat import EmotionReadingFrame

        await super().process_frame(frame, direction)
        if isinstance(frame, EmotionReadingFrame):
            _print_reading(frame)
        elif isinstance(frame, LLMContextFrame) and direction == FrameDirection.DOWNSTREAM:
            self.runs += 1
            notes = [m["content"] for m in frame.context.messages if isinstance(m, dict) and is_turn_note(m.get("content"))]
            print(f"LLM run {self.runs}: " + (notes[0] if notes else "(no emotion note this turn)"))
        await self.push_frame(frame, direction)


async def play(pipeline: Any, wav: np.ndarray, *, first: Any = None, tail_s: float = 1.0) -> None:
    """Runs `pipeline` with Pipecat's worker and runner, sending `wav` (16 kHz) in real time, as a transport
    does, then `tail_s` of silence (the last turn ends in it); `first` is a frame queued before the audio."""
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=RATE), cancel_on_idle_timeout=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: Any, frame: Any) -> None:
        started.set()

    pcm = np.round(np.clip(np.concatenate([wav, np.zeros(int(tail_s * RATE), np.float32)]), -1, 1) * 32767).astype("<i2")
    step = int(FRAME_S * RATE)

    async def send() -> None:
        await started.wait()
        if first is not None:
            await worker.queue_frame(first)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for k, i in enumerate(range(0, len(pcm), step)):
            await worker.queue_frame(InputAudioRawFrame(audio=pcm[i : i + step].tobytes(), sample_rate=RATE, num_channels=1))
            await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME_S - loop.time()))
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), send())


if __name__ == "__main__":
    sys.exit(main())
