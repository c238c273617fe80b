"""`ServerOptions`: what the server loads and the limits it enforces. Imports nothing heavy."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["ServerOptions", "LogLevel"]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
_MIB = 1024 * 1024
_JSON_OVERHEAD_BYTES = _MIB  # room for the JSON-RPC envelope around a base64 payload in one HTTP body


@dataclass(frozen=True)
class ServerOptions:
    """What the server loads and the limits it enforces."""

    model: str | None = None  # Hub id or checkpoint directory; None: $EMOTION_TOOL_MODEL, else MERaLiON/MERaLiON-SER-v1
    device: str = "auto"  # "auto" (CUDA, MPS, CPU), "cpu", "cuda", "cuda:N" or "mps"
    dtype: str = "auto"  # "auto" (bf16/fp16 on GPU, fp32 on CPU), "float32", "float16" or "bfloat16"
    operating_point: str | None = None  # None or "published": reproduces the model; "live": the recommended point for live sessions on a CPU; any name of emotion_tool.engine.operating_point
    refine_with: str | None = None  # a second, faithful operating point (e.g. "published", "openvino+bf16"): each session utterance is read at operating_point first, then again at this one, which replaces it; None: one reading
    allow_dirs: tuple[Path, ...] = ()  # directories audio_path may read from; none: no file is read
    max_duration_s: float = 600.0  # longest recording analyze_emotion takes, seconds; inf: no limit
    max_request_mb: float = 16.0  # largest base64 payload (audio_base64, chunk_base64) or file, MiB; inf: no limit
    max_chunk_s: float = 10.0  # longest chunk push_audio takes, seconds
    max_session_s: float = 3600.0  # audio one streaming session may receive in all, seconds; inf: no limit
    max_sessions: int = 16  # streaming sessions held at once (ended ones make room for new ones)
    session_idle_s: float = 300.0  # a session without a call for this long expires
    max_pending: int = 8  # model jobs admitted at once, the running one included; beyond: "busy"
    session_dir: Path | None = None  # streaming sessions' readings are appended here as they are read; None: kept in memory only
    time_budget_s: float | None = None  # a model call running longer is stopped at its next window; None or inf: no budget
    header_timeout_s: float = 10.0  # HTTP: a request's headers must arrive whole within this, else the connection closes
    body_timeout_s: float = 60.0  # HTTP: a request's body must arrive whole within this, else 408
    log_level: LogLevel = "WARNING"  # the server's log on stderr (stdout carries the protocol over stdio)
    calibration: Path | None = None  # a calibration.json from `emotion-tool calibrate`; None: the network's own probabilities

    def __post_init__(self) -> None:
        for name, (flag, unit, inf_means) in _LIMITS.items():
            value = getattr(self, name)
            if value is None and name == "time_budget_s":
                continue
            _check_limit(value, flag=flag, unit=unit, inf_means=inf_means)
        if self.operating_point is not None:
            from emotion_tool.engine.operating_point import OperatingPoint  # torch-free

            OperatingPoint.parse(self.operating_point)  # a bad name fails at start-up, not at the first call
        if self.refine_with is not None:
            from emotion_tool.engine.operating_point import OperatingPoint

            refine = OperatingPoint.parse(self.refine_with)
            if refine == OperatingPoint.parse(self.operating_point):
                raise ValueError(
                    f"--refine-with {self.refine_with}: that is the point sessions are read at already; give a faster "
                    "--operating-point (e.g. live) and a faithful --refine-with (e.g. published), or leave --refine-with out"
                )
        for name, flag in (("max_sessions", "--max-sessions"), ("max_pending", "--max-pending")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{flag} {value!r}: give a whole number, at least 1")

    @property
    def max_request_chars(self) -> int:
        """The base64 limit in characters (`sys.maxsize` for no limit)."""
        return _whole(self.max_request_mb * _MIB)

    @property
    def max_message_bytes(self) -> int:
        """The longest protocol message: the largest payload plus its JSON envelope (an HTTP body or a stdio
        line; longer ones get 413 or a JSON-RPC error before they are parsed)."""
        return _whole(self.max_request_mb * _MIB + _JSON_OVERHEAD_BYTES)

    @property
    def time_budget(self) -> float | None:
        """`time_budget_s` with inf read as no budget (None)."""
        return None if self.time_budget_s is None or math.isinf(self.time_budget_s) else self.time_budget_s


# The limits that are numbers: (flag, unit, what inf means or None where inf is refused). A finite limit is a
# positive number up to _MAX_FINITE in its unit: larger ones gain nothing over inf and overflow sample counts.
_LIMITS: dict[str, tuple[str, str, str | None]] = {
    "max_duration_s": ("--max-duration", "seconds", "no limit"),
    "max_request_mb": ("--max-request-mb", "MiB", "no limit"),
    "max_chunk_s": ("max_chunk_s", "seconds", None),
    "max_session_s": ("max_session_s", "seconds", "no limit"),
    "session_idle_s": ("--session-idle", "seconds", None),
    "header_timeout_s": ("--header-timeout", "seconds", None),
    "body_timeout_s": ("--body-timeout", "seconds", None),
    "time_budget_s": ("--time-budget", "seconds", "no budget"),
}
_MAX_FINITE = 1e9  # about 31 years of seconds, or a PiB in MiB


def _check_limit(value: object, *, flag: str, unit: str, inf_means: str | None) -> None:
    """Refuses a limit that is not a positive number of `unit` (or inf, where `inf_means` says what it means)."""
    allowed = f"a positive number of {unit} up to {_MAX_FINITE:g}" + (f", or inf for {inf_means}" if inf_means else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not value > 0:
        raise ValueError(f"{flag} {value!r}: give {allowed}")
    if math.isinf(value) and inf_means is None:
        raise ValueError(f"{flag} inf: this limit cannot be switched off; give {allowed}")
    if math.isfinite(value) and value > _MAX_FINITE:
        raise ValueError(f"{flag} {value:g}: over {_MAX_FINITE:g} {unit}; give {allowed}")


def _whole(value: float) -> int:
    return sys.maxsize if value >= sys.maxsize else int(value)
