"""Fine-tuning with the MERaLiON-SER recipe, and export in the published layout.

One module per stage: `config` (TrainConfig, read from TOML/JSON; no torch), `records` (what a run
reports), `lora` (the network to train, its adapters and the merged export), `losses`, `trainer`
(the loop, resume, selection and export); `emotion-tool train` is `emotion_tool.cli.train`. Layer 4
(jobs). Names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emotion_tool._lazy import lazy_names

__all__ = ["TrainConfig", "LoraOptions", "load_config", "train", "TrainingRun", "TrainingSummary", "EpochLog"]

if TYPE_CHECKING:
    from emotion_tool.jobs.train.config import LoraOptions, TrainConfig, load_config
    from emotion_tool.jobs.train.losses import ccc_loss
    from emotion_tool.jobs.train.records import (
        DevScores,
        EpochLog,
        TrainingRun,
        TrainingSummary,
    )
    from emotion_tool.jobs.train.trainer import train

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        ".config": ("TrainConfig", "LoraOptions", "load_config"),
        ".trainer": ("train",),
        ".records": ("TrainingRun", "TrainingSummary", "EpochLog", "DevScores"),
        ".losses": ("ccc_loss",),
    },
)
