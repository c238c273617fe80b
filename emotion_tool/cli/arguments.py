"""Command-line arguments the commands share, declared once; their defaults come from the option objects.

`emotion-tool analyze|agree|info|eval|calibrate|batch`, `emotion-mcp` and the demos all take a model
(and a calibration) the same way; `eval` and `calibrate` read a manifest the same way.
Imports nothing heavy, so `--help` stays fast.

Layer 5, the command line (`emotion_tool.cli`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, TypeVar

from emotion_tool.config import DEFAULT_MODEL_ID, MODEL_ENV_VAR
from emotion_tool.engine.options import AnalysisOptions, EvaluationOptions, LoadOptions

_Options = TypeVar("_Options")

PROG = "emotion-tool"
MIN_CONFIDENCE_HELP = "flag readings below this as uncertain (default 0.5, or the calibration's fitted threshold)"

__all__ = [
    "add_model_args",
    "add_calibration_arg",
    "add_trace_args",
    "add_context_arg",
    "add_reading_args",
    "add_analysis_args",
    "load_options",
    "point_from_args",
    "options_from_args",
    "load_recognizer",
    "console",
]

_POINT_HELP = (
    "published (default: reproduces the model), live (recommended for live audio on a CPU), "
    "or choices joined by '+': trimmed, bf16, fp16, int8, shared-encoder (e.g. bf16, trimmed+int8)"
)
_CALIBRATION_HELP = "a calibration.json from `emotion-tool calibrate`: calibrated probabilities and its uncertain threshold"


def add_model_args(
    p: argparse.ArgumentParser | Any,
    defaults: Any = LoadOptions(),
    *,
    dtype: bool = True,
    offline: bool = True,
    quantize: bool = True,
    device_help: str = "where the model runs: auto (CUDA, MPS, CPU), cpu, cuda, cuda:N or mps",
    operating_point_help: str = _POINT_HELP,
) -> None:
    """Adds --model, --device, --operating-point and (unless turned off) --dtype, --offline, --quantize.

    Args:
        p: a parser or argument group.
        defaults: any object with `model`, `device` and `dtype` attributes (LoadOptions, ServerOptions).
        dtype, offline, quantize: whether to add those arguments (--quantize is the older spelling of
            --operating-point int8, kept hidden).
        device_help: the help text of --device.
        operating_point_help: the help text of --operating-point.
    """
    p.add_argument(
        "--model",
        default=defaults.model,
        help=f"Hub id or checkpoint directory (default: ${MODEL_ENV_VAR}, else {DEFAULT_MODEL_ID})",
    )
    p.add_argument("--device", default=defaults.device, help=f"{device_help} (default: %(default)s)")
    if dtype:
        p.add_argument(
            "--dtype",
            default=defaults.dtype,
            help="auto (bf16/fp16 on GPU, fp32 on CPU), float32, float16 or bfloat16 (default: %(default)s)",
        )
    if offline:
        p.add_argument("--offline", action="store_true", default=LoadOptions.offline, help="never reach the Hub; use the local cache only")
    p.add_argument(
        "--operating-point",
        default=getattr(defaults, "operating_point", None),
        metavar="NAME",
        type=operating_point_arg,
        help=operating_point_help,
    )
    if quantize:
        p.add_argument("--quantize", choices=("int8",), default=LoadOptions.quantize, help=argparse.SUPPRESS)


def operating_point_arg(name: str) -> Any:
    """argparse type: an OperatingPoint, or a usage error that lists the accepted names."""
    from emotion_tool.engine.operating_point import OperatingPoint

    try:
        return OperatingPoint.parse(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e  # argparse prints it as a usage error


def point_from_args(args: argparse.Namespace) -> Any:
    """The OperatingPoint the arguments name: --operating-point, with the older single-choice flags
    (--context, --trace-mode, --quantize) on top; a contradiction between them is a ValueError."""
    from emotion_tool.engine.operating_point import OperatingPoint

    return OperatingPoint.from_flags(
        getattr(args, "operating_point", None),
        context=getattr(args, "context", None),
        trace_mode=getattr(args, "trace_mode", None),
        precision="int8" if getattr(args, "quantize", None) else None,
    )


def add_calibration_arg(p: argparse.ArgumentParser | Any, *, help: str = _CALIBRATION_HELP) -> None:
    """Adds --calibration FILE (default: none, the network's own probabilities)."""
    p.add_argument("--calibration", type=Path, default=LoadOptions.calibration, metavar="FILE", help=help)


def add_reading_args(p: argparse.ArgumentParser | Any, defaults: EvaluationOptions = EvaluationOptions()) -> None:
    """The arguments `eval` and `calibrate` share: the manifest, the model and its operating point, how items are cut."""
    p.add_argument("manifest", type=Path, metavar="MANIFEST", help="labelled data, .csv or .jsonl (see the training section of the README)")
    add_model_args(p)
    add_context_arg(p)
    p.add_argument("--label-map", default=None, metavar="JSON", help='dataset label → model label, as JSON or a JSON file: {"exc": "happy", "oth": null}')
    p.add_argument("--dim-scale", type=float, nargs=2, default=(0.0, 1.0), metavar=("LOW", "HIGH"), help="scale of the manifest's valence/arousal/dominance (default 0 1)")
    p.add_argument("--segment-s", type=float, default=defaults.segment_s, help="fine-grained segment length, seconds (default %(default)g)")
    p.add_argument("--min-segment-s", type=float, default=defaults.min_segment_s, help="leave out last pieces shorter than this, seconds (default %(default)g)")
    p.add_argument("--merge-max-s", type=float, default=defaults.merge_max_s, help="read items up to this whole; split longer ones (default %(default)g)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="segments per forward pass (default %(default)d)")


def add_trace_args(p: argparse.ArgumentParser | Any, defaults: AnalysisOptions = AnalysisOptions()) -> None:
    """Adds --window-s and --hop-s, the trace's window and hop."""
    p.add_argument("--window-s", type=float, default=defaults.window_s, help="trace window, seconds (default %(default)g)")
    p.add_argument("--hop-s", type=float, default=defaults.hop_s, help="trace hop, seconds (default %(default)g)")


def add_context_arg(p: argparse.ArgumentParser | Any, defaults: AnalysisOptions = AnalysisOptions()) -> None:
    """Adds --context: padded (30-s windows, as published) or trimmed (a fast operating point)."""
    p.add_argument(
        "--context",
        choices=("padded", "trimmed"),
        default=None,  # unset: the operating point decides (padded unless it says trimmed)
        help="trimmed: the encoder sees only each window's frames (default padded: 30 s, as published)",
    )


def add_analysis_args(p: argparse.ArgumentParser | Any, defaults: AnalysisOptions = AnalysisOptions(), *, trace_help: str) -> None:
    """What `analyze` and `batch` share: the trace, the uncertain threshold, limits, batching, and the fast points."""
    d = defaults
    p.add_argument("--trace", action="store_true", help=trace_help)
    add_trace_args(p, d)
    p.add_argument("--min-confidence", type=float, default=d.min_confidence, help=MIN_CONFIDENCE_HELP)
    p.add_argument("--max-duration", dest="max_duration_s", type=float, default=d.max_duration_s,
                   help="refuse audio longer than this, seconds; inf: no limit (default %(default)g)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per forward pass (default: 1 on the CPU, 8 on a GPU)")
    p.add_argument("--channels", type=_channel_names, default=d.channels, metavar="NAMES",
                   help="mix (default: all channels as one voice), or a speaker name per channel, in order "
                   "(e.g. agent,customer): each channel read as its own speaker, overlaps marked")  # fmt: skip
    p.add_argument("--diarize", action="store_true", default=None,
                   help="opt-in, one-channel audio: find the speaker turns (needs the diarize extra), read each turn "
                   "as its own utterance, one summary per speaker")  # fmt: skip
    p.add_argument("--speakers", dest="num_speakers", type=_speaker_count, default=None, metavar="N",
                   help="with --diarize: how many speakers there are (default: found, at most 8)")  # fmt: skip
    fast = p.add_argument_group("fast operating points (opt-in; they change the numbers: see `emotion-tool agree`)")
    add_context_arg(fast, d)
    fast.add_argument("--trace-mode", choices=("windows", "shared-encoder"), default=None,
                      help="shared-encoder: one encoder pass per 30-s window for the whole trace")  # fmt: skip


def _speaker_count(text: str) -> int:
    """argparse type: a number of speakers, 1 to 8."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 8:
        raise argparse.ArgumentTypeError(f"--speakers {text!r}: give a whole number from 1 to 8, or leave it out to have it found")
    return n


def _channel_names(text: str) -> tuple[str, ...] | None:
    """argparse type: "mix" (None), or comma-separated speaker names, one per channel."""
    if text.strip() == "mix":
        return None
    names = tuple(n.strip() for n in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"--channels {text!r}: give 'mix' or distinct names, one per channel, e.g. agent,customer")
    return names


def load_options(args: argparse.Namespace) -> LoadOptions:
    """The LoadOptions that parsed arguments name."""
    return LoadOptions(
        model=args.model,
        device=args.device,
        dtype=getattr(args, "dtype", LoadOptions.dtype),
        offline=getattr(args, "offline", LoadOptions.offline),
        operating_point=str(point_from_args(args)),
        calibration=getattr(args, "calibration", LoadOptions.calibration),
    )


def options_from_args(cls: type[_Options], args: argparse.Namespace, **overrides: Any) -> _Options:
    """An options dataclass from parsed arguments: each field the arguments hold (by `dest`), then `overrides`.

    Fields the command line does not set keep the dataclass's defaults, so the defaults stay in one place.
    """
    given = vars(args)
    # An argument left unset (None) keeps the field's default: options such as --context default to
    # None so that the operating point, not the analysis options, decides them.
    values = {f.name: given[f.name] for f in dataclasses.fields(cls) if given.get(f.name) is not None}  # type: ignore[arg-type]
    return cls(**{**values, **overrides})


def load_recognizer(args: argparse.Namespace, options: AnalysisOptions | None = None):
    """The recognizer that parsed model arguments name (`add_model_args`, `add_calibration_arg`)."""
    from emotion_tool.engine.recognizer import EmotionRecognizer

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


def console():
    """A rich console: the terminal's width, or 140 columns for pipes and CI logs."""
    from rich.console import Console

    # Pipes and CI logs get a wide table instead of rich's 80-column default.
    return Console() if sys.stdout.isatty() else Console(width=140)
