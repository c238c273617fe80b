"""Loading checkpoints: local directories, the Hub cache offline, strict tensor checks."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from emotion_tool import CheckpointError, EmotionRecognizer
from emotion_tool.engine.checkpoint import read_checkpoint, resolve_checkpoint
from emotion_tool.engine.testing import TINY

REPO = "MERaLiON/MERaLiON-SER-v1"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite_weights(ckpt: Path, edit) -> None:
    tensors = load_file(str(ckpt / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(ckpt / "model.safetensors"))


def _hub_cache(root: Path, checkpoint: Path) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/...}."""
    repo_dir = root / "models--MERaLiON--MERaLiON-SER-v1"
    snap = repo_dir / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for f in checkpoint.iterdir():
        shutil.copy(f, snap / f.name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return root


def test_local_directory(tiny_checkpoint):
    ckpt = read_checkpoint(tiny_checkpoint)
    assert ckpt.path == tiny_checkpoint and ckpt.random_init
    assert (ckpt.config.d_model, ckpt.config.encoder_layers, ckpt.config.channels) == (64, 2, 64)
    assert ckpt.config.encoder_attention_heads == TINY.encoder_attention_heads
    assert ckpt.config.labels == ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")


def test_hub_cache_offline(tiny_checkpoint, tmp_path, monkeypatch):
    cache = _hub_cache(tmp_path / "hub", tiny_checkpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rec = EmotionRecognizer.from_pretrained(REPO, device="cpu", cache_dir=cache)
    assert rec.model_id == REPO and rec.random_weights
    assert resolve_checkpoint(REPO, cache_dir=cache) == cache / "models--MERaLiON--MERaLiON-SER-v1" / "snapshots" / COMMIT


@pytest.mark.subprocess
def test_hub_cache_and_model_from_environment(tiny_checkpoint, tmp_path):
    """A fresh process: huggingface_hub reads HF_HUB_CACHE / HF_HUB_OFFLINE when imported."""
    cache = _hub_cache(tmp_path / "hub", tiny_checkpoint)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "EMOTION_TOOL_MODEL": REPO}
    out = subprocess.run(
        [sys.executable, "-m", "emotion_tool.cli", "info", "--format", "json"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["model_id"] == REPO


def test_unreachable_hub_says_how_to_use_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"no cached copy.*--model DIR.*EMOTION_TOOL_MODEL"):
        resolve_checkpoint(REPO, cache_dir=tmp_path / "empty")


def test_not_a_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        resolve_checkpoint("./relative/thing")


def test_missing_file(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    (ckpt / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="lacks preprocessor_config.json"):
        read_checkpoint(ckpt)


def test_missing_tensor_is_named(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    _rewrite_weights(ckpt, lambda t: t.pop("downstream_model.mfa.1.weight"))
    with pytest.raises(CheckpointError, match=r"missing: downstream_model\.mfa\.1\.weight"):
        EmotionRecognizer.from_pretrained(ckpt, device="cpu")


def test_unexpected_tensor_is_named(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    _rewrite_weights(ckpt, lambda t: t.update({"whisper.encoder.lora_A.weight": torch.zeros(2, 2)}))
    with pytest.raises(CheckpointError, match=r"unexpected: whisper\.encoder\.lora_A\.weight"):
        EmotionRecognizer.from_pretrained(ckpt, device="cpu")


def test_misshaped_tensor_is_named(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    _rewrite_weights(ckpt, lambda t: t.update({"dim_layer.1.weight": torch.ones(31)}))
    with pytest.raises(CheckpointError, match=r"mis-shaped: dim_layer\.1\.weight \(31,\) \(expected \(32,\)\)"):
        EmotionRecognizer.from_pretrained(ckpt, device="cpu")


def test_decoder_tensors_are_skipped(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    _rewrite_weights(ckpt, lambda t: t.update({"whisper.decoder.layers.0.fc1.weight": torch.ones(8, 8)}))
    rec = EmotionRecognizer.from_pretrained(ckpt, device="cpu")
    assert not any(n.startswith("whisper.decoder") for n in rec.model.state_dict())


def test_weights_are_the_files(tiny_checkpoint):
    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu")
    stored = load_file(str(tiny_checkpoint / "model.safetensors"))
    for name, t in rec.model.state_dict().items():
        assert torch.equal(t, stored[name]), name


def test_labels_come_from_config(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["id2label"] = {str(i): n.upper() for i, n in enumerate(["a", "b", "c", "d", "e", "f", "g"])}
    (ckpt / "config.json").write_text(json.dumps(cfg))
    assert read_checkpoint(ckpt).config.labels == ("a", "b", "c", "d", "e", "f", "g")
    cfg["num_emotions"] = 5
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="num_emotions=5"):
        read_checkpoint(ckpt)


def test_corrupt_weights(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_checkpoint(ckpt)


def test_corrupt_config(tiny_checkpoint, tmp_path):
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    (ckpt / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        read_checkpoint(ckpt)
