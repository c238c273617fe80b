"""Building the network to train: from a checkpoint or a Whisper encoder, LoRA adapters, merged export.

Layer 4, jobs (`emotion_tool.jobs`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from emotion_tool.config import WEIGHTS_FILE, FeatureConfig, SERConfig
from emotion_tool.engine.checkpoint import Checkpoint, CheckpointError, load_weights
from emotion_tool.engine.model import MERaLiONSER
from emotion_tool.jobs.train.config import LoraOptions


def _checkpoint_model(ckpt: Checkpoint) -> MERaLiONSER:
    """The checkpoint's network in float32, trainable (`build_model` gives a frozen one)."""
    with torch.device("meta"):
        model = MERaLiONSER(ckpt.config)
    load_weights(model, ckpt.path / WEIGHTS_FILE, dtype=torch.float32)
    return model


def _whisper_model(directory: Path, *, channels: int, embed_dim: int, seed: int) -> MERaLiONSER:
    """A Whisper encoder from a transformers checkpoint directory, with a fresh downstream model and heads."""
    from safetensors import safe_open

    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory} has no config.json; give a transformers Whisper checkpoint directory")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if cfg.get("model_type") != "whisper":
        raise CheckpointError(f"{cfg_path} describes a {cfg.get('model_type')!r} model; whisper_encoder needs a Whisper checkpoint")
    features = FeatureConfig(feature_size=int(cfg["num_mel_bins"]))
    if (directory / "preprocessor_config.json").is_file():
        pre = json.loads((directory / "preprocessor_config.json").read_text(encoding="utf-8"))
        features = FeatureConfig.from_dict(pre)
    config = SERConfig(
        n_mels=int(cfg["num_mel_bins"]),
        d_model=int(cfg["d_model"]),
        encoder_layers=int(cfg["encoder_layers"]),
        encoder_attention_heads=int(cfg["encoder_attention_heads"]),
        encoder_ffn_dim=int(cfg["encoder_ffn_dim"]),
        max_source_positions=int(cfg["max_source_positions"]),
        channels=channels,
        embed_dim=embed_dim,
        features=features,
    )
    if features.feature_size != config.n_mels:
        raise CheckpointError(f"{directory}: preprocessor_config.json has {features.feature_size} mel bins, config.json {config.n_mels}")
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    elif (directory / "model.safetensors").is_file():
        with safe_open(str(directory / "model.safetensors"), framework="pt") as f:
            weight_map = {n: "model.safetensors" for n in f.keys()}
    else:
        raise CheckpointError(
            f"{directory} has no model.safetensors; save the Whisper model with save_pretrained(safe_serialization=True)"
        )
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = MERaLiONSER(config)
    finally:
        torch.random.set_rng_state(gen_state)
    wanted = {n: t for n, t in model.state_dict().items() if n.startswith("whisper.encoder.")}
    prefix = next((p for p in ("model.encoder.", "encoder.") if any(k.startswith(p) for k in weight_map)), None)
    if prefix is None:
        raise CheckpointError(f"{directory} holds no encoder tensors (model.encoder.* or encoder.*); is it a Whisper checkpoint?")
    state: dict[str, torch.Tensor] = {}
    missing = []
    for name, target in wanted.items():
        source = prefix + name.removeprefix("whisper.encoder.")
        if source not in weight_map:
            missing.append(source)
            continue
        with safe_open(str(directory / weight_map[source]), framework="pt") as f:
            t = f.get_tensor(source)
        if tuple(t.shape) != tuple(target.shape):
            raise CheckpointError(f"{directory}: {source} has shape {tuple(t.shape)}, the encoder needs {tuple(target.shape)}")
        state[name] = t.float()
    if missing:
        raise CheckpointError(f"{directory} lacks encoder tensors: {', '.join(missing[:8])}")
    model.load_state_dict(state, strict=False)
    return model


def _add_lora(model: MERaLiONSER, options: LoraOptions) -> MERaLiONSER:
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as e:
        raise RuntimeError("LoRA training requires peft; pip install 'emotion-tool[train]'") from e
    pattern = r"whisper\.encoder\.layers\.\d+\.self_attn\.(" + "|".join(map(re.escape, options.target_modules)) + ")"
    config = LoraConfig(r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout, target_modules=pattern, bias="none")
    return inject_adapter_in_model(config, model)


def _is_lora(name: str) -> bool:
    return ".lora_" in name


def _merged_changes(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors training changes, under their published names: LoRA-merged projections and the head."""
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        if any(_is_lora(n) for n, _ in model.named_parameters()):
            from peft.tuners.lora import LoraLayer

            for name, module in model.named_modules():
                if isinstance(module, LoraLayer):
                    base = module.get_base_layer()
                    out[f"{name}.weight"] = (base.weight + module.get_delta_weight("default")).detach().clone()
        for name, p in model.named_parameters():
            if p.requires_grad and not _is_lora(name):
                out[name] = p.detach().clone()
    return out


def _base_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """All tensors under their published names, LoRA not applied."""
    return {n.replace(".base_layer.", "."): t for n, t in model.state_dict().items() if not _is_lora(n)}


def _plain_model(config: SERConfig, state: dict[str, torch.Tensor], device: torch.device) -> MERaLiONSER:
    with torch.device("meta"):
        model = MERaLiONSER(config)
    model.load_state_dict({n: t.detach().clone() for n, t in state.items()}, strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)
