"""Speech emotion perception with MERaLiON-SER-v1: 7 emotions and valence/arousal/dominance from speech.

The package is built in layers; each imports only those below it (tests/test_layers.py checks it):

    foundation   config (sizes, constants; no torch), errors
    1 audio      decoding and voice activity            emotion_tool.audio
    2 engine     network, checkpoint, recognizer, types emotion_tool.engine
    3 live       segmenter, streaming analyzer          emotion_tool.live
    3 science    data, metrics, evaluation, calibration emotion_tool.science
    4 jobs       batch, Ray, training                   emotion_tool.jobs
    5 cli        `emotion-tool` and its subcommands     emotion_tool.cli
    5 integrations  Pipecat and LiveKit plugins         emotion_tool.integrations

Names are handed out on first use (PEP 562): `import emotion_tool` and the result types, options and
audio reader import no torch; `EmotionRecognizer` and `StreamingAnalyzer` load it when first touched.
Modules that moved into the layers keep their old import paths, with a DeprecationWarning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emotion_tool._lazy import lazy_names
from emotion_tool._moved import alias_moved_modules

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
    from emotion_tool.audio import AudioError, load_audio
    from emotion_tool.config import DEFAULT_MODEL_ID, DIMENSIONS, LABELS, SAMPLE_RATE
    from emotion_tool.engine.options import AnalysisOptions
    from emotion_tool.engine.recognizer import EmotionRecognizer
    from emotion_tool.engine.results import (
        EmotionAnalysis,
        EmotionReading,
        ModelInfo,
        TraceSegment,
        UtteranceReading,
    )
    from emotion_tool.errors import CheckpointError
    from emotion_tool.live.streaming import StreamingAnalyzer, StreamOptions

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        ".engine.recognizer": ("EmotionRecognizer",),
        ".engine.options": ("AnalysisOptions",),
        ".engine.results": ("EmotionAnalysis", "EmotionReading", "UtteranceReading", "TraceSegment", "ModelInfo"),
        ".live.streaming": ("StreamingAnalyzer",),
        ".live.segmenter": ("StreamOptions",),
        ".audio": ("load_audio", "AudioError"),
        ".errors": ("CheckpointError",),
        ".config": ("LABELS", "DIMENSIONS", "SAMPLE_RATE", "DEFAULT_MODEL_ID"),  # past __all__, for existing callers
    },
)

alias_moved_modules()
