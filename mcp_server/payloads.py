"""Audio as it arrives in requests: the server's limits and error type over `emotion_tool.audio`'s decoders."""

from __future__ import annotations

from typing import Literal

import numpy as np

from emotion_tool import audio
from emotion_tool.audio import BYTES_PER_SAMPLE, PcmEncoding, sniff_container

from .security import RequestError

__all__ = ["AudioFormat", "PcmEncoding", "BYTES_PER_SAMPLE", "decode_base64", "decode_pcm", "check_container", "sniff_container"]

AudioFormat = Literal["wav", "flac", "ogg", "mp3", "pcm_s16le", "pcm_f32le"]
"""What `analyze_emotion` accepts: an audio file (decoded by libsndfile), or raw mono PCM samples."""
_MIB = 1024 * 1024


def decode_base64(data: str, *, max_chars: int, field: str) -> bytes:
    """Decodes standard or URL-safe base64 (whitespace and a `data:...;base64,` prefix allowed).

    Raises:
        RequestError: over `max_chars`, empty, or not base64.
    """
    if len(data) > max_chars:
        raise RequestError(
            f"{field} is {len(data) / _MIB:.1f} MiB of base64, over the limit of {max_chars / _MIB:.1f} MiB; "
            "send a shorter stretch of audio (or split it), or restart the server with a higher --max-request-mb"
        )
    try:
        return audio.decode_base64(data, name=field)
    except audio.AudioError as e:
        raise RequestError(str(e)) from e


def check_container(data: bytes, hint: str | None, *, field: str) -> None:
    """Refuses bytes whose header contradicts the caller's `audio_format`, naming both."""
    found = sniff_container(data)
    if hint is not None and found is not None and found != hint:
        raise RequestError(
            f"{field}: audio_format says {hint} but the bytes are {found}; correct audio_format or leave it out "
            "(files are recognised by their header)"
        )


def decode_pcm(data: bytes, encoding: str, *, field: str) -> np.ndarray:
    """Raw mono little-endian samples → (n,) float32 in [-1, 1].

    Raises:
        RequestError: not a whole number of samples, an unknown encoding, or NaN/infinite floats.
    """
    try:
        return audio.decode_pcm(data, encoding, name=field)
    except audio.AudioError as e:
        raise RequestError(str(e)) from e
