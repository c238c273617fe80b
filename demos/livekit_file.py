"""A LiveKit Agents agent fed a recording in real time: each user turn read, and the note added before its LLM runs.

    python -m demos.livekit_file speech.wav
    python -m demos.livekit_file speech.wav --operating-point live --model ./checkpoint
    python -m demos.livekit_file speech.wav --realtime          # a realtime speech-to-speech model

Offline, no room and no API keys: the recording stands for the user's audio as the agent's STT input
receives it, and a user turn ends half a second after each stretch of speech, as LiveKit's VAD and
endpointing would end it (they call the agent's `on_user_turn_completed`). With --realtime, a real
`AgentSession` runs LiveKit's own OpenAI `RealtimeModel` against a local stand-in for the OpenAI
Realtime API over a WebSocket, the recording as the session's audio input in real time: the model's
turn detection ends the turns, and each turn's note is printed as the model received it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, AsyncIterator, Sequence

import numpy as np

from emotion_tool.cli import run_command

from ._framework import REALTIME_TAIL_S, file_demo_parser, load_file_and_model, print_model_turns, print_stats

try:
    from livekit import rtc
    from livekit.agents import Agent, llm
    from livekit.agents.voice import io as voice_io
except ImportError:  # main() says what to install
    Agent = object  # type: ignore[assignment,misc]
    voice_io = None  # type: ignore[assignment]
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
    p = file_demo_parser(PROG, __doc__)
    p.add_argument("--realtime-turns", choices=("model", "vad"), default="model",
                   help="with --realtime: who ends the user's turns, the model's server turn detection (default) or LiveKit's VAD")  # fmt: skip
    args = p.parse_args(argv)
    return run_command(PROG, lambda: asyncio.run(_run(args)))


async def _run(args: argparse.Namespace) -> int:
    if not HAVE_LIVEKIT:
        raise RuntimeError("this demo needs LiveKit Agents; pip install 'emotion-tool[livekit]'")
    from agents.prompts import NO_TRANSCRIPT
    from emotion_tool.integrations.livekit import LiveKitEmotion
    from emotion_tool.integrations.note import is_turn_note

    wav, recognizer, options = load_file_and_model(args)
    emotion = LiveKitEmotion(recognizer, options=options)
    if args.realtime:
        return await _run_realtime(emotion, wav, turns=args.realtime_turns)
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
    print_stats(emotion)
    return 0


class RealtimeAssistant(Agent):
    """The realtime agent's lines: `on_enter` has the plugin listen to the session's audio and the model's turns."""

    def __init__(self, emotion: Any):
        super().__init__(instructions="You are a helpful voice assistant.")
        self.emotion = emotion

    async def on_enter(self) -> None:
        self.emotion.listen(self)

    async def on_user_turn_completed(self, turn_ctx: Any, new_message: Any) -> None:  # LiveKit's own turns (a VAD)
        await self.emotion.on_user_turn_completed(turn_ctx, new_message)

    async def on_exit(self) -> None:
        await self.emotion.aclose()


async def _run_realtime(emotion: Any, wav: np.ndarray, *, turns: str = "model") -> int:
    session = await realtime_session(emotion, wav, on_event=print_model_turns, show_readings=True, turns=turns)
    replies = sum(1 for r in session.responses if r.status == "completed")
    print_stats(emotion, f"; {replies} realtime replies")
    return 0


async def realtime_session(emotion: Any, wav: np.ndarray, *, on_event: Any = None, show_readings: bool = False, turns: str = "model") -> Any:
    """Runs an AgentSession on LiveKit's OpenAI RealtimeModel, pointed at a local stand-in, with `wav` as its
    audio input in real time; returns the stand-in's `FakeRealtimeSession`. `turns`: who ends the user's
    turns, "model" (its server turn detection, set not to answer; the session in manual mode) or "vad"
    (LiveKit's VAD, the model's turn detection off)."""
    try:
        from livekit.plugins.openai.realtime import RealtimeModel
    except ImportError as e:
        raise RuntimeError("--realtime needs LiveKit's OpenAI plugin; pip install 'livekit-agents[openai]'") from e
    from livekit.agents import AgentSession, TurnHandlingOptions, inference
    from openai.types.realtime.realtime_audio_input_turn_detection import ServerVad

    from emotion_tool.integrations.fake_realtime import FakeRealtimeServer

    async with FakeRealtimeServer(on_event=on_event) as server:
        if turns == "model":
            model = RealtimeModel(
                api_key="sk-local",
                base_url=server.url,  # the stand-in; leave base_url out (and set OPENAI_API_KEY) for OpenAI
                turn_detection=ServerVad(type="server_vad", create_response=False, interrupt_response=False),
            )
            session = AgentSession(llm=model, turn_handling=TurnHandlingOptions(turn_detection="manual"))
        else:
            model = RealtimeModel(api_key="sk-local", base_url=server.url, turn_detection=None)
            session = AgentSession(llm=model, vad=inference.VAD(), turn_handling=TurnHandlingOptions(turn_detection="vad"))
        source = FileAudioInput(wav)
        session.input.audio = source
        agent = RealtimeAssistant(emotion)
        shown = 0
        try:
            await session.start(agent)
            while not source.done.is_set() or _replies_pending(server, turns):
                await asyncio.sleep(0.05)
                if show_readings:
                    for u in emotion.trace[shown:]:
                        print(f"reading #{u.index} {u.start_s:5.1f}-{u.end_s:5.1f} s: {u.reading.describe()} (latency {u.latency_s:.2f} s)")
                    shown = len(emotion.trace)
        finally:
            await session.aclose()
            await emotion.aclose()
            await model.aclose()
    return server.sessions[0]


def _replies_pending(server: Any, turns: str) -> bool:
    """Whether the model has a stretch of speech not answered yet, or a reply still streaming."""
    if not server.sessions:
        return True
    s = server.sessions[0]
    heard = len(s.turns) if turns == "model" else len(s.speech)
    return len(s.responses) < heard or any(r.done_at is None for r in s.responses)


class FileAudioInput(voice_io.AudioInput if voice_io is not None else object):  # type: ignore[misc]
    """The session's audio input: `wav` (16 kHz) as 10-ms frames in real time, then silence; `done` once all is sent."""

    def __init__(self, wav: np.ndarray):
        super().__init__(label="file")
        pcm = np.round(np.clip(np.concatenate([wav, np.zeros(int(REALTIME_TAIL_S * RATE), np.float32)]), -1, 1) * 32767).astype("<i2")
        step = int(FRAME_S * RATE)
        self._frames = [pcm[i : i + step] for i in range(0, len(pcm), step)]
        self._next = 0
        self._t0: float | None = None
        self.done = asyncio.Event()

    async def __anext__(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._next >= len(self._frames):
            self.done.set()
            await asyncio.sleep(3600)  # a microphone gone quiet
        self._t0 = loop.time() if self._t0 is None else self._t0
        chunk = self._frames[self._next]
        self._next += 1
        await asyncio.sleep(max(0.0, self._t0 + self._next * FRAME_S - loop.time()))
        return rtc.AudioFrame(chunk.tobytes(), RATE, 1, len(chunk))


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
