"""Audio in: formats, rates, channels and bad input."""

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers import speak
from emotion_tool import AudioError, load_audio


@pytest.fixture(scope="module")
def speech_22k(audio_dir):
    return speak("The weather is lovely today.", audio_dir / "w22.wav", rate=22050)


@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("flac", "PCM_24"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")])
@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_formats_rates_channels(speech_22k, tmp_path, fmt, subtype, rate, channels):
    import soxr

    wav22, _ = sf.read(speech_22k, dtype="float32")
    audio = soxr.resample(wav22, 22050, rate)
    if channels == 2:
        audio = np.stack([audio, 0.5 * audio], axis=1)
    path = tmp_path / f"s.{fmt}"
    sf.write(path, audio, rate, format=fmt.upper() if fmt != "ogg" else "OGG", subtype=subtype)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    expected = len(wav22) / 22050 * 16000
    assert abs(len(out) - expected) < 0.05 * 16000 + 1152  # mp3 adds encoder delay/padding
    assert 0.01 < np.abs(out).max() <= 1.5


def test_resampling_keeps_pitch(tmp_path):
    rate = 44100
    t = np.arange(rate) / rate
    sf.write(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    out = load_audio(tmp_path / "tone.wav")
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16000 / len(out) - 440) <= 1


def test_bytes_and_arrays_agree(speech_wav):
    from_path = load_audio(speech_wav)
    np.testing.assert_array_equal(load_audio(speech_wav.read_bytes()), from_path)
    pcm, sr = sf.read(speech_wav, dtype="int16")
    np.testing.assert_allclose(load_audio(pcm, sample_rate=sr), from_path, atol=1e-6)
    stereo_cf = np.stack([from_path, from_path])  # (channels, samples)
    np.testing.assert_allclose(load_audio(stereo_cf, sample_rate=16000), from_path, atol=1e-7)
    np.testing.assert_allclose(load_audio(torch.from_numpy(from_path), sample_rate=16000), from_path)


@pytest.mark.parametrize(
    "audio,kwargs,problem,message",
    [
        (b"", {}, "empty", "no bytes"),
        (b"RIFF\x00\x00garbage" * 10, {}, "decode", "cannot decode"),
        (np.zeros(0, np.float32), {"sample_rate": 16000}, "empty", "no samples"),
        (np.array([0.1, np.nan] * 8000, np.float32), {"sample_rate": 16000}, "non_finite", "8000 NaN or infinite"),
        (np.array([np.inf] * 10, np.float32), {"sample_rate": 16000}, "non_finite", "nan_to_num"),
        (np.zeros(16000, np.float32), {}, "sample_rate", "pass sample_rate="),
        (np.zeros(16000, np.float32), {"sample_rate": 0}, "sample_rate", "not a usable rate"),
        (np.zeros(16000, np.float32), {"sample_rate": 10**7}, "sample_rate", "not a usable rate"),
        (np.zeros(16000, np.float32), {"sample_rate": "16k"}, "sample_rate", "number of Hz"),
        (np.zeros(16000, np.complex64), {"sample_rate": 16000}, "type", "dtype complex64"),
        (np.zeros((2, 3, 4), np.float32), {"sample_rate": 16000}, "type", "shape"),
        ([0.0, 0.1], {}, "type", "got list"),
        (12345, {}, "type", "got int"),
        (np.zeros(16000 * 20, np.float32), {"sample_rate": 16000, "max_duration_s": 10}, "too_long", "over the limit of 10 s"),
    ],
)
def test_bad_input_names_problem_and_fix(audio, kwargs, problem, message):
    with pytest.raises(AudioError, match=message) as info:
        load_audio(audio, **kwargs)
    assert info.value.problem == problem


def test_bad_paths(tmp_path):
    with pytest.raises(AudioError, match="no such file") as info:
        load_audio(tmp_path / "missing.wav")
    assert info.value.problem == "not_found"
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty file"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "text.wav").write_text("hello, this is not audio\n" * 50)
    with pytest.raises(AudioError, match="cannot decode") as info:
        load_audio(tmp_path / "text.wav")
    assert info.value.problem == "decode"


def test_huge_file_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(16000 * 120, np.float32), 16000, subtype="PCM_16")
    read_calls = []
    real_read = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **k: read_calls.append(1) or real_read(self, *a, **k))
    with pytest.raises(AudioError, match="lasts 120.0 s, over the limit of 60 s") as info:
        load_audio(path, max_duration_s=60)
    assert info.value.problem == "too_long" and read_calls == []


def test_truncated_file(speech_wav, tmp_path):
    data = speech_wav.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:30])
    with pytest.raises(AudioError, match="cannot decode|no samples"):
        load_audio(tmp_path / "cut.wav")
    assert load_audio(data[: len(data) // 2]).shape[0] > 0  # a WAV cut in half still decodes its first half
