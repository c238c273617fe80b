"""Command-line arguments the commands share, declared once; their defaults come from the option objects.

`emotion-tool analyze|agree|info|eval`, `emotion-mcp` and the demos all take a model the same way.
Imports nothing heavy, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

from .config import DEFAULT_MODEL_ID, MODEL_ENV_VAR
from .options import AnalysisOptions, LoadOptions

_Options = TypeVar("_Options")

__all__ = ["add_model_args", "add_trace_args", "add_context_arg", "load_options", "options_from_args"]


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
    )


def options_from_args(cls: type[_Options], args: argparse.Namespace, **overrides: Any) -> _Options:
    """An options dataclass from parsed arguments: each field the arguments hold (by `dest`), then `overrides`.

    Fields the command line does not set keep the dataclass's defaults, so the defaults stay in one place.
    """
    given = vars(args)
    values = {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given}  # type: ignore[arg-type]
    return cls(**{**values, **overrides})
