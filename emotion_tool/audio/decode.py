"""Reading audio: the one place audio comes in. 16 kHz mono float32 out.

Every entry point goes through here: file paths, the bytes of a file, base64 text and `data:` URLs,
raw little-endian PCM (with its encoding and rate), arrays, and live chunks (`check_chunk`). Callers
never open soundfile themselves; `read_frames` and `audio_info` serve those who need a stretch of a
long file, and `encode_wav` the few that hand audio on.

Layer 1, audio in (`emotion_tool.audio`).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import stat
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np

from emotion_tool.config import SAMPLE_RATE

AudioInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]
"""A file path, a ``data:audio/...;base64,`` URL, the bytes of an audio file, or an array of samples (with its sample rate).
Arrays are (samples,), (samples, channels) or (channels, samples) with at most 16 channels."""

AudioProblem = Literal["not_found", "type", "empty", "decode", "sample_rate", "non_finite", "out_of_range", "too_short", "too_long"]

MIN_SAMPLE_RATE = 1000  # Hz; below this an array's rate is surely a mistake
MAX_SAMPLE_RATE = 768000  # Hz; the highest rate common hardware records
_MAX_CHANNELS = 16
# Decoding cost grows with samples × channels, not seconds: a long limit on seconds would let 8-channel
# 192-kHz files through at 96 times the work of 16-kHz mono. Files may hold this many samples (all
# channels counted) per second of the duration limit: 48 kHz stereo, or 16 kHz with 6 channels.
MAX_SAMPLES_PER_LIMIT_S = 96000
_BLOCK_FRAMES = 65536  # frames decoded at a time; each block is mixed to mono and resampled before the next

PcmEncoding = Literal["pcm_s16le", "pcm_f32le"]
"""Raw mono samples, little-endian: 16-bit signed integers or 32-bit floats in [-1, 1]."""
BYTES_PER_SAMPLE: dict[str, int] = {"pcm_s16le": 2, "pcm_f32le": 4}


class AudioError(ValueError):
    """Audio that cannot be analysed. `problem` says which check failed; the message says how to fix it."""

    def __init__(self, problem: AudioProblem, message: str):
        super().__init__(message)
        self.problem = problem


def load_audio(
    audio: AudioInput,
    *,
    sample_rate: int | None = None,
    max_duration_s: float | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Decodes and converts audio to 16 kHz mono float32.

    Args:
        audio: a path (anything libsndfile reads: wav, flac, ogg, mp3, ...), a base64 `data:` URL or
            the bytes of such a file, or a NumPy array / torch tensor of samples.
        sample_rate: the rate of an array, in Hz. Required for arrays; ignored for files and bytes.
        max_duration_s: refuse audio longer than this, checked before decoding where possible.
        name: how to call the audio in error messages (defaults to the path).

    Returns:
        waveform (N,) float32 at 16 kHz.

    Raises:
        AudioError: empty, undecodable, non-finite, too long, or of an unsupported type or rate.
    """
    if isinstance(audio, str) and audio.startswith("data:"):
        name = name or "audio (data: URL)"
        wav, sr = _read_bytes(decode_data_url(audio), name, max_duration_s)
    elif isinstance(audio, (str, os.PathLike)):
        wav, sr = _read_path(Path(audio), max_duration_s)
        name = name or str(audio)
    elif isinstance(audio, (bytes, bytearray, memoryview)):
        name = name or "audio bytes"
        wav, sr = _read_bytes(bytes(audio), name, max_duration_s)
    else:
        name = name or "audio array"
        wav = _as_array(audio, name)
        if sample_rate is None:
            raise AudioError("sample_rate", f"{name}: an array needs its sample rate; pass sample_rate=16000 (or its rate)")
        sr = _check_rate(sample_rate, name)
    return _to_model_input(wav, sr, name, max_duration_s)


def load_channels(
    audio: AudioInput,
    *,
    sample_rate: int | None = None,
    max_duration_s: float | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Decodes audio to 16 kHz float32 with its channels kept apart, one row per channel.

    Takes what `load_audio` takes and checks it the same way; each channel is exactly what
    `load_audio` returns for a mono file holding that channel alone.

    Returns:
        waveforms (C, N) float32 at 16 kHz; C is 1 for mono audio.

    Raises:
        AudioError: as `load_audio`.
    """
    if isinstance(audio, str) and audio.startswith("data:"):
        name = name or "audio (data: URL)"
        wav, sr = _read_bytes(decode_data_url(audio), name, max_duration_s, mix=False)
    elif isinstance(audio, (str, os.PathLike)):
        wav, sr = _read_path(Path(audio), max_duration_s, mix=False)
        name = name or str(audio)
    elif isinstance(audio, (bytes, bytearray, memoryview)):
        name = name or "audio bytes"
        wav, sr = _read_bytes(bytes(audio), name, max_duration_s, mix=False)
    else:
        name = name or "audio array"
        wav = _as_array(audio, name)
        if sample_rate is None:
            raise AudioError("sample_rate", f"{name}: an array needs its sample rate; pass sample_rate=16000 (or its rate)")
        sr = _check_rate(sample_rate, name)
    return np.stack([_to_model_input(wav[:, [c]], sr, name, max_duration_s) for c in range(wav.shape[1])])


def _check_rate(sample_rate: Any, name: str) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float, np.floating)):
        raise AudioError("sample_rate", f"{name}: sample_rate must be a number of Hz, got {sample_rate!r}")
    if (
        not math.isfinite(float(sample_rate))
        or float(sample_rate) != int(sample_rate)
        or not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE
    ):
        raise AudioError(
            "sample_rate",
            f"{name}: sample_rate={sample_rate!r} Hz is not a usable rate; "
            f"give the true rate of the samples, an integer between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE}",
        )
    return int(sample_rate)


def check_path_text(path: str | os.PathLike, *, name: str | None = None) -> None:
    """Refuses a path no file can have: one holding a NUL byte, or (a str) a lone surrogate, which a JSON
    `\\udc80` escape makes and no file name holds.

    Raises:
        AudioError: ("not_found") naming the problem and the fix.
    """
    text = os.fspath(path)
    shown = name or (text.encode("utf-8", "backslashreplace").decode() if isinstance(text, str) else repr(text))
    if (b"\0" if isinstance(text, bytes) else "\0") in text:
        raise AudioError("not_found", f"{shown!r}: a path cannot hold a NUL byte; give the file's path as it is on disk")
    if isinstance(text, str):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise AudioError(
                "not_found", f"{shown!r}: a path cannot hold a character that is not Unicode (a lone surrogate); give the file's path as it is on disk"
            ) from None


def open_regular_file(path: str | os.PathLike, *, name: str | None = None, follow_links: bool = True) -> io.BufferedReader:
    """Opens a regular file for reading, never blocking: FIFOs, devices, sockets and directories are refused.

    The file is opened non-blocking (so a FIFO without a writer cannot hang the caller) and its type
    checked on the open descriptor, so nothing can be swapped in between the check and the read.

    Raises:
        AudioError: no such file ("not_found"), not a regular file ("type"), or not readable ("not_found").
    """
    shown = name or os.fspath(path)
    check_path_text(path, name=shown)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as e:
        raise AudioError("not_found", f"{shown}: no such file; check the path (relative paths start at {Path.cwd()})") from e
    except IsADirectoryError as e:
        raise AudioError("type", f"{shown} is a directory; give an audio file inside it") from e
    except OSError as e:
        raise AudioError("not_found", f"{shown}: cannot open ({e.strerror}); check the path and its permissions") from e
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise AudioError("type", f"{shown} is a directory; give an audio file inside it")
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file"
            raise AudioError("type", f"{shown} is {kind}, not a regular file; give an audio file (record a stream to a file first)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # regular files never block; reads after this are plain
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_path(path: Path, max_duration_s: float | None, *, mix: bool = True) -> tuple[np.ndarray, int]:
    with open_regular_file(path) as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise AudioError("empty", f"{path} is an empty file (0 bytes); record or export the audio again")
        return _decode(f, str(path), max_duration_s, mix=mix)


def _read_bytes(data: bytes, name: str, max_duration_s: float | None, *, mix: bool = True) -> tuple[np.ndarray, int]:
    if not data:
        raise AudioError("empty", f"{name}: no bytes were given; send the contents of an audio file")
    return _decode(io.BytesIO(data), name, max_duration_s, mix=mix)


def _decode(f: Any, name: str, max_duration_s: float | None, *, mix: bool = True) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(f) as snd:
            sr = snd.samplerate
            _check_header(snd.frames, snd.channels, sr, name, max_duration_s)
            wav, sr = _read_blocks(snd, name, mix=mix), SAMPLE_RATE
    except sf.LibsndfileError as e:
        reason = getattr(e, "error_string", "") or str(e)  # without the file object's repr
        raise AudioError(
            "decode",
            f"{name}: cannot decode audio ({reason.rstrip('.')}); give a WAV, FLAC, OGG/Opus or MP3 file, "
            "or convert it first (e.g. `ffmpeg -i in.m4a out.wav`)",
        ) from e
    except (RuntimeError, TypeError) as e:  # soundfile raises these for some malformed headers
        raise AudioError("decode", f"{name}: cannot decode audio ({e}); the file may be truncated or not audio") from e
    return wav, sr


def _check_header(frames: int, channels: int, sr: int, name: str, max_duration_s: float | None) -> None:
    """Refuses, from the header alone, audio that is too long or too large to decode."""
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError(
            "sample_rate", f"{name}: its header gives {sr} Hz, outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}; the file is damaged or not speech audio"
        )
    if channels > _MAX_CHANNELS:
        raise AudioError("type", f"{name} has {channels} channels, over {_MAX_CHANNELS}; mix it down to mono first")
    if max_duration_s is None or math.isinf(max_duration_s) or frames <= 0:  # inf: no limit
        return
    if frames / sr > max_duration_s:
        raise _too_long(name, frames / sr, max_duration_s)
    limit = int(max_duration_s * MAX_SAMPLES_PER_LIMIT_S)
    if frames * channels > limit:
        raise AudioError(
            "too_long",
            f"{name} holds {frames * channels:,} samples ({channels} channels at {sr} Hz for {frames / sr:.1f} s), over the "
            f"limit of {limit:,} for {max_duration_s:g} s of audio; mix it to mono and resample it to 16 kHz "
            "(e.g. `sox in.flac -r 16000 -c 1 out.wav`), or send a shorter stretch",
        )


def _read_blocks(snd: Any, name: str, *, mix: bool = True) -> np.ndarray:
    """Decodes block by block, mixing to mono (unless `mix` is False) and resampling each block to 16 kHz before the next.

    Memory stays at the 16-kHz mono result plus one block, whatever the file's rate and channels;
    nothing is allocated from the header's frame count, which a damaged or hostile file may inflate.
    Returns (samples, 1) float32 at 16 kHz (identical to resampling the whole signal at once), or
    (samples, channels) when `mix` is False.
    """
    import soxr

    sr, parts = snd.samplerate, []
    width = 1 if mix else snd.channels
    stream = None if sr == SAMPLE_RATE else soxr.ResampleStream(sr, SAMPLE_RATE, width, dtype="float32", quality="HQ")
    while True:
        block = snd.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
        last = block.shape[0] < _BLOCK_FRAMES
        if not np.isfinite(block).all():
            raise AudioError(
                "non_finite",
                f"{name} holds NaN or infinite samples; fix the producer of the audio or replace them before analysis",
            )
        if block.size:
            _refuse_out_of_range(float(np.abs(block).max()), name)
        if mix:
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        else:
            mono = block
        if stream is not None:
            mono = stream.resample_chunk(np.ascontiguousarray(mono), last=last)
        if mono.size:
            parts.append(np.array(mono, dtype=np.float32).reshape(-1, width))
        if last:
            break
    return np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.float32)


def _as_array(audio: Any, name: str) -> np.ndarray:
    if type(audio).__module__.startswith("torch"):
        audio = audio.detach().cpu().float().numpy()
    if not isinstance(audio, np.ndarray):
        raise AudioError(
            "type",
            f"{name}: expected a file path, the bytes of an audio file, or a NumPy array of samples; "
            f"got {type(audio).__name__}",
        )
    if audio.dtype == np.int16:
        wav = audio.astype(np.float32) / 32768.0
    elif audio.dtype == np.int32:
        wav = audio.astype(np.float32) / 2147483648.0
    elif audio.dtype == np.uint8:
        wav = (audio.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(audio.dtype, np.floating):
        wav = audio.astype(np.float32, copy=False)
    else:
        raise AudioError("type", f"{name}: samples must be float or int16/int32/uint8 PCM, got dtype {audio.dtype}")
    if wav.ndim == 1:
        return wav[:, None]
    if wav.ndim != 2:
        raise AudioError("type", f"{name}: expected 1 or 2 dimensions (samples[, channels]), got shape {wav.shape}")
    if wav.size == 0:
        raise AudioError("empty", f"{name} holds no samples (shape {audio.shape}); record or export the audio again")
    # (channels, samples) is told from (samples, channels) by its short first axis.
    if wav.shape[0] < wav.shape[1] and wav.shape[0] <= _MAX_CHANNELS:
        wav = wav.T
    if wav.shape[1] > _MAX_CHANNELS:
        raise AudioError("type", f"{name}: shape {audio.shape} has more than {_MAX_CHANNELS} channels on either axis")
    return wav


def _to_model_input(wav: np.ndarray, sr: int, name: str, max_duration_s: float | None) -> np.ndarray:
    """(samples, channels) at `sr` → (samples,) float32 at 16 kHz, with the content checks."""
    if wav.shape[0] == 0:
        raise AudioError("empty", f"{name} holds no samples; record or export the audio again")
    if max_duration_s is not None and wav.shape[0] / sr > max_duration_s:
        raise _too_long(name, wav.shape[0] / sr, max_duration_s)
    _refuse_non_finite(wav, name, "analysis")
    mono = wav.mean(axis=1, dtype=np.float32) if wav.shape[1] > 1 else wav[:, 0]
    if sr != SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, sr, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


# Float samples are nominally within ±1; a peak beyond this (60 dB over full scale) is no recording's level
# but a wrong scale (int16 or int32 values stored as floats, or a gain applied twice). The log-mel
# features are not scale-free, so such audio would be read as something it is not, and far beyond it the
# spectrum's power overflows float32 into NaN readings: it is refused, with the fix.
MAX_PEAK = 1000.0


def _refuse_non_finite(samples: np.ndarray, name: str, before: str) -> None:
    """Refuses NaN or infinite samples, and float samples far beyond full scale (`MAX_PEAK`)."""
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise AudioError(
            "non_finite",
            f"{name} holds {bad} NaN or infinite samples of {samples.shape[0]}; fix the producer of the audio "
            f"or replace them (e.g. np.nan_to_num) before {before}",
        )
    if samples.dtype.kind == "f" and samples.size:
        _refuse_out_of_range(float(np.abs(samples).max()), name)


def _refuse_out_of_range(peak: float, name: str) -> None:
    if peak > MAX_PEAK:
        hint = " (int16 values stored as floats: divide by 32768)" if peak <= 32768 else ""
        raise AudioError(
            "out_of_range",
            f"{name} peaks at {peak:.3g}, far beyond full scale (float samples lie within ±1){hint}; "
            f"rescale the audio to ±1 before analysis",
        )


def _too_long(name: str, duration_s: float, max_duration_s: float) -> AudioError:
    return AudioError(
        "too_long",
        f"{name} lasts {duration_s:.1f} s, over the limit of {max_duration_s:g} s; "
        "split it, or raise the limit (max_duration_s / --max-duration)",
    )


# --- text and raw samples: what requests carry ------------------------------------------------------


def decode_base64(text: str, *, name: str = "audio base64") -> bytes:
    """Decodes standard or URL-safe base64 (whitespace and a `data:...;base64,` prefix allowed).

    Raises:
        AudioError: empty, or not base64.
    """
    if text.startswith("data:") and "," in text[:200]:
        text = text.split(",", 1)[1]
    text = "".join(text.split())
    if not text:
        raise AudioError("empty", f"{name} is empty; send the base64 of the audio bytes")
    if "-" in text or "_" in text:  # the URL-safe alphabet
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise AudioError(
            "decode",
            f"{name} is not valid base64 ({e}); encode the raw bytes with standard base64 "
            "(A-Z a-z 0-9 + / and = padding), e.g. base64.b64encode(data).decode()",
        ) from e


def decode_data_url(url: str) -> bytes:
    """The bytes inside a ``data:audio/...;base64,...`` URL.

    Raises:
        AudioError: not base64-encoded, or not valid base64.
    """
    head, _, data = url.partition(",")
    if not head.endswith(";base64"):
        raise AudioError("type", "a data: URL of audio must be base64-encoded (data:audio/wav;base64,...)")
    return decode_base64(data, name="the data: URL")


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


def decode_pcm(data: bytes, encoding: str, *, name: str = "raw samples") -> np.ndarray:
    """Raw mono little-endian samples → (n,) float32 in [-1, 1], at the rate they were recorded.

    Raises:
        AudioError: not a whole number of samples, an unknown encoding, or NaN/infinite floats.
    """
    width = BYTES_PER_SAMPLE.get(encoding)
    if width is None:
        raise AudioError("type", f"{name}: unknown encoding {encoding!r}; use one of {', '.join(BYTES_PER_SAMPLE)}")
    if len(data) % width:
        raise AudioError(
            "decode",
            f"{name} holds {len(data)} bytes, not a whole number of {encoding} samples ({width} bytes each); "
            "send mono little-endian samples and cut chunks at sample boundaries",
        )
    if encoding == "pcm_s16le":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.isfinite(samples).all():
        raise AudioError(
            "non_finite",
            f"{name} holds NaN or infinite pcm_f32le samples; send finite floats in [-1, 1] "
            "(or check that the encoding is not really pcm_s16le)",
        )
    if samples.size:
        _refuse_out_of_range(float(np.abs(samples).max()), name)
    return samples


def check_chunk(chunk: Any) -> np.ndarray:
    """Checks a live chunk against the streaming contract and returns a private (n,) float32 copy.

    The contract: mono samples of shape (n,) or (n, 1), float32 in [-1, 1] (float64 is converted)
    or int16 PCM (scaled by 1/32768), at the stream's rate; any length, zero included.
    """
    if type(chunk).__module__.startswith("torch"):
        chunk = chunk.detach().cpu().numpy()
    if not isinstance(chunk, np.ndarray):
        raise AudioError("type", f"audio chunk: expected a NumPy array of samples, got {type(chunk).__name__}")
    if chunk.ndim == 2 and chunk.shape[1] == 1:
        chunk = chunk[:, 0]
    if chunk.ndim != 1:
        raise AudioError(
            "type",
            f"audio chunk: expected mono samples of shape (n,) or (n, 1), got shape {chunk.shape}; "
            "open the input with channels=1 or mix down first (chunk.mean(axis=1))",
        )
    if chunk.dtype == np.int16:
        x = chunk.astype(np.float32) / 32768.0
    elif chunk.dtype in (np.float32, np.float64):
        x = chunk.astype(np.float32)  # a copy: audio callbacks reuse their buffers
    else:
        raise AudioError(
            "type",
            f"audio chunk: samples must be float32 in [-1, 1] (or float64, or int16 PCM), got dtype {chunk.dtype}; "
            "open the input with dtype='float32'",
        )
    _refuse_non_finite(x, "audio chunk", "feeding")
    return x


# --- stretches of files, and writing ----------------------------------------------------------------


def audio_info(path: str | os.PathLike, *, name: str | None = None) -> tuple[int, int]:
    """(frames, sample rate) of an audio file, read from its header.

    Raises:
        AudioError: the file cannot be decoded.
    """
    import soundfile as sf

    try:
        with open_regular_file(path, name=name) as raw, sf.SoundFile(raw) as f:
            return int(f.frames), int(f.samplerate)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError("decode", f"cannot decode {name or path} ({e}); convert it to WAV or FLAC") from e


def read_frames(
    path: str | os.PathLike, *, start: int = 0, stop: int | None = None, name: str | None = None
) -> tuple[np.ndarray, int]:
    """Frames [start, stop) of an audio file at its own rate, reading only that stretch.

    Returns:
        (samples (n, channels) float32, sample rate); pass them to `load_audio` for 16 kHz mono.

    Raises:
        AudioError: the file cannot be decoded.
    """
    import soundfile as sf

    name = name or str(path)
    try:
        with open_regular_file(path, name=name) as raw, sf.SoundFile(raw) as f:
            end = f.frames if stop is None else min(f.frames, stop)
            f.seek(min(start, f.frames))
            want, blocks = max(0, end - start), []
            while want > 0:  # in blocks: a header's frame count is never allocated up front
                block = f.read(min(want, _BLOCK_FRAMES), dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                blocks.append(block)
                want -= block.shape[0]
            frames = np.concatenate(blocks) if blocks else np.zeros((0, f.channels), dtype=np.float32)
            return frames, f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError("decode", f"{name}: cannot decode audio ({e}); convert it to WAV or FLAC") from e


def encode_wav(wav: np.ndarray, *, sample_rate: int = SAMPLE_RATE) -> bytes:
    """The bytes of a 16-bit PCM WAV file of mono samples (N,) float32."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wav, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
