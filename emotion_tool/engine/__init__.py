"""The engine: the network, its weights, its features and the recognizer that runs it.

Layer 2. It owns the options (`options`), the operating points (`operating_point`), the result
types (`results`), log-mel features (`features`), the network as pure `nn.Module`s (`model`), the
checkpoint reader (`checkpoint`), window plans and aggregation (`windows`), the calibration file it
applies (`calibrated`), `EmotionRecognizer` (`recognizer`) and random test checkpoints (`testing`).
It imports the foundation and `emotion_tool.audio` only; nothing here knows of streaming, science,
jobs, the command line or the integrations. Names load on first use, so the types import no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emotion_tool._lazy import lazy_names

__all__ = ["EmotionRecognizer", "AnalysisOptions", "OperatingPoint", "EmotionAnalysis", "EmotionReading", "UtteranceReading"]

if TYPE_CHECKING:
    from emotion_tool.engine.operating_point import OperatingPoint
    from emotion_tool.engine.options import AnalysisOptions
    from emotion_tool.engine.recognizer import EmotionRecognizer
    from emotion_tool.engine.results import (
        EmotionAnalysis,
        EmotionReading,
        UtteranceReading,
    )

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        ".recognizer": ("EmotionRecognizer",),
        ".options": ("AnalysisOptions",),
        ".operating_point": ("OperatingPoint",),
        ".results": ("EmotionAnalysis", "EmotionReading", "UtteranceReading"),
    },
)
