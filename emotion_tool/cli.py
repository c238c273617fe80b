"""`emotion-tool`: analyse speech files from the command line.

    emotion-tool analyze clip.wav [--trace] [--format table|json|jsonl] [--plot trace.png]
    emotion-tool info
    emotion-tool agree clip.wav           # deviation and speed-up of the fast operating points
    emotion-tool train CONFIG.toml        # fine-tune (LoRA on the encoder, the paper's recipe)
    emotion-tool calibrate MANIFEST --model DIR   # calibrated confidence and an uncertain threshold
    emotion-tool eval MANIFEST --model DIR [--calibration DIR/calibration.json]
    emotion-tool batch MANIFEST_OR_PATHS... --out readings.parquet [--ray [ADDRESS]]   # archives, resumable

Bad input prints one line and exits non-zero; set EMOTION_TOOL_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .arguments import (
    add_calibration_arg,
    add_context_arg,
    add_model_args,
    add_reading_args,
    add_trace_args,
    load_options,
    options_from_args,
)
from .options import FAST_POINTS, AnalysisOptions, CalibrationOptions, EvaluationOptions

PROG = "emotion-tool"


_MIN_CONFIDENCE_HELP = "flag readings below this as uncertain (default 0.5, or the calibration's fitted threshold)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Emotions and valence/arousal/dominance from speech.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = AnalysisOptions()
    p = sub.add_parser("analyze", help="analyse audio files", description="Analyse one or more audio files.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files (wav, flac, ogg, mp3, ...)")
    add_model_args(p)
    add_calibration_arg(p)
    p.add_argument("--trace", action="store_true", help="also read windows of --window-s every --hop-s")
    add_trace_args(p, d)
    p.add_argument("--format", choices=("table", "json", "jsonl"), default="table", help="output format")
    p.add_argument("--plot", metavar="FILE.png", help="draw the trace (several files: one PNG each, named after them)")
    p.add_argument("--min-confidence", type=float, default=d.min_confidence, help=_MIN_CONFIDENCE_HELP)
    p.add_argument("--max-duration", dest="max_duration_s", type=float, default=d.max_duration_s, help="refuse audio longer than this, seconds; inf: no limit (default %(default)g)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per forward pass (default: 1 on the CPU, 8 on a GPU)")
    fast = p.add_argument_group("fast operating points (opt-in; they change the numbers: see `emotion-tool agree`)")
    add_context_arg(fast, d)
    fast.add_argument("--trace-mode", choices=("windows", "shared-encoder"), default=None,
                      help="shared-encoder: one encoder pass per 30-s window for the whole trace")
    p.set_defaults(func=_analyze)

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
    p.set_defaults(func=_agree)

    p = sub.add_parser("info", help="show the model, its labels and the device")
    add_model_args(p)
    add_calibration_arg(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_info)

    p = sub.add_parser(
        "random-model",
        help="write a random-weight checkpoint (for tests and benchmarks; its readings mean nothing)",
    )
    p.add_argument("directory", type=Path)
    p.add_argument("--size", choices=("tiny", "medium"), default="tiny", help="tiny, or the published sizes")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_random_model)

    from .train.cli import add_subcommand as add_train

    add_train(sub)
    add_eval_subcommand(sub)
    add_calibrate_subcommand(sub)
    _add_batch(sub)
    return parser


def add_eval_subcommand(subparsers: Any, func: Callable[[argparse.Namespace], int] | None = None) -> None:
    """Adds `eval MANIFEST --model ID_OR_DIR [--out DIR] [--calibration FILE] ...` to an argparse subparsers object.

    `func` runs the command (default: `evaluate.run`, imported when the command runs).
    """
    d = EvaluationOptions()
    p = subparsers.add_parser(
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
    p.set_defaults(func=func or _eval)


def add_calibrate_subcommand(subparsers: Any, func: Callable[[argparse.Namespace], int] | None = None) -> None:
    """Adds `calibrate MANIFEST --model ID_OR_DIR [--target-precision P] [--out FILE]`.

    `func` runs the command (default: `calibration.run`, imported when the command runs).
    """
    d = CalibrationOptions()
    p = subparsers.add_parser(
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
    p.set_defaults(func=func or _calibrate)


def _add_batch(sub) -> None:
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
    p.add_argument("--trace", action="store_true", help="also a row per trace window of --window-s every --hop-s")
    add_trace_args(p, d)
    p.add_argument("--min-confidence", type=float, default=d.min_confidence, help=_MIN_CONFIDENCE_HELP)
    p.add_argument("--max-duration", dest="max_duration_s", type=float, default=d.max_duration_s, help="refuse audio longer than this, seconds; inf: no limit (default %(default)g)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per forward pass (default: 1 on the CPU, 8 on a GPU)")
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
    fast = p.add_argument_group("fast operating points (opt-in; they change the numbers: see `emotion-tool agree`)")
    add_context_arg(fast, d)
    fast.add_argument("--trace-mode", choices=("windows", "shared-encoder"), default=None,
                      help="shared-encoder: one encoder pass per 30-s window for the whole trace")
    p.set_defaults(func=_batch)


def _eval(args: argparse.Namespace) -> int:
    from .evaluate import run

    return run(args)


def _calibrate(args: argparse.Namespace) -> int:
    from .calibration import run

    return run(args)


def _batch(args: argparse.Namespace) -> int:
    import functools

    from .batch import BatchOptions, calibration_name, collect_items, run_batch
    from .recognizer import EmotionRecognizer

    options = options_from_args(AnalysisOptions, args)
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
        from .batch_ray import RayOptions, run_batch_ray

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


def _load(args: argparse.Namespace, options: AnalysisOptions | None = None):
    from .recognizer import EmotionRecognizer

    o = load_options(args)
    return EmotionRecognizer.from_pretrained(
        o.model,
        device=o.device,
        dtype=o.dtype,
        options=options or AnalysisOptions(),
        local_files_only=o.offline,
        operating_point=o.operating_point,
        calibration=o.calibration,
    )


def _analyze(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .audio import AudioError

    options = options_from_args(AnalysisOptions, args)
    rec = _load(args, options)
    if rec.operating_point(trace=args.trace) != "published":
        point = rec.operating_point(trace=args.trace)
        print(f"{PROG}: note: fast operating point {point}: readings differ from the published model's", file=sys.stderr)
    if rec.random_weights:
        print(f"{PROG}: note: {rec.model_id} has random weights (a test model); its readings mean nothing", file=sys.stderr)
    results, failed = [], 0
    for path in tqdm(args.paths, desc="files", unit="file", disable=None if len(args.paths) > 1 else True, file=sys.stderr):
        bar = tqdm(desc=Path(path).name, unit="window", leave=False, disable=None, file=sys.stderr)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            analysis = rec.analyze(path, progress=progress)
        except AudioError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            failed += 1
            continue
        finally:
            bar.close()
        results.append(analysis)
        if args.format == "jsonl":
            print(analysis.model_dump_json(), flush=True)
        if args.plot:
            from .plot import plot_trace

            target = Path(args.plot)
            if len(args.paths) > 1:
                target = target.with_name(f"{target.stem}-{Path(path).stem}{target.suffix or '.png'}")
            plot_trace(analysis, target)
            print(f"{PROG}: plot written to {target}", file=sys.stderr)
    if args.format == "json" and results:
        if len(args.paths) == 1:
            print(results[0].model_dump_json(indent=2))
        else:
            print(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
    elif args.format == "table" and results:
        _print_tables(results)
    return 1 if failed else 0


def _console():
    from rich.console import Console

    # Pipes and CI logs get a wide table instead of rich's 80-column default.
    return Console() if sys.stdout.isatty() else Console(width=140)


def _print_tables(results) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title="Emotion", title_justify="left")
    for col in ("file", "duration", "speech", "emotion", "confidence", "valence", "arousal", "dominance"):
        table.add_column(col, justify="left" if col in ("file", "emotion") else "right")
    for a in results:
        s = a.summary
        table.add_row(
            a.source or "-",
            f"{a.duration_s:.1f} s",
            f"{a.speech_ratio:.0%}",
            # Without speech the network still names an emotion; say what was heard instead.
            "(no speech)" if a.speech_s == 0 else f"{s.label}{' (uncertain)' if s.uncertain else ''}",
            f"{s.confidence:.2f}",
            f"{s.valence:.2f}",
            f"{s.arousal:.2f}",
            f"{s.dominance:.2f}",
        )
    console.print(table)
    for a in results:
        probs = "  ".join(f"{k} {v:.2f}" for k, v in sorted(a.summary.probabilities.items(), key=lambda kv: -kv[1]))
        console.print(f"[bold]{a.source}[/bold]  {probs}")
        for w in a.warnings:
            console.print(f"  [yellow]note:[/yellow] {w}")
        if a.segments:
            t = Table(
                title=f"{a.source}: trace ({a.trace_window_s:g} s windows, {a.trace_hop_s:g} s hop)",
                title_justify="left",
                caption="? = uncertain",
                caption_justify="left",
            )
            for col in ("start", "end", "speech", "emotion", "conf.", "val.", "aro.", "dom."):
                t.add_column(col, justify="left" if col == "emotion" else "right")
            for seg in a.segments:
                r = seg.reading
                cells = (
                    [r.label + ("?" if r.uncertain else ""), f"{r.confidence:.2f}", f"{r.valence:.2f}", f"{r.arousal:.2f}", f"{r.dominance:.2f}"]
                    if r
                    else ["(no speech)", "", "", "", ""]
                )
                t.add_row(f"{seg.start_s:.1f}", f"{seg.end_s:.1f}", f"{seg.speech_ratio:.0%}", *cells)
            console.print(t)


def _info(args: argparse.Namespace) -> int:
    info = _load(args).info()
    if args.format == "json":
        print(info.model_dump_json(indent=2))
        return 0
    print(f"model       {info.model_id}{'  (RANDOM WEIGHTS: readings mean nothing)' if info.random_weights else ''}")
    print(f"labels      {', '.join(info.labels)}")
    for dim, meaning in info.dimensions.items():
        print(f"{dim:<12}{meaning}")
    print(f"device      {info.device} ({info.dtype})")
    print(f"parameters  {info.parameters:,}")
    from .operating_point import cpu_features

    padded = "trimmed" not in info.operating_point.split("+")
    print(f"operating   {info.operating_point}: windows of up to {info.max_window_s:g} s" + (f", zero-padded to {info.max_window_s:g} s" if padded else ", encoder sees only their frames"))
    features = cpu_features()
    print(f"cpu         {features.describe()}" + ("" if features.fast_bf16 else "  (no bf16 units: operating point bf16 would be slow here)"))
    if info.calibration is not None:
        c = info.calibration
        print(f"calibration {c.source} (sha256 {c.sha256}): temperature {c.temperature:.4g}{', per-class bias' if c.bias else ''}, "
              f"fitted on {c.fitted_on} for {c.fitted_for}")  # fmt: skip
    return 0


def _agree(args: argparse.Namespace) -> int:
    from .agreement import measure_agreement

    if args.quantize or (args.operating_point is not None and not args.operating_point.published):
        raise ValueError("agree compares against the published operating point: leave out --operating-point/--quantize and list points in --points")
    rec = _load(args)
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
    _console().print(t)
    return 0


def _random_model(args: argparse.Namespace) -> int:
    from .testing import SIZES, save_random_checkpoint

    out = save_random_checkpoint(args.directory, config=SIZES[args.size], seed=args.seed)
    print(f"wrote a {args.size} checkpoint with RANDOM weights to {out} (for tests and benchmarks; readings mean nothing)")
    return 0


def run_command(prog: str, body: Callable[[], int], *, errors: tuple[type[BaseException], ...] = ()) -> int:
    """Runs a command's body the way every command of the project ends.

    Bad input (AudioError, CheckpointError, ValueError, RuntimeError, and `errors`) and files that
    cannot be read or written (OSError) print one line, `PROG: error: ...`, and return 2; Ctrl-C
    returns 130. EMOTION_TOOL_DEBUG=1 shows the traceback.
    """
    from .audio import AudioError
    from .checkpoint import CheckpointError

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
