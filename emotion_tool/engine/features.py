"""Whisper's log-mel front end, in torch so that it runs batched on the model's device.

Numerically this is `transformers.WhisperFeatureExtractor` (its torch path); the tests check it.

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from emotion_tool.config import FeatureConfig


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels[log_region] = 15.0 + np.log(freq[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    freq[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_region] - 15.0))
    return freq


@functools.lru_cache(maxsize=8)
def mel_filters(n_fft: int, n_mels: int, sampling_rate: int) -> np.ndarray:
    """Slaney-normalised triangular mel filters (n_fft // 2 + 1, n_mels), 0 Hz .. 8 kHz, as Whisper uses."""
    n_freqs = n_fft // 2 + 1
    fft_freqs = np.linspace(0, sampling_rate // 2, n_freqs)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([8000.0]))[0], n_mels + 2))
    slopes = edges_hz[None, :] - fft_freqs[:, None]
    widths = np.diff(edges_hz)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= 2.0 / (edges_hz[2 : n_mels + 2] - edges_hz[:n_mels])[None, :]
    return filters


def pad_or_trim(waveform: np.ndarray, n_samples: int) -> np.ndarray:
    """Zero-pads or cuts a (N,) waveform to exactly `n_samples`."""
    if waveform.shape[0] >= n_samples:
        return waveform[:n_samples]
    return np.pad(waveform, (0, n_samples - waveform.shape[0]))


def log_mel_spectrogram(waveforms: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Log-mel features of a batch of 16 kHz waveforms.

    Args:
        waveforms: (B, N) float32; N = 480000 for the published 30-s windows.
        config: the front end's sizes.

    Returns:
        input_features (B, n_mels, N // hop_length) float32, scaled like Whisper's ((log10 + 4) / 4,
        floored at 8 decades below each example's maximum).
    """
    waveforms = waveforms.float()
    window = torch.hann_window(config.n_fft, device=waveforms.device)
    stft = torch.stft(waveforms, config.n_fft, config.hop_length, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2  # (B, n_freqs, frames)
    filters = torch.from_numpy(mel_filters(config.n_fft, config.feature_size, config.sampling_rate))
    mel = filters.to(waveforms.device, torch.float32).T @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    return (log_spec + 4.0) / 4.0
