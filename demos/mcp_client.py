"""Talk to `emotion-mcp` the way an assistant does: over stdio, as an MCP client.

    python -m demos.mcp_client recording.wav                  # analyse a file
    python -m demos.mcp_client recording.wav --trace          # ... with a reading every second
    python -m demos.mcp_client recording.wav --stream         # push it in 100-ms chunks, as live speech
    python -m demos.mcp_client recording.wav --model DIR      # a local checkpoint (else $EMOTION_TOOL_MODEL / the Hub)

It starts the server as a subprocess (allowing the file's directory), lists the tools, calls them,
and prints what came back.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import sys
from pathlib import Path

import anyio
import numpy as np
from mcp import Client, StdioServerParameters

from emotion_tool import EmotionAnalysis, load_audio
from mcp_server.sessions import SessionSummary

CHUNK_S = 0.1  # seconds of audio per push_audio call, as a live source would send


def _server_command() -> tuple[str, list[str]]:
    script = Path(sys.executable).with_name("emotion-mcp")
    if script.exists():
        return str(script), []
    found = shutil.which("emotion-mcp")
    return (found, []) if found else (sys.executable, ["-m", "mcp_server"])


async def run(audio: Path, *, model: str | None, device: str, trace: bool, stream: bool, calibration: Path | None = None) -> None:
    command, prefix = _server_command()
    args = [*prefix, "--allow-dir", str(audio.parent), "--device", device]
    if model:
        args += ["--model", model]
    if calibration:
        args += ["--calibration", str(calibration)]
    print(f"starting: {command} {' '.join(args)}")
    async with Client(StdioServerParameters(command=command, args=args)) as client:
        tools = (await client.list_tools()).tools
        print("\ntools:")
        for tool in tools:
            print(f"  {tool.name}: {(tool.description or '').splitlines()[0]}")

        if stream:
            await _stream(client, audio)
            return

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            print(f"  progress: {message or done}")

        print(f"\nanalyze_emotion({audio.name}, trace={trace})")
        result = await client.call_tool("analyze_emotion", {"audio_path": str(audio), "trace": trace}, progress_callback=on_progress)
        if result.is_error:
            print(f"tool error: {result.content[0].text}")
            return
        analysis = EmotionAnalysis.model_validate(result.structured_content)
        print(f"  {analysis.duration_s:.1f} s, {analysis.speech_ratio:.0%} speech, model {analysis.model_id}")
        if analysis.calibration is not None:
            print(f"  calibrated with {analysis.calibration.source} (sha256 {analysis.calibration.sha256})")
        print(f"  summary: {analysis.summary.describe()}")
        for segment in analysis.segments:
            reading = segment.reading.describe() if segment.reading else "(no speech)"
            print(f"  {segment.start_s:6.1f}-{segment.end_s:5.1f} s  {reading}")
        for warning in analysis.warnings:
            print(f"  warning: {warning}")


async def _stream(client: Client, audio: Path) -> None:
    wav = load_audio(audio)  # 16 kHz mono float32
    pcm = (np.clip(wav, -1, 1 - 1 / 32768) * 32768).astype("<i2")
    started = await client.call_tool("start_emotion_session", {"sample_rate": 16000, "encoding": "pcm_s16le"})
    session_id = started.structured_content["session_id"]
    print(f"\nstreaming {audio.name} in {CHUNK_S * 1000:.0f}-ms chunks (session {session_id})")
    step = int(16000 * CHUNK_S)
    for i in range(0, len(pcm), step):
        chunk = base64.b64encode(pcm[i : i + step].tobytes()).decode()
        pushed = await client.call_tool("push_audio", {"session_id": session_id, "chunk_base64": chunk})
        if pushed.is_error:
            print(f"tool error: {pushed.content[0].text}")
            return
        for u in pushed.structured_content["readings"]:
            print(f"  at {(i + step) / 16000:5.1f} s: utterance {u['index']} {u['start_s']:.1f}-{u['end_s']:.1f} s")
    ended = await client.call_tool("end_emotion_session", {"session_id": session_id})
    summary = SessionSummary.model_validate(ended.structured_content)
    for u in summary.utterances:
        print(f"  {u.start_s:6.1f}-{u.end_s:5.1f} s  {u.reading.describe()}")
    if summary.overall:
        print(f"  overall: {summary.overall.describe()}")
    for warning in summary.warnings:
        print(f"  warning: {warning}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("audio", type=Path, help="an audio file (wav, flac, ogg, mp3)")
    p.add_argument("--model", help="Hub id or checkpoint directory for the server")
    p.add_argument("--device", default="auto", help="the server's device (default: auto)")
    p.add_argument("--trace", action="store_true", help="also read 2-s windows every second")
    p.add_argument("--calibration", type=Path, default=None, help="the server's calibration.json (from `emotion-tool calibrate`)")
    p.add_argument("--stream", action="store_true", help="send the file as live speech through a streaming session")
    args = p.parse_args(argv)
    audio = args.audio.expanduser().resolve()
    if not audio.is_file():
        p.error(f"{args.audio}: no such file")
    anyio.run(lambda: run(audio, model=args.model, device=args.device, trace=args.trace, stream=args.stream, calibration=args.calibration))


if __name__ == "__main__":
    main()
