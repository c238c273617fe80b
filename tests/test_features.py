"""The log-mel front end equals transformers' WhisperFeatureExtractor."""

import numpy as np
import soundfile as sf
import torch

from emotion_tool.config import FeatureConfig
from emotion_tool.engine.features import log_mel_spectrogram, mel_filters, pad_or_trim


def test_mel_filters_equal_transformers():
    from transformers.audio_utils import mel_filter_bank

    theirs = mel_filter_bank(
        num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
        sampling_rate=16000, norm="slaney", mel_scale="slaney",
    )  # fmt: skip
    np.testing.assert_allclose(mel_filters(400, 80, 16000), theirs, rtol=1e-10, atol=1e-12)


def test_log_mel_equals_whisper_feature_extractor(speech_wav):
    from transformers import WhisperFeatureExtractor

    wav, _ = sf.read(speech_wav, dtype="float32")
    noise = (0.1 * np.random.default_rng(0).standard_normal(16000 * 12)).astype(np.float32)
    fe = WhisperFeatureExtractor(feature_size=80)
    cfg = FeatureConfig()
    batch = torch.from_numpy(np.stack([pad_or_trim(w, cfg.n_samples) for w in (wav, noise)]))
    ours = log_mel_spectrogram(batch, cfg).numpy()
    assert ours.shape == (2, 80, 3000)
    for i, w in enumerate((wav, noise)):
        theirs = fe(w, sampling_rate=16000, return_tensors="np").input_features[0]
        np.testing.assert_allclose(ours[i], theirs, atol=2e-4)


def test_pad_or_trim():
    assert pad_or_trim(np.ones(10, np.float32), 4).tolist() == [1, 1, 1, 1]
    padded = pad_or_trim(np.ones(3, np.float32), 5)
    assert padded.tolist() == [1, 1, 1, 0, 0] and padded.dtype == np.float32
