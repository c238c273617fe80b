"""Fine-tuning with the MERaLiON-SER recipe, and export in the published layout.

The recipe (arXiv 2511.04914, section 3): the Whisper encoder frozen with LoRA on its attention q/k/v;
loss = class-weighted cross-entropy with label smoothing + λ·(1 − CCC) on valence/arousal/dominance;
AdamW with one parameter group for LoRA and one for the downstream model and heads; a cosine schedule
with linear warm-up; MixUp, additive noise and speed perturbation; early stopping on the development
categorical loss; the k best epochs kept and averaged. Every value is a field of `TrainConfig`, whose
defaults are the paper's where it gives them.

    emotion-tool train CONFIG.toml [--resume]

A run directory holds `config.json` (the resolved config), `log.jsonl` (one line per epoch),
`state.pt` (everything needed to resume after the last finished epoch), `checkpoints/` (the trained
tensors of the k best epochs) and, at the end, `model/`: a checkpoint in the published layout
(LoRA merged into the encoder) that `EmotionRecognizer.from_pretrained` loads, with `training.json`.

Layer 4, jobs (`emotion_tool.jobs`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from emotion_tool.config import LABELS, SERConfig, default_model
from emotion_tool.engine.checkpoint import Checkpoint, read_checkpoint, save_checkpoint
from emotion_tool.engine.features import log_mel_spectrogram
from emotion_tool.engine.recognizer import pick_device
from emotion_tool.jobs.train.config import TrainConfig
from emotion_tool.jobs.train.lora import (
    _add_lora,
    _base_state,
    _checkpoint_model,
    _is_lora,
    _merged_changes,
    _plain_model,
    _whisper_model,
)
from emotion_tool.jobs.train.losses import _class_weights, ccc_loss
from emotion_tool.jobs.train.records import (
    EpochCallback,
    EpochLog,
    TrainingRun,
    TrainingSummary,
)
from emotion_tool.science.data import (
    Augmentation,
    ClipBatch,
    ManifestDataset,
    class_balance,
    collate_clips,
    list_noise_files,
    read_manifest,
)
from emotion_tool.science.metrics import EmotionScores, emotion_scores

__all__ = ["train"]

_STATE_FILE = "state.pt"
_LOG_FILE = "log.jsonl"
_CONFIG_FILE = "config.json"
_MODEL_DIR = "model"
_SUMMARY_FILE = "training.json"
_CHECKPOINT_DIR = "checkpoints"
_RUNTIME_FIELDS = {"device", "num_workers"}  # may change between a run and its resume


class _WarmupCosine:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0 at the last step."""

    def __init__(self, total_steps: int, warmup_steps: int):
        self.total = max(1, total_steps)
        self.warmup = warmup_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([abs(p) for p in parts]).generate_state(1)[0])


def train(
    config: TrainConfig, *, resume: bool = False, verbose: bool = True, callback: EpochCallback | None = None
) -> TrainingRun:
    """Runs (or resumes) a training run and exports the model.

    Args:
        config: the run's settings.
        resume: continue the run in `config.output_dir` after its last finished epoch.
        verbose: progress bars and per-epoch lines on stderr.
        callback: called with each epoch's log, after its state is saved.

    Raises:
        ValueError: bad config or manifests, or an output directory that holds another run.
        CheckpointError: the starting checkpoint cannot be loaded.
    """
    return _Trainer(config, verbose=verbose).run(resume=resume, callback=callback)


class _Trainer:
    def __init__(self, config: TrainConfig, *, verbose: bool):
        self.cfg = config
        self.verbose = verbose
        self.out = Path(config.output_dir)
        self.device = pick_device(config.device)
        self.amp_dtype = _amp_dtype(config.mixed_precision, self.device)

        # The manifests are checked before any weights are read.
        ckpt: Checkpoint | None = None
        if config.whisper_encoder is not None:
            self.base = f"whisper:{config.whisper_encoder}"
            self.labels = list(LABELS)
            self.random_init = False
        else:
            self.base = config.base_model or default_model()
            ckpt = read_checkpoint(self.base)
            self.labels = list(ckpt.config.labels)
            self.random_init = ckpt.random_init
        options = config.manifest_options(tuple(self.labels))
        self.train_manifest = read_manifest(config.train_manifest, options=options)
        self.dev_manifest = read_manifest(config.dev_manifest, options=options)
        self.train_balance = class_balance(self.train_manifest.items, labels=self.labels)
        self.dev_balance = class_balance(self.dev_manifest.items, labels=self.labels)
        self._say(f"training set {config.train_manifest} ({len(self.train_manifest)} items):\n{self.train_balance.table()}")
        self._say(f"dev set {config.dev_manifest} ({len(self.dev_manifest)} items):\n{self.dev_balance.table()}")
        if self.random_init:
            self._say(f"note: {self.base} has random weights (a test model); the exported model will be marked so")

        if ckpt is not None:
            model = _checkpoint_model(ckpt)
        else:
            model = _whisper_model(Path(config.whisper_encoder), channels=config.channels, embed_dim=config.embed_dim, seed=config.seed)
        self.model_config: SERConfig = model.config

        if config.lora.enabled:
            with torch.random.fork_rng(devices=[]):  # peft draws the adapters' A matrices from the global generator
                torch.manual_seed(_seed(config.seed, 0, 3))
                model = _add_lora(model, config.lora)
        model.requires_grad_(False)
        lora_params, head_params = [], []
        for name, p in model.named_parameters():
            if _is_lora(name):
                lora_params.append(p)
            elif not name.startswith("whisper."):
                head_params.append(p)
        for p in lora_params + head_params:
            p.requires_grad_(True)
        self.model = model.to(self.device)
        self.trainable_names = [n for n, p in model.named_parameters() if p.requires_grad]

        noise = list_noise_files(config.noise_dir) if config.noise_dir is not None else ()
        augmentation = Augmentation(
            speed_factors=config.speed_factors, noise_files=noise, noise_prob=config.noise_prob, snr_db=config.noise_snr_db
        )
        clip_s = min(config.max_clip_s, model.config.features.chunk_length)  # crops fall inside the model's window
        self.train_data = ManifestDataset(
            self.train_manifest.items, labels=self.labels, max_clip_s=clip_s,
            augmentation=augmentation, random_crop=True, seed=config.seed,
        )  # fmt: skip
        self.dev_data = ManifestDataset(self.dev_manifest.items, labels=self.labels, max_clip_s=clip_s)
        self.collate = functools.partial(collate_clips, n_samples=self.model_config.features.n_samples)
        self.class_weights = _class_weights(self.train_manifest, self.labels, config.class_weights).to(self.device)

        groups = [{"params": head_params, "lr": config.lr_head, "weight_decay": config.weight_decay_head}]
        if lora_params:
            groups.append({"params": lora_params, "lr": config.lr_lora, "weight_decay": config.weight_decay_lora})
        self.optimizer = torch.optim.AdamW(groups)
        batches = math.ceil(len(self.train_data) / config.batch_size)
        self.steps_per_epoch = math.ceil(batches / config.grad_accum_steps)
        total = self.steps_per_epoch * config.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _WarmupCosine(total, int(round(config.warmup_fraction * total)))
        )
        self.scaler = torch.amp.GradScaler("cuda" if self.device.type == "cuda" else "cpu", enabled=self.amp_dtype == torch.float16)

        self.epoch = 0  # last finished epoch
        self.best: list[tuple[float, int]] = []  # (dev categorical loss, epoch), best first, at most keep_best
        self.bad_epochs = 0
        self.stopped_early = False
        self.history: list[EpochLog] = []

    # --- bookkeeping ---------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if self.verbose:
            from tqdm.auto import tqdm

            tqdm.write(text, file=sys.stderr)

    def _config_json(self) -> dict[str, Any]:
        return json.loads(self.cfg.model_dump_json())

    def _start(self, resume: bool) -> None:
        state_path = self.out / _STATE_FILE
        if not resume:
            if state_path.exists():
                raise ValueError(
                    f"{self.out} already holds a training run; continue it with --resume (resume=True), "
                    "or choose another output_dir"
                )
            (self.out / _CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
            (self.out / _CONFIG_FILE).write_text(json.dumps(self._config_json(), indent=2) + "\n")
            (self.out / _LOG_FILE).write_text("")
            return
        if not state_path.exists():
            raise ValueError(f"{self.out} holds no run to resume (no {_STATE_FILE}); start it without --resume")
        saved = json.loads((self.out / _CONFIG_FILE).read_text(encoding="utf-8"))
        now = self._config_json()
        changed = sorted(k for k in set(saved) | set(now) if k not in _RUNTIME_FIELDS and saved.get(k) != now.get(k))
        if changed:
            raise ValueError(
                f"the config differs from the one {self.out} was started with in {changed}; "
                "resume with the same settings, or start a new run in another output_dir"
            )
        state = torch.load(state_path, map_location=self.device, weights_only=True)
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, t in state["trainable"].items():
                params[name].copy_(t)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.best = [(float(loss), int(e)) for loss, e in state["best"]]
        self.bad_epochs = int(state["bad_epochs"])
        self.stopped_early = bool(state["stopped_early"])
        self.history = [EpochLog.model_validate_json(line) for line in state["history"]]
        # The log may hold a line of an epoch whose state was never saved: rewrite it from the state.
        (self.out / _LOG_FILE).write_text("".join(h.model_dump_json() + "\n" for h in self.history))
        self._say(f"resuming {self.out} after epoch {self.epoch}")

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        return {n: params[n].detach().to("cpu").clone() for n in self.trainable_names}

    def _save_state(self) -> None:
        state = {
            "epoch": self.epoch,
            "trainable": self._trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best": [[loss, e] for loss, e in self.best],
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "history": [h.model_dump_json() for h in self.history],
        }
        tmp = self.out / (_STATE_FILE + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.out / _STATE_FILE)

    def _checkpoint_path(self, epoch: int) -> Path:
        return self.out / _CHECKPOINT_DIR / f"epoch-{epoch:03d}.safetensors"

    def _keep_if_best(self, dev_loss: float, epoch: int) -> list[int]:
        """Saves this epoch's tensors if it ranks among the k best; returns the epochs it pushes out.

        Their files are deleted only after the state is saved, so that a resume never misses one.
        """
        from safetensors.torch import save_file

        ranked = sorted(self.best + [(dev_loss, epoch)])
        if (dev_loss, epoch) not in ranked[: self.cfg.keep_best]:
            return []
        save_file(self._trainable_state(), str(self._checkpoint_path(epoch)))
        self.best = ranked[: self.cfg.keep_best]
        return [e for _, e in ranked[self.cfg.keep_best :]]

    # --- epochs --------------------------------------------------------------------------------------

    def run(self, *, resume: bool, callback: EpochCallback | None) -> TrainingRun:
        self._start(resume)
        while self.epoch < self.cfg.epochs and not self.stopped_early:
            epoch = self.epoch + 1
            t0 = time.perf_counter()
            train_losses = self._train_epoch(epoch)
            dev = self._evaluate(self.model, self.dev_data)
            best_so_far = min((loss for loss, _ in self.best), default=math.inf)
            self.bad_epochs = 0 if dev.scores.categorical_loss < best_so_far else self.bad_epochs + 1
            dropped = self._keep_if_best(dev.scores.categorical_loss, epoch)
            lrs = [g["lr"] for g in self.optimizer.param_groups]  # head first, then LoRA
            dims = dev.scores.dimensions
            dev_ccc = dims.ccc if dims is not None else {}
            scored = [v for v in dev_ccc.values() if v is not None]
            log = EpochLog(
                epoch=epoch,
                **train_losses,
                dev_categorical_loss=dev.scores.categorical_loss,
                dev_ccc_loss=1.0 - float(np.mean(scored)) if scored else None,
                dev_uar=dev.scores.seven_class.uar,
                dev_uar4=dev.scores.four_class.uar,
                dev_ccc=dev_ccc,
                lr_head=lrs[0],
                lr_lora=lrs[1] if len(lrs) > 1 else None,
                seconds=time.perf_counter() - t0,
            )
            self.history.append(log)
            self.epoch = epoch
            if self.cfg.patience is not None and self.bad_epochs >= self.cfg.patience and epoch < self.cfg.epochs:
                self.stopped_early = True
            with open(self.out / _LOG_FILE, "a", encoding="utf-8") as f:
                f.write(log.model_dump_json() + "\n")
            self._save_state()
            for e in dropped:
                self._checkpoint_path(e).unlink(missing_ok=True)
            self._say(
                f"epoch {epoch}/{self.cfg.epochs}: train loss {log.train_loss:.4f}, dev loss {log.dev_categorical_loss:.4f}, "
                f"dev UAR {_pct(log.dev_uar)} (4-class {_pct(log.dev_uar4)})"
                + (f"; no improvement for {self.bad_epochs} epochs: stopping" if self.stopped_early else "")
            )
            if callback is not None:
                callback(log)
        return self._finish()

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _forward(self, model: torch.nn.Module, waveforms: torch.Tensor):
        with torch.no_grad():
            features = log_mel_spectrogram(waveforms, self.model_config.features)
        with self._autocast():
            if self.cfg.lora.enabled or not model.training:
                return model(features)
            with torch.no_grad():  # a frozen encoder needs no graph
                hidden = model.whisper.encoder(features)
            return model.heads(model.embed(hidden))

    def _loader(self, dataset: ManifestDataset, *, shuffle: bool, epoch: int = 0) -> torch.utils.data.DataLoader:
        generator = torch.Generator().manual_seed(_seed(self.cfg.seed, epoch, 7))
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            generator=generator if shuffle else None,
            collate_fn=self.collate,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.model.train()
        self.train_data.set_epoch(epoch)
        torch.manual_seed(_seed(cfg.seed, epoch, 1))  # dropout: the same after a resume
        mix_rng = np.random.default_rng([cfg.seed, epoch, 2])
        loader = self._loader(self.train_data, shuffle=True, epoch=epoch)
        totals = {"train_loss": 0.0, "train_categorical_loss": 0.0, "train_ccc_loss": 0.0}
        n_batches = len(loader)
        bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False, disable=not self.verbose or None, file=sys.stderr)
        self.optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(bar):
            batch: ClipBatch = batch.to(self.device)
            waves, labels, dims = batch.waveforms, batch.labels, batch.dims
            mix = mix_rng.random() < cfg.mixup_prob and len(waves) > 1
            if mix:
                lam = float(mix_rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
                perm = torch.from_numpy(mix_rng.permutation(len(waves))).to(self.device)
                waves = lam * waves + (1.0 - lam) * waves[perm]
                dims = lam * dims + (1.0 - lam) * dims[perm]  # NaN where either clip lacks a dimension
            out = self._forward(self.model, waves)
            logits = out.logits.float()
            ce = self._categorical(logits, labels)
            if mix:
                ce = lam * ce + (1.0 - lam) * self._categorical(logits, labels[perm])
            ccc, _ = ccc_loss(out.dims.float(), dims)
            loss = ce + cfg.ccc_weight * ccc
            if not torch.isfinite(loss):
                raise RuntimeError(
                    f"the loss became {loss.item()} in epoch {epoch}, batch {step + 1}; lower lr_head / lr_lora "
                    "or use mixed_precision = \"no\""
                )
            self.scaler.scale(loss / cfg.grad_accum_steps).backward()
            if (step + 1) % cfg.grad_accum_steps == 0 or step + 1 == n_batches:
                if cfg.max_grad_norm is not None:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg.max_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
            totals["train_loss"] += loss.item()
            totals["train_categorical_loss"] += ce.item()
            totals["train_ccc_loss"] += ccc.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        return {k: v / max(1, n_batches) for k, v in totals.items()}

    def _categorical(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(
            logits, labels, weight=self.class_weights, label_smoothing=self.cfg.label_smoothing, reduction=reduction
        )

    @torch.no_grad()
    def _evaluate(self, model: torch.nn.Module, dataset: ManifestDataset) -> "_Evaluation":
        from tqdm.auto import tqdm

        was_training = model.training
        model.eval()
        probs, dims, refs, ref_dims = [], [], [], []
        loss_sum, weight_sum = 0.0, 0.0
        loader = self._loader(dataset, shuffle=False)
        for batch in tqdm(loader, desc="dev", unit="batch", leave=False, disable=not self.verbose or None, file=sys.stderr):
            batch = batch.to(self.device)
            out = self._forward(model, batch.waveforms)
            logits = out.logits.float()
            loss_sum += self._categorical(logits, batch.labels, reduction="sum").item()
            weight_sum += self.class_weights[batch.labels].sum().item()
            probs.append(torch.softmax(logits, dim=-1).cpu().numpy())
            dims.append(out.dims.float().cpu().numpy())
            refs.append(batch.labels.cpu().numpy())
            ref_dims.append(batch.dims.cpu().numpy())
        model.train(was_training)
        p, d, y, yd = (np.concatenate(a) for a in (probs, dims, refs, ref_dims))
        scores = emotion_scores(y, p, d, yd, labels=self.labels, categorical_loss=loss_sum / weight_sum)
        return _Evaluation(scores=scores, predictions=[self.labels[i] for i in p.argmax(axis=1)])

    # --- the end -------------------------------------------------------------------------------------

    def _finish(self) -> TrainingRun:
        from safetensors.torch import load_file

        ranked = [e for _, e in self.best]
        base = _base_state(self.model)
        params = dict(self.model.named_parameters())
        changes = []
        for epoch in ranked:
            tensors = load_file(str(self._checkpoint_path(epoch)), device=str(self.device))
            with torch.no_grad():
                for name, t in tensors.items():
                    params[name].copy_(t)
            changes.append(_merged_changes(self.model))
        candidates: list[tuple[str, list[int], dict[str, torch.Tensor]]] = [("best", ranked[:1], changes[0])]
        if self.cfg.average_best and len(changes) > 1:
            mean = {n: torch.stack([c[n].float() for c in changes]).mean(dim=0).to(changes[0][n].dtype) for n in changes[0]}
            candidates.insert(0, ("average", ranked, mean))
        chosen = None
        for kind, epochs, change in candidates:
            model = _plain_model(self.model_config, {**base, **change}, self.device)
            result = self._evaluate(model, self.dev_data)
            self._say(f"{kind} of epochs {epochs}: dev loss {result.scores.categorical_loss:.4f}, dev UAR {_pct(result.scores.seven_class.uar)}")
            if chosen is None or result.scores.categorical_loss < chosen[3].scores.categorical_loss:
                chosen = (kind, epochs, model, result)
        assert chosen is not None
        kind, epochs, model, result = chosen
        model_dir = save_checkpoint(model, self.out / _MODEL_DIR, random_init=self.random_init)
        summary = TrainingSummary(
            output_dir=self.out,
            model_dir=model_dir,
            base=self.base,
            random_weights=self.random_init,
            train_manifest_sha256=self.train_manifest.sha256,
            dev_manifest_sha256=self.dev_manifest.sha256,
            train_balance=self.train_balance,
            dev_balance=self.dev_balance,
            epochs_run=self.epoch,
            stopped_early=self.stopped_early,
            best_epochs=ranked,
            exported=kind,  # type: ignore[arg-type]
            exported_epochs=epochs,
            dev=result.scores,
            dev_predictions=result.predictions,
            history=self.history,
        )
        record = {"summary": json.loads(summary.model_dump_json()), "config": self._config_json()}
        (model_dir / _SUMMARY_FILE).write_text(json.dumps(record, indent=2) + "\n")
        self._say(f"exported the {kind} of epochs {epochs} to {model_dir}")
        return TrainingRun(summary=summary, model=model)


@dataclass
class _Evaluation:
    scores: EmotionScores
    predictions: list[str]


def _amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    if setting == "no":
        return None
    if device.type != "cuda":
        if setting != "auto":
            warnings.warn(f"mixed_precision={setting!r} needs a CUDA device; training in float32 on {device}", stacklevel=3)
        return None
    if setting == "bf16" or (setting == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"
