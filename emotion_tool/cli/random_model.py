"""`emotion-tool random-model DIR`: a checkpoint with random weights, for tests and benchmarks (its readings mean nothing).

Layer 5, the command line (`emotion_tool.cli`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Adds the command to an argparse subparsers object; `run` runs it."""
    p = sub.add_parser(
        "random-model",
        help="write a random-weight checkpoint (for tests and benchmarks; its readings mean nothing)",
    )
    p.add_argument("directory", type=Path)
    p.add_argument("--size", choices=("tiny", "medium"), default="tiny", help="tiny, or the published sizes")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from emotion_tool.engine.testing import SIZES, save_random_checkpoint

    out = save_random_checkpoint(args.directory, config=SIZES[args.size], seed=args.seed)
    print(f"wrote a {args.size} checkpoint with RANDOM weights to {out} (for tests and benchmarks; readings mean nothing)")
    return 0
