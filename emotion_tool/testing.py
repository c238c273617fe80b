"""Random-weight checkpoints in the published layout, for tests, benchmarks and trying the tool.

Readings from these models mean nothing; config.json marks them, and every analysis says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import save_checkpoint
from .config import SERConfig
from .model import MERaLiONSER

# A few thousand times smaller than the published network, the same code (like transformers' testers).
TINY = SERConfig(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, channels=64, embed_dim=32)
# The published network's sizes: whisper-medium encoder, C = 512.
MEDIUM = SERConfig()
SIZES = {"tiny": TINY, "medium": MEDIUM}


def random_model(config: SERConfig = TINY, *, seed: int = 0) -> MERaLiONSER:
    """A network with PyTorch's default initialisation, reproducible from `seed`."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return MERaLiONSER(config).eval()
    finally:
        torch.random.set_rng_state(gen_state)


def save_random_checkpoint(directory: str | os.PathLike, *, config: SERConfig = TINY, seed: int = 0) -> Path:
    """Writes a random-weight checkpoint in the published layout and returns its directory."""
    return save_checkpoint(random_model(config, seed=seed), directory, random_init=True)
