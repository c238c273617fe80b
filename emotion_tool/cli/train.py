"""`emotion-tool train CONFIG [--resume] [--dry-run]`: fine-tune. The parser imports nothing heavy; the run does.

Layer 5, the command line (`emotion_tool.cli`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Adds `train CONFIG [--resume] [--dry-run]` to an argparse subparsers object."""
    p = sub.add_parser(
        "train",
        help="fine-tune a model on your data (the MERaLiON-SER recipe)",
        description="Fine-tune with LoRA on the encoder's q/k/v and export a checkpoint in the published layout.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG", help="training config, .toml or .json (see examples/train_config.toml)")
    p.add_argument("--resume", action="store_true", help="continue the run in the config's output_dir after its last finished epoch")
    p.add_argument("--dry-run", action="store_true", help="check the config and manifests, print the class balance, and stop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`emotion-tool train`: returns the exit code."""
    from emotion_tool.jobs.train.config import load_config
    from emotion_tool.jobs.train.trainer import _pct, train
    from emotion_tool.science.data import class_balance, list_noise_files, read_manifest
    config = load_config(args.config)
    if args.dry_run:
        options = config.manifest_options()
        for name, path in (("training", config.train_manifest), ("dev", config.dev_manifest)):
            m = read_manifest(path, options=options)
            print(f"{name} set {path}: {len(m)} items, {m.dropped} dropped by label_map, sha256 {m.sha256[:12]}")
            print(class_balance(m.items).table())
        if config.noise_dir is not None:
            print(f"noise: {len(list_noise_files(config.noise_dir))} files in {config.noise_dir}")
        return 0
    try:
        result = train(config, resume=args.resume)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; continue from the last finished epoch with: emotion-tool train {args.config} --resume",
            file=sys.stderr,
        )
        return 130
    s = result.summary
    print(f"model: {s.model_dir}")
    print(f"epochs run: {s.epochs_run}{' (stopped early)' if s.stopped_early else ''}; exported: {s.exported} of epochs {s.exported_epochs}")
    print(f"dev UAR {_pct(s.dev.seven_class.uar)} (7-class), {_pct(s.dev.four_class.uar)} (4-class)")
    if s.dev.dimensions is not None:
        print("dev CCC " + ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in s.dev.dimensions.ccc.items()))
    if s.random_weights:
        print("note: training started from random weights; the exported model is marked as a test model")
    return 0

__all__ = ["register", "run"]

