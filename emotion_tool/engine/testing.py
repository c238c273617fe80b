"""Random-weight checkpoints in the published layout, for tests, benchmarks and trying the tool.

Readings from these models mean nothing; config.json marks them, and every analysis says so.

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from emotion_tool.config import SAMPLE_RATE, SERConfig
from emotion_tool.engine.checkpoint import save_checkpoint
from emotion_tool.engine.features import log_mel_spectrogram, pad_or_trim
from emotion_tool.engine.model import MERaLiONSER

# A thousand times smaller than the published network, the same code (like transformers' testers).
TINY = SERConfig(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, channels=64, embed_dim=32)
# The published network's sizes: whisper-medium encoder, C = 512.
MEDIUM = SERConfig()
SIZES = {"tiny": TINY, "medium": MEDIUM}

_ATTENTION_GAIN = 10.0  # sharper attention pooling: frames with speech outweigh the padding
_HEAD_GAIN = 4.0  # spreads the output probabilities and dims over their range


def random_model(config: SERConfig = TINY, *, seed: int = 0, sensitive: bool = True) -> MERaLiONSER:
    """A random network, reproducible from `seed`.

    With PyTorch's default initialisation the network's outputs hardly depend on the audio (the
    pooled 30-s window is dominated by its padding), which would let tests pass that should fail.
    `sensitive=True` sharpens the attention pooling and standardises the embedding on synthetic
    voiced sounds, so readings differ clearly between inputs. The weights still mean nothing.
    It costs 16 forward passes; benchmarks of large networks pass `sensitive=False`.
    """
    cpu_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = MERaLiONSER(config).eval()
    finally:
        torch.random.set_rng_state(cpu_state)
    if sensitive:
        _sensitise(model, np.random.default_rng(seed))
    return model


@torch.no_grad()
def _sensitise(model: MERaLiONSER, rng: np.random.Generator) -> None:
    for name, p in model.named_parameters():
        if "attentions" in name:
            p.mul_(_ATTENTION_GAIN)
    clips = [pad_or_trim(c, model.config.features.n_samples) for c in synthetic_voices(rng, 16)]
    hidden = model.whisper.encoder(log_mel_spectrogram(torch.from_numpy(np.stack(clips)), model.config.features))
    emb = model.embed(hidden)
    mean, std = emb.mean(0), emb.std(0) + 1e-6
    for lin in (model.emotion_layer, model.dim_layer[0]):  # fold (e - mean) / std into the first linear layers
        w = lin.weight / std
        lin.bias.sub_(w @ mean)
        lin.weight.copy_(w)
    model.emotion_classification_layer[-1].weight.mul_(_HEAD_GAIN)
    model.dim_layer[-2].weight.mul_(_HEAD_GAIN)


def synthetic_voices(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Voice-like 16 kHz clips of 0.5..8 s: harmonic tones with wandering pitch, syllable-rate envelopes, noise."""
    clips = []
    for _ in range(count):
        t = np.arange(int(rng.uniform(0.5, 8.0) * SAMPLE_RATE)) / SAMPLE_RATE
        f0 = rng.uniform(80, 300) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 4) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 5) * t))
        clip = voiced * rng.uniform(0.05, 0.5) + rng.uniform(0, 0.05) * rng.standard_normal(t.shape[0])
        clips.append(clip.astype(np.float32))
    return clips


def save_random_checkpoint(
    directory: str | os.PathLike, *, config: SERConfig = TINY, seed: int = 0, sensitive: bool | None = None
) -> Path:
    """Writes a random-weight checkpoint in the published layout and returns its directory.

    `sensitive` defaults to True for networks smaller than the published one (see `random_model`).
    """
    if sensitive is None:
        sensitive = config.d_model < MEDIUM.d_model
    return save_checkpoint(random_model(config, seed=seed, sensitive=sensitive), directory, random_init=True)
