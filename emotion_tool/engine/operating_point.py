"""Operating points: every choice that changes the numbers, named by one string.

"published" is MERaLiON-SER-v1 as it was trained and used: every window zero-padded to 30 s, fp32 on
the CPU, each trace window read on its own. Any other point is opt-in, and its name (the choices that
differ, joined by "+" in a fixed order, e.g. "trimmed+int8") travels in every result as
`operating_point`. Parsing, validation and printing live here and nowhere else: adding a point means
adding a choice below and its tests.

No torch import: the command line and the MCP server validate names before loading anything.

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Literal

__all__ = ["OperatingPoint", "CpuFeatures", "cpu_features", "cpu_model", "PRESETS", "LIVE"]

Context = Literal["padded", "trimmed"]
Runtime = Literal["torch", "openvino"]
Precision = Literal["fp32", "bf16", "fp16", "int8"]
TraceMode = Literal["windows", "shared-encoder"]

_CONTEXTS: tuple[str, ...] = ("padded", "trimmed")
_RUNTIMES: tuple[str, ...] = ("torch", "openvino")
_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
_TRACE_MODES: tuple[str, ...] = ("windows", "shared-encoder")
# Each choice's published value is left out of names; the others are written in this order.
_PUBLISHED = {"context": "padded", "runtime": "torch", "precision": "fp32", "trace_mode": "windows"}
_CHOICES = {"context": _CONTEXTS, "runtime": _RUNTIMES, "precision": _PRECISIONS, "trace_mode": _TRACE_MODES}
_OPENVINO_PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class OperatingPoint:
    """How windows are fed to the network. The defaults are the published point.

    Example:
        >>> OperatingPoint.parse("int8+trimmed")
        OperatingPoint('trimmed+int8')
        >>> str(OperatingPoint(precision="bf16"))
        'bf16'
    """

    context: Context = "padded"  # "padded": each window zero-padded to 30 s (published); "trimmed": the encoder sees only the window's own frames
    runtime: Runtime = "torch"  # what runs the encoder: torch (published), or OpenVINO's CPU plugin (`pip install 'emotion-tool[openvino]'`), converted from this package's own module
    precision: Precision = "fp32"  # the encoder's arithmetic: fp32 (published on the CPU), bf16/fp16 (fp32 accumulation; features, pooling and heads stay fp32), int8 (quantized linear layers, CPU only)
    trace_mode: TraceMode = "windows"  # "windows": each trace window read on its own (published); "shared-encoder": one encoder pass per <= 30-s window, each trace window pooled from its frames

    def __post_init__(self) -> None:
        for f in fields(self):
            value, allowed = getattr(self, f.name), _CHOICES[f.name]
            if value not in allowed:
                raise ValueError(f"{f.name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.runtime == "openvino" and self.precision not in _OPENVINO_PRECISIONS:
            raise ValueError(f"the openvino runtime computes in fp32 or bf16, not {self.precision}; use 'openvino' or 'openvino+bf16'")

    @classmethod
    def parse(cls, name: "str | OperatingPoint | None") -> "OperatingPoint":
        """Reads a name such as "published", "live", "bf16" or "trimmed+int8" (parts in any order).

        Raises:
            ValueError: an unknown part, two values of one choice, or not a string; the message lists
                the accepted names.
        """
        if isinstance(name, OperatingPoint):
            return name
        if name is None:
            return PUBLISHED
        if not isinstance(name, str):
            raise ValueError(f"operating point must be a name such as 'published' or 'bf16', got {type(name).__name__} {name!r}")
        key = name.strip().lower()
        if key in PRESETS:
            return PRESETS[key]
        chosen: dict[str, str] = {}
        for part in (p.strip() for p in key.split("+")):
            owner = next((c for c, allowed in _CHOICES.items() if part in allowed), None)
            if owner is None:
                raise ValueError(f"unknown operating point {name!r} (part {part!r}); {describe_choices()}")
            if owner in chosen and chosen[owner] != part:
                raise ValueError(f"operating point {name!r} names two {owner.replace('_', ' ')}s ({chosen[owner]!r} and {part!r}); keep one")
            chosen[owner] = part
        return cls(**chosen)  # type: ignore[arg-type]

    @classmethod
    def from_flags(
        cls,
        name: "str | OperatingPoint | None",
        *,
        context: str | None = None,
        precision: str | None = None,
        trace_mode: str | None = None,
    ) -> "OperatingPoint":
        """A named point with single choices given on top (command-line flags such as --context).

        Raises:
            ValueError: a choice contradicts one the name makes explicitly.
        """
        point = cls.parse(name)
        for field, value in (("context", context), ("precision", precision), ("trace_mode", trace_mode)):
            if value is None or value == getattr(point, field):
                continue
            if name is not None and getattr(point, field) != _PUBLISHED[field]:
                raise ValueError(f"operating point {str(point)!r} and {field.replace('_', ' ')} {value!r} contradict each other; give one")
            point = replace(point, **{field: value})
        return point

    @property
    def name(self) -> str:
        """The canonical name: "published", or the non-published choices joined by "+"."""
        parts = [getattr(self, c) for c in _CHOICES if getattr(self, c) != _PUBLISHED[c]]
        return "+".join(parts) or "published"

    @property
    def published(self) -> bool:
        """Whether this point reproduces the published model (fp32 on the CPU; see `precision`)."""
        return self.name == "published"

    def with_(self, **changes: str) -> "OperatingPoint":
        """A copy with some choices changed (validated)."""
        return replace(self, **changes)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"OperatingPoint({self.name!r})"


PUBLISHED = OperatingPoint()
LIVE = OperatingPoint(context="trimmed", precision="bf16")
"""The recommended point for live use on a CPU (README "Live latency"): the published context costs a
30-s encoder pass per utterance, seconds on two cores even in bf16; the trimmed context is what reads
an utterance within about a second. bf16 adds speed without moving a trained encoder's states beyond
what trimming does, unlike int8. Trimming itself moves readings a lot (a trained encoder's pooled
states: cosine 0.09 against the padded pass), so whole-file analysis keeps "published"."""

PRESETS: dict[str, OperatingPoint] = {"published": PUBLISHED, "live": LIVE}
"""Names that stand for a whole point. Results always carry the canonical name (str(point))."""

NAMED_POINTS: tuple[str, ...] = (
    "published", "bf16", "int8", "trimmed", "trimmed+bf16", "trimmed+int8",
    "shared-encoder", "trimmed+int8+shared-encoder",
)  # fmt: skip
"""The points the benchmarks and `emotion-tool agree` measure (any valid combination is accepted)."""


def describe_choices() -> str:
    """The accepted names, for error messages and help texts."""
    return (
        f"use a preset ({', '.join(PRESETS)}) or join one value of each choice you change with '+': "
        f"context {'|'.join(_CONTEXTS)}, runtime {'|'.join(_RUNTIMES)}, precision {'|'.join(_PRECISIONS)}, "
        f"trace {'|'.join(_TRACE_MODES)} (e.g. 'bf16', 'trimmed+int8', 'openvino+bf16')"
    )


def faster_point_hint(point: "OperatingPoint | str", *, device: str = "cpu") -> str | None:
    """How to read the same context faster than `point` does on this CPU, where one is known; else None.

    Torch's bf16 encoder is not the fastest bf16 path on the CPUs measured so far: OpenVINO's CPU plugin
    ran the same padded 30-s pass 1.1x (Intel Xeon with AMX) to 1.3x (AMD EPYC with AVX-512 BF16) faster
    and moved the encoder states 6 to 9 times less (docs/operating-points.md).
    """
    p = OperatingPoint.parse(point) if not isinstance(point, OperatingPoint) else point
    if p.runtime != "torch" or p.precision != "bf16" or p.context != "padded" or not str(device).startswith("cpu"):
        return None  # (the trimmed context through OpenVINO has not been timed against torch's)
    better = str(p.with_(runtime="openvino"))
    try:
        import importlib.util

        installed = importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):
        installed = False
    how = "" if installed else " (pip install 'emotion-tool[openvino]')"
    return (
        f"--operating-point {better}{how} reads the same context with OpenVINO's bf16, 1.1-1.3x faster than torch's "
        "bf16 on the CPUs measured so far and closer to the published numbers (docs/operating-points.md)"
    )


# --- what the CPU can do fast ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuFeatures:
    """Instruction-set features of this CPU that decide which precisions run fast."""

    capability: str  # torch's vector ISA level for this CPU ("AVX512", "AVX2", "DEFAULT", ...)
    avx512_bf16: bool  # AVX-512 BF16 dot products (Intel Cooper Lake+, AMD Zen 4+)
    amx_bf16: bool  # Intel AMX tiles with bf16 (Sapphire Rapids+): bf16 matmuls several times faster than fp32
    amx_int8: bool  # Intel AMX tiles with int8
    avx512_vnni: bool  # AVX-512 VNNI int8 dot products
    avx512_fp16: bool  # AVX-512 FP16 arithmetic
    arm_bf16: bool  # Arm BF16 / SME (Apple M2+, Graviton 3+)

    @property
    def fast_bf16(self) -> bool:
        """Whether bf16 matmuls have hardware units here (else bf16 works but may be slower than fp32)."""
        return self.avx512_bf16 or self.amx_bf16 or self.arm_bf16

    def describe(self) -> str:
        names = [f.name for f in fields(self) if f.name != "capability" and getattr(self, f.name)]
        return f"{self.capability}; " + (", ".join(names) if names else "no bf16/int8 matrix units")


def _cpu_flags() -> set[str]:
    """Feature flags of the first CPU: /proc/cpuinfo on Linux, sysctl on macOS, else none known."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    if platform.system() == "Darwin":
        import subprocess

        try:
            out = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return set()
        return {m.group(1).lower() for m in re.finditer(r"hw\.optional\.arm\.FEAT_(\w+): 1", out)}
    return set()


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (e.g. "AMD EPYC 9B14"), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "CPU part")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


@lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """What this CPU offers, detected at run time (cached). Set EMOTION_TOOL_CPU_FLAGS to a space-
    separated flag list to override detection (for tests, or a CPU the detection misreads)."""
    override = os.environ.get("EMOTION_TOOL_CPU_FLAGS")
    flags = set(override.split()) if override is not None else _cpu_flags()
    try:
        import torch

        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # torch missing or too old to say: the flags still tell
        capability = "unknown"
    return _features_from_flags(flags, capability)


def _features_from_flags(flags: set[str], capability: str) -> CpuFeatures:
    return CpuFeatures(
        capability=capability,
        avx512_bf16="avx512_bf16" in flags,
        amx_bf16="amx_bf16" in flags and "amx_tile" in flags,
        amx_int8="amx_int8" in flags and "amx_tile" in flags,
        avx512_vnni="avx512_vnni" in flags,
        avx512_fp16="avx512_fp16" in flags,
        arm_bf16="bf16" in flags or "sme" in flags,
    )
