"""What a run reports: dev scores, the per-epoch log line, and the summary of a finished run.

Layer 4, jobs (`emotion_tool.jobs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from emotion_tool.science.data import ClassBalance
from emotion_tool.science.metrics import EmotionScores

if TYPE_CHECKING:
    from emotion_tool.engine.model import MERaLiONSER

__all__ = ["EpochLog", "TrainingSummary", "TrainingRun", "EpochCallback", "DevScores"]


DevScores = EmotionScores
"""Scores on the development set (with `categorical_loss`): the one score type, under its former name."""


class EpochLog(BaseModel):
    """One line of log.jsonl."""

    model_config = ConfigDict(frozen=True)

    epoch: int = Field(description="1-based")
    train_loss: float = Field(description="Mean total loss over the epoch's batches")
    train_categorical_loss: float = Field(description="Mean cross-entropy term")
    train_ccc_loss: float = Field(description="Mean 1 − CCC term (0 for batches without dimensions)")
    dev_categorical_loss: float = Field(description="Early stopping watches this")
    dev_ccc_loss: float | None = Field(default=None, description="1 − mean CCC on the dev set")
    dev_uar: float | None = Field(description="7-class UAR on the dev set")
    dev_uar4: float | None = Field(description="4-class UAR on the dev set")
    dev_ccc: dict[str, float | None] = Field(default_factory=dict, description="CCC per dimension on the dev set")
    lr_lora: float | None = Field(default=None, description="LoRA learning rate at the epoch's end")
    lr_head: float = Field(description="Head learning rate at the epoch's end")
    seconds: float = Field(description="Wall time of the epoch")


class TrainingSummary(BaseModel):
    """What a finished run produced; also written to model/training.json."""

    model_config = ConfigDict(frozen=True)

    output_dir: Path
    model_dir: Path = Field(description="The exported checkpoint, in the published layout")
    base: str = Field(description="Where training started: a checkpoint, or whisper:<dir> with a fresh head")
    random_weights: bool = Field(description="The starting checkpoint had random weights, so the export is a test model")
    train_manifest_sha256: str
    dev_manifest_sha256: str
    train_balance: ClassBalance
    dev_balance: ClassBalance
    epochs_run: int
    stopped_early: bool
    best_epochs: list[int] = Field(description="The kept epochs, best first")
    exported: Literal["average", "best"] = Field(description="average of the kept epochs, or the best epoch alone")
    exported_epochs: list[int] = Field(description="The epochs whose weights the export holds")
    dev: EmotionScores = Field(description="The exported model on the dev set")
    dev_predictions: list[str] = Field(description="The exported model's label per dev item, in manifest order")
    history: list[EpochLog]


@dataclass
class TrainingRun:
    """`train`'s result: the summary, and the exported network (eval mode, on the training device)."""

    summary: TrainingSummary
    model: MERaLiONSER


EpochCallback = Callable[[EpochLog], None]
"""Called after each epoch, once its state is saved (so a run stopped in it resumes from the next)."""
