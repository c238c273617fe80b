"""Speech emotion perception with MERaLiON-SER-v1: 7 emotions and valence/arousal/dominance from speech.

Names are handed out on first use (PEP 562): `import emotion_tool` and the result types, options and
audio reader import no torch; `EmotionRecognizer` and `StreamingAnalyzer` load it when first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "EmotionRecognizer",
    "AnalysisOptions",
    "EmotionAnalysis",
    "EmotionReading",
    "StreamingAnalyzer",
    "StreamOptions",
    "UtteranceReading",
    "load_audio",
    "AudioError",
    "CheckpointError",
]

# name -> the module that defines it. Names past __all__ stay importable for existing callers.
_LAZY = {
    "EmotionRecognizer": ".recognizer",
    "AnalysisOptions": ".options",
    "EmotionAnalysis": ".results",
    "EmotionReading": ".results",
    "UtteranceReading": ".results",
    "TraceSegment": ".results",
    "ModelInfo": ".results",
    "StreamingAnalyzer": ".streaming",
    "StreamOptions": ".streaming",
    "load_audio": ".audio",
    "AudioError": ".audio",
    "CheckpointError": ".errors",
    "LABELS": ".config",
    "DIMENSIONS": ".config",
    "SAMPLE_RATE": ".config",
    "DEFAULT_MODEL_ID": ".config",
}

if TYPE_CHECKING:
    from .audio import AudioError, load_audio
    from .config import DEFAULT_MODEL_ID, DIMENSIONS, LABELS, SAMPLE_RATE
    from .errors import CheckpointError
    from .options import AnalysisOptions
    from .recognizer import EmotionRecognizer
    from .results import EmotionAnalysis, EmotionReading, ModelInfo, TraceSegment, UtteranceReading
    from .streaming import StreamingAnalyzer, StreamOptions


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'emotion_tool' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
