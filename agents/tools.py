"""A LangChain tool that reads emotions from an audio file, for tool-calling agents."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from emotion_tool.audio import AudioError, check_path_text
from emotion_tool.engine.results import EmotionAnalysis

if TYPE_CHECKING:
    from emotion_tool import AnalysisOptions, EmotionRecognizer

TOOL_DESCRIPTION = (
    "Reads how a speaker sounds in an audio file (wav, flac, ogg, mp3): the most probable of 7 emotions "
    "(neutral, happy, sad, angry, fearful, disgusted, surprised) with probabilities, and valence "
    "(0 negative..1 positive), arousal (0 calm..1 active) and dominance (0 weak..1 strong). "
    "Readings are cues, not facts: check `uncertain` and `warnings`. With trace=true it also reads 2-s "
    "windows every second, to show how the emotion changes over the recording."
)


class _EmotionToolArgs(BaseModel):
    audio_path: str = Field(description="Path of the audio file to analyse")
    trace: bool = Field(default=False, description="Also read 2-s windows every second (how the emotion changes)")


def make_emotion_tool(
    recognizer: "EmotionRecognizer",
    *,
    name: str = "analyze_speech_emotion",
    audio_root: str | os.PathLike | None = None,
    options: "AnalysisOptions | None" = None,
) -> BaseTool:
    """A tool an LLM can call to analyse an audio file.

    The tool's content is the analysis as JSON (without the per-window readings behind the
    summary); its artifact is the `EmotionAnalysis` itself. Bad input comes back to the model as
    an error message it can act on, not as an exception.

    Args:
        recognizer: the engine.
        name: the tool's name as the model sees it.
        audio_root: if set, only files inside this directory may be read (recommended whenever the
            model's input is not trusted).
        options: analysis options (defaults: the recognizer's).
    """
    root = Path(audio_root).expanduser().resolve() if audio_root is not None else None

    def analyze_speech_emotion(audio_path: str, trace: bool = False) -> tuple[str, EmotionAnalysis]:
        try:
            check_path_text(audio_path)  # before resolving: a NUL byte would raise a bare ValueError there
        except AudioError as e:
            raise ToolException(f"Error: {e}; it is not a file path.\n Please fix your mistakes.") from e
        path = Path(audio_path).expanduser()
        if root is not None:
            path = (root / path).resolve()
            if not path.is_relative_to(root):
                raise ToolException(
                    f"Error: {audio_path} is outside the audio folder {root}; give a path inside it.\n"
                    " Please fix your mistakes."
                )
        try:
            analysis = recognizer.analyze(path, trace=trace, options=options)
        except AudioError as e:
            raise ToolException(f"Error: {e}\n Please fix your mistakes.") from e
        return analysis.model_dump_json(exclude={"windows"}), analysis

    return StructuredTool.from_function(
        func=analyze_speech_emotion,
        name=name,
        description=TOOL_DESCRIPTION,
        args_schema=_EmotionToolArgs,
        response_format="content_and_artifact",
        handle_tool_error=True,
    )

