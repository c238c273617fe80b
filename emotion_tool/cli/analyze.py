"""`emotion-tool analyze PATH... [--trace] [--format table|json|jsonl] [--plot FILE.png]`: read audio files.

Layer 5, the command line (`emotion_tool.cli`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emotion_tool.cli.arguments import (
    PROG,
    add_analysis_args,
    add_calibration_arg,
    add_model_args,
    console,
    load_recognizer,
    options_from_args,
)
from emotion_tool.engine.options import AnalysisOptions
from emotion_tool.engine.operating_point import faster_point_hint


def register(sub: Any) -> None:
    """Adds the command to an argparse subparsers object; `run` runs it."""
    d = AnalysisOptions()
    p = sub.add_parser("analyze", help="analyse audio files", description="Analyse one or more audio files.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files (wav, flac, ogg, mp3, ...)")
    add_model_args(p)
    add_calibration_arg(p)
    p.add_argument("--format", choices=("table", "json", "jsonl"), default="table", help="output format")
    p.add_argument("--transcript", metavar="FILE", help="a timed transcript (.srt, .vtt or .json; one file only): each line gets its speaker's reading over it")
    p.add_argument("--plot", metavar="FILE.png", help="draw the trace (several files: one PNG each, named after them; with --channels or --diarize, one lane per speaker)")
    add_analysis_args(p, d, trace_help="also read windows of --window-s every --hop-s")
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from emotion_tool.audio import AudioError

    options = options_from_args(AnalysisOptions, args)
    rec = load_recognizer(args, options)
    if rec.operating_point(trace=args.trace) != "published":
        point = rec.operating_point(trace=args.trace)
        print(f"{PROG}: note: fast operating point {point}: readings differ from the published model's", file=sys.stderr)
        hint = faster_point_hint(rec.operating_point_of(trace=args.trace), device=str(rec.device))
        if hint is not None:
            print(f"{PROG}: tip: {hint}", file=sys.stderr)
    if rec.random_weights:
        print(f"{PROG}: note: {rec.model_id} has random weights (a test model); its readings mean nothing", file=sys.stderr)
    lines = None
    if args.transcript:
        from emotion_tool.science.transcript import read_transcript

        if len(args.paths) > 1:
            raise ValueError(f"--transcript {args.transcript} belongs to one recording; give one audio file with it")
        lines = read_transcript(args.transcript)
    results, failed = [], 0
    for path in tqdm(args.paths, desc="files", unit="file", disable=None if len(args.paths) > 1 else True, file=sys.stderr):
        bar = tqdm(desc=Path(path).name, unit="window", leave=False, disable=None, file=sys.stderr)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            analysis = rec.analyze(path, progress=progress)
            if lines is not None:
                from emotion_tool.science.transcript import align_transcript

                analysis = analysis.model_copy(update={"transcript": align_transcript(analysis, lines)})
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
            from emotion_tool.science.plot import plot_trace

            target = Path(args.plot)
            if len(args.paths) > 1:
                target = target.with_name(f"{target.stem}-{Path(path).stem}{target.suffix or '.png'}")
            plot_trace(analysis, target)  # by speakers: one lane per speaker in the one PNG
            print(f"{PROG}: plot written to {target}", file=sys.stderr)
    if args.format == "json" and results:
        if len(args.paths) == 1:
            print(results[0].model_dump_json(indent=2))
        else:
            print(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
    elif args.format == "table" and results:
        _print_tables(results)
    return 1 if failed else 0




def _print_tables(results) -> None:
    from rich.table import Table

    out = console()
    table = Table(title="Emotion", title_justify="left")
    for col in ("file", "duration", "speech", "emotion", "confidence", "valence", "arousal", "dominance"):
        table.add_column(col, justify="left" if col in ("file", "emotion") else "right")
    for a in results:
        # Channels read as speakers: the recording's row, then one row per speaker.
        rows = [(a.source or "-", a.summary, a.speech_s, a.speech_ratio)]
        rows += [(f"  {p.speaker}", p.summary, p.speech_s, p.speech_ratio) for p in a.speakers or []]
        for label, s, speech_s, ratio in rows:
            table.add_row(
                label,
                f"{a.duration_s:.1f} s",
                f"{ratio:.0%}",
                # Without speech the network still names an emotion; say what was heard instead.
                "(no speech)" if speech_s == 0 else f"{s.label}{' (uncertain)' if s.uncertain else ''}",
                f"{s.confidence:.2f}",
                f"{s.valence:.2f}",
                f"{s.arousal:.2f}",
                f"{s.dominance:.2f}",
            )
    out.print(table)
    for a in results:
        probs = "  ".join(f"{k} {v:.2f}" for k, v in sorted(a.summary.probabilities.items(), key=lambda kv: -kv[1]))
        out.print(f"[bold]{a.source}[/bold]  {probs}")
        for w in a.warnings:
            out.print(f"  [yellow]note:[/yellow] {w}")
        if a.diarization is not None:
            d = a.diarization
            t = Table(title=f"{a.source}: {d.num_speakers} speakers, {len(d.turns)} turns ({d.backend})", title_justify="left", caption="? = uncertain", caption_justify="left")
            for col in ("speaker", "start", "end", "emotion", "conf.", "val.", "aro.", "dom."):
                t.add_column(col, justify="left" if col in ("speaker", "emotion") else "right")
            for w in a.windows:  # each turn's reading (a turn longer than a window has one per window)
                t.add_row(w.speaker or "", f"{w.start_s:.1f}", f"{w.end_s:.1f}", w.label + ("?" if w.uncertain else ""),
                          f"{w.confidence:.2f}", f"{w.valence:.2f}", f"{w.arousal:.2f}", f"{w.dominance:.2f}")  # fmt: skip
            out.print(t)
        if a.transcript:
            t = Table(title=f"{a.source}: transcript", title_justify="left", caption="? = uncertain", caption_justify="left")
            for col in ("start", "end", "speaker", "text", "emotion", "conf.", "val.", "aro.", "dom."):
                t.add_column(col, justify="left" if col in ("speaker", "text", "emotion") else "right")
            for line in a.transcript:
                r = line.reading
                cells = [r.label + ("?" if r.uncertain else ""), f"{r.confidence:.2f}", f"{r.valence:.2f}", f"{r.arousal:.2f}", f"{r.dominance:.2f}"] if r else ["(not read)", "", "", "", ""]
                t.add_row(f"{line.start_s:.1f}", f"{line.end_s:.1f}", line.speaker or "", line.text, *cells)
            out.print(t)
        if a.segments:
            t = Table(
                title=f"{a.source}: trace ({a.trace_window_s:g} s windows, {a.trace_hop_s:g} s hop)",
                title_justify="left",
                caption="? = uncertain",
                caption_justify="left",
            )
            by_speaker = a.speakers is not None
            for col in (("speaker",) if by_speaker else ()) + ("start", "end", "speech", "emotion", "conf.", "val.", "aro.", "dom."):
                t.add_column(col, justify="left" if col in ("speaker", "emotion") else "right")
            if by_speaker:
                t.caption = "? = uncertain, * = another speaker talks in the same window"
            for seg in a.segments:
                r = seg.reading
                cells = (
                    [r.label + ("?" if r.uncertain else ""), f"{r.confidence:.2f}", f"{r.valence:.2f}", f"{r.arousal:.2f}", f"{r.dominance:.2f}"]
                    if r
                    else ["(no speech)", "", "", "", ""]
                )
                who = [f"{seg.speaker}{'*' if seg.overlap else ''}"] if by_speaker else []
                t.add_row(*who, f"{seg.start_s:.1f}", f"{seg.end_s:.1f}", f"{seg.speech_ratio:.0%}", *cells)
            out.print(t)
