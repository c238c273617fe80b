"""`emotion-tool`: analyse speech files from the command line.

    emotion-tool analyze clip.wav [--trace] [--format table|json|jsonl] [--plot trace.png]
    emotion-tool info
    emotion-tool agree clip.wav           # deviation and speed-up of the fast operating points
    emotion-tool train CONFIG.toml        # fine-tune (LoRA on the encoder, the paper's recipe)
    emotion-tool calibrate MANIFEST --model DIR   # calibrated confidence and an uncertain threshold
    emotion-tool eval MANIFEST --model DIR [--calibration DIR/calibration.json]
    emotion-tool batch MANIFEST_OR_PATHS... --out readings.parquet [--ray [ADDRESS]]   # archives, resumable

Bad input prints one line and exits non-zero; set EMOTION_TOOL_DEBUG=1 for the traceback.

Layer 5, the command line (`emotion_tool.cli`).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable, Sequence

from emotion_tool.cli.arguments import PROG

# Each subcommand registers itself from its own module (`register(sub)`); none imports this one.
COMMANDS = ("analyze", "agree", "info", "random_model", "train", "evaluate", "calibrate", "batch")


def _parser():
    import argparse

    parser = argparse.ArgumentParser(prog=PROG, description="Emotions and valence/arousal/dominance from speech.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"emotion_tool.cli.{name}").register(sub)
    return parser


def run_command(prog: str, body: Callable[[], int], *, errors: tuple[type[BaseException], ...] = ()) -> int:
    """Runs a command's body the way every command of the project ends.

    Bad input (AudioError, CheckpointError, ValueError, RuntimeError, and `errors`) and files that
    cannot be read or written (OSError) print one line, `PROG: error: ...`, and return 2; Ctrl-C
    returns 130. EMOTION_TOOL_DEBUG=1 shows the traceback.
    """
    from emotion_tool.audio import AudioError
    from emotion_tool.engine.checkpoint import CheckpointError

    try:
        return body()
    except (AudioError, CheckpointError, ValueError, RuntimeError, OSError, *errors) as e:
        if os.environ.get("EMOTION_TOOL_DEBUG"):
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_command(PROG, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
