"""Command-line arguments the commands share, declared once; their defaults come from the option objects.

`emotion-tool analyze|agree|info|eval|calibrate|batch`, `emotion-mcp` and the demos all take a model
(and a calibration) the same way; `eval` and `calibrate` read a manifest the same way.
Imports nothing heavy, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from .config import DEFAULT_MODEL_ID, MODEL_ENV_VAR
from .options import AnalysisOptions, EvaluationOptions, LoadOptions

_Options = TypeVar("_Options")

__all__ = [
    "add_model_args",
    "add_calibration_arg",
    "add_trace_args",
    "add_context_arg",
    "add_reading_args",
    "load_options",
    "options_from_args",
]

_CALIBRATION_HELP = "a calibration.json from `emotion-tool calibrate`: calibrated probabilities and its uncertain threshold"


def add_model_args(
    p: argparse.ArgumentParser | Any,
    defaults: Any = LoadOptions(),
    *,
    dtype: bool = True,
    offline: bool = True,
    quantize: bool = True,
    device_help: str = "where the model runs: auto (CUDA, MPS, CPU), cpu, cuda, cuda:N or mps",
) -> None:
    """Adds --model, --device and (unless turned off) --dtype, --offline, --quantize.

    Args:
        p: a parser or argument group.
        defaults: any object with `model`, `device` and `dtype` attributes (LoadOptions, ServerOptions).
        dtype, offline, quantize: whether to add those arguments.
        device_help: the help text of --device.
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
    if quantize:
        p.add_argument(
            "--quantize",
            choices=("int8",),
            default=LoadOptions.quantize,
            help="int8: dynamically quantized linear layers on the CPU (a fast operating point)",
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
        default=defaults.context,
        help="trimmed: the encoder sees only each window's frames (default padded: 30 s, as published)",
    )


def load_options(args: argparse.Namespace) -> LoadOptions:
    """The LoadOptions that parsed arguments name."""
    return LoadOptions(
        model=args.model,
        device=args.device,
        dtype=getattr(args, "dtype", LoadOptions.dtype),
        offline=getattr(args, "offline", LoadOptions.offline),
        quantize=getattr(args, "quantize", LoadOptions.quantize),
        calibration=getattr(args, "calibration", LoadOptions.calibration),
    )


def options_from_args(cls: type[_Options], args: argparse.Namespace, **overrides: Any) -> _Options:
    """An options dataclass from parsed arguments: each field the arguments hold (by `dest`), then `overrides`.

    Fields the command line does not set keep the dataclass's defaults, so the defaults stay in one place.
    """
    given = vars(args)
    values = {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given}  # type: ignore[arg-type]
    return cls(**{**values, **overrides})
