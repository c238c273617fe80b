"""Model configuration and audio constants. Imports nothing heavy (no torch).

Layer 0, the foundation: imports nothing else from the package.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

DEFAULT_MODEL_ID = "MERaLiON/MERaLiON-SER-v1"
MODEL_ENV_VAR = "EMOTION_TOOL_MODEL"  # overrides DEFAULT_MODEL_ID everywhere a model is resolved

SAMPLE_RATE = 16000  # Hz; every waveform inside the package is 16 kHz mono float32
N_FFT = 400  # 25 ms analysis window
HOP_LENGTH = 160  # 10 ms between mel frames
CHUNK_LENGTH_S = 30  # the published model sees 30-second windows
N_SAMPLES = CHUNK_LENGTH_S * SAMPLE_RATE  # 480000 samples in one padded window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in one padded window

# Index order of the published checkpoint's outputs (logits and dims).
LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
DIMENSIONS: tuple[str, ...] = ("valence", "arousal", "dominance")

# The three files of a checkpoint directory, in the published Hub repository's layout.
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "preprocessor_config.json"
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, PREPROCESSOR_FILE)

# Written into config.json of checkpoints made by `emotion_tool.engine.testing`: such weights are random.
RANDOM_INIT_KEY = "emotion_tool_random_init"


def default_model() -> str:
    """The model id or directory to load when none is given: $EMOTION_TOOL_MODEL or the Hub id."""
    return os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL_ID


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel front end, as in the checkpoint's `preprocessor_config.json` (Whisper's)."""

    sampling_rate: int = SAMPLE_RATE  # Hz the model expects
    feature_size: int = 80  # mel bins
    n_fft: int = N_FFT  # STFT size in samples
    hop_length: int = HOP_LENGTH  # samples between frames
    chunk_length: int = CHUNK_LENGTH_S  # seconds in one padded window

    @property
    def n_samples(self) -> int:
        return self.chunk_length * self.sampling_rate

    @property
    def nb_max_frames(self) -> int:
        return self.n_samples // self.hop_length

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: d[k] for k in known if k in d})

    def to_preprocessor_dict(self) -> dict[str, Any]:
        """The `preprocessor_config.json` Whisper's feature extractor reads."""
        return {
            "feature_extractor_type": "WhisperFeatureExtractor",
            "processor_class": "WhisperProcessor",
            "feature_size": self.feature_size,
            "sampling_rate": self.sampling_rate,
            "hop_length": self.hop_length,
            "chunk_length": self.chunk_length,
            "n_fft": self.n_fft,
            "n_samples": self.n_samples,
            "nb_max_frames": self.nb_max_frames,
            "padding_side": "right",
            "padding_value": 0.0,
            "return_attention_mask": False,
        }


@dataclass(frozen=True)
class SERConfig:
    """Sizes of the emotion network. Defaults are MERaLiON-SER-v1 (whisper-medium encoder).

    Tests build tiny networks by shrinking these; everything else stays the same code.
    """

    n_mels: int = 80  # mel bins in the input features
    d_model: int = 1024  # encoder width
    encoder_layers: int = 24  # transformer layers in the encoder
    encoder_attention_heads: int = 16  # heads per attention layer
    encoder_ffn_dim: int = 4096  # hidden size of each encoder feed-forward block
    max_source_positions: int = 1500  # encoder frames in a 30-s window (3000 mel frames / 2)
    channels: int = 512  # ECAPA-TDNN channels (C)
    embed_dim: int = 256  # shared emotion embedding
    labels: tuple[str, ...] = LABELS  # categorical outputs in index order
    dims: tuple[str, ...] = DIMENSIONS  # dimensional outputs in index order
    features: FeatureConfig = field(default_factory=FeatureConfig)

    @property
    def num_emotions(self) -> int:
        return len(self.labels)

    def to_json_dict(self, *, random_init: bool = False) -> dict[str, Any]:
        """config.json in the published layout, plus the sizes this package needs to rebuild it."""
        d = asdict(self)
        d.pop("features")
        d.pop("labels")
        d.pop("dims")
        out: dict[str, Any] = {
            "architectures": ["WhisperECAPAForEmotion"],
            "num_emotions": self.num_emotions,
            "id2label": {str(i): name for i, name in enumerate(self.labels)},
            "label2id": {name: i for i, name in enumerate(self.labels)},
            "dim_names": list(self.dims),
            **d,
        }
        if random_init:
            out[RANDOM_INIT_KEY] = True
        return out


def read_json(path: Path) -> dict[str, Any]:
    """Reads a JSON object, with an error that names the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); re-download the checkpoint") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def labels_from_config(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """Label names in index order from `id2label`, checked against `num_emotions`."""
    id2label = cfg.get("id2label")
    if not id2label:
        labels = LABELS
    else:
        try:
            pairs = sorted((int(k), str(v).lower()) for k, v in id2label.items())
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"config.json id2label must map integer ids to names, got {id2label!r}") from e
        if [i for i, _ in pairs] != list(range(len(pairs))):
            raise ValueError(f"config.json id2label ids must be 0..{len(pairs) - 1}, got {[i for i, _ in pairs]}")
        labels = tuple(name for _, name in pairs)
    n = cfg.get("num_emotions")
    if n is not None and int(n) != len(labels):
        raise ValueError(f"config.json says num_emotions={n} but id2label names {len(labels)} labels")
    return labels
