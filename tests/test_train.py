"""Fine-tuning: config, loss, LoRA merge, a run that learns, export, resume, and the command line.

The learning test trains a tiny model (TINY sizes) on a synthetic two-class set made with espeak-ng:
slow low-pitched speech ("sad") against fast high-pitched speech ("happy"), with different sentences
and voices in the training, development and held-out sets.

Its encoder is random. With PyTorch's default initialisation the tiny encoder's convolutions give
outputs about fifteen times smaller than its position table, so its states hardly depend on the
sound, unlike a trained Whisper's; the test checkpoint scales the convolutions up and the position
table down so that the random encoder passes the sound on. At the published operating point every
clip is padded to 30 s, and a fresh head then needs a few hundred steps to find the speech among
the padding: the default test gives the tiny network a 5-s window (the same code: the window is
read from the checkpoint everywhere), the 30-s version is marked slow (EMOTION_TOOL_SLOW_TESTS=1
runs it), and a fast test runs the 30-s operating point end to end through the command line.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from helpers import speak
from emotion_tool import EmotionRecognizer
from emotion_tool.engine.checkpoint import save_checkpoint
from emotion_tool.config import FeatureConfig
from emotion_tool.science.data import read_item_audio, read_manifest
from emotion_tool.science.evaluate import EvaluationOptions, evaluate
from emotion_tool.science.metrics import concordance_correlation, unweighted_average_recall
from emotion_tool.engine.testing import TINY, random_model
from emotion_tool.jobs.train import EpochLog, LoraOptions, TrainConfig, load_config, train
from emotion_tool.cli.train import register, run
from emotion_tool.jobs.train.lora import _add_lora, _base_state, _merged_changes, _plain_model, _whisper_model
from emotion_tool.jobs.train.losses import ccc_loss
from emotion_tool.jobs.train.trainer import _WarmupCosine

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY_5S = dataclasses.replace(TINY, max_source_positions=250, features=FeatureConfig(chunk_length=5))  # 5-s window

_SUBJECTS = ("My neighbour", "The teacher", "Our team", "That old man", "The little girl", "Your cousin")
_PREDICATES = (
    "went to the market", "fixed the broken fence", "called the office", "painted the kitchen",
    "lost the tickets", "found a new job", "read the whole book", "missed the last bus",
)  # fmt: skip
_TIMES = ("this morning", "last night", "on Sunday", "after lunch", "before the meeting")
_VOICES = ("en", "en-us", "en-gb-x-rp", "en-029", "en-gb-scotland")


def _sentence(k: int) -> str:
    """120 different sentences for k = 0..119."""
    return f"{_SUBJECTS[k % 6]} {_PREDICATES[k % 8]} {_TIMES[k % 5]}."


def make_two_class_set(folder: Path, *, per_class: int, first_sentence: int, seed: int) -> Path:
    """Writes clips and a manifest.csv: "sad" = slow (100-135 wpm), low pitch; "happy" = fast (185-230 wpm), high pitch."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(per_class):
        for j, label in enumerate(("sad", "happy")):
            voice = _VOICES[int(rng.integers(len(_VOICES)))]
            pitch, wpm = (int(rng.integers(5, 30)), int(rng.integers(100, 135))) if label == "sad" else (
                int(rng.integers(70, 99)), int(rng.integers(185, 230)))  # fmt: skip
            path = speak(_sentence(first_sentence + 2 * i + j), folder / f"{label}_{i:02d}.wav", voice=voice, speed_wpm=wpm, pitch=pitch)
            rows.append({"audio": path.name, "label": label, "language": "en", "speaker": voice})
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, ["audio", "label", "language", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture(scope="module")
def two_class(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("two_class")
    return {
        "train": make_two_class_set(root / "train", per_class=12, first_sentence=0, seed=1),
        "dev": make_two_class_set(root / "dev", per_class=6, first_sentence=24, seed=2),
        "test": make_two_class_set(root / "test", per_class=8, first_sentence=36, seed=3),
        "root": root,
    }


def _audible_checkpoint(directory: Path, config=TINY_5S, *, seed: int = 0) -> Path:
    """A random checkpoint whose encoder passes the sound on (see the module's docstring)."""
    model = random_model(config, seed=seed)
    encoder = model.whisper.encoder
    with torch.no_grad():
        encoder.conv1.weight.mul_(5.0)
        encoder.conv2.weight.mul_(5.0)
        encoder.embed_positions.weight.mul_(0.1)
    return save_checkpoint(model, directory, random_init=True)


@pytest.fixture(scope="module")
def tiny_5s_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _audible_checkpoint(tmp_path_factory.mktemp("ckpt5") / "tiny5")


def _quick_config(two_class: dict[str, Path], base: Path, out: Path, **overrides) -> TrainConfig:
    settings_ = dict(
        train_manifest=two_class["train"],
        dev_manifest=two_class["dev"],
        output_dir=out,
        base_model=str(base),
        # A fresh head on a random encoder needs a few hundred steps: a higher rate and small batches
        # buy them within a test's time; MixUp (which slows learning on 24 clips) is tested in the resume test.
        epochs=40,
        batch_size=4,
        lr_head=3e-3,
        lr_lora=1e-3,
        mixup_prob=0.0,
        patience=None,
        lora=LoraOptions(rank=4, alpha=8.0),
        device="cpu",
        num_workers=0,
    )
    settings_.update(overrides)
    return TrainConfig(**settings_)


@pytest.fixture(scope="module")
def trained(two_class, tiny_5s_checkpoint, tmp_path_factory):
    config = _quick_config(two_class, tiny_5s_checkpoint, tmp_path_factory.mktemp("run") / "run")
    return train(config, verbose=False)


# --- the run -----------------------------------------------------------------------------------------


def test_a_tiny_model_learns_the_two_class_task(trained, two_class):
    history = trained.summary.history
    assert len(history) == 40
    first, last = np.mean([h.train_loss for h in history[:3]]), np.mean([h.train_loss for h in history[-3:]])
    assert last < 0.6 * first, f"the training loss did not fall: {[round(h.train_loss, 3) for h in history]}"

    rec = EmotionRecognizer.from_pretrained(trained.summary.model_dir, device="cpu")
    held_out = read_manifest(two_class["test"])
    uar = _held_out_uar(rec, held_out)
    assert uar >= 0.75, f"held-out UAR {uar:.2f} (chance 0.5)"

    # The evaluation protocol agrees on the same clips (each is shorter than the window: read whole).
    report = evaluate(rec, held_out, options=EvaluationOptions(protocols=("utterances",)))
    assert report.protocols["utterances"].overall.seven_class.uar == pytest.approx(uar)


def _held_out_uar(rec: EmotionRecognizer, manifest) -> float:
    """UAR over sad and happy; predicting any of the other five labels counts as wrong."""
    readings = rec.classify_batch([read_item_audio(it) for it in manifest.items])
    classes = ["sad", "happy", "other"]
    y = [classes.index(it.label) for it in manifest.items]
    pred = [classes.index(r.label) if r.label in classes else 2 for r in readings]
    return unweighted_average_recall(y, pred, num_classes=3)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("EMOTION_TOOL_SLOW_TESTS"), reason="trains for about 2 minutes on a CPU; set EMOTION_TOOL_SLOW_TESTS=1"
)
def test_a_tiny_model_learns_at_the_published_30s_window(two_class, tmp_path):
    base = _audible_checkpoint(tmp_path / "tiny30", TINY)
    result = train(_quick_config(two_class, base, tmp_path / "run", epochs=60), verbose=False)
    history = result.summary.history
    assert np.mean([h.train_loss for h in history[-3:]]) < 0.6 * np.mean([h.train_loss for h in history[:3]])
    rec = EmotionRecognizer.from_pretrained(result.summary.model_dir, device="cpu")
    assert rec.model.config.features.chunk_length == 30
    assert _held_out_uar(rec, read_manifest(two_class["test"])) >= 0.75


def test_the_export_loads_in_the_engine_and_predicts_as_at_the_end_of_training(trained, two_class):
    s = trained.summary
    assert sorted(p.name for p in s.model_dir.iterdir()) == [
        "config.json", "model.safetensors", "preprocessor_config.json", "training.json",
    ]  # fmt: skip
    weights = load_file(str(s.model_dir / "model.safetensors"))
    assert not any("lora" in n or "base_layer" in n for n in weights)  # LoRA merged: the published names
    assert set(weights) == set(random_model(TINY_5S).state_dict())

    rec = EmotionRecognizer.from_pretrained(s.model_dir, device="cpu")
    assert rec.random_weights  # it started from a random test checkpoint, and says so
    dev = read_manifest(two_class["dev"])
    waves = [read_item_audio(it) for it in dev.items]
    readings = rec.classify_batch(waves)
    assert [r.label for r in readings] == s.dev_predictions
    with torch.no_grad():
        from emotion_tool.engine.features import log_mel_spectrogram, pad_or_trim

        batch = torch.from_numpy(np.stack([pad_or_trim(w, TINY_5S.features.n_samples) for w in waves]))
        probs = torch.softmax(trained.model(log_mel_spectrogram(batch, TINY_5S.features)).logits, -1).numpy()
    engine = np.array([[r.probabilities[lab] for lab in rec.labels] for r in readings])
    np.testing.assert_allclose(engine, probs, atol=1e-5)

    assert s.exported in ("average", "best") and set(s.exported_epochs) <= set(s.best_epochs)
    assert len(s.best_epochs) == 4
    kept = sorted(p.name for p in (s.output_dir / "checkpoints").iterdir())
    assert kept == sorted(f"epoch-{e:03d}.safetensors" for e in s.best_epochs)
    log = [EpochLog.model_validate_json(line) for line in (s.output_dir / "log.jsonl").read_text().splitlines()]
    assert log == s.history
    assert s.dev.seven_class.n == len(dev.items)
    record = json.loads((s.model_dir / "training.json").read_text())
    assert record["summary"]["dev_predictions"] == s.dev_predictions and record["config"]["epochs"] == 40


# --- resume ------------------------------------------------------------------------------------------


def _tiny_whisper_dir(folder: Path) -> Path:
    """A tiny random transformers Whisper checkpoint with a 5-s window."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    cfg = WhisperConfig(
        d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80, max_source_positions=250, max_target_positions=32,
        vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
        suppress_tokens=[], begin_suppress_tokens=[],
    )  # fmt: skip
    WhisperForConditionalGeneration(cfg).save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(FeatureConfig(chunk_length=5).to_preprocessor_dict()))
    return folder


def test_an_interrupted_run_resumes_to_the_same_result(two_class, tmp_path):
    import soundfile as sf

    noise = tmp_path / "noise"
    noise.mkdir()
    sf.write(noise / "hiss.wav", np.random.default_rng(0).normal(0, 0.05, 16000).astype(np.float32), 16000)
    whisper = _tiny_whisper_dir(tmp_path / "whisper")

    def config(out: Path, **kw) -> TrainConfig:
        return _quick_config(
            two_class, whisper, out, base_model=None, whisper_encoder=whisper, channels=64, embed_dim=16,
            epochs=3, mixup_prob=0.5, noise_dir=noise, grad_accum_steps=2, keep_best=2, **kw,
        )  # fmt: skip

    whole = train(config(tmp_path / "whole"), verbose=False)
    assert not whole.summary.random_weights and whole.summary.base.startswith("whisper:")

    def stop_after_first(log: EpochLog) -> None:
        if log.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "cut"), verbose=False, callback=stop_after_first)
    assert len((tmp_path / "cut" / "log.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "cut" / "model").exists()

    with pytest.raises(ValueError, match="already holds a training run"):
        train(config(tmp_path / "cut"), verbose=False)
    with pytest.raises(ValueError, match=r"differs .* in \['lr_head'\]"):
        train(config(tmp_path / "cut", lr_head=1e-3), resume=True, verbose=False)
    with pytest.raises(ValueError, match="no run to resume"):
        train(config(tmp_path / "never"), resume=True, verbose=False)

    resumed = train(config(tmp_path / "cut"), resume=True, verbose=False)
    assert [h.epoch for h in resumed.summary.history] == [1, 2, 3]
    # Shuffling, augmentation, MixUp, dropout and the adapters' initialisation depend on the seed and
    # the epoch only, and the optimiser and schedule come back from the state: the same run.
    for a, b in zip(whole.summary.history, resumed.summary.history):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-7)
        assert a.dev_categorical_loss == pytest.approx(b.dev_categorical_loss, rel=1e-7)
        assert a.lr_head == b.lr_head and a.lr_lora == b.lr_lora
    assert resumed.summary.best_epochs == whole.summary.best_epochs
    assert resumed.summary.dev_predictions == whole.summary.dev_predictions
    w1 = load_file(str(whole.summary.model_dir / "model.safetensors"))
    w2 = load_file(str(resumed.summary.model_dir / "model.safetensors"))
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], atol=1e-7, rtol=1e-6)
    # Encoder tensors come from the Whisper checkpoint; only the LoRA'd projections changed.
    from safetensors import safe_open

    with safe_open(str(whisper / "model.safetensors"), framework="pt") as f:
        torch.testing.assert_close(w1["whisper.encoder.layers.0.fc1.weight"], f.get_tensor("model.encoder.layers.0.fc1.weight"))
        assert not torch.allclose(w1["whisper.encoder.layers.0.self_attn.q_proj.weight"], f.get_tensor("model.encoder.layers.0.self_attn.q_proj.weight"))


# --- the published operating point through the command line ------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotion-tool")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_trains_at_the_published_operating_point(two_class, tiny_checkpoint, tmp_path, capsys):
    cfg = tmp_path / "train.json"
    cfg.write_text(json.dumps({
        "train_manifest": str(two_class["dev"]),  # 12 clips: enough to run an epoch
        "dev_manifest": os.path.relpath(two_class["test"], tmp_path),  # relative paths start at the config's folder
        "output_dir": "run",
        "base_model": str(tiny_checkpoint),  # the 30-s window of the published model
        "epochs": 1,
        "batch_size": 6,
        "lora": {"enabled": False},  # the encoder stays exactly as it was (LoRA at 30 s: the slow test)
        "device": "cpu",
        "num_workers": 0,
    }))  # fmt: skip
    args = _parser().parse_args(["train", str(cfg), "--dry-run"])
    assert args.func is run and args.dry_run and not args.resume
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "training set" in out and "12 items" in out and "dev set" in out and "16 items" in out

    assert run(_parser().parse_args(["train", str(cfg)])) == 0
    out = capsys.readouterr().out
    model_dir = tmp_path / "run" / "model"
    assert f"model: {model_dir}" in out and "random weights" in out
    record = json.loads((model_dir / "training.json").read_text())
    rec = EmotionRecognizer.from_pretrained(model_dir, device="cpu")
    assert rec.model.config.features.chunk_length == 30
    test_items = read_manifest(two_class["test"]).items
    assert [r.label for r in rec.classify_batch([read_item_audio(it) for it in test_items])] == record["summary"]["dev_predictions"]
    before, after = load_file(str(tiny_checkpoint / "model.safetensors")), load_file(str(model_dir / "model.safetensors"))
    assert all(torch.equal(before[n], after[n]) for n in before if n.startswith("whisper."))
    assert not torch.equal(before["emotion_layer.weight"], after["emotion_layer.weight"])


def test_cli_parses_resume(tmp_path):
    args = _parser().parse_args(["train", "cfg.toml", "--resume"])
    assert args.resume and args.config == Path("cfg.toml") and args.func is run


# --- pieces ------------------------------------------------------------------------------------------


def test_config_defaults_are_the_papers():
    c = TrainConfig(train_manifest="t.csv", dev_manifest="d.csv", output_dir="out")
    assert (c.lr_lora, c.weight_decay_lora, c.lr_head, c.weight_decay_head) == (5e-5, 4e-5, 6e-4, 8e-5)
    assert (c.warmup_fraction, c.epochs, c.batch_size) == (0.08, 15, 32)
    assert (c.label_smoothing, c.ccc_weight, c.class_weights) == (0.1, 0.5, "balanced")
    assert (c.mixup_prob, c.mixup_alpha, c.speed_factors) == (0.5, 0.3, (0.9, 1.0, 1.1))
    assert (c.keep_best, c.average_best) == (4, True)
    assert c.lora.enabled and c.lora.target_modules == ("q_proj", "k_proj", "v_proj")


def test_the_example_config_is_complete_and_holds_the_defaults():
    c = load_config(EXAMPLES / "train_config.toml")
    assert c.train_manifest == EXAMPLES / "data" / "train.csv"  # relative to the config file
    defaults = TrainConfig(train_manifest="t.csv", dev_manifest="d.csv", output_dir="out")
    skip = {"train_manifest", "dev_manifest", "output_dir", "label_map"}
    assert {k: v for k, v in c.model_dump().items() if k not in skip} == {k: v for k, v in defaults.model_dump().items() if k not in skip}
    text = (EXAMPLES / "train_config.toml").read_text()
    for name in TrainConfig.model_fields:
        assert name in text, f"examples/train_config.toml does not show {name}"
    assert c.manifest_options().label_map == {"exc": "happy", "oth": ""}


def test_bad_configs_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('train_manifest = "t.csv"\ndev_manifest = "d.csv"\noutput_dir = "o"\nlearning_rate = 1e-3\n')
    with pytest.raises(ValueError, match="learning_rate: Extra inputs are not permitted"):
        load_config(bad)
    bad.write_text('train_manifest = "t.csv"\ndev_manifest = "d.csv"\noutput_dir = "o"\nbase_model = "x/y"\nwhisper_encoder = "w"\n')
    with pytest.raises(ValueError, match="not both"):
        load_config(bad)
    bad.write_text('train_manifest = "t.csv"\ndev_manifest = "d.csv"\noutput_dir = "o"\n[lora]\ntarget_modules = ["fc1"]\n')
    with pytest.raises(ValueError, match="lora.target_modules"):
        load_config(bad)
    bad.write_text("epochs = [")
    with pytest.raises(ValueError, match="cannot be parsed"):
        load_config(bad)
    (tmp_path / "x.yaml").write_text("epochs: 1")
    with pytest.raises(ValueError, match="must be .toml or .json"):
        load_config(tmp_path / "x.yaml")


def test_warmup_then_cosine_to_zero():
    f = _WarmupCosine(total_steps=100, warmup_steps=8)
    assert [round(f(s), 3) for s in range(8)] == [round((s + 1) / 8, 3) for s in range(8)]
    assert f(8) == pytest.approx(1.0) and f(54) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert all(f(s) >= f(s + 1) for s in range(8, 100))


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=40))
@settings(max_examples=100, deadline=None)
def test_ccc_loss_is_one_minus_ccc(pairs):
    x = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    assume(x.std() > 0.05 and y.std() > 0.05)  # the loss guards its denominator with 1e-8
    pred = torch.tensor(np.stack([x, x, x], 1), dtype=torch.float64)
    target = torch.tensor(np.stack([y, y, y], 1), dtype=torch.float64)
    loss, scored = ccc_loss(pred, target)
    assert scored == 3
    # The 1e-8 guard moves the loss by 1e-8 / (var_x + var_y) < 2e-6 here (std > 0.05), hence abs=1e-5.
    assert loss.item() == pytest.approx(1.0 - concordance_correlation(x, y), rel=1e-5, abs=1e-5)


def test_ccc_loss_skips_unannotated_rows_and_dimensions():
    pred = torch.tensor([[0.1, 0.5, 0.2], [0.9, 0.5, 0.4], [0.4, 0.5, 0.9]], requires_grad=True)
    target = torch.tensor([[0.2, float("nan"), float("nan")], [0.8, float("nan"), 0.3], [0.3, 0.1, float("nan")]])
    loss, scored = ccc_loss(pred, target)
    assert scored == 1  # only valence has two or more annotated rows
    assert loss.item() == pytest.approx(1 - concordance_correlation([0.1, 0.9, 0.4], [0.2, 0.8, 0.3]), abs=1e-6)
    loss.backward()
    assert pred.grad[:, 1:].abs().sum() == 0
    none, n = ccc_loss(pred, torch.full((3, 3), float("nan")))
    assert n == 0 and none.item() == 0.0


def test_lora_merge_gives_the_adapted_network_under_published_names():
    torch.manual_seed(0)
    model = _add_lora(random_model(TINY), LoraOptions(rank=4, alpha=8.0, dropout=0.0))
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name or not name.startswith("whisper."))
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # peft starts B at zero: make the adapters matter
    model.eval()
    merged = _plain_model(TINY, {**_base_state(model), **_merged_changes(model)}, torch.device("cpu"))
    assert set(merged.state_dict()) == set(random_model(TINY).state_dict())
    features = torch.randn(2, 80, 200)
    with torch.no_grad():
        a, b = model(features), merged(features)
        plain = random_model(TINY)(features)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.dims, b.dims, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a.logits, plain.logits, atol=1e-3)  # the adapters did change the output


def test_whisper_encoder_start_copies_the_encoder_and_builds_a_fresh_head(tmp_path):
    whisper = _tiny_whisper_dir(tmp_path / "w")
    model = _whisper_model(whisper, channels=128, embed_dim=16, seed=0)
    assert model.config.max_source_positions == 250 and model.config.features.chunk_length == 5
    assert model.config.channels == 128 and model.config.embed_dim == 16
    from safetensors import safe_open

    with safe_open(str(whisper / "model.safetensors"), framework="pt") as f:
        for name, t in model.state_dict().items():
            if name.startswith("whisper.encoder."):
                torch.testing.assert_close(t, f.get_tensor("model." + name.removeprefix("whisper.")))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "bert"}')
    from emotion_tool import CheckpointError

    with pytest.raises(CheckpointError, match="needs a Whisper checkpoint"):
        _whisper_model(tmp_path / "other", channels=64, embed_dim=16, seed=0)
