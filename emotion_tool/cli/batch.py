"""`emotion-tool batch MANIFEST_OR_PATHS... --out TABLE [--ray [ADDRESS]]`: archives into one table, resumable.

Layer 5, the command line (`emotion_tool.cli`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emotion_tool.cli.arguments import (
    PROG,
    add_analysis_args,
    add_calibration_arg,
    add_model_args,
    load_options,
    options_from_args,
)
from emotion_tool.engine.options import AnalysisOptions


def register(sub: Any) -> None:
    """Adds `batch` to an argparse subparsers object; `run` runs it."""
    d = AnalysisOptions()
    p = sub.add_parser(
        "batch",
        help="analyse an archive into a Parquet or JSON Lines table (resumable; locally or on Ray)",
        description="Analyse many recordings into one table: a row per recording (and, with --trace, per trace "
        "segment). A rerun skips recordings already in the table. Unreadable items get a row with an error.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="a manifest (.csv/.tsv/.jsonl; labels optional), or audio files, folders, globs")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="the table: .parquet or .jsonl (by its extension)")
    add_model_args(p)
    add_calibration_arg(p, help="a calibration.json from `emotion-tool calibrate`: calibrated probabilities and its uncertain "
                        "threshold; the `calibration` column names it, and a table is resumed with the same one only")
    add_analysis_args(p, d, trace_help="also a row per trace window of --window-s every --hop-s")
    p.add_argument("--workers", type=int, default=1, help="decoding processes beside the model's (default 1; 0: none)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for the model (default on the CPU: this process's cores minus --workers, at least 1; on a GPU: torch's)")
    p.add_argument("--prefetch", type=int, default=8, help="decoded recordings that may wait for the model (default 8)")
    p.add_argument("--rows-per-part", type=int, default=64, help="Parquet: recordings per part file, the most a kill loses (default 64)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    ray = p.add_argument_group("Ray (pip install 'emotion-tool[ray]')")
    ray.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                     help="run on Ray: a cluster address (auto, host:6379, ray://host:10001), or none to start one here")
    ray.add_argument("--actors", type=int, default=None, help="model actors (default: one per GPU, else 1)")
    ray.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs each model actor reserves (default 1)")
    ray.add_argument("--ray-cpus", type=int, default=None, help="CPUs of a local Ray instance (default: all)")
    p.set_defaults(func=run)




def run(args: argparse.Namespace) -> int:
    import functools

    from emotion_tool.engine.recognizer import EmotionRecognizer
    from emotion_tool.jobs.batch import (
        BatchOptions,
        calibration_name,
        collect_items,
        run_batch,
    )

    options = options_from_args(AnalysisOptions, args)
    if options.channels is not None and args.ray is not None:  # Ray's decoding tasks hand on mono waveforms
        print(f"{PROG}: error: --channels {','.join(options.channels)} runs without --ray; drop one of them", file=sys.stderr)
        return 2
    if options.diarize and args.ray is not None:  # the Ray actors carry no diarizer
        print(f"{PROG}: error: --diarize runs without --ray; drop one of them", file=sys.stderr)
        return 2
    batch = BatchOptions(workers=args.workers, threads=args.threads, prefetch=args.prefetch, rows_per_part=args.rows_per_part, progress=not args.no_progress)
    items = collect_items(args.inputs)
    o = load_options(args)
    model = o.model
    if model is not None and Path(model).expanduser().is_dir():
        model = str(Path(model).expanduser().resolve())  # Ray actors may start in another directory
    calibration = str(Path(o.calibration).expanduser().resolve()) if o.calibration is not None else None  # for Ray actors too
    loader = functools.partial(
        EmotionRecognizer.from_pretrained, model, device=o.device, dtype=o.dtype, options=options,
        local_files_only=o.offline, operating_point=o.operating_point, calibration=calibration,
    )  # fmt: skip
    rec = loader()
    point = rec.operating_point()
    if point != "published":
        print(f"{PROG}: note: fast operating point {point}: readings differ from the published model's", file=sys.stderr)
    if rec.random_weights:
        print(f"{PROG}: note: {rec.model_id} has random weights (a test model); its readings mean nothing", file=sys.stderr)
    if args.ray is None:
        summary = run_batch(rec, items, args.out, options=batch)
    else:
        from emotion_tool.jobs.batch_ray import RayOptions, run_batch_ray

        ray_options = RayOptions(
            address=None if args.ray == "local" else args.ray, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
            local_cpus=args.ray_cpus,
        )  # fmt: skip
        summary = run_batch_ray(
            loader, items, args.out, labels=rec.labels, model_id=rec.model_id, operating_point=point,
            calibration=calibration_name(rec), max_duration_s=options.max_duration_s, ray_options=ray_options, options=batch,
        )  # fmt: skip
    print(
        f"{PROG}: {summary.out}: {summary.written} recording(s) written ({summary.failed} with an error), "
        f"{summary.skipped} already there; {summary.audio_s / 3600:.3f} h of audio in {summary.wall_s:.1f} s "
        f"({summary.recordings_per_hour:.0f} recordings/h, {summary.audio_hours_per_hour:.1f} audio h/h)",
        file=sys.stderr,
    )
    return 0
