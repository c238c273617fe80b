"""Speech emotion perception with MERaLiON-SER-v1: 7 emotions and valence/arousal/dominance from speech."""

from .audio import AudioError, load_audio
from .checkpoint import CheckpointError
from .config import DEFAULT_MODEL_ID, DIMENSIONS, LABELS, SAMPLE_RATE
from .recognizer import AnalysisOptions, EmotionRecognizer
from .results import EmotionAnalysis, EmotionReading, ModelInfo, TraceSegment

__all__ = [
    "EmotionRecognizer",
    "AnalysisOptions",
    "EmotionAnalysis",
    "EmotionReading",
    "TraceSegment",
    "ModelInfo",
    "AudioError",
    "CheckpointError",
    "load_audio",
    "LABELS",
    "DIMENSIONS",
    "SAMPLE_RATE",
    "DEFAULT_MODEL_ID",
]
