"""Audio as it arrives in requests: base64 text, sniffed containers, raw little-endian PCM."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

import numpy as np

from .security import RequestError

AudioFormat = Literal["wav", "flac", "ogg", "mp3", "pcm_s16le", "pcm_f32le"]
"""What `analyze_emotion` accepts: an audio file (decoded by libsndfile), or raw mono PCM samples."""
PcmEncoding = Literal["pcm_s16le", "pcm_f32le"]
"""Raw mono samples, little-endian: 16-bit signed integers or 32-bit floats in [-1, 1]."""

BYTES_PER_SAMPLE: dict[str, int] = {"pcm_s16le": 2, "pcm_f32le": 4}
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
    if data.startswith("data:") and "," in data[:200]:
        data = data.split(",", 1)[1]
    text = "".join(data.split())
    if not text:
        raise RequestError(f"{field} is empty; send the base64 of the audio bytes")
    if "-" in text or "_" in text:  # the URL-safe alphabet
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(
            f"{field} is not valid base64 ({e}); encode the raw bytes with standard base64 "
            "(A-Z a-z 0-9 + / and = padding), e.g. base64.b64encode(data).decode()"
        ) from e


def sniff_container(data: bytes) -> str | None:
    """The container the bytes start like ("wav", "flac", "ogg", "mp3"), or None."""
    if data[:4] in (b"RIFF", b"RIFX", b"RF64") and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "ogg"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


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
    width = BYTES_PER_SAMPLE.get(encoding)
    if width is None:
        raise RequestError(f"{field}: unknown encoding {encoding!r}; use one of {', '.join(BYTES_PER_SAMPLE)}")
    if len(data) % width:
        raise RequestError(
            f"{field} holds {len(data)} bytes, not a whole number of {encoding} samples ({width} bytes each); "
            "send mono little-endian samples and cut chunks at sample boundaries"
        )
    if encoding == "pcm_s16le":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.isfinite(samples).all():
        raise RequestError(
            f"{field} holds NaN or infinite pcm_f32le samples; send finite floats in [-1, 1] "
            "(or check that the encoding is not really pcm_s16le)"
        )
    return samples
