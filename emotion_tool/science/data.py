"""Training and evaluation data: manifests, their validation, lazy audio reading and augmentation.

A manifest is a CSV file with a header row, or JSON Lines (one object per line), with one labelled
stretch of audio per row:

    audio       path of the audio file, relative to the manifest's folder (required)
    start_s     where the stretch starts in the file, seconds (optional; default 0)
    end_s       where it ends, seconds (optional; default the end of the file)
    label       the emotion: one of the model's labels, a common alias ("ang", "anger", ...) or a
                name that `label_map` maps (required)
    valence, arousal, dominance
                optional, each on the scale declared by `dim_scale` (default 0..1)
    language    optional, e.g. "en", "zh", "ms", "ta"; scores are also given per language
    speaker     optional speaker id

Audio is read only when an item is asked for, one item at a time (`ManifestDataset`).

Layer 3, science (`emotion_tool.science`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from emotion_tool.audio import (
    AudioError,
    audio_info,
    load_audio,
    load_channels,
    open_regular_file,
    read_frames,
)
from emotion_tool.config import DIMENSIONS, LABELS, SAMPLE_RATE

__all__ = [
    "ManifestOptions",
    "ManifestItem",
    "Manifest",
    "ManifestError",
    "read_manifest",
    "ClassBalance",
    "class_balance",
    "read_item_audio",
    "Augmentation",
    "list_noise_files",
    "ManifestDataset",
    "ClipBatch",
    "collate_clips",
]

MANIFEST_FIELDS = ("audio", "start_s", "end_s", "label", *DIMENSIONS, "language", "speaker")
REQUIRED_FIELDS = ("audio", "label")
# Unambiguous spellings of the model's labels found in public corpora. Anything else (IEMOCAP's
# "exc", RAVDESS's "calm", ...) is a dataset's own decision and goes in `label_map`.
LABEL_ALIASES: dict[str, str] = {
    "neu": "neutral",
    "hap": "happy", "happiness": "happy", "joy": "happy",
    "sadness": "sad",
    "ang": "angry", "anger": "angry",
    "fea": "fearful", "fear": "fearful",
    "dis": "disgusted", "disgust": "disgusted",
    "sur": "surprised", "surprise": "surprised",
}  # fmt: skip
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
UNSPECIFIED_LANGUAGE = "unspecified"  # the language group of rows without one
_TIME_TOLERANCE_S = 0.05  # end_s may overshoot the file's end by this much (rounding in annotation tools)
_MAX_PROBLEMS_SHOWN = 20


class ManifestError(ValueError):
    """A manifest with rows that cannot be used; the message lists each bad row and what to fix."""

    def __init__(self, path: Path, problems: Sequence[str]):
        shown = list(problems[:_MAX_PROBLEMS_SHOWN])
        more = len(problems) - len(shown)
        lines = "\n  ".join(shown + ([f"... and {more} more"] if more > 0 else []))
        super().__init__(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:\n  {lines}")
        self.path = path
        self.problems = list(problems)


@dataclass(frozen=True)
class ManifestOptions:
    """How a manifest's rows are read."""

    label_map: Mapping[str, str | None] = field(default_factory=dict)  # dataset label → model label; None or "" drops the row
    dim_scale: tuple[float, float] = (0.0, 1.0)  # scale of valence/arousal/dominance in the manifest, mapped to 0..1
    labels: tuple[str, ...] = LABELS  # the model's labels; every row must map to one of them
    check_audio: bool = True  # open every file's header: decodable, and start/end within its duration
    require_label: bool = True  # False: rows without a label are kept with label None (analysis, not scoring)
    require_files: bool = True  # False: missing files are kept, for the reader to report per item (batch analysis)

    def __post_init__(self) -> None:
        lo, hi = self.dim_scale
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"dim_scale must be [low, high] with high > low, got {list(self.dim_scale)}")
        bad = {k: v for k, v in self.label_map.items() if v not in (None, "") and v not in self.labels}
        if bad:
            raise ValueError(
                f"label_map sends {bad} to names that are not model labels; map to one of {list(self.labels)} "
                'or to null / "" to leave those rows out'
            )


class ManifestItem(BaseModel):
    """One labelled stretch of audio."""

    model_config = ConfigDict(frozen=True)

    audio: Path = Field(description="Absolute path of the audio file")
    start_s: float | None = Field(default=None, description="Start in the file, seconds; None = 0")
    end_s: float | None = Field(default=None, description="End in the file, seconds; None = the file's end")
    label: str | None = Field(description="One of the model's labels; None where the manifest gives none (require_label=False)")
    dims: tuple[float | None, float | None, float | None] = Field(
        default=(None, None, None), description="Valence, arousal, dominance in 0..1; None where not annotated"
    )
    language: str | None = Field(default=None, description="Language code or name")
    speaker: str | None = Field(default=None, description="Speaker id")
    line: int = Field(description="Line of the row in the manifest file")

    @property
    def group(self) -> str:
        """The language this item is scored under."""
        return self.language or UNSPECIFIED_LANGUAGE


class Manifest(BaseModel):
    """A validated manifest."""

    model_config = ConfigDict(frozen=True)

    path: Path = Field(description="The manifest file")
    sha256: str = Field(description="SHA-256 of the manifest file's bytes")
    items: list[ManifestItem] = Field(description="Usable rows, in file order")
    dropped: int = Field(default=0, description="Rows left out because label_map sends their label to null")

    def __len__(self) -> int:
        return len(self.items)


def read_manifest(path: str | Path, *, options: ManifestOptions = ManifestOptions()) -> Manifest:
    """Reads and validates a CSV or JSON Lines manifest.

    Raises:
        ManifestError: naming every bad row (unknown label, missing file, bad times, dims off scale).
        ValueError: the file cannot be read as a manifest at all.
    """
    path = Path(path)
    try:
        with open_regular_file(path, name=f"manifest {path}") as f:  # a FIFO or device is refused, never waited on
            data = f.read()
    except AudioError as e:
        if e.problem == "not_found":
            raise ValueError(f"manifest {path} does not exist; give a .csv or .jsonl file") from e
        raise ValueError(f"{e}; give a .csv or .jsonl file") from e
    rows = _parse_rows(path, data, options)
    problems: list[str] = []
    items: list[ManifestItem] = []
    dropped = 0
    durations: dict[Path, float | str] = {}
    for line, row in rows:
        try:
            item = _parse_row(path, line, row, options, durations)
        except _RowError as e:
            problems.extend(f"line {line}: {p}" for p in e.problems)
            continue
        if item is None:
            dropped += 1
        else:
            items.append(item)
    if problems:
        raise ManifestError(path, problems)
    if not items:
        raise ValueError(f"manifest {path} has no usable rows ({dropped} dropped by label_map); add labelled audio")
    return Manifest(path=path.resolve(), sha256=hashlib.sha256(data).hexdigest(), items=items, dropped=dropped)


def _parse_rows(path: Path, data: bytes, options: ManifestOptions) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"manifest {path} is not UTF-8 text ({e}); save it as UTF-8") from e
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = []
        for i, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {i} is not JSON ({e.msg}); JSON Lines has one object per line") from e
            if not isinstance(obj, dict):
                raise ValueError(f"{path} line {i} is a JSON {type(obj).__name__}, not an object with named fields")
            rows.append((i, {str(k).strip().lower(): v for k, v in obj.items()}))
        present = set().union(*(r.keys() for _, r in rows)) if rows else set()
    elif path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        present = set(header)
        rows = []
        for row in reader:
            if not any((v or "").strip() for k, v in row.items() if k is not None):
                continue  # blank line
            rows.append((reader.line_num, {k: v for k, v in row.items() if k is not None}))
    else:
        raise ValueError(f"manifest {path} must end in .csv, .tsv or .jsonl (got {path.suffix or 'no suffix'})")
    required = REQUIRED_FIELDS if options.require_label else tuple(f for f in REQUIRED_FIELDS if f != "label")
    missing = [f for f in required if f not in present]
    if missing and rows:
        raise ValueError(
            f"manifest {path} lacks the column(s) {missing}; it has {sorted(present)}. "
            f"Columns: {', '.join(MANIFEST_FIELDS)} (audio and label required)"
        )
    return rows


class _RowError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _number(row: Mapping[str, Any], key: str, problems: list[str]) -> float | None:
    v = row.get(key)
    if _blank(v):
        return None
    try:
        if isinstance(v, bool):
            raise TypeError
        x = float(v)
    except (TypeError, ValueError):
        problems.append(f"{key}={v!r} is not a number")
        return None
    if not math.isfinite(x):
        problems.append(f"{key}={v!r} is not a finite number")
        return None
    return x


def _resolve_label(raw: Any, options: ManifestOptions) -> tuple[bool, str | None]:
    """(found, label): found is False for unknown names; label None means the map drops the row."""
    name = str(raw).strip()
    for key in (name, name.lower()):
        if key in options.label_map:
            return True, options.label_map[key] or None
    low = name.lower()
    if low in options.labels:
        return True, low
    alias = LABEL_ALIASES.get(low)
    if alias in options.labels:
        return True, alias
    return False, None


def _parse_row(
    manifest: Path, line: int, row: Mapping[str, Any], options: ManifestOptions, durations: dict[Path, float | str]
) -> ManifestItem | None:
    problems: list[str] = []
    label: str | None = None
    raw_label = row.get("label")
    if _blank(raw_label):
        if options.require_label:
            problems.append("label is empty")
    else:
        found, label = _resolve_label(raw_label, options)
        if not found:
            problems.append(
                f"unknown label {str(raw_label).strip()!r}; use one of {list(options.labels)} "
                "or map it with label_map (to a label, or to null to leave such rows out)"
            )
        elif label is None and not problems:
            return None

    audio: Path | None = None
    if _blank(row.get("audio")):
        problems.append("audio is empty; give the path of an audio file")
    else:
        audio = Path(str(row["audio"]).strip()).expanduser()
        if not audio.is_absolute():
            audio = manifest.parent / audio
        audio = audio.resolve()
        if options.require_files and not audio.is_file():
            problems.append(f"audio file {audio} does not exist (relative paths start at the manifest's folder)")
            audio = None

    start_s = _number(row, "start_s", problems)
    end_s = _number(row, "end_s", problems)
    if start_s is not None and start_s < 0:
        problems.append(f"start_s={start_s:g} is negative")
    if start_s is not None and end_s is not None and end_s <= start_s:
        problems.append(f"end_s={end_s:g} is not after start_s={start_s:g}")
    elif end_s is not None and end_s <= 0:
        problems.append(f"end_s={end_s:g} must be positive")
    if audio is not None and options.check_audio:
        duration = durations.get(audio)
        if duration is None:
            duration = durations[audio] = _duration_or_error(audio)
        if isinstance(duration, str):
            problems.append(duration)
        else:
            if start_s is not None and start_s >= duration:
                problems.append(f"start_s={start_s:g} is past the end of {audio.name} ({duration:.2f} s)")
            if end_s is not None and end_s > duration + _TIME_TOLERANCE_S:
                problems.append(f"end_s={end_s:g} is past the end of {audio.name} ({duration:.2f} s)")

    lo, hi = options.dim_scale
    dims: list[float | None] = []
    for name in DIMENSIONS:
        v = _number(row, name, problems)
        if v is not None and not lo <= v <= hi:
            problems.append(
                f"{name}={v:g} is outside the declared scale {lo:g}..{hi:g}; declare the manifest's scale with "
                "dim_scale (e.g. [1, 5])"
            )
            v = None
        dims.append(None if v is None else (v - lo) / (hi - lo))

    if problems:
        raise _RowError(problems)
    assert audio is not None and (label is not None or not options.require_label)
    text = {k: (None if _blank(row.get(k)) else str(row[k]).strip()) for k in ("language", "speaker")}
    return ManifestItem(
        audio=audio,
        start_s=start_s,
        end_s=end_s,
        label=label,
        dims=(dims[0], dims[1], dims[2]),
        language=text["language"],
        speaker=text["speaker"],
        line=line,
    )


def _duration_or_error(path: Path) -> float | str:
    try:
        frames, rate = audio_info(path)
    except AudioError as e:
        return str(e)
    if frames <= 0:
        return f"{path} holds no samples"
    return frames / rate


# --- class balance ---------------------------------------------------------------------------------


class ClassBalance(BaseModel):
    """Items per label and language."""

    model_config = ConfigDict(frozen=True)

    labels: list[str] = Field(description="Labels counted, in the model's order")
    counts: dict[str, dict[str, int]] = Field(description="language → label → items")
    total: dict[str, int] = Field(description="label → items over all languages")

    @property
    def missing(self) -> list[str]:
        """Labels with no item at all."""
        return [lab for lab in self.labels if self.total[lab] == 0]

    def table(self) -> str:
        """A plain-text table: one row per language and one for all, one column per label."""
        head = ["language", *self.labels, "total"]
        rows = [[lang, *(str(c[lab]) for lab in self.labels), str(sum(c.values()))] for lang, c in self.counts.items()]
        rows.append(["all", *(str(self.total[lab]) for lab in self.labels), str(sum(self.total.values()))])
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
        return "\n".join([fmt(head), *(fmt(r) for r in rows)])


def class_balance(items: Iterable[ManifestItem], *, labels: Sequence[str] = LABELS) -> ClassBalance:
    """Counts items per language and label (languages sorted, rows without one under "unspecified")."""
    counts: dict[str, dict[str, int]] = {}
    for item in items:
        row = counts.setdefault(item.group, {lab: 0 for lab in labels})
        row[item.label] += 1
    counts = dict(sorted(counts.items()))
    total = {lab: sum(c[lab] for c in counts.values()) for lab in labels}
    return ClassBalance(labels=list(labels), counts=counts, total=total)


# --- reading and augmenting audio ------------------------------------------------------------------


def read_item_audio(item: ManifestItem, *, keep_channels: bool = False) -> np.ndarray:
    """The item's stretch of audio, 16 kHz mono float32 (N,), or (N, channels) with `keep_channels`;
    reads only that stretch of the file."""
    name = f"{item.audio} (manifest line {item.line})"
    _, sr = audio_info(item.audio, name=name)
    start = int(round((item.start_s or 0.0) * sr))
    stop = None if item.end_s is None else int(round(item.end_s * sr))
    data, sr = read_frames(item.audio, start=start, stop=stop, name=name)
    if keep_channels:
        return load_channels(data, sample_rate=sr, name=name).T
    return load_audio(data, sample_rate=sr, name=name)


def list_noise_files(directory: str | Path) -> tuple[Path, ...]:
    """Audio files under `directory` (recursively), sorted, for additive noise."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"noise_dir {root} is not a folder; give a folder of noise recordings (e.g. MUSAN's noise/)")
    files = tuple(sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()))
    if not files:
        raise ValueError(f"noise_dir {root} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return files


@dataclass(frozen=True)
class Augmentation:
    """Per-clip augmentation of training audio."""

    speed_factors: tuple[float, ...] = (0.9, 1.0, 1.1)  # playback speed, one drawn per clip (tempo and pitch, like sox `speed`)
    noise_files: tuple[Path, ...] = ()  # noise recordings added to clips; empty: no noise
    noise_prob: float = 0.5  # share of clips that get noise
    snr_db: tuple[float, float] = (5.0, 20.0)  # signal-to-noise ratio, dB, drawn uniformly in this range

    def __post_init__(self) -> None:
        if not self.speed_factors or any(not 0.5 <= s <= 2.0 for s in self.speed_factors):
            raise ValueError(f"speed_factors must be a non-empty list of factors in 0.5..2, got {list(self.speed_factors)}")
        if not 0 <= self.noise_prob <= 1:
            raise ValueError(f"noise_prob must be in [0, 1], got {self.noise_prob}")
        if self.snr_db[0] > self.snr_db[1]:
            raise ValueError(f"snr_db must be [low, high] with low <= high, got {list(self.snr_db)}")

    def apply(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """waveform (N,) 16 kHz → augmented (N') 16 kHz; N' = N / speed."""
        speed = float(self.speed_factors[rng.integers(len(self.speed_factors))])
        if speed != 1.0:
            import soxr

            # Reading the samples as if recorded at speed × 16 kHz plays them `speed` times faster.
            waveform = soxr.resample(waveform, SAMPLE_RATE * speed, SAMPLE_RATE).astype(np.float32)
        if self.noise_files and rng.random() < self.noise_prob:
            waveform = self._add_noise(waveform, rng)
        return waveform

    def _add_noise(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        path = self.noise_files[int(rng.integers(len(self.noise_files)))]
        frames, sr = audio_info(path)
        need = int(math.ceil(waveform.shape[0] * sr / SAMPLE_RATE)) + 1
        start = int(rng.integers(0, frames - need + 1)) if frames > need else 0
        data, sr = read_frames(path, start=start, stop=start + min(need, frames))
        noise = load_audio(data, sample_rate=sr, name=str(path))
        if noise.shape[0] < waveform.shape[0]:  # short noise files are looped
            noise = np.tile(noise, int(math.ceil(waveform.shape[0] / noise.shape[0])))
        noise = noise[: waveform.shape[0]]
        p_signal = float(np.mean(waveform.astype(np.float64) ** 2))
        p_noise = float(np.mean(noise.astype(np.float64) ** 2))
        if p_signal <= 0 or p_noise <= 0:
            return waveform
        snr = rng.uniform(*self.snr_db)
        gain = math.sqrt(p_signal / (p_noise * 10.0 ** (snr / 10.0)))
        return (waveform + gain * noise).astype(np.float32)


@dataclass
class ClipBatch:
    """A batch of clips, each zero-padded or cut to one window."""

    waveforms: torch.Tensor  # (B, n_samples) float32, 16 kHz
    labels: torch.Tensor  # (B,) int64 indices into the model's labels
    dims: torch.Tensor  # (B, 3) float32 valence, arousal, dominance in 0..1; NaN where not annotated
    indices: torch.Tensor  # (B,) int64 positions in the dataset

    def pin_memory(self) -> "ClipBatch":
        return ClipBatch(*(t.pin_memory() for t in (self.waveforms, self.labels, self.dims, self.indices)))

    def to(self, device: torch.device) -> "ClipBatch":
        nb = device.type == "cuda"
        return ClipBatch(*(t.to(device, non_blocking=nb) for t in (self.waveforms, self.labels, self.dims, self.indices)))


class ManifestDataset(torch.utils.data.Dataset):
    """The items of a manifest, each read from disk when asked for (never all at once).

    An item is (waveform (N,) float32 16 kHz, label index, dims (3,) with NaN where missing, index).
    Training randomness (crop position, augmentation) is drawn from (seed, epoch, index), so that
    a run is the same with any number of loader workers and after a resume.
    """

    def __init__(
        self,
        items: Sequence[ManifestItem],
        *,
        labels: Sequence[str] = LABELS,
        max_clip_s: float = 30.0,
        augmentation: Augmentation | None = None,
        random_crop: bool = False,
        seed: int = 0,
    ):
        self.items = list(items)
        self.labels = list(labels)
        self.max_samples = int(round(max_clip_s * SAMPLE_RATE))
        self.augmentation = augmentation
        self.random_crop = random_crop
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draws this epoch's augmentation; call before iterating (loader workers copy the dataset)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int, np.ndarray, int]:
        item = self.items[index]
        wave = read_item_audio(item)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.augmentation is not None:
            wave = self.augmentation.apply(wave, rng)
        if wave.shape[0] > self.max_samples:
            start = int(rng.integers(0, wave.shape[0] - self.max_samples + 1)) if self.random_crop else 0
            wave = wave[start : start + self.max_samples]
        dims = np.array([np.nan if d is None else d for d in item.dims], dtype=np.float32)
        return wave, self.labels.index(item.label), dims, index


def collate_clips(batch: Sequence[tuple[np.ndarray, int, np.ndarray, int]], *, n_samples: int) -> ClipBatch:
    """Stacks dataset items into a `ClipBatch`, each waveform zero-padded or cut to `n_samples`."""
    waves = np.zeros((len(batch), n_samples), dtype=np.float32)
    for i, (w, *_) in enumerate(batch):
        n = min(n_samples, w.shape[0])
        waves[i, :n] = w[:n]
    return ClipBatch(
        waveforms=torch.from_numpy(waves),
        labels=torch.tensor([b[1] for b in batch], dtype=torch.int64),
        dims=torch.from_numpy(np.stack([b[2] for b in batch])),
        indices=torch.tensor([b[3] for b in batch], dtype=torch.int64),
    )
