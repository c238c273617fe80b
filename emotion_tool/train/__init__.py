"""Fine-tuning with the MERaLiON-SER recipe, and export in the published layout.

One module per stage: `config` (TrainConfig, read from TOML/JSON; no torch), `records` (what a run
reports), `lora` (the network to train, its adapters and the merged export), `losses`, `trainer`
(the loop, resume, selection and export) and `cli` (`emotion-tool train`). Names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

__all__ = ["TrainConfig", "LoraOptions", "load_config", "train", "TrainingRun", "TrainingSummary", "EpochLog"]

if TYPE_CHECKING:
    from .cli import add_subcommand, run
    from .config import LoraOptions, TrainConfig, load_config
    from .losses import ccc_loss
    from .records import DevScores, EpochLog, TrainingRun, TrainingSummary
    from .trainer import train

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        ".config": ("TrainConfig", "LoraOptions", "load_config"),
        ".trainer": ("train",),
        ".records": ("TrainingRun", "TrainingSummary", "EpochLog", "DevScores"),
        ".losses": ("ccc_loss",),
        ".cli": ("add_subcommand", "run"),
    },
)
