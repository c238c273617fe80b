"""`emotion-tool calibrate MANIFEST --model ID_OR_DIR`: fit calibrated confidence and an uncertain threshold.

Layer 5, the command line (`emotion_tool.cli`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emotion_tool.cli.arguments import (
    add_reading_args,
    options_from_args,
)
from emotion_tool.engine.options import CalibrationOptions, EvaluationOptions


def register(sub: Any) -> None:
    """Adds `calibrate MANIFEST --model ID_OR_DIR [--target-precision P] [--out FILE]`; `run` runs it."""
    d = CalibrationOptions()
    p = sub.add_parser(
        "calibrate",
        help="fit a temperature (and per-class bias) and an uncertain threshold on a labelled manifest",
        description="Fit calibrated confidence on development data read as `eval` reads it, at the chosen operating point.",
    )
    add_reading_args(p)
    p.add_argument("--out", type=Path, default=None, help="where to write it (default: calibration.json in the checkpoint directory, "
                   "or here for a Hub id)")  # fmt: skip
    p.add_argument("--target-precision", type=float, default=d.target_precision,
                   help="choose the uncertain threshold so that unflagged readings are right this often (default %(default)g; 0 to keep 0.5)")
    p.add_argument("--no-bias", action="store_true", help="fit the temperature only")
    p.add_argument("--min-per-class", type=int, default=d.min_per_class, help="segments of every label needed to fit a bias (default %(default)d)")
    p.add_argument("--protocol", choices=("segments", "utterances", "both"), default="utterances",
                   help="which reading of the items to fit on (default utterances: whole items, as `analyze` reads them)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)




def run(args: argparse.Namespace) -> int:
    """`emotion-tool calibrate`: returns the exit code."""
    import numpy as np

    from emotion_tool.cli.evaluate import load_for_reading
    from emotion_tool.science.calibration import (
        CALIBRATION_FILE,
        FittedOn,
        fit_calibration,
        format_calibration,
    )
    from emotion_tool.science.evaluate import read_segments

    options = options_from_args(CalibrationOptions, args, bias=not args.no_bias, target_precision=args.target_precision or None)
    recognizer, manifest = load_for_reading(args)
    protocols = ("segments", "utterances") if args.protocol == "both" else (args.protocol,)
    reading = read_segments(recognizer, manifest, options=options_from_args(EvaluationOptions, args, protocols=protocols), progress=True)
    logits = np.concatenate([reading.segments[p].logits for p in protocols])
    refs = np.concatenate([reading.segments[p].refs for p in protocols])
    model_id = recognizer.model_id
    checkpoint_dir = Path(model_id).expanduser()
    if checkpoint_dir.is_dir():
        model_id = str(checkpoint_dir.resolve())
    calibration = fit_calibration(
        logits, refs, label_names=recognizer.labels, model_id=model_id, operating_point=recognizer.operating_point(trace=False),
        random_weights=recognizer.random_weights, options=options,
        fitted_on=FittedOn(manifest=str(manifest.path), sha256=manifest.sha256, items=len(manifest.items), segments=len(refs),
                           protocols=list(protocols), per_class={}),
    )  # fmt: skip
    out = args.out if args.out is not None else (checkpoint_dir / CALIBRATION_FILE if checkpoint_dir.is_dir() else Path(CALIBRATION_FILE))
    calibration.save(out)
    if args.format == "json":
        print(calibration.model_dump_json(indent=2))
    else:
        print(format_calibration(calibration))
    print(f"written: {out} (load it with --calibration {out})", file=sys.stderr)
    return 0
