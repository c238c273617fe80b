"""A LiveKit Agents agent fed a recording in real time: each user turn read, and the note added before its LLM runs.

    python -m demos.livekit_file speech.wav
    python -m demos.livekit_file speech.wav --operating-point live --model ./checkpoint

Offline, no room and no API keys: the recording stands for the user's audio as the agent's STT input
receives it, and a user turn ends half a second after each stretch of speech, as LiveKit's VAD and
endpointing would end it (they call the agent's `on_user_turn_completed`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, AsyncIterator, Sequence

import numpy as np

from emotion_tool.cli import run_command

from ._framework import file_demo_parser, load_file_and_model

try:
    from livekit import rtc
    from livekit.agents import Agent, llm
except ImportError:  # main() says what to install
    Agent = object  # type: ignore[assignment,misc]
    HAVE_LIVEKIT = False
else:
    HAVE_LIVEKIT = True

PROG = "python -m demos.livekit_file"
RATE = 16000  # Hz of the frames sent (LiveKit resamples a room's 48 kHz for its STT input)
FRAME_S = 0.01  # 10-ms frames, as LiveKit delivers them
ENDPOINTING_S = 0.5  # LiveKit's default min_endpointing_delay: a turn ends this long after speech stops


class Assistant(Agent):
    """An agent with the lines a real one adds: `stt_node` tees the audio, `on_user_turn_completed` adds the note."""

    def __init__(self, emotion: Any):
        super().__init__(instructions="You are a helpful voice assistant.")
        self.emotion = emotion

    def stt_node(self, audio: Any, model_settings: Any) -> Any:
        return Agent.default.stt_node(self, self.emotion.tee(audio), model_settings)

    async def on_user_turn_completed(self, turn_ctx: Any, new_message: Any) -> None:
        await self.emotion.on_user_turn_completed(turn_ctx, new_message)


def main(argv: Sequence[str] | None = None) -> int:
    args = file_demo_parser(PROG, __doc__).parse_args(argv)
    return run_command(PROG, lambda: asyncio.run(_run(args)))


async def _run(args: argparse.Namespace) -> int:
    if not HAVE_LIVEKIT:
        raise RuntimeError("this demo needs LiveKit Agents; pip install 'emotion-tool[livekit]'")
    from agents.prompts import NO_TRANSCRIPT
    from emotion_tool.integrations.livekit import LiveKitEmotion
    from emotion_tool.integrations.note import is_turn_note

    wav, recognizer, options = load_file_and_model(args)
    emotion = LiveKitEmotion(recognizer, options=options)
    agent = Assistant(emotion)
    chat = llm.ChatContext()
    chat.add_message(role="system", content="You are a helpful voice assistant.")

    async def end_turn() -> None:  # what LiveKit does at the end of a user turn, before its LLM runs
        turn_ctx = chat.copy()
        message = llm.ChatMessage(role="user", content=[NO_TRANSCRIPT])
        await agent.on_user_turn_completed(turn_ctx, message)
        notes = [m.text_content for m in turn_ctx.messages() if is_turn_note(m.text_content)]
        print("turn ended; the LLM context gets: " + (notes[0] if notes else "(no emotion note this turn)"))
        chat.add_message(role="user", content=NO_TRANSCRIPT)

    from emotion_tool.audio.vad import SpeechDetector, VadOptions

    # Where LiveKit would end the turns: speech found by a VAD, plus the endpointing delay.
    ends = [end / RATE + ENDPOINTING_S for _, end in SpeechDetector(VadOptions(min_silence_ms=500)).speech_spans(wav)]
    sent_s, shown = 0.0, 0
    async for frame in emotion.tee(_room_audio(wav)):  # where Agent.default.stt_node would send them to the STT
        sent_s += frame.samples_per_channel / frame.sample_rate
        if ends and sent_s >= ends[0]:
            ends.pop(0)
            await end_turn()
        for u in emotion.trace[shown:]:
            print(f"reading #{u.index} {u.start_s:5.1f}-{u.end_s:5.1f} s: {u.reading.describe()} (latency {u.latency_s:.2f} s)")
        shown = len(emotion.trace)
    await emotion.aclose()
    s = emotion.stats
    mean = f"{s.mean_latency_s:.2f} s" if s.mean_latency_s is not None else "-"
    print(f"{s.utterances} utterances read; latency mean {mean}, max {s.max_latency_s:.2f} s; {s.dropped_s:.1f} s of audio dropped")
    return 0


async def _room_audio(wav: np.ndarray) -> AsyncIterator[Any]:
    """`wav` (16 kHz) as 10-ms rtc.AudioFrames in real time, then a second of silence."""
    pcm = np.round(np.clip(np.concatenate([wav, np.zeros(RATE, np.float32)]), -1, 1) * 32767).astype("<i2")
    step = int(FRAME_S * RATE)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for k, i in enumerate(range(0, len(pcm), step)):
        chunk = pcm[i : i + step]
        yield rtc.AudioFrame(chunk.tobytes(), RATE, 1, len(chunk))
        await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME_S - loop.time()))


if __name__ == "__main__":
    sys.exit(main())
