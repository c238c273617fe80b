"""`ServerOptions`: what the server loads and the limits it enforces. Imports nothing heavy."""

from __future__ import annotations

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
    operating_point: str | None = None  # None or "published": reproduces the model; "live": the recommended point for live sessions on a CPU; any name of emotion_tool.operating_point
    allow_dirs: tuple[Path, ...] = ()  # directories audio_path may read from; none: no file is read
    max_duration_s: float = 600.0  # longest recording analyze_emotion takes, seconds; inf: no limit
    max_request_mb: float = 16.0  # largest base64 payload (audio_base64, chunk_base64) or file, MiB
    max_chunk_s: float = 10.0  # longest chunk push_audio takes, seconds
    max_session_s: float = 3600.0  # audio one streaming session may receive in all, seconds
    max_sessions: int = 16  # streaming sessions held at once (ended ones make room for new ones)
    session_idle_s: float = 300.0  # a session without a call for this long expires
    max_pending: int = 8  # model jobs admitted at once, the running one included; beyond: "busy"
    session_dir: Path | None = None  # streaming sessions' readings are appended here as they are read; None: kept in memory only
    time_budget_s: float | None = None  # a model call running longer is stopped at its next window; None: no budget
    header_timeout_s: float = 10.0  # HTTP: a request's headers must arrive whole within this, else the connection closes
    body_timeout_s: float = 60.0  # HTTP: a request's body must arrive whole within this, else 408
    log_level: LogLevel = "WARNING"  # the server's log on stderr (stdout carries the protocol over stdio)
    calibration: Path | None = None  # a calibration.json from `emotion-tool calibrate`; None: the network's own probabilities

    def __post_init__(self) -> None:
        for name in (
            "max_duration_s",
            "max_request_mb",
            "max_chunk_s",
            "max_session_s",
            "session_idle_s",
            "header_timeout_s",
            "body_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.operating_point is not None:
            from emotion_tool.operating_point import OperatingPoint  # torch-free

            OperatingPoint.parse(self.operating_point)  # a bad name fails at start-up, not at the first call
        if self.max_sessions < 1 or self.max_pending < 1:
            raise ValueError(f"max_sessions and max_pending must be at least 1, got {self.max_sessions}, {self.max_pending}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be positive (or None for no budget), got {self.time_budget_s}")

    @property
    def max_request_chars(self) -> int:
        """The base64 limit in characters."""
        return int(self.max_request_mb * _MIB)

    @property
    def max_http_body_bytes(self) -> int:
        """The HTTP body limit: the largest payload plus its JSON envelope (larger bodies get 413)."""
        return self.max_request_chars + _JSON_OVERHEAD_BYTES
