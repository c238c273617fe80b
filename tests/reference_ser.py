"""An independent implementation of the published network, for checking emotion_tool against.

Features come from transformers' `WhisperFeatureExtractor`, the encoder is transformers'
`WhisperEncoder`, and the downstream ECAPA-TDNN and heads are written here functionally, straight
from the description in shared/model/MERALION_SER_V1.md, reading tensors by name from the
safetensors file. Nothing here imports emotion_tool.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def _gn(x: torch.Tensor, w: dict, name: str) -> torch.Tensor:
    c = x.shape[1]
    return F.group_norm(x, min(32, c), w[f"{name}.weight"], w[f"{name}.bias"], eps=1e-5)


def _ln(x: torch.Tensor, w: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w[f"{name}.weight"], w[f"{name}.bias"], eps=1e-5)


def _rms(x: torch.Tensor, w: dict, name: str) -> torch.Tensor:
    eps = torch.finfo(x.dtype).eps
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w[f"{name}.weight"]


def _lin(x: torch.Tensor, w: dict, name: str) -> torch.Tensor:
    return F.linear(x, w[f"{name}.weight"], w.get(f"{name}.bias"))


def _conv(x: torch.Tensor, w: dict, name: str, **kw) -> torch.Tensor:
    return F.conv1d(x, w[f"{name}.weight"], w.get(f"{name}.bias"), **kw)


def _attn_pool(h: torch.Tensor, w: dict, name: str) -> torch.Tensor:
    """h (B, T, C): softmax over T of Linear(C→1) scores, weighted sum."""
    a = torch.softmax(_lin(h, w, name), dim=1)
    return (a * h).sum(1)


def _ecapa_block(x: torch.Tensor, w: dict, p: str, dilation: int) -> torch.Tensor:
    y = F.relu(_gn(_conv(x, w, f"{p}.conv1"), w, f"{p}.norm1"))
    parts = torch.split(y, y.shape[1] // 4, dim=1)
    outs = [parts[0]]
    prev = _conv(parts[1], w, f"{p}.res2.convs.0", padding=dilation, dilation=dilation)
    outs.append(prev)
    for i in (2, 3):
        prev = _conv(parts[i] + prev, w, f"{p}.res2.convs.{i - 1}", padding=dilation, dilation=dilation)
        outs.append(prev)
    y = F.relu(_gn(torch.cat(outs, 1), w, f"{p}.res2.norm"))
    s = y.mean(-1, keepdim=True)
    s = torch.sigmoid(F.conv1d(F.relu(F.conv1d(s, w[f"{p}.se.fc.0.weight"])), w[f"{p}.se.fc.2.weight"]))
    y = y * s
    y = _gn(_conv(y, w, f"{p}.conv2"), w, f"{p}.norm2")
    return F.relu(y + x)


def downstream_and_heads(hidden: torch.Tensor, w: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder states (B, T, D) → (logits (B, 7), dims (B, 3))."""
    d = "downstream_model"
    x = F.gelu(_ln(_lin(hidden, w, f"{d}.proj_in.0"), w, f"{d}.proj_in.1"))
    x = x.transpose(1, 2)
    feats = [x]
    for i, dil in enumerate((1, 2, 3)):
        x = _ecapa_block(x, w, f"{d}.blocks.{i}", dil)
        feats.append(x)
    x = F.gelu(_gn(_conv(torch.cat(feats, 1), w, f"{d}.mfa.0"), w, f"{d}.mfa.1"))
    seq = x.transpose(1, 2)  # (B, T, C)

    # multiscale
    m = f"{d}.pooling.multiscale"
    kernels = [int(k) for k in torch.logspace(0, np.log10(16), 4).tolist()]
    assert kernels == [1, 2, 6, 16], kernels
    pooled = []
    for i, k in enumerate(kernels):
        groups = seq.shape[2] // w[f"{m}.resolution_convs.{i}.weight"].shape[1]
        h = _conv(seq.transpose(1, 2), w, f"{m}.resolution_convs.{i}", padding=k // 2, groups=groups).transpose(1, 2)
        pooled.append(_attn_pool(h, w, f"{m}.resolution_attentions.{i}"))
    mix = torch.softmax(_lin(F.relu(_lin(seq.mean(1), w, f"{m}.resolution_weight_net.0")), w, f"{m}.resolution_weight_net.2"), -1)
    ms = sum(mix[:, i : i + 1] * pooled[i] for i in range(4))
    ms = _lin(ms, w, f"{m}.final_proj")

    # segment
    s = f"{d}.pooling.segment"
    h, levels = seq, []
    for lvl in range(3):
        levels.append(_attn_pool(h, w, f"{s}.level_attentions.{lvl}"))
        h = F.avg_pool1d(h.transpose(1, 2), 2).transpose(1, 2)
    sg = _lin(torch.cat(levels, -1), w, f"{s}.combiner")

    pooled = _lin(torch.cat([ms, sg], -1), w, f"{d}.pooling.combiner")
    e = F.gelu(_ln(_lin(pooled, w, f"{d}.embed.0"), w, f"{d}.embed.1"))
    e = F.gelu(_ln(_lin(e, w, f"{d}.embed.4"), w, f"{d}.embed.5"))

    dims = torch.sigmoid(_lin(F.gelu(_rms(_lin(e, w, "dim_layer.0"), w, "dim_layer.1")), w, "dim_layer.3"))
    logits = _lin(F.gelu(_rms(_lin(e, w, "emotion_layer"), w, "emotion_classification_layer.0")), w, "emotion_classification_layer.2")
    return logits, dims


class ReferenceSER:
    """The published network from a checkpoint directory, built from transformers parts plus the functions above."""

    def __init__(self, checkpoint_dir: Path):
        from transformers import WhisperConfig, WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        self.weights = load_file(str(Path(checkpoint_dir) / "model.safetensors"))
        cfg = json.loads((Path(checkpoint_dir) / "config.json").read_text())
        w = self.weights
        d_model, n_mels, _ = w["whisper.encoder.conv1.weight"].shape
        layers = len({k.split(".")[3] for k in w if k.startswith("whisper.encoder.layers.")})
        wcfg = WhisperConfig(
            d_model=d_model,
            encoder_layers=layers,
            encoder_attention_heads=cfg.get("encoder_attention_heads", d_model // 64),
            encoder_ffn_dim=w["whisper.encoder.layers.0.fc1.weight"].shape[0],
            num_mel_bins=n_mels,
            max_source_positions=w["whisper.encoder.embed_positions.weight"].shape[0],
        )
        self.encoder = WhisperEncoder(wcfg).eval()
        enc = {k.removeprefix("whisper.encoder."): v for k, v in w.items() if k.startswith("whisper.encoder.")}
        self.encoder.load_state_dict(enc, strict=True)
        self.extractor = WhisperFeatureExtractor.from_pretrained(str(checkpoint_dir))
        self.labels = [cfg["id2label"][str(i)] for i in range(len(cfg["id2label"]))]

    @torch.no_grad()
    def __call__(self, waveform_16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One clip of at most 30 s → (probabilities (7,), dims (3,))."""
        feats = self.extractor(waveform_16k, sampling_rate=16000, return_tensors="pt").input_features
        hidden = self.encoder(feats).last_hidden_state
        logits, dims = downstream_and_heads(hidden, self.weights)
        return torch.softmax(logits, -1)[0].numpy(), dims[0].numpy()
