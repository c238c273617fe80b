"""The baseline: MERaLiON-SER-v1 run the way its Hub code runs it, for side-by-side benchmarks.

What the published `modeling_ser_whisper_ecapa.py` does, as far as its users describe it: build a
full transformers `WhisperModel` (encoder and the unused decoder, randomly initialised first), load
the whole `model.safetensors` into it, extract features with `WhisperFeatureExtractor` (NumPy,
padded to 30 s), and run one clip at a time under `torch.no_grad()`. The downstream head is this
package's (the same computation as the Hub code's, so the comparison measures only the way of running).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from emotion_tool.config import SERConfig
from emotion_tool.engine.model import MERaLiONSER


def whisper_config(config: SERConfig):
    """A whisper-medium-shaped transformers config (the decoder sizes follow the encoder's)."""
    from transformers import WhisperConfig

    return WhisperConfig(
        d_model=config.d_model,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.encoder_layers,
        encoder_attention_heads=config.encoder_attention_heads,
        decoder_attention_heads=config.encoder_attention_heads,
        encoder_ffn_dim=config.encoder_ffn_dim,
        decoder_ffn_dim=config.encoder_ffn_dim,
        num_mel_bins=config.n_mels,
        max_source_positions=config.max_source_positions,
        vocab_size=51865,
        max_target_positions=448,
    )


def random_decoder_tensors(config: SERConfig, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """`whisper.decoder.*` tensors with the published file's names and shapes (random values)."""
    from transformers import WhisperModel

    with torch.device("meta"):
        shapes = {n: t.shape for n, t in WhisperModel(whisper_config(config)).decoder.state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    return {f"whisper.decoder.{n}": torch.randn(s, generator=gen) * 0.02 for n, s in shapes.items()}


class HubStyleSER(nn.Module):
    """Full WhisperModel (decoder included) + the emotion head, as the Hub code builds it."""

    def __init__(self, config: SERConfig):
        super().__init__()
        from transformers import WhisperModel

        self.whisper = WhisperModel(whisper_config(config))  # allocated and randomly initialised, as there
        with torch.device("meta"):  # the head only; its values come from the checkpoint
            head = MERaLiONSER(config)
        self.downstream_model = head.downstream_model.to_empty(device="cpu")
        self.dim_layer = head.dim_layer.to_empty(device="cpu")
        self.emotion_layer = head.emotion_layer.to_empty(device="cpu")
        self.emotion_classification_layer = head.emotion_classification_layer.to_empty(device="cpu")

    @classmethod
    def load(cls, checkpoint: Path, config: SERConfig) -> "HubStyleSER":
        from safetensors.torch import load_file

        model = cls(config)
        state = load_file(str(Path(checkpoint) / "model.safetensors"))  # the whole file, decoder included
        model.load_state_dict(state, strict=True)
        return model.eval()

    @torch.no_grad()
    def forward(self, input_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.whisper.encoder(input_features).last_hidden_state
        emb = self.downstream_model(hidden)
        return self.emotion_classification_layer(self.emotion_layer(emb)), self.dim_layer(emb)


class HubStyleRunner:
    """One clip at a time: NumPy features padded to 30 s, then the network."""

    def __init__(self, checkpoint: Path, config: SERConfig):
        from transformers import WhisperFeatureExtractor

        self.model = HubStyleSER.load(checkpoint, config)
        self.extractor = WhisperFeatureExtractor.from_pretrained(str(checkpoint))

    def __call__(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feats = self.extractor(waveform, sampling_rate=16000, return_tensors="pt").input_features
        logits, dims = self.model(feats)
        return torch.softmax(logits, -1)[0].numpy(), dims[0].numpy()
