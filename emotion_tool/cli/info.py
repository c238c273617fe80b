"""`emotion-tool info`: the model, its labels, the device, the CPU's features and the operating point.

Layer 5, the command line (`emotion_tool.cli`).
"""

from __future__ import annotations

import argparse
from typing import Any

from emotion_tool.cli.arguments import (
    add_calibration_arg,
    add_model_args,
    load_recognizer,
)


def register(sub: Any) -> None:
    """Adds the command to an argparse subparsers object; `run` runs it."""
    p = sub.add_parser("info", help="show the model, its labels and the device")
    add_model_args(p)
    add_calibration_arg(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    info = load_recognizer(args).info()
    if args.format == "json":
        print(info.model_dump_json(indent=2))
        return 0
    print(f"model       {info.model_id}{'  (RANDOM WEIGHTS: readings mean nothing)' if info.random_weights else ''}")
    print(f"labels      {', '.join(info.labels)}")
    for dim, meaning in info.dimensions.items():
        print(f"{dim:<12}{meaning}")
    print(f"device      {info.device} ({info.dtype})")
    print(f"parameters  {info.parameters:,}")
    from emotion_tool.engine.operating_point import cpu_features

    padded = "trimmed" not in info.operating_point.split("+")
    print(f"operating   {info.operating_point}: windows of up to {info.max_window_s:g} s" + (f", zero-padded to {info.max_window_s:g} s" if padded else ", encoder sees only their frames"))
    features = cpu_features()
    print(f"cpu         {features.describe()}" + ("" if features.fast_bf16 else "  (no bf16 units: operating point bf16 would be slow here)"))
    if info.encoder_runtime is not None:
        print(f"encoder     {info.encoder_runtime}")
    elif info.device.startswith("cpu"):
        from emotion_tool.engine.kernels import cpu_kernels

        print(f"kernels     {cpu_kernels().describe()}")
        from emotion_tool.engine.operating_point import faster_point_hint

        hint = faster_point_hint(info.operating_point, device=info.device)
        if hint is not None:
            print(f"faster      {hint}")
    if info.calibration is not None:
        c = info.calibration
        print(f"calibration {c.source} (sha256 {c.sha256}): temperature {c.temperature:.4g}{', per-class bias' if c.bias else ''}, "
              f"fitted on {c.fitted_on} for {c.fitted_for}")  # fmt: skip
    return 0
