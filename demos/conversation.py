"""Run the empathic agent over speech files as consecutive user turns of one conversation.

    python -m demos.conversation turn1.wav turn2.wav [--model DIR] [--thread ID] [--db FILE]
                                 [--llm provider:model] [--text "words of turn 1" --text "..."]

Prints each turn's reading, the plan (strategy, goals, tone, events) and the agent's reply.
Without --llm the offline responder writes the reply. The conversation is kept in the SQLite file
(--db, default $EMOTION_TOOL_AGENT_DB or the user's data directory) under --thread, so running
again with the same --thread continues it. Set EMOTION_TOOL_DEBUG=1 for tracebacks.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Sequence

PROG = "python -m demos.conversation"


def _parser() -> argparse.ArgumentParser:
    from emotion_tool.config import DEFAULT_MODEL_ID, MODEL_ENV_VAR

    p = argparse.ArgumentParser(
        prog=PROG, description="Consecutive user turns through the empathic agent, on one conversation thread."
    )
    p.add_argument("turns", nargs="+", type=Path, metavar="TURN", help="audio files, one per user turn, in order")
    p.add_argument("--model", help=f"Hub id or checkpoint directory (default: ${MODEL_ENV_VAR} or {DEFAULT_MODEL_ID})")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--calibration", metavar="FILE", default=None, help="a calibration.json from `emotion-tool calibrate`: calibrated probabilities, named in the readings")
    p.add_argument("--operating-point", default=None, metavar="NAME", help="published (default: reproduces the model), live, bf16, ... (see emotion-tool analyze --help)")
    p.add_argument("--thread", help="conversation thread id (default: a new one, printed)")
    p.add_argument("--db", type=Path, help="SQLite file the conversation is kept in (default: see above)")
    p.add_argument("--llm", metavar="PROVIDER:MODEL", help="chat model for init_chat_model, e.g. openai:gpt-4o-mini")
    p.add_argument("--send-audio", action="store_true", help="also give the chat model the audio (audio-capable models)")
    p.add_argument(
        "--text", action="append", default=[], metavar="WORDS", help="the words of each turn, in order (repeat)"
    )
    p.add_argument("--stt", metavar="WHISPER", help="transcribe turns without --text with this Whisper checkpoint")
    return p


def run(args: argparse.Namespace) -> int:
    from agents import build_empathic_agent
    from agents.graph import default_db_path, sqlite_checkpointer, unreadable_database
    from emotion_tool import EmotionRecognizer

    if len(args.text) > len(args.turns):
        raise ValueError(f"{len(args.text)} --text given for {len(args.turns)} turns; give at most one per turn")
    for path in args.turns:
        if not path.exists():
            raise ValueError(f"{path}: no such file; give one audio file per turn")
        if not path.is_file():  # a FIFO or device would block the reader, a directory holds no audio
            raise ValueError(f"{path} is not a regular file; give one audio file per turn")
    transcriber = None
    if args.stt:
        from agents.stt import WhisperTranscriber

        transcriber = WhisperTranscriber(args.stt)

    recognizer = EmotionRecognizer.from_pretrained(
        args.model, device=args.device, calibration=args.calibration, operating_point=args.operating_point
    )
    db = args.db or default_db_path()
    checkpointer = sqlite_checkpointer(db)
    graph = build_empathic_agent(
        recognizer, chat_model=args.llm, checkpointer=checkpointer, send_audio=args.send_audio, transcriber=transcriber
    )
    thread = args.thread or f"demo-{uuid.uuid4().hex[:8]}"
    print(f"model:  {recognizer.model_id} (operating point {recognizer.operating_point()})")
    if recognizer.calibration is not None:
        print(f"calibration: {recognizer.info().calibration.source} (sha256 {recognizer.calibration.digest()})")
    if recognizer.random_weights:
        print("NOTE:   this checkpoint has RANDOM WEIGHTS (a test model): the readings are random and mean nothing.")
    print(f"thread: {thread}  (kept in {db})")
    print(f"reply:  {'chat model ' + args.llm if args.llm else 'offline responder (no chat model)'}")
    config = {"configurable": {"thread_id": thread}}
    try:
        for i, path in enumerate(args.turns):
            turn: dict = {"audio": str(path)}
            if i < len(args.text):
                turn["transcript"] = args.text[i]
            try:
                out = graph.invoke(turn, config=config)
            except sqlite3.DatabaseError as e:  # damaged after it was opened (e.g. by another program)
                raise unreadable_database(db, e) from e
            _print_turn(out, path)
    finally:
        checkpointer.conn.close()
    return 0


def _print_turn(out: dict, path: Path) -> None:
    entry, plan, reading = out["emotion_history"][-1], out["strategy"], out["reading"]
    print(f"\nturn {entry.turn}: {path.name}")
    if entry.transcript:
        print(f"  words:    {entry.transcript}")
    print(f"  reading:  {reading.describe() if reading is not None else 'none'}")
    for note in plan.notes:
        print(f"  caveat:   {note}")
    print(f"  trend:    {plan.trend.describe() if plan.trend else 'no baseline yet'}")
    print(f"  events:   {'; '.join(e.detail for e in plan.events) if plan.events else 'none'}")
    print(f"  strategy: {plan.describe()}")
    print(f"  tone:     {plan.tone}")
    for goal in plan.goals:
        print(f"  goal:     {goal}")
    reply = out["messages"][-1]
    text = reply.text if hasattr(reply, "text") else str(reply.content)
    print(textwrap.fill(text, width=100, initial_indent="  reply:    ", subsequent_indent=" " * 12))


def main(argv: Sequence[str] | None = None) -> int:
    from emotion_tool.cli import run_command

    args = _parser().parse_args(argv)
    return run_command(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
