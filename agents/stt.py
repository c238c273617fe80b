"""Optional speech-to-text: the user's words from their audio, with a transformers Whisper pipeline.

Needs `transformers` (``pip install "emotion-tool[stt]"``); it is imported, and the model loaded,
on the first transcription, not before.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from emotion_tool.config import SAMPLE_RATE

DEFAULT_STT_MODEL = "openai/whisper-small"


class WhisperTranscriber:
    """Transcribes 16 kHz mono speech with a Whisper checkpoint through `transformers.pipeline`.

    Example:
        >>> stt = WhisperTranscriber("openai/whisper-small", language="english")
        >>> stt(load_audio("turn.wav"))
        'I would like to talk about my order.'
    """

    def __init__(
        self,
        model: str = DEFAULT_STT_MODEL,
        *,
        device: str | int | None = None,
        dtype: Any = None,
        language: str | None = None,
        max_new_tokens: int = 128,
    ):
        """
        Args:
            model: Hub id or directory of a Whisper checkpoint (any size or fine-tune).
            device: where to run ("cpu", "cuda", "cuda:0", ...); None lets transformers pick.
            dtype: torch dtype for the model; None keeps transformers' default.
            language: the spoken language (e.g. "english"); None lets Whisper detect it.
            max_new_tokens: longest transcript per 30-s window, in tokens.
        """
        self.model = model
        self.device = device
        self.dtype = dtype
        self.language = language
        self.max_new_tokens = max_new_tokens
        self._pipe: Any = None
        self._lock = threading.Lock()

    def _pipeline(self) -> Any:
        with self._lock:
            if self._pipe is None:
                try:
                    from transformers import pipeline
                except ImportError as e:
                    raise RuntimeError(
                        'speech-to-text requires transformers; pip install "emotion-tool[stt]" (or transformers)'
                    ) from e
                kwargs: dict[str, Any] = {"device": self.device}
                if self.dtype is not None:
                    kwargs["dtype"] = self.dtype
                self._pipe = pipeline("automatic-speech-recognition", model=self.model, **kwargs)
            return self._pipe

    def transcribe(self, wav: np.ndarray) -> str:
        """The words in `wav`: (N,) float32 samples at 16 kHz, mono. Audio over 30 s is read in chunks."""
        if wav.ndim != 1:
            raise ValueError(f"transcribe takes mono samples of shape (N,), got {wav.shape}; use emotion_tool.load_audio")
        generate_kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if self.language is not None:
            generate_kwargs["language"] = self.language
        out = self._pipeline()(
            {"raw": np.asarray(wav, dtype=np.float32), "sampling_rate": SAMPLE_RATE},
            chunk_length_s=30 if wav.shape[0] > 30 * SAMPLE_RATE else None,
            generate_kwargs=generate_kwargs,
        )
        return str(out["text"]).strip()

    __call__ = transcribe

    def __repr__(self) -> str:
        return f"WhisperTranscriber({self.model!r}, language={self.language!r})"
