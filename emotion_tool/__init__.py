"""Speech emotion perception with MERaLiON-SER-v1: 7 emotions and valence/arousal/dominance from speech.

Names are handed out on first use (PEP 562): `import emotion_tool` and the result types, options and
audio reader import no torch; `EmotionRecognizer` and `StreamingAnalyzer` load it when first touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_names

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

if TYPE_CHECKING:
    from .audio import AudioError, load_audio
    from .config import DEFAULT_MODEL_ID, DIMENSIONS, LABELS, SAMPLE_RATE
    from .errors import CheckpointError
    from .options import AnalysisOptions
    from .recognizer import EmotionRecognizer
    from .results import EmotionAnalysis, EmotionReading, ModelInfo, TraceSegment, UtteranceReading
    from .streaming import StreamingAnalyzer, StreamOptions

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        ".recognizer": ("EmotionRecognizer",),
        ".options": ("AnalysisOptions",),
        ".results": ("EmotionAnalysis", "EmotionReading", "UtteranceReading", "TraceSegment", "ModelInfo"),
        ".streaming": ("StreamingAnalyzer", "StreamOptions"),
        ".audio": ("load_audio", "AudioError"),
        ".errors": ("CheckpointError",),
        ".config": ("LABELS", "DIMENSIONS", "SAMPLE_RATE", "DEFAULT_MODEL_ID"),  # past __all__, for existing callers
    },
)
