"""What the voice-framework file demos share: their command line, the model and audio they load, and,
with `--realtime`, what the stand-in realtime model says it was handed."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from emotion_tool.cli.arguments import add_calibration_arg

REALTIME_TAIL_S = 3.0  # silence sent after the file with --realtime: the model's turn detection waits 0.5 s, then the note and the reply


def file_demo_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The command line of a demo that feeds a file to a voice-agent framework."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.add_argument("path", help="an audio file (wav, flac, ogg, mp3, ...)")
    p.add_argument("--model", default=None, help="Hub id or checkpoint directory (default: $EMOTION_TOOL_MODEL or the published model)")
    p.add_argument("--device", default="auto", help="where the model runs: auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--operating-point", default="published", help="'published' (default) or a fast point such as 'live'")
    add_calibration_arg(p, help="a calibration.json from `emotion-tool calibrate`: calibrated probabilities, named in the readings")
    p.add_argument("--note-wait-s", type=float, default=2.0, help="longest the LLM waits for a reading still being computed (default 2)")
    p.add_argument("--note-format", choices=("prose", "rcs"), default="prose",
                   help="the note's wording: 'prose' sentences with advice (default), or an 'rcs' perception string")  # fmt: skip
    p.add_argument("--realtime", action="store_true",
                   help="a realtime speech-to-speech model instead of STT and LLM: the framework's OpenAI Realtime plugin, "
                        "pointed at a local stand-in server (offline)")  # fmt: skip
    return p


def load_file_and_model(args: argparse.Namespace) -> tuple[np.ndarray, Any, Any]:
    """(16 kHz mono samples of args.path, the recognizer, the perception options) for a file demo."""
    from emotion_tool import EmotionRecognizer, load_audio
    from emotion_tool.integrations.listener import PerceptionOptions

    wav = load_audio(args.path)
    recognizer = EmotionRecognizer.from_pretrained(
        args.model, device=args.device, calibration=args.calibration, operating_point=args.operating_point
    )
    if recognizer.random_weights:
        print("note: this checkpoint has random weights; its readings mean nothing")
    if (calibration := recognizer.info().calibration) is not None:
        print(f"calibrated with {calibration.source} (sha256 {calibration.sha256}); the readings name it")
    return wav, recognizer, PerceptionOptions(note_wait_s=args.note_wait_s, note_format=args.note_format)


def print_model_turns(session: Any, event: dict) -> None:
    """For `FakeRealtimeServer(on_event=...)`: at each reply asked for after a user turn, prints the notes the
    model holds after that turn's audio: the note as the model received it."""
    from emotion_tool.integrations.fake_realtime import item_text
    from emotion_tool.integrations.note import is_turn_note

    if event.get("type") != "response.create":
        return
    users = [k for k, i in enumerate(session.items) if i.get("role") == "user" and not item_text(i)]
    if not users:
        return  # the bot's greeting: no user turn yet
    notes = [item_text(i) for i in session.items[users[-1] + 1 :] if is_turn_note(item_text(i))]
    print(f"turn {len(users)} ended; the realtime model was asked to reply holding: " + (notes[-1] if notes else "(no emotion note this turn)"))


def print_stats(emotion: Any, extra: str = "") -> None:
    s = emotion.stats
    mean = f"{s.mean_latency_s:.2f} s" if s.mean_latency_s is not None else "-"
    print(f"{s.utterances} utterances read ({s.turns} cut the turns); latency mean {mean}, max {s.max_latency_s:.2f} s; "
          f"{s.dropped_s:.1f} s of audio dropped{extra}")  # fmt: skip
