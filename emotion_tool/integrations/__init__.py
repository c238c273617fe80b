"""Emotion perception inside voice-agent frameworks, local and thin over the engine.

- `emotion_tool.integrations.pipecat`: `EmotionPerceiver`, a Pipecat `FrameProcessor`
  (pip install 'emotion-tool[pipecat]').
- `emotion_tool.integrations.livekit`: `LiveKitEmotion`, for a LiveKit Agents `Agent`
  (pip install 'emotion-tool[livekit]').

Both cut utterances with the engine's `UtteranceSegmenter` (or follow the framework's turns), read
them with the recognizer's operating point, and word the LLM's note with the empathy rulebook. The
framework-free parts (`PerceptionOptions`, `TurnListener`, `turn_note`) load without either framework.

Layer 5, beside the command line: built on `emotion_tool.live` and `emotion_tool.science`; nothing in
the package imports it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PerceptionOptions", "TurnListener", "ListenerStats", "turn_note"]


def __getattr__(name: str) -> Any:  # PEP 562: `import emotion_tool.integrations` loads no model code
    if name in ("PerceptionOptions", "TurnListener", "ListenerStats"):
        from . import listener

        return getattr(listener, name)
    if name == "turn_note":
        from .note import turn_note

        return turn_note
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
