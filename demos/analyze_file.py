"""Analyse a recording: its overall reading, a trace of 2-s windows, and a plot of the trace.

    python -m demos.analyze_file speech.wav                      # writes speech_trace.png
    python -m demos.analyze_file speech.wav --out trace.png --window-s 3 --hop-s 1.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from emotion_tool import EmotionRecognizer
from emotion_tool.cli import run_command
from emotion_tool.science.plot import plot_trace

PROG = "python -m demos.analyze_file"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("path", help="an audio file (wav, flac, ogg, mp3, ...)")
    p.add_argument("--model", default=None, help="Hub id or checkpoint directory (default: $EMOTION_TOOL_MODEL or the published model)")
    p.add_argument("--device", default="auto", help="where the model runs: auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--window-s", type=float, default=2.0, help="trace window, seconds (default 2)")
    p.add_argument("--hop-s", type=float, default=1.0, help="trace hop, seconds (default 1)")
    p.add_argument("--calibration", metavar="FILE", default=None, help="a calibration.json from `emotion-tool calibrate`: calibrated probabilities, named in the readings")
    p.add_argument("--out", metavar="FILE.png", help="where to draw the trace (default: <name>_trace.png here)")
    args = p.parse_args(argv)
    return run_command(PROG, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    recognizer = EmotionRecognizer.from_pretrained(args.model, device=args.device, calibration=args.calibration)
    analysis = recognizer.analyze(args.path, trace=True, window_s=args.window_s, hop_s=args.hop_s)
    print(f"{analysis.source}: {analysis.duration_s:.1f} s, {analysis.speech_s:.1f} s of speech")
    if analysis.calibration is not None:
        print(f"calibrated with {analysis.calibration.source} (sha256 {analysis.calibration.sha256}, fitted on {analysis.calibration.fitted_on})")
    print(f"overall: {analysis.summary.describe()}")
    for segment in analysis.segments:
        text = segment.reading.describe() if segment.reading is not None else "(too little speech to read)"
        print(f"  {segment.start_s:6.1f}-{segment.end_s:6.1f} s  {text}")
    for warning in analysis.warnings:
        print(f"warning: {warning}")
    out = plot_trace(analysis, args.out or f"{Path(args.path).stem}_trace.png")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
