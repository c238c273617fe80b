"""What a training run uses: `TrainConfig` (defaults are the paper's) and reading it from TOML or JSON.

Layer 4, jobs (`emotion_tool.jobs`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import tomllib
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from emotion_tool.config import LABELS

if TYPE_CHECKING:
    from emotion_tool.science.data import ManifestOptions

__all__ = ["TrainConfig", "LoraOptions", "load_config"]

_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")  # the encoder's attention projections


class LoraOptions(BaseModel):
    """LoRA adapters on the encoder's attention. The paper does not give rank or alpha; these are common values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="False: the encoder stays fully frozen; only the downstream model and heads train")
    rank: int = Field(default=8, ge=1, description="Rank r of each adapter")
    alpha: float = Field(default=16.0, gt=0, description="Scale: the update is (alpha / r)·B·A")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapters' input")
    target_modules: tuple[str, ...] = Field(
        default=("q_proj", "k_proj", "v_proj"), description="Attention projections that get adapters"
    )

    @field_validator("target_modules")
    @classmethod
    def _known_targets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in v if t not in _LORA_TARGETS]
        if bad or not v:
            raise ValueError(f"target_modules {list(v)}: each must be one of {list(_LORA_TARGETS)}")
        return v


class TrainConfig(BaseModel):
    """Everything a training run uses. Defaults are the MERaLiON-SER paper's where it gives them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # data
    train_manifest: Path = Field(description="Training manifest (.csv or .jsonl)")
    dev_manifest: Path = Field(description="Development manifest: early stopping and checkpoint selection")
    output_dir: Path = Field(description="Run directory: log, resumable state, checkpoints, exported model")
    label_map: dict[str, str | None] = Field(default_factory=dict, description='Dataset label → model label (null or "" leaves such rows out)')
    dim_scale: tuple[float, float] = Field(default=(0.0, 1.0), description="Scale of valence/arousal/dominance in the manifests")

    # starting point
    base_model: str | None = Field(
        default=None, description="Checkpoint to fine-tune: Hub id or directory; default $EMOTION_TOOL_MODEL or MERaLiON/MERaLiON-SER-v1"
    )
    whisper_encoder: Path | None = Field(
        default=None, description="Instead of base_model: a transformers Whisper checkpoint directory; the head starts fresh"
    )
    channels: int = Field(
        default=512, ge=64, multiple_of=64, description="ECAPA-TDNN channels of a fresh head, a multiple of 64 (whisper_encoder only)"
    )
    embed_dim: int = Field(default=256, ge=4, description="Emotion embedding size of a fresh head (whisper_encoder only)")
    lora: LoraOptions = Field(default_factory=LoraOptions, description="Adapters on the encoder")

    # optimisation
    lr_lora: float = Field(default=5e-5, gt=0, description="AdamW learning rate of the LoRA adapters")
    weight_decay_lora: float = Field(default=4e-5, ge=0, description="AdamW weight decay of the LoRA adapters")
    lr_head: float = Field(default=6e-4, gt=0, description="AdamW learning rate of the downstream model and heads")
    weight_decay_head: float = Field(default=8e-5, ge=0, description="AdamW weight decay of the downstream model and heads")
    warmup_fraction: float = Field(default=0.08, ge=0, lt=1, description="Share of steps with linear warm-up before the cosine decay")
    epochs: int = Field(default=15, ge=1, description="Most epochs to run")
    batch_size: int = Field(default=32, ge=1, description="Clips per forward pass")
    grad_accum_steps: int = Field(default=1, ge=1, description="Batches per optimizer step (effective batch = batch_size × this)")
    max_grad_norm: float | None = Field(default=1.0, gt=0, description="Gradient clipping; null: none")

    # loss
    label_smoothing: float = Field(default=0.1, ge=0, lt=1, description="Label smoothing of the cross-entropy")
    class_weights: Literal["balanced", "none"] = Field(
        default="balanced", description="balanced: weight each class by N / (classes · its count) in the training set"
    )
    ccc_weight: float = Field(default=0.5, ge=0, description="λ of the λ·(1 − CCC) term on valence/arousal/dominance")

    # augmentation
    mixup_prob: float = Field(default=0.5, ge=0, le=1, description="Share of batches mixed with MixUp")
    mixup_alpha: float = Field(default=0.3, gt=0, description="MixUp weights are drawn from Beta(alpha, alpha)")
    noise_dir: Path | None = Field(default=None, description="Folder of noise recordings (MUSAN in the paper); null: no noise")
    noise_prob: float = Field(default=0.5, ge=0, le=1, description="Share of clips that get noise")
    noise_snr_db: tuple[float, float] = Field(default=(5.0, 20.0), description="Signal-to-noise ratio range of added noise, dB")
    speed_factors: tuple[float, ...] = Field(default=(0.9, 1.0, 1.1), description="Speed perturbation, one factor drawn per clip")
    max_clip_s: float = Field(default=30.0, gt=0, le=30, description="Longer clips are cropped (at random in training)")

    # selection
    patience: int | None = Field(default=3, ge=1, description="Stop after this many epochs without a lower dev categorical loss; null: never")
    keep_best: int = Field(default=4, ge=1, description="Epochs kept, ranked by dev categorical loss")
    average_best: bool = Field(
        default=True, description="Export the average of the kept epochs when it has the lower dev loss, else the best epoch"
    )

    # runtime
    device: str = Field(default="auto", description="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N")
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = Field(
        default="auto", description="auto: bf16 on GPUs that support it, else fp16; no mixed precision on CPU"
    )
    num_workers: int = Field(default=4, ge=0, description="Processes reading audio for the loader")
    seed: int = Field(default=0, description="Seed of initialisation, shuffling and augmentation")

    @model_validator(mode="after")
    def _one_start(self) -> "TrainConfig":
        if self.whisper_encoder is not None and self.base_model is not None:
            raise ValueError("give base_model (a checkpoint to fine-tune) or whisper_encoder (encoder + fresh head), not both")
        if self.noise_snr_db[0] > self.noise_snr_db[1]:
            raise ValueError(f"noise_snr_db must be [low, high], got {list(self.noise_snr_db)}")
        return self

    def manifest_options(self, labels: tuple[str, ...] = LABELS, *, check_audio: bool = True) -> ManifestOptions:
        from emotion_tool.science.data import ManifestOptions

        return ManifestOptions(label_map=self.label_map, dim_scale=self.dim_scale, labels=labels, check_audio=check_audio)


_PATH_FIELDS = ("train_manifest", "dev_manifest", "output_dir", "noise_dir", "whisper_encoder")


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Reads a TOML or JSON training config; relative paths in it start at the config file's folder.

    Raises:
        ValueError: the file is not valid TOML/JSON or a field is unknown or out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"training config {path} does not exist; see examples/train_config.toml")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            raw = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            raise ValueError(f"training config {path} must be .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"training config {path} cannot be parsed ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"training config {path} must hold a table/object of settings")
    base = path.resolve().parent
    for key in _PATH_FIELDS:
        if isinstance(raw.get(key), str) and not Path(raw[key]).expanduser().is_absolute():
            raw[key] = str(base / raw[key])
    bm = raw.get("base_model")
    if isinstance(bm, str) and (base / bm).is_dir() and not Path(bm).is_absolute():
        raw["base_model"] = str(base / bm)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors())
        raise ValueError(f"training config {path}: {problems}") from e
