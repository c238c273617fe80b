"""Ways to run the encoder on the CPU, each against the eager fp32 encoder in the same run.

    python benchmarks/encoder_paths.py              # medium size; table on stdout, JSON in benchmarks/results/
    python benchmarks/encoder_paths.py --size tiny  # a quick check that the script runs

One padded 30-s window (3000 mel frames) through a whisper-medium-size encoder with RANDOM weights
(speed does not depend on the values), in one process, best of `--repeats` after a warm-up. Paths:

- fp32, eager: the published operating point (the baseline);
- fp32, torch.compile (inductor, weights frozen): the exact path compiled; kept only if it is faster
  and within 1e-4 of eager;
- bf16, attention in fp32 / in bf16: operating point "bf16" with each of the CPU attention kernels;
  which one "bf16" runs on this CPU is printed and kept in the JSON (`emotion_tool.engine.kernels`);
- bf16, torch.compile (inductor, weights frozen);
- fp32 and bf16 through OpenVINO's CPU plugin (operating points "openvino", "openvino+bf16"), when
  OpenVINO is installed (`pip install 'emotion-tool[openvino]'`);
- int8, torch.ao dynamic quantization: what operating point "int8" runs;
- int8 through torchao (dynamic int8 activations and weights; int8 weights only), when torchao is
  installed (`pip install torchao`; it is not a dependency).

Deviation columns compare each path's encoder states with the eager fp32 ones: the largest absolute
difference and the cosine of the whole (T, d) state. They come from random weights; see
benchmarks/real_encoder.py for a trained encoder.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (and, for compiled paths, the compilation)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _paths(encoder, *, with_compile: bool):
    """(name, how to build it) for each path; a builder returns a callable on the features or None (unavailable)."""
    import torch


    def eager(dtype):
        return lambda: copy.deepcopy(encoder).to(dtype)

    def bf16_with(attention):
        def build():
            enc = copy.deepcopy(encoder).to(torch.bfloat16)
            enc.set_cpu_attention(attention)
            return enc

        return build

    def openvino(precision):
        def build():
            try:
                from emotion_tool.engine.openvino_runtime import OpenVinoEncoder

                return OpenVinoEncoder(copy.deepcopy(encoder), precision=precision)
            except RuntimeError:  # OpenVINO is not installed
                return None

        return build

    def compiled(dtype):
        def build():
            import torch._inductor.config as inductor

            inductor.freezing = True  # weights become constants: oneDNN prepacks them
            return torch.compile(copy.deepcopy(encoder).to(dtype))

        return build

    def ao_int8():
        enc = copy.deepcopy(encoder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(enc, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)

    def torchao(config_name):
        def build():
            try:
                import torchao.quantization as tq
            except ImportError:
                return None
            enc = copy.deepcopy(encoder)
            tq.quantize_(enc, getattr(tq, config_name)())
            return enc

        return build

    paths = [
        ("fp32, eager (published)", torch.float32, eager(torch.float32)),
        ("fp32, torch.compile", torch.float32, compiled(torch.float32) if with_compile else None),
        ("bf16, attention in fp32", torch.bfloat16, bf16_with("fp32")),
        ("bf16, attention in bf16", torch.bfloat16, bf16_with("bf16")),
        ("bf16, torch.compile", torch.bfloat16, compiled(torch.bfloat16) if with_compile else None),
        ("fp32, OpenVINO (operating point openvino)", torch.float32, openvino("fp32")),
        ("bf16, OpenVINO (operating point openvino+bf16)", torch.float32, openvino("bf16")),
        ("int8, torch.ao dynamic (operating point int8)", torch.float32, ao_int8),
        ("int8, torchao dynamic activations and weights", torch.float32, torchao("Int8DynamicActivationInt8WeightConfig")),
        ("int8, torchao weights only", torch.float32, torchao("Int8WeightOnlyConfig")),
    ]
    return [(n, d, b) for n, d, b in paths if b is not None]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("medium", "tiny"), default="medium")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per path after a warm-up (default 3)")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile paths (they compile for about a minute)")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/encoder-paths-cpu.json (…-tiny.json for --size tiny)")
    args = p.parse_args()
    out = args.out or HERE / "results" / ("encoder-paths-cpu.json" if args.size == "medium" else "encoder-paths-cpu-tiny.json")

    import torch
    import torch.nn.functional as F

    from emotion_tool.config import N_FRAMES
    from emotion_tool.engine.kernels import cpu_kernels
    from emotion_tool.engine.operating_point import cpu_features, cpu_model
    from emotion_tool.engine.testing import SIZES, random_model

    torch.manual_seed(0)
    config = SIZES[args.size]
    with torch.no_grad():
        encoder = random_model(config, sensitive=args.size != "medium").whisper.encoder.eval()
    features = torch.randn(1, config.n_mels, N_FRAMES)
    rows = []
    with torch.inference_mode():
        base_s, reference = _best_of(lambda: encoder(features), args.repeats)
        for name, dtype, build in _paths(encoder, with_compile=not args.no_compile):
            net = build()
            if net is None:
                print(f"{name}: not installed, left out", file=sys.stderr)
                continue
            x = features.to(dtype)
            seconds, states = _best_of(lambda: net(x), args.repeats)
            states = states.float()
            rows.append({
                "path": name,
                "seconds": seconds,
                "speedup": base_s / seconds,
                "max_abs_diff": float((states - reference).abs().max()),
                "cosine": float(F.cosine_similarity(states.flatten(), reference.flatten(), dim=0)),
            })  # fmt: skip
            print(f"{name}: {seconds:.2f} s", file=sys.stderr)
            net = None  # free it before the next path is built
    report = {
        "size": args.size,
        "random_weights": True,
        "frames": N_FRAMES,
        "threads": torch.get_num_threads(),
        "cpu": f"{cpu_model()} ({cpu_features().describe()})",
        "kernels": cpu_kernels().describe(),  # which of the two bf16 attention paths operating point bf16 runs here
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "baseline_seconds": base_s,
        "paths": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{args.size}-size encoder, RANDOM weights, one padded 30-s window, {report['threads']} threads; CPU: {report['cpu']}")
    print(f"operating point bf16 on this CPU: {report['kernels']}")
    print(f"{'path':<50} {'time':>8} {'vs fp32':>8} {'max |Δ|':>10} {'cosine':>10}")
    for r in rows:
        print(f"{r['path']:<50} {r['seconds']:>7.2f}s {r['speedup']:>7.2f}x {r['max_abs_diff']:>10.2e} {r['cosine']:>10.6f}")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
