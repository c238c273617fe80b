"""The calibration file the engine applies: what `emotion-tool calibrate` writes, and how it is read.

Layer 2 (engine). A calibration maps the network's categorical logits z (K,) to probabilities
softmax(z / T + b). The recognizer reads it through `Calibration` and `load_calibration`; fitting one
(and measuring reliability) lives above, in `emotion_tool.science.calibration`, which writes this
format. The file also records the fit's data and its reliability before and after, so those types
are here too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emotion_tool.engine.results import CalibrationNote

__all__ = ["Calibration", "load_calibration", "same_model", "CALIBRATION_FILE", "CALIBRATION_FORMAT"]

CALIBRATION_FORMAT = "emotion-tool.calibration/1"
CALIBRATION_FILE = "calibration.json"  # written into a checkpoint directory by default


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def scale_logits(logits: np.ndarray, temperature: float, bias: np.ndarray | None) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    return z if bias is None else z + bias


class ReliabilityBin(BaseModel):
    """One confidence bin of a reliability diagram."""

    model_config = ConfigDict(frozen=True)

    low: float = Field(description="Lower edge (exclusive, except 0)")
    high: float = Field(description="Upper edge (inclusive)")
    segments: int
    accuracy: float | None = Field(description="Share of the bin's segments whose label is right; null when empty")
    confidence: float | None = Field(description="Mean top probability in the bin; null when empty")


class ReliabilitySummary(BaseModel):
    """How well the top probability tracks accuracy on a set of segments."""

    model_config = ConfigDict(frozen=True)

    segments: int
    ece: float = Field(description="Expected calibration error, 0..1 (see the module docstring for the bins)")
    nll: float = Field(description="Mean negative log-likelihood of the reference labels, nats")
    accuracy: float = Field(description="Share of segments whose most probable label is right")
    mean_confidence: float = Field(description="Mean top probability")
    bins: list[ReliabilityBin]


class Abstention(BaseModel):
    """The `uncertain` threshold chosen for a target precision, and what it leaves."""

    model_config = ConfigDict(frozen=True)

    target_precision: float = Field(description="Wanted share of right labels among readings not flagged uncertain")
    threshold: float | None = Field(description="Top probability below which a reading is flagged; null: the target is not reached")
    precision: float | None = Field(description="Share of right labels among unflagged segments at the threshold")
    coverage: float = Field(description="Share of segments left unflagged at the threshold")
    segments: int = Field(description="Segments the threshold was chosen on")


# --- the file --------------------------------------------------------------------------


class FittedOn(BaseModel):
    """The development data a calibration was fitted on."""

    model_config = ConfigDict(frozen=True)

    manifest: str = Field(description="Path of the manifest")
    sha256: str = Field(description="SHA-256 of the manifest file's bytes")
    items: int
    segments: int = Field(description="Segments the fit used")
    protocols: list[str] = Field(description="How items were cut into segments (see `emotion-tool eval`)")
    per_class: dict[str, int] = Field(description="Segments per label")


class Calibration(BaseModel):
    """A fitted calibration, as written to calibration.json and loaded with `calibration=`."""

    model_config = ConfigDict(frozen=True)

    format: Literal["emotion-tool.calibration/1"] = CALIBRATION_FORMAT
    model_id: str = Field(description="The checkpoint it was fitted for (directories as absolute paths)")
    labels: list[str] = Field(description="The model's labels, in logit order")
    operating_point: str = Field(description="The operating point the logits were read at")
    random_weights: bool = Field(description="Fitted on a random-weight checkpoint: it means nothing")
    temperature: float = Field(gt=0, description="Logits are divided by this")
    bias: dict[str, float] | None = Field(default=None, description="Added to the scaled logits, per label; null: none")
    bias_rule: str = Field(description="Why a bias was or was not fitted")
    min_confidence: float | None = Field(
        default=None, ge=0, le=1, description="The fitted `uncertain` threshold on calibrated confidence; null: keep the recognizer's"
    )
    abstention: Abstention | None = Field(default=None, description="How the threshold was chosen, and the coverage it leaves")
    fitted_on: FittedOn
    before: ReliabilitySummary = Field(description="The network's own probabilities on the fitting data")
    after: ReliabilitySummary = Field(description="Calibrated probabilities on the same data (in-sample)")
    created_at: str = Field(description="UTC time, ISO 8601")
    emotion_tool_version: str
    warnings: list[str] = Field(default_factory=list)

    def bias_vector(self) -> np.ndarray | None:
        """The bias (K,) in `labels` order, or None."""
        return None if self.bias is None else np.array([self.bias[lab] for lab in self.labels], dtype=np.float64)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, K) of logits (n, K)."""
        return np.exp(log_softmax(scale_logits(logits, self.temperature, self.bias_vector())))

    def digest(self) -> str:
        """The first 12 hex digits of the SHA-256 of its canonical JSON: names this exact calibration."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]

    def note(self, source: str = "in memory") -> CalibrationNote:
        """The short record that readings made with it carry."""
        return CalibrationNote(
            source=source,
            sha256=self.digest(),
            temperature=self.temperature,
            bias=self.bias is not None,
            min_confidence=self.min_confidence,
            fitted_for=f"{self.model_id} at {self.operating_point}",
            fitted_on=f"{Path(self.fitted_on.manifest).name} (sha256 {self.fitted_on.sha256[:12]})",
            random_weights=self.random_weights,
        )

    def save(self, path: str | os.PathLike) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return out


def load_calibration(source: "str | os.PathLike | Calibration") -> tuple[Calibration, str]:
    """(calibration, name for readings) from a calibration.json path, or an object ("in memory").

    Raises:
        ValueError: the file is missing or is not a calibration file.
    """
    if isinstance(source, Calibration):
        return source, "in memory"
    path = Path(source).expanduser()
    if path.is_dir() and (path / CALIBRATION_FILE).is_file():
        path = path / CALIBRATION_FILE
    if not path.exists():
        raise ValueError(f"calibration {path} does not exist; write one with `emotion-tool calibrate MANIFEST --model ...`")
    from emotion_tool.audio import AudioError, open_regular_file

    try:
        with open_regular_file(path) as f:  # a FIFO or device is refused by its type, without blocking
            data = f.read()
    except AudioError as e:
        if e.problem == "type":
            raise ValueError(f"calibration {path} is not a regular file; give the calibration.json that `emotion-tool calibrate` wrote") from e
        raise ValueError(f"calibration {path} cannot be read; check its permissions") from e
    try:
        return Calibration.model_validate_json(data), path.name
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'the file'}: {' '.join(err['msg'].split())}" for err in e.errors()[:3])
        more = f" (and {e.error_count() - 3} more)" if e.error_count() > 3 else ""
        raise ValueError(
            f"{path} is not an emotion-tool calibration file ({problems}{more}); write one with `emotion-tool calibrate`"
        ) from e


def same_model(fitted: str, loaded: str) -> bool:
    """Whether two model ids name the same checkpoint (directories compared by absolute path)."""
    a, b = Path(fitted).expanduser(), Path(loaded).expanduser()
    if a.is_dir() or b.is_dir():
        return a.resolve() == b.resolve()
    return fitted == loaded
