"""Kernels with a per-CPU winner, chosen on the machine that runs them.

One kernel has such a winner today: the attention (scores, softmax, weighted sum) of a bf16 encoder
on the CPU. With Intel AMX (Sapphire Rapids and later) the fused attention kernel runs fastest in
bf16 itself; on AVX-512 BF16 without AMX (AMD Zen 4, Intel Cooper Lake) it runs slower in bf16 than in
fp32. Where the CPU's features decide it, they do; elsewhere (Arm bf16, CPUs this table does not know)
a short micro-benchmark decides it once, and its result is kept per machine and torch version in the
user's cache (`~/.cache/emotion-tool/kernels.json`). The choice changes speed and, slightly, the
states: results stay named by their operating point ("bf16"), and `emotion-tool info` prints the choice.

Set EMOTION_TOOL_CPU_ATTENTION=bf16 or fp32 to override the choice (to compare the two, or on a CPU
the table misjudges).

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Literal

from emotion_tool.engine.operating_point import CpuFeatures, cpu_features

__all__ = ["KernelChoice", "cpu_kernels", "choose_kernels", "attention_by_features", "cache_dir"]

AttentionPrecision = Literal["bf16", "fp32"]
_ATTENTION_PRECISIONS: tuple[str, ...] = ("bf16", "fp32")
_ENV_OVERRIDE = "EMOTION_TOOL_CPU_ATTENTION"
# The micro-benchmark's shape: one head-split 30-s window of a whisper-medium-size encoder
# (16 heads of 64 over 1500 frames), the shape the encoder's attention runs at.
_BENCH_HEADS, _BENCH_FRAMES, _BENCH_HEAD_DIM = 16, 1500, 64
_BENCH_REPEATS = 3

Measure = Callable[[], "dict[str, float]"]


@dataclass(frozen=True)
class KernelChoice:
    """What a bf16 encoder's attention computes in on this CPU, and what decided it."""

    attention: AttentionPrecision  # "bf16": the fused attention kernel in bf16; "fp32": q, k, v upcast to fp32 around it
    decided_by: str  # "cpu features (...)", "measured ...", "cached measurement ...", or the environment variable

    def describe(self) -> str:
        return f"bf16 encoders attend in {self.attention} ({self.decided_by})"


def attention_by_features(features: CpuFeatures) -> tuple[AttentionPrecision, str] | None:
    """The attention precision the CPU's features decide, with the reason, or None (measure it).

    Measured on 2-core machines (docs/operating-points.md, "The encoder's CPU paths"): with AMX, bf16
    attention made the whole bf16 encoder 1.5x faster than fp32 attention; on AVX-512 BF16 without
    AMX, bf16 attention was the slower one (4.73 s against 4.20 s).
    """
    if features.amx_bf16:
        return "bf16", "cpu features: amx_bf16"
    if features.avx512_bf16:
        return "fp32", "cpu features: avx512_bf16 without amx_bf16"
    if not features.fast_bf16:
        # No bf16 units at all: bf16 kernels are emulated, fp32 is never the slower one.
        return "fp32", "cpu features: no bf16 units"
    return None


def cache_dir() -> Path:
    """The user's cache for this package: $EMOTION_TOOL_CACHE, else $XDG_CACHE_HOME/emotion-tool, else ~/.cache/emotion-tool."""
    if os.environ.get("EMOTION_TOOL_CACHE"):
        return Path(os.environ["EMOTION_TOOL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "emotion-tool"


def _machine_key(features: CpuFeatures, torch_version: str) -> str:
    """Names this machine and torch build: the CPU's model name, a digest of its flags, torch's version."""
    from emotion_tool.engine.operating_point import _cpu_flags, cpu_model

    model = cpu_model()
    flags = hashlib.sha256(" ".join(sorted(_cpu_flags())).encode()).hexdigest()[:12]
    return f"{model} | {features.capability} | flags {flags} | torch {torch_version}"


def _measure_attention() -> dict[str, float]:
    """Seconds (best of 3 after a warm-up) of one attention at the encoder's shape, in bf16 and in fp32
    around bf16 projections, at the current torch thread count. Takes about a second."""
    import time

    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, _BENCH_HEADS, _BENCH_FRAMES, _BENCH_HEAD_DIM, generator=g).bfloat16() for _ in range(3))
    runs = {
        "bf16": lambda: F.scaled_dot_product_attention(q, k, v),
        "fp32": lambda: F.scaled_dot_product_attention(q.float(), k.float(), v.float()).bfloat16(),
    }
    seconds: dict[str, float] = {}
    with torch.inference_mode():
        for name, fn in runs.items():
            fn()
            best = float("inf")
            for _ in range(_BENCH_REPEATS):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            seconds[name] = best
    return seconds


def choose_kernels(
    features: CpuFeatures | None = None,
    *,
    cache_path: Path | None = None,
    torch_version: str | None = None,
    measure: Measure = _measure_attention,
) -> KernelChoice:
    """Decides the CPU's attention precision: the environment override, else the features, else a cached
    or new measurement (`measure` returns seconds per precision; the result is written to `cache_path`,
    default `cache_dir()/kernels.json`).

    Raises:
        ValueError: EMOTION_TOOL_CPU_ATTENTION names something other than bf16 or fp32.
    """
    override = os.environ.get(_ENV_OVERRIDE)
    if override:
        value = override.strip().lower()
        if value not in _ATTENTION_PRECISIONS:
            raise ValueError(f"{_ENV_OVERRIDE}={override!r}; use one of {', '.join(_ATTENTION_PRECISIONS)} (or unset it to choose per CPU)")
        return KernelChoice(attention=value, decided_by=_ENV_OVERRIDE)  # type: ignore[arg-type]
    features = features or cpu_features()
    decided = attention_by_features(features)
    if decided is not None:
        return KernelChoice(attention=decided[0], decided_by=decided[1])
    if torch_version is None:
        import torch

        torch_version = torch.__version__
    path = cache_path or cache_dir() / "kernels.json"
    key = _machine_key(features, torch_version)
    cache = _read_cache(path)
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("attention") in _ATTENTION_PRECISIONS:
        return KernelChoice(attention=entry["attention"], decided_by=f"cached measurement in {path}: {_seconds(entry)}")
    seconds = measure()
    winner: AttentionPrecision = "bf16" if seconds["bf16"] < seconds["fp32"] else "fp32"
    cache[key] = {"attention": winner, "bf16_s": seconds["bf16"], "fp32_s": seconds["fp32"]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=2) + "\n")
        os.replace(tmp, path)  # atomic: two processes measuring at once each leave a whole file
        where = f"cached in {path}"
    except OSError as e:
        warnings.warn(f"could not cache the attention measurement in {path} ({e}); it will be measured again next time", stacklevel=2)
        where = "not cached"
    return KernelChoice(attention=winner, decided_by=f"measured on this machine, {where}: {_seconds(cache[key])}")


def _seconds(entry: dict) -> str:
    try:
        return f"bf16 {1000 * entry['bf16_s']:.1f} ms, fp32 {1000 * entry['fp32_s']:.1f} ms a layer"
    except (KeyError, TypeError, ValueError):
        return "timings not kept"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return {}  # nothing cached yet (or its folder cannot exist: writing says so)
    except (OSError, ValueError) as e:
        warnings.warn(f"ignoring the unreadable kernel cache {path} ({e}); measuring again", stacklevel=3)
        return {}
    return data if isinstance(data, dict) else {}


@lru_cache(maxsize=1)
def cpu_kernels() -> KernelChoice:
    """This machine's choice (decided once per process; see `choose_kernels`)."""
    return choose_kernels()
