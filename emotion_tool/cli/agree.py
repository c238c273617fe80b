"""`emotion-tool agree PATH...`: how far the fast operating points move readings, and how much faster they are.

Layer 5, the command line (`emotion_tool.cli`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from emotion_tool.cli.arguments import (
    PROG,
    add_calibration_arg,
    add_model_args,
    add_trace_args,
    console,
    load_recognizer,
)
from emotion_tool.engine.options import FAST_POINTS, AnalysisOptions


def register(sub: Any) -> None:
    """Adds the command to an argparse subparsers object; `run` runs it."""
    d = AnalysisOptions()
    p = sub.add_parser(
        "agree",
        help="measure how far the fast operating points move readings, on your audio and weights",
        description="Analyse audio at the published operating point and at each fast one; report the "
        "deviations (max probability difference, label agreement, mean dim difference) and speed-ups.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files")
    add_model_args(p)
    add_calibration_arg(p)
    p.add_argument("--points", default=",".join(FAST_POINTS), help=f"comma-separated (default {','.join(FAST_POINTS)})")
    add_trace_args(p, d)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from emotion_tool.science.agreement import measure_agreement

    if args.quantize or (args.operating_point is not None and not args.operating_point.published):
        raise ValueError("agree compares against the published operating point: leave out --operating-point/--quantize and list points in --points")
    rec = load_recognizer(args)
    if rec.random_weights:
        print(f"{PROG}: note: {rec.model_id} has random weights: these deviations say nothing of the published model", file=sys.stderr)
    report = measure_agreement(
        rec,
        args.paths,
        points=[p.strip() for p in args.points.split(",") if p.strip()],
        window_s=args.window_s,
        hop_s=args.hop_s,
        log=lambda line: print(f"{PROG}: {line}", file=sys.stderr),
    )
    if args.format == "json":
        print(report.model_dump_json(indent=2))
        return 0
    from rich.table import Table

    t = Table(title=f"Fast operating points vs published, {len(report.audio)} file(s), {report.audio_s:.1f} s of audio", title_justify="left")
    for col in ("operating point", "compared", "n", "max |Δp|", "label agreement", "mean |Δdim|", "max |Δdim|", "time", "speed-up"):
        t.add_column(col, justify="left" if col in ("operating point", "compared") else "right")
    for a in report.points:
        t.add_row(
            a.operating_point, a.compared, str(a.readings), f"{a.max_probability_diff:.4f}", f"{a.label_agreement:.0%}",
            f"{a.mean_dim_diff:.4f}", f"{a.max_dim_diff:.4f}", f"{a.fast_s:.2f} s (vs {a.published_s:.2f} s)", f"{a.speedup:.1f}x",
        )  # fmt: skip
    console().print(t)
    return 0
