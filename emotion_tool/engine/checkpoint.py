"""Finding, reading and writing checkpoints in the published Hub repository's layout.

A checkpoint is a directory with `config.json`, `model.safetensors` and `preprocessor_config.json`,
or a Hub id resolved through `huggingface_hub` (its cache, `HF_TOKEN`, `HF_HUB_OFFLINE`). No code
from the checkpoint is executed: the network is this package's own, and only the tensors it needs
are read (the published file also carries the unused `whisper.decoder.*`).

Layer 2, the engine (`emotion_tool.engine`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from emotion_tool.config import (
    CHECKPOINT_FILES,
    CONFIG_FILE,
    PREPROCESSOR_FILE,
    RANDOM_INIT_KEY,
    WEIGHTS_FILE,
    FeatureConfig,
    SERConfig,
    labels_from_config,
    read_json,
)
from emotion_tool.engine.model import MERaLiONSER
from emotion_tool.errors import CheckpointError

_SKIPPED_PREFIXES = ("whisper.decoder.",)  # in the published file, never used by the emotion model
_WHISPER_HEAD_DIM = 64  # every Whisper size uses 64-wide attention heads
_MAX_NAMES_IN_ERROR = 8




@dataclass(frozen=True)
class Checkpoint:
    """A resolved checkpoint directory and what its config says."""

    model_id: str  # what the user asked for: Hub id or directory
    path: Path  # the local directory holding the three files
    config: SERConfig
    random_init: bool  # made by emotion_tool.engine.testing: the weights are random


def resolve_checkpoint(
    model: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> Path:
    """Returns a local directory with the checkpoint's files, downloading from the Hub if needed.

    Args:
        model: a directory in the published layout, or a Hub repository id like "MERaLiON/MERaLiON-SER-v1".
        revision: Hub branch, tag or commit.
        token: Hub token; by default `huggingface_hub` reads HF_TOKEN or the saved login.
        cache_dir: Hub cache; by default HF_HUB_CACHE / HF_HOME.
        local_files_only: never reach the Hub (also implied by HF_HUB_OFFLINE=1).
    """
    path = Path(model).expanduser()
    if path.is_dir():
        _check_files(path)
        return path
    text = str(model)
    if path.exists() or _looks_like_path(text):
        raise CheckpointError(
            f"{text} is not a checkpoint directory; give a directory holding {', '.join(CHECKPOINT_FILES)} "
            "or a Hub id like MERaLiON/MERaLiON-SER-v1"
        )
    return _download(text, revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only)


def _looks_like_path(text: str) -> bool:
    """Hub ids are "owner/name"; anything else is meant as a local path."""
    return text.startswith((".", "/", "~")) or text.count("/") != 1 or "\\" in text


def _check_files(path: Path) -> None:
    missing = [f for f in CHECKPOINT_FILES if not (path / f).is_file()]
    if missing:
        raise CheckpointError(
            f"{path} lacks {', '.join(missing)}; a checkpoint directory holds {', '.join(CHECKPOINT_FILES)} "
            "(the layout of the MERaLiON/MERaLiON-SER-v1 Hub repository)"
        )


def _download(repo_id: str, **kwargs: Any) -> Path:
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download

    local_hint = (
        f"download it where the Hub is reachable (`hf download {repo_id} {' '.join(CHECKPOINT_FILES)} "
        "--local-dir DIR`) and pass --model DIR, or set EMOTION_TOOL_MODEL=DIR"
    )
    try:
        path = snapshot_download(repo_id, allow_patterns=list(CHECKPOINT_FILES), **kwargs)
    except (hf_errors.GatedRepoError, hf_errors.RepositoryNotFoundError) as e:
        raise CheckpointError(
            f"{repo_id} is not a Hub repository you can read (not found, private or gated); "
            f"check the id, or log in (`hf auth login` / HF_TOKEN); or {local_hint}"
        ) from e
    except hf_errors.RevisionNotFoundError as e:
        raise CheckpointError(f"{repo_id} has no revision {kwargs.get('revision')!r}; check the branch, tag or commit") from e
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled, OSError) as e:
        raise CheckpointError(f"cannot reach the Hugging Face Hub for {repo_id} and no cached copy was found; {local_hint}") from e
    except Exception as e:  # httpx / requests transport errors differ between huggingface_hub versions
        if type(e).__module__.split(".")[0] in {"httpx", "requests", "urllib3", "httpcore"}:
            raise CheckpointError(f"cannot reach the Hugging Face Hub for {repo_id} ({type(e).__name__}); {local_hint}") from e
        raise
    path = Path(path)
    _check_files(path)
    return path


def read_checkpoint(model: str | os.PathLike, **resolve_kwargs: Any) -> Checkpoint:
    """Resolves a checkpoint and builds its `SERConfig` from config.json and the tensor shapes."""
    path = resolve_checkpoint(model, **resolve_kwargs)
    cfg = read_json(path / CONFIG_FILE)
    features = FeatureConfig.from_dict(read_json(path / PREPROCESSOR_FILE))
    shapes = _tensor_shapes(path / WEIGHTS_FILE)
    config = _config_from_shapes(shapes, cfg, features, path)
    return Checkpoint(model_id=str(model), path=path, config=config, random_init=bool(cfg.get(RANDOM_INIT_KEY)))


def _tensor_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError for truncated or foreign files
        raise CheckpointError(f"{weights} is not a readable safetensors file ({e}); download it again") from e


def _config_from_shapes(
    shapes: Mapping[str, tuple[int, ...]], cfg: Mapping[str, Any], features: FeatureConfig, path: Path
) -> SERConfig:
    """Sizes come from the tensors themselves; config.json adds the labels and the head count."""

    def shape(name: str) -> tuple[int, ...]:
        if name not in shapes:
            raise CheckpointError(f"{path / WEIGHTS_FILE} lacks tensor {name}; it is not a MERaLiON-SER checkpoint")
        return shapes[name]

    d_model, n_mels, _ = shape("whisper.encoder.conv1.weight")
    layers = 0
    while f"whisper.encoder.layers.{layers}.fc1.weight" in shapes:
        layers += 1
    labels = labels_from_config(cfg)
    config = SERConfig(
        n_mels=n_mels,
        d_model=d_model,
        encoder_layers=layers,
        encoder_attention_heads=int(cfg.get("encoder_attention_heads") or max(1, d_model // _WHISPER_HEAD_DIM)),
        encoder_ffn_dim=shape("whisper.encoder.layers.0.fc1.weight")[0] if layers else 4 * d_model,
        max_source_positions=shape("whisper.encoder.embed_positions.weight")[0],
        channels=shape("downstream_model.proj_in.0.weight")[0],
        embed_dim=shape("downstream_model.embed.4.weight")[0],
        labels=labels,
        features=features,
    )
    n_out = shape("emotion_classification_layer.2.weight")[0]
    if n_out != len(labels):
        raise CheckpointError(f"{path}: the classifier has {n_out} outputs but config.json names {len(labels)} labels")
    if features.feature_size != n_mels:
        raise CheckpointError(
            f"{path}: preprocessor_config.json asks for {features.feature_size} mel bins but the encoder takes {n_mels}"
        )
    return config


def load_weights(
    model: MERaLiONSER,
    weights: Path,
    *,
    dtype: torch.dtype,
    encoder_dtype: torch.dtype | None = None,
    own_memory: bool = False,
) -> None:
    """Reads exactly the tensors `model` needs from `weights` into it, strictly, in `dtype` (the
    encoder's tensors in `encoder_dtype` when given: bf16 weights are read straight into bf16, so no
    fp32 copy of the encoder is ever held). `own_memory` copies tensors out of the file's memory map
    (for weights that are converted after loading, e.g. quantized, so that the map is released).

    Raises:
        CheckpointError: naming any missing, unexpected or mis-shaped tensor.
    """
    from safetensors import safe_open

    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(weights), framework="pt") as f:
        present = {n for n in f.keys() if not n.startswith(_SKIPPED_PREFIXES)}
        missing = sorted(expected.keys() - present)
        unexpected = sorted(present - expected.keys())
        wrong = sorted(
            f"{n} {tuple(f.get_slice(n).get_shape())} (expected {expected[n]})"
            for n in expected.keys() & present
            if tuple(f.get_slice(n).get_shape()) != expected[n]
        )
        problems = [
            (label, names)
            for label, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong))
            if names
        ]
        if problems:
            detail = "; ".join(f"{label}: {_names(names)}" for label, names in problems)
            raise CheckpointError(f"{weights} does not fit the MERaLiON-SER network ({detail})")
        for name in expected:
            wanted = encoder_dtype if encoder_dtype is not None and name.startswith("whisper.") else dtype
            t = f.get_tensor(name)
            # Tensors read as stored share the file's memory map, which then stays mapped (and counted
            # as resident) whole. When the encoder is converted, copy the rest too so the map goes.
            state[name] = t.clone() if t.dtype == wanted and own_memory else t.to(wanted)
    model.load_state_dict(state, strict=True, assign=True)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES_IN_ERROR])
    more = len(names) - _MAX_NAMES_IN_ERROR
    return f"{shown} and {more} more" if more > 0 else shown


def build_model(
    checkpoint: Checkpoint,
    *,
    device: torch.device,
    dtype: torch.dtype,
    encoder_dtype: torch.dtype | None = None,
    own_memory: bool = False,
) -> MERaLiONSER:
    """Builds the network without allocating random weights, loads the checkpoint, moves it to `device`.
    `encoder_dtype` (default `dtype`) is the Whisper encoder's; the ECAPA-TDNN and heads get `dtype`."""
    with torch.device("meta"):
        model = MERaLiONSER(checkpoint.config)
    own = own_memory or (encoder_dtype is not None and encoder_dtype != dtype)
    load_weights(model, checkpoint.path / WEIGHTS_FILE, dtype=dtype, encoder_dtype=encoder_dtype, own_memory=own)
    return model.to(device).eval().requires_grad_(False)


def save_checkpoint(
    model: MERaLiONSER,
    directory: str | os.PathLike,
    *,
    random_init: bool = False,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Writes `model` in the published layout, loadable by `EmotionRecognizer.from_pretrained(directory)`.

    Args:
        model: the network.
        directory: created if needed; existing checkpoint files are overwritten.
        random_init: mark the weights as random in config.json, so that every reading says so.
        extra_tensors: more tensors to store beside the model's (e.g. a decoder, as the published file has).
    """
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {n: t.detach().to("cpu").contiguous() for n, t in model.state_dict().items()}
    tensors.update({n: t.detach().to("cpu").contiguous() for n, t in (extra_tensors or {}).items()})
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    _apply_umask(out / WEIGHTS_FILE)  # safetensors writes through a private temporary file (mode 0600)
    config = model.config
    (out / CONFIG_FILE).write_text(json.dumps(config.to_json_dict(random_init=random_init), indent=2) + "\n")
    (out / PREPROCESSOR_FILE).write_text(json.dumps(config.features.to_preprocessor_dict(), indent=2) + "\n")
    return out


def _apply_umask(path: Path) -> None:
    """Gives `path` the mode a plain `open(path, "w")` would have (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
