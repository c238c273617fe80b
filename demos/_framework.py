"""What the voice-framework file demos share: their command line and the model and audio they load."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from emotion_tool.cli.arguments import add_calibration_arg


def file_demo_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The command line of a demo that feeds a file to a voice-agent framework."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.add_argument("path", help="an audio file (wav, flac, ogg, mp3, ...)")
    p.add_argument("--model", default=None, help="Hub id or checkpoint directory (default: $EMOTION_TOOL_MODEL or the published model)")
    p.add_argument("--device", default="auto", help="where the model runs: auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--operating-point", default="published", help="'published' (default) or a fast point such as 'live'")
    add_calibration_arg(p, help="a calibration.json from `emotion-tool calibrate`: calibrated probabilities, named in the readings")
    p.add_argument("--note-wait-s", type=float, default=2.0, help="longest the LLM waits for a reading still being computed (default 2)")
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
    return wav, recognizer, PerceptionOptions(note_wait_s=args.note_wait_s)
