"""Fine-tuning with the MERaLiON-SER recipe, and export in the published layout.

One module per stage: `config` (TrainConfig, read from TOML/JSON; no torch), `records` (what a run
reports), `lora` (the network to train, its adapters and the merged export), `losses`, `trainer`
(the loop, resume, selection and export) and `cli` (`emotion-tool train`). Names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["TrainConfig", "LoraOptions", "load_config", "train", "TrainingRun", "TrainingSummary", "EpochLog"]

_LAZY = {
    "TrainConfig": ".config",
    "LoraOptions": ".config",
    "load_config": ".config",
    "train": ".trainer",
    "TrainingRun": ".records",
    "TrainingSummary": ".records",
    "EpochLog": ".records",
    "DevScores": ".records",
    "ccc_loss": ".losses",
    "add_subcommand": ".cli",
    "run": ".cli",
}

if TYPE_CHECKING:
    from .cli import add_subcommand, run
    from .config import LoraOptions, TrainConfig, load_config
    from .losses import ccc_loss
    from .records import DevScores, EpochLog, TrainingRun, TrainingSummary
    from .trainer import train


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'emotion_tool.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
