"""The MERaLiON-SER-v1 network as plain `nn.Module`s.

Module names follow the published checkpoint's tensor names, so `state_dict()` matches
`model.safetensors` name for name (without the unused `whisper.decoder.*`). The architecture
follows the description in the MERaLiON-SER paper (arXiv 2511.04914) and the published checkpoint:
a Whisper encoder (LoRA merged) feeding an ECAPA-TDNN with GroupNorm and hybrid attention pooling,
and two heads, categorical (7 emotions) and dimensional (valence, arousal, dominance).

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from emotion_tool.config import SERConfig
from emotion_tool.engine.interrupt import checkpoint

_MULTISCALE_KERNELS = (1, 2, 6, 16)  # ints of logspace(1, 16, 4): 1, 2.52, 6.35, 16
_MULTISCALE_GROUPS = 64  # depthwise-grouped convolutions: channels / 64 per group
_SEGMENT_LEVELS = 3  # hierarchical pooling: T, T/2, T/4
_DILATIONS = (1, 2, 3)  # one ECAPA block each
_RES2_SCALE = 4  # Res2 splits channels into 4 groups
_SE_REDUCTION = 8  # squeeze-excitation bottleneck: 512 → 64


@dataclass(frozen=True)
class SEROutput:
    """logits (B, num_emotions) before softmax; dims (B, 3) valence, arousal, dominance in 0..1."""

    logits: torch.Tensor
    dims: torch.Tensor


# --- Whisper encoder ------------------------------------------------------------------------------


class _SelfAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by encoder_attention_heads={num_heads}")
        self.num_heads = num_heads
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.q_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        # On the CPU a bf16/fp16 encoder attends in fp32 unless this is "bf16": where the CPU's fused
        # attention kernel runs slower in bf16 than in fp32 (1500 frames: 0.14 s against 0.075 s a layer
        # on AVX-512 BF16 without AMX), fp32 is faster and its scores and softmax move the states less;
        # with AMX bf16 is the faster. `emotion_tool.engine.kernels` decides it per CPU.
        self.cpu_attention: str = "fp32"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.num_heads

        # The projections around the attention stay in the encoder's dtype.
        half = x.dtype in (torch.bfloat16, torch.float16)
        upcast = x.device.type == "cpu" and half and not (self.cpu_attention == "bf16" and x.dtype == torch.bfloat16)

        def heads(y: torch.Tensor) -> torch.Tensor:
            y = y.view(b, t, h, d // h).transpose(1, 2)
            return y.float() if upcast else y

        # Whisper scales q by head_dim**-0.5, which is scaled_dot_product_attention's default.
        out = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d).to(x.dtype))


class _EncoderLayer(nn.Module):
    def __init__(self, config: SERConfig):
        super().__init__()
        d = config.d_model
        self.self_attn = _SelfAttention(d, config.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder: two convolutions, sinusoid-initialised positions, pre-norm transformer."""

    def __init__(self, config: SERConfig):
        super().__init__()
        d = config.d_model
        self.conv1 = nn.Conv1d(config.n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, d)
        self.layers = nn.ModuleList(_EncoderLayer(config) for _ in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(d)
        # Another runtime standing for this module's forward (`openvino_runtime.OpenVinoEncoder`), or None.
        self.runtime: Callable[[torch.Tensor], torch.Tensor] | None = None

    def set_cpu_attention(self, precision: str) -> None:
        """What a bf16 encoder's attention computes in on the CPU: "bf16" or "fp32" (the default).
        fp16 encoders attend in fp32 on the CPU either way; other devices attend in the encoder's dtype."""
        if precision not in ("bf16", "fp32"):
            raise ValueError(f"CPU attention precision must be 'bf16' or 'fp32', got {precision!r}")
        for layer in self.layers:
            layer.self_attn.cpu_attention = precision

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        """input_features (B, n_mels, 2T) → hidden states (B, T, d_model); T ≤ max_source_positions."""
        if self.runtime is not None:
            if (input_features.shape[-1] + 1) // 2 > self.embed_positions.num_embeddings:
                raise ValueError(
                    f"{input_features.shape[-1]} mel frames exceed the encoder's "
                    f"{2 * self.embed_positions.num_embeddings}; cut the audio into windows of at most 30 s"
                )
            return self.runtime(input_features)
        x = F.gelu(self.conv1(input_features))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        t = x.shape[1]
        if t > self.embed_positions.num_embeddings:
            raise ValueError(
                f"{input_features.shape[-1]} mel frames exceed the encoder's "
                f"{2 * self.embed_positions.num_embeddings}; cut the audio into windows of at most 30 s"
            )
        x = x + self.embed_positions.weight[:t]
        for layer in self.layers:
            x = layer(x)
            checkpoint()  # a caller that must stop may do so here (`emotion_tool.engine.interrupt`)
        return self.layer_norm(x)


class _WhisperWrapper(nn.Module):
    """Holds the encoder under the checkpoint's `whisper.encoder.*` prefix."""

    def __init__(self, config: SERConfig):
        super().__init__()
        self.encoder = WhisperEncoder(config)


# --- ECAPA-TDNN with hybrid attention pooling ------------------------------------------------------


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


def _attention_pool(x: torch.Tensor, score: nn.Linear) -> torch.Tensor:
    """x (B, T, C) → (B, C): softmax over time of a linear score, then the weighted sum."""
    weights = torch.softmax(score(x), dim=1)
    return (weights * x).sum(dim=1)


class _Res2(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        width = channels // _RES2_SCALE
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, kernel_size=3, padding=dilation, dilation=dilation) for _ in range(_RES2_SCALE - 1)
        )
        self.norm = _group_norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.chunk(_RES2_SCALE, dim=1)
        outs = [groups[0]]
        y = None
        for conv, g in zip(self.convs, groups[1:]):
            y = conv(g if y is None else g + y)
            outs.append(y)
        return F.relu(self.norm(torch.cat(outs, dim=1)))


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        bottleneck = channels // _SE_REDUCTION
        self.fc = nn.Sequential(
            nn.Conv1d(channels, bottleneck, 1, bias=False),
            nn.ReLU(),
            nn.Conv1d(bottleneck, channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=-1, keepdim=True))


class _ECAPABlock(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 1)
        self.norm1 = _group_norm(channels)
        self.res2 = _Res2(channels, dilation)
        self.se = _SqueezeExcite(channels)
        self.conv2 = nn.Conv1d(channels, channels, 1)
        self.norm2 = _group_norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.se(self.res2(y))
        return F.relu(self.norm2(self.conv2(y)) + x)


class _MultiScalePooling(nn.Module):
    """Attention pooling at four temporal resolutions, mixed by weights predicted from the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.resolution_convs = nn.ModuleList(
            nn.Conv1d(channels, channels, k, padding=k // 2, groups=_MULTISCALE_GROUPS) for k in _MULTISCALE_KERNELS
        )
        self.resolution_attentions = nn.ModuleList(nn.Linear(channels, 1) for _ in _MULTISCALE_KERNELS)
        self.resolution_weight_net = nn.Sequential(
            nn.Linear(channels, channels // 2), nn.ReLU(), nn.Linear(channels // 2, len(_MULTISCALE_KERNELS))
        )
        self.final_proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) → (B, C). Even kernels yield T+1 frames (padding k // 2); all are pooled."""
        xt = x.transpose(1, 2)
        pooled = torch.stack(
            [_attention_pool(conv(xt).transpose(1, 2), att) for conv, att in zip(self.resolution_convs, self.resolution_attentions)],
            dim=1,
        )  # (B, 4, C)
        mix = torch.softmax(self.resolution_weight_net(x.mean(dim=1)), dim=-1)  # (B, 4)
        return self.final_proj((mix.unsqueeze(-1) * pooled).sum(dim=1))


class _SegmentPooling(nn.Module):
    """Attention pooling on T, T/2, T/4 frames (average-pooled by 2 between levels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.level_attentions = nn.ModuleList(nn.Linear(channels, 1) for _ in range(_SEGMENT_LEVELS))
        self.combiner = nn.Linear(_SEGMENT_LEVELS * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = []
        for i, att in enumerate(self.level_attentions):
            if i:
                x = F.avg_pool1d(x.transpose(1, 2), kernel_size=2, stride=2).transpose(1, 2)
            levels.append(_attention_pool(x, att))
        return self.combiner(torch.cat(levels, dim=-1))


class _HybridPooling(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.multiscale = _MultiScalePooling(channels)
        self.segment = _SegmentPooling(channels)
        self.combiner = nn.Linear(2 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combiner(torch.cat([self.multiscale(x), self.segment(x)], dim=-1))


class ECAPADownstream(nn.Module):
    """Encoder states (B, T, d_model) → the shared emotion embedding (B, embed_dim)."""

    def __init__(self, config: SERConfig):
        super().__init__()
        c = config.channels
        self.proj_in = nn.Sequential(nn.Linear(config.d_model, c), nn.LayerNorm(c), nn.GELU(), nn.Dropout(0.2))
        self.blocks = nn.ModuleList(_ECAPABlock(c, d) for d in _DILATIONS)
        self.mfa = nn.Sequential(nn.Conv1d((len(_DILATIONS) + 1) * c, c, 1), _group_norm(c), nn.GELU())
        self.pooling = _HybridPooling(c)
        self.embed = nn.Sequential(
            nn.Linear(c, c),
            nn.LayerNorm(c),
            nn.GELU(),
            nn.Dropout(0.3),
            nn.Linear(c, config.embed_dim),
            nn.LayerNorm(config.embed_dim),
            nn.GELU(),
            nn.Dropout(0.2),
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(hidden).transpose(1, 2)  # (B, C, T)
        feats = [x]
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        x = self.mfa(torch.cat(feats, dim=1)).transpose(1, 2)  # (B, T, C)
        return self.embed(self.pooling(x))


class MERaLiONSER(nn.Module):
    """The whole emotion network: log-mel features in, emotion logits and (valence, arousal, dominance) out."""

    def __init__(self, config: SERConfig):
        super().__init__()
        self.config = config
        e = config.embed_dim
        self.whisper = _WhisperWrapper(config)
        self.downstream_model = ECAPADownstream(config)
        self.dim_layer = nn.Sequential(nn.Linear(e, e), nn.RMSNorm(e), nn.GELU(), nn.Linear(e, len(config.dims)), nn.Sigmoid())
        self.emotion_layer = nn.Linear(e, e)
        self.emotion_classification_layer = nn.Sequential(nn.RMSNorm(e), nn.GELU(), nn.Linear(e, config.num_emotions))

    def forward(self, input_features: torch.Tensor) -> SEROutput:
        """input_features (B, n_mels, 3000) → SEROutput(logits (B, 7), dims (B, 3))."""
        return self.heads(self.embed(self.whisper.encoder(input_features)))

    def embed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Encoder states (B, T, d_model) → emotion embedding (B, embed_dim)."""
        return self.downstream_model(hidden)

    def heads(self, embedding: torch.Tensor) -> SEROutput:
        return SEROutput(
            logits=self.emotion_classification_layer(self.emotion_layer(embedding)),
            dims=self.dim_layer(embedding),
        )
