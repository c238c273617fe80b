"""Live speech: utterances cut from audio as it arrives, and read as each pause closes them.

Layer 3, above the engine: `segmenter` (`UtteranceSegmenter`, `StreamOptions`: VAD state as an
object, no threads) and `streaming` (`StreamingAnalyzer`: the segmenter plus a reader thread and a
trace). It imports the foundation, `emotion_tool.audio` and `emotion_tool.engine`; the voice
framework plugins (`emotion_tool.integrations`), the agents and the MCP server are built on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emotion_tool._lazy import lazy_names

__all__ = ["StreamingAnalyzer", "StreamOptions", "UtteranceSegmenter"]

if TYPE_CHECKING:
    from emotion_tool.live.segmenter import StreamOptions, UtteranceSegmenter
    from emotion_tool.live.streaming import StreamingAnalyzer

__getattr__, __dir__ = lazy_names(
    __name__,
    {".segmenter": ("StreamOptions", "UtteranceSegmenter"), ".streaming": ("StreamingAnalyzer",)},
)
