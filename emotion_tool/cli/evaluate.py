"""`emotion-tool eval MANIFEST --model ID_OR_DIR`: scores with the MERaLiON-SER protocol, a report and its figures.

Layer 5, the command line (`emotion_tool.cli`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emotion_tool.cli.arguments import (
    add_calibration_arg,
    add_reading_args,
    load_options,
    options_from_args,
)
from emotion_tool.config import default_model
from emotion_tool.engine.options import AnalysisOptions, EvaluationOptions


def register(sub: Any) -> None:
    """Adds `eval MANIFEST --model ID_OR_DIR [--out DIR] [--calibration FILE] ...`; `run` runs it."""
    d = EvaluationOptions()
    p = sub.add_parser(
        "eval",
        help="score a model on a labelled manifest (UAR, recall, confusion, CCC, calibration, intervals)",
        description="Score a model with the MERaLiON-SER protocol: 2-s segments and whole utterances up to 15 s, per language; "
        "with expected calibration error, a reliability diagram and bootstrap confidence intervals.",
    )
    add_reading_args(p, d)
    p.add_argument("--out", type=Path, default=None, help="folder for report.json and the PNGs (default: eval-<manifest name>)")
    add_calibration_arg(p, help="a calibration.json from `emotion-tool calibrate`: scores use calibrated probabilities; ECE before and after")
    p.add_argument("--protocol", choices=("segments", "utterances", "both"), default="both", help="which reading to score (default both)")
    p.add_argument("--bins", type=int, default=d.bins, help="equal-width confidence bins for ECE (default %(default)d)")
    p.add_argument("--bootstrap", type=int, default=d.bootstrap, help="resamples for confidence intervals of UAR and CCC (default %(default)d; 0: none)")
    p.add_argument("--level", type=float, default=d.level, help="coverage of the confidence intervals (default %(default)g)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the bootstrap (default %(default)d)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="what to print (the files are written either way)")
    p.add_argument("--no-plot", action="store_true", help="do not draw the confusion matrices and reliability diagrams")
    p.set_defaults(func=run)




def load_for_reading(args: argparse.Namespace) -> tuple[Any, Any]:
    """The recognizer (with `args.calibration` when given) and the validated manifest the arguments name."""
    from emotion_tool.engine.recognizer import EmotionRecognizer
    from emotion_tool.science.data import ManifestOptions, read_manifest

    o = load_options(args)
    recognizer = EmotionRecognizer.from_pretrained(
        o.model or default_model(),
        device=o.device,
        dtype=o.dtype,
        local_files_only=o.offline,
        options=AnalysisOptions(batch_size=args.batch_size),
        operating_point=o.operating_point,
        calibration=o.calibration,
    )
    manifest = read_manifest(
        args.manifest,
        options=ManifestOptions(label_map=_label_map(args.label_map), dim_scale=tuple(args.dim_scale), labels=tuple(recognizer.labels)),
    )
    if recognizer.random_weights:
        print(f"note: {recognizer.model_id} has random weights (a test model): what follows means nothing", file=sys.stderr)
    return recognizer, manifest




def _label_map(text: str | None) -> dict[str, str | None]:
    if text is None:
        return {}
    source = "--label-map"
    if Path(text).is_file():
        source, text = text, Path(text).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source} is not JSON ({e.msg}); give an object like '{{\"exc\": \"happy\"}}' or a .json file") from e
    if not isinstance(data, dict) or not all(v is None or isinstance(v, str) for v in data.values()):
        raise ValueError(f"{source} must be a JSON object of names to a label or null")
    return {str(k): v for k, v in data.items()}




def run(args: argparse.Namespace) -> int:
    """`emotion-tool eval`: returns the exit code."""
    from emotion_tool.science.evaluate import evaluate, format_report, write_report

    protocols = ("segments", "utterances") if args.protocol == "both" else (args.protocol,)
    options = options_from_args(EvaluationOptions, args, protocols=protocols)
    recognizer, manifest = load_for_reading(args)
    report = evaluate(recognizer, manifest, options=options, progress=True)
    out = args.out if args.out is not None else Path(f"eval-{Path(args.manifest).stem}")
    paths = write_report(report, out, plot=not args.no_plot)
    if args.format == "json":
        print(report.model_dump_json(indent=2))
    else:
        print(format_report(report))
    print(f"written: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0
