"""Evaluation with the MERaLiON-SER protocol: UAR (7 and 4 classes), recall, confusion, CCC, per language.

Two readings of every manifest item, as in the paper (section 6):

- "segments": fine-grained 2-s segments. Each item is cut into consecutive 2-s pieces; a last piece
  shorter than 1 s is left out, and an item shorter than 2 s is one segment.
- "utterances": whole utterances, or merged segments of up to 15 s. An item of at most 15 s is read
  whole; a longer one is split into equal parts of at most 15 s.

Every segment is read as one window through `EmotionRecognizer.classify_batch`: padded to 30 s,
the published operating point, unless the recognizer was built for a fast one. It is scored with
the item's label and dimensions. The report records the model, the manifest's SHA-256 and the
operating point.

Beside the scores: expected calibration error of the network's own probabilities and, with a
calibration (`--calibration`), of the calibrated ones, with a reliability diagram; and bootstrap
confidence intervals of UAR and CCC, resampling speakers when the manifest names them (items
otherwise), so that two models or operating points can be compared with their uncertainty.

    emotion-tool eval MANIFEST --model ID_OR_DIR [--out DIR] [--calibration FILE]

One module past 500 lines, as whisper's transcribe.py: the protocol, its report and the command
that prints it change together (`emotion-tool calibrate` reads manifests through the same code).

Layer 3, science (`emotion_tool.science`).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from emotion_tool.config import DIMENSIONS, SAMPLE_RATE
from emotion_tool.engine.options import EvaluationOptions, Protocol
from emotion_tool.engine.recognizer import EmotionRecognizer
from emotion_tool.engine.results import CalibrationNote, OperatingPointName
from emotion_tool.science.calibration import (
    Calibration,
    ConfidenceReport,
    confidence_report,
)
from emotion_tool.science.data import (
    Manifest,
    class_balance,
    read_item_audio,
)
from emotion_tool.science.metrics import (
    ClassificationScores,
    EmotionScores,
    ScoreIntervals,
    bootstrap_intervals,
    emotion_scores,
)
from emotion_tool.science.plot import plot_confusion

__all__ = ["EvaluationOptions", "EvaluationReport", "evaluate", "read_segments", "format_report", "write_report", "plot_confusion"]

GroupScores = EmotionScores
"""The scores of one group of segments (a language, or all): the one score type, under its former name."""


class ProtocolReport(BaseModel):
    """The scores of one reading of the manifest."""

    model_config = ConfigDict(frozen=True)

    protocol: Protocol
    description: str = Field(description="What a segment is in this protocol")
    max_segment_s: float = Field(description="Longest segment read, seconds")
    overall: EmotionScores = Field(description="All segments")
    languages: dict[str, EmotionScores] = Field(description="Per language (\"unspecified\" for items without one)")
    mean_uar_over_languages: float | None = Field(default=None, description="Mean of the 7-class UAR over languages")
    mean_uar4_over_languages: float | None = Field(default=None, description="Mean of the 4-class UAR over languages")
    confidence: ConfidenceReport = Field(description="Calibration of the probabilities over all segments: ECE, NLL, reliability bins")
    intervals: ScoreIntervals | None = Field(default=None, description="Bootstrap confidence intervals over all segments; null when not asked for")


class ManifestRecord(BaseModel):
    """Which data was scored."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str = Field(description="SHA-256 of the manifest file's bytes")
    items: int
    dropped: int = Field(description="Rows label_map left out")
    balance: dict[str, dict[str, int]] = Field(description="language → label → items")


class EvaluationReport(BaseModel):
    """An evaluation, as written to report.json."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    random_weights: bool = Field(description="The checkpoint has random weights: the scores mean nothing")
    operating_point: OperatingPointName = Field(description="How segments were fed to the network (\"published\": padded to window_s)")
    window_s: float = Field(description="The model's window: the longest segment it reads, and the padded length when published")
    labels: list[str]
    device: str
    dtype: str
    manifest: ManifestRecord
    options: dict[str, Any] = Field(description="The EvaluationOptions used")
    protocols: dict[str, ProtocolReport]
    created_at: str = Field(description="UTC time, ISO 8601")
    emotion_tool_version: str
    warnings: list[str] = Field(default_factory=list)
    calibration: CalibrationNote | None = Field(
        default=None, description="The calibration the scores' probabilities went through; null: the network's own"
    )


# --- planning segments --------------------------------------------------------------------------------


def _segment_spans(n_samples: int, options: EvaluationOptions) -> list[tuple[int, int]]:
    seg = int(round(options.segment_s * SAMPLE_RATE))
    min_len = int(round(options.min_segment_s * SAMPLE_RATE))
    if n_samples <= seg:
        return [(0, n_samples)]
    spans = [(s, min(s + seg, n_samples)) for s in range(0, n_samples, seg)]
    if spans[-1][1] - spans[-1][0] < min_len:
        spans.pop()
    return spans


def _utterance_spans(n_samples: int, max_s: float) -> list[tuple[int, int]]:
    limit = int(math.floor(max_s * SAMPLE_RATE))
    parts = max(1, math.ceil(n_samples / limit))
    bounds = np.linspace(0, n_samples, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass(frozen=True)
class Segments:
    """The segments of one protocol and the network's raw outputs on them, one row each."""

    refs: np.ndarray  # (n,) reference label indices into the model's labels
    languages: list[str]  # language group of each segment
    clusters: list[str]  # speaker ("speaker:ID"), or item ("item:LINE") for items without a speaker
    ref_dims: np.ndarray  # (n, 3) reference valence, arousal, dominance in 0..1; NaN where not annotated
    logits: np.ndarray  # (n, K) categorical logits, before any calibration
    dims: np.ndarray  # (n, 3) predicted valence, arousal, dominance


@dataclass(frozen=True)
class Reading:
    """A manifest read through the model: segments per protocol, and what to warn about."""

    segments: dict[str, Segments]
    merge_max_s: float  # the longest merged segment, cut to the model's window
    window_s: float  # the model's window, seconds
    warnings: list[str]


# --- evaluation ----------------------------------------------------------------------------------------


def read_segments(
    recognizer: EmotionRecognizer, manifest: Manifest, *, options: EvaluationOptions = EvaluationOptions(), progress: bool = False
) -> Reading:
    """Cuts every item into the segments of each protocol and reads them through the model at its
    operating point (`EmotionRecognizer.logits_batch`): what `evaluate` scores and `calibrate` fits on.

    Raises:
        ValueError: the manifest names labels the model does not have.
        AudioError: an item's audio cannot be read.
    """
    from tqdm.auto import tqdm

    labels = recognizer.labels
    unknown = sorted({it.label for it in manifest.items} - set(labels))
    if unknown:
        raise ValueError(f"the manifest has labels {unknown} that the model {recognizer.model_id} lacks (it has {labels})")
    window_s = recognizer.model.config.features.n_samples / SAMPLE_RATE
    warnings: list[str] = []
    merge_max_s = options.merge_max_s
    if merge_max_s > window_s and "utterances" in options.protocols:
        warnings.append(f"The model reads at most {window_s:g} s at once; merged segments were cut to {window_s:g} s.")
    merge_max_s = min(merge_max_s, window_s)
    if options.segment_s > window_s:
        raise ValueError(f"segment_s={options.segment_s} exceeds the model's window of {window_s:g} s")
    if recognizer.random_weights:
        warnings.append("This checkpoint has random weights (a test model): the scores mean nothing.")

    collected: dict[str, dict[str, list[Any]]] = {p: {k: [] for k in ("refs", "languages", "clusters", "ref_dims", "logits", "dims")} for p in options.protocols}
    pending: list[tuple[str, int, np.ndarray]] = []  # (protocol, item index, waveform)
    short = 0

    def flush() -> None:
        if not pending:
            return
        out = recognizer.logits_batch([w for _, _, w in pending])
        for (protocol, i, _), logits, dims in zip(pending, out.logits, out.dims):
            item = manifest.items[i]
            c = collected[protocol]
            c["refs"].append(labels.index(item.label))
            c["languages"].append(item.group)
            c["clusters"].append(f"speaker:{item.speaker}" if item.speaker else f"item:{item.line}")
            c["ref_dims"].append([np.nan if d is None else d for d in item.dims])
            c["logits"].append(logits)
            c["dims"].append(dims)
        pending.clear()

    for i, item in enumerate(tqdm(manifest.items, desc="evaluating", unit="item", disable=not progress or None, file=sys.stderr)):
        wave = read_item_audio(item)
        if wave.shape[0] < options.min_segment_s * SAMPLE_RATE:
            short += 1
        for protocol in options.protocols:
            spans = _segment_spans(wave.shape[0], options) if protocol == "segments" else _utterance_spans(wave.shape[0], merge_max_s)
            pending.extend((protocol, i, wave[s:e]) for s, e in spans)
        if len(pending) >= options.batch_size:
            flush()
    flush()
    if short:
        warnings.append(f"{short} item(s) last under {options.min_segment_s:g} s; readings of such short clips are unreliable.")
    k, d = len(labels), len(DIMENSIONS)
    segments = {
        p: Segments(
            refs=np.array(c["refs"], dtype=np.int64),
            languages=c["languages"],
            clusters=c["clusters"],
            ref_dims=np.array(c["ref_dims"], dtype=np.float64).reshape(-1, d),
            logits=np.array(c["logits"], dtype=np.float64).reshape(-1, k),
            dims=np.array(c["dims"], dtype=np.float64).reshape(-1, d),
        )
        for p, c in collected.items()
    }
    return Reading(segments=segments, merge_max_s=merge_max_s, window_s=window_s, warnings=warnings)


def evaluate(
    recognizer: EmotionRecognizer,
    manifest: Manifest,
    *,
    options: EvaluationOptions = EvaluationOptions(),
    calibration: Calibration | None = None,
    progress: bool = False,
) -> EvaluationReport:
    """Scores `recognizer` on a manifest with the paper's protocol, with calibration and intervals.

    Args:
        recognizer: the model to score.
        manifest: a validated manifest (`read_manifest`) whose labels are the model's labels.
        options: segment lengths, protocols, batch size, bins and bootstrap.
        calibration: scores use probabilities through it; default: the recognizer's, if it has one.
            ECE is reported with and without it.
        progress: a progress bar over items on stderr.

    Raises:
        ValueError: the manifest names labels the model does not have.
        AudioError: an item's audio cannot be read.
    """
    reading = read_segments(recognizer, manifest, options=options, progress=progress)
    labels, merge_max_s, window_s = recognizer.labels, reading.merge_max_s, reading.window_s
    note = None
    if calibration is None and recognizer.calibration is not None:
        calibration, note = recognizer.calibration, recognizer.info().calibration
    elif calibration is not None:
        note = calibration.note()
    if calibration is not None and calibration.labels != labels:
        raise ValueError(f"the calibration was fitted for labels {calibration.labels}, but the model has {labels}")
    speakers = any(it.speaker for it in manifest.items)
    reports = {
        p: _protocol_report(p, reading.segments[p], labels, options.segment_s if p == "segments" else merge_max_s, calibration, options, speakers)
        for p in options.protocols
    }
    warnings = list(reading.warnings)
    if calibration is not None and calibration.operating_point != recognizer.operating_point(trace=False):
        warnings.append(f"The calibration was fitted at the {calibration.operating_point} operating point, not the one scored.")
    if calibration is not None and calibration.fitted_on.sha256 == manifest.sha256:
        warnings.append("The calibration was fitted on this same manifest: its ECE here is in-sample and flatters it.")
    return EvaluationReport(
        model_id=recognizer.model_id,
        random_weights=recognizer.random_weights,
        operating_point=recognizer.operating_point(trace=False),
        window_s=window_s,
        labels=labels,
        device=str(recognizer.device),
        dtype=str(recognizer.dtype).removeprefix("torch."),
        manifest=ManifestRecord(
            path=str(manifest.path),
            sha256=manifest.sha256,
            items=len(manifest.items),
            dropped=manifest.dropped,
            balance=class_balance(manifest.items, labels=labels).counts,
        ),
        options={**asdict(options), "merge_max_s": merge_max_s, "protocols": list(options.protocols)},
        protocols=reports,
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        emotion_tool_version=_version(),
        warnings=warnings,
        calibration=note,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emotion-tool")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _group_scores(c: Segments, probabilities: np.ndarray, rows: Sequence[int], labels: list[str]) -> EmotionScores:
    rows = list(rows)
    return emotion_scores(c.refs[rows].tolist(), probabilities[rows], c.dims[rows], c.ref_dims[rows], labels=labels)


def _protocol_report(
    protocol: str,
    c: Segments,
    labels: list[str],
    max_segment_s: float,
    calibration: Calibration | None,
    options: EvaluationOptions,
    speakers: bool,
) -> ProtocolReport:
    probs = calibration.probabilities(c.logits) if calibration is not None else _softmax(c.logits)
    languages = sorted(set(c.languages))
    per_language = {lang: _group_scores(c, probs, [i for i, g in enumerate(c.languages) if g == lang], labels) for lang in languages}
    uars = [g.seven_class.uar for g in per_language.values() if g.seven_class.uar is not None]
    uars4 = [g.four_class.uar for g in per_language.values() if g.four_class.uar is not None]
    several = len(per_language) > 1
    return ProtocolReport(
        protocol=protocol,  # type: ignore[arg-type]
        description=(
            f"fine-grained segments: consecutive pieces of at most {max_segment_s:g} s"
            if protocol == "segments"
            else f"whole utterances and merged segments: items read whole up to {max_segment_s:g} s, longer ones split evenly"
        ),
        max_segment_s=max_segment_s,
        overall=_group_scores(c, probs, range(len(c.refs)), labels),
        languages=per_language,
        mean_uar_over_languages=float(np.mean(uars)) if several and uars else None,
        mean_uar4_over_languages=float(np.mean(uars4)) if several and uars4 else None,
        confidence=confidence_report(c.logits, c.refs, calibration, bins=options.bins),
        intervals=bootstrap_intervals(
            c.refs, probs, labels=labels, clusters=c.clusters, clustered_by="speaker" if speakers else "item",
            dims=c.dims, ref_dims=c.ref_dims, dim_names=DIMENSIONS, resamples=options.bootstrap, level=options.level, seed=options.seed,
        ) if options.bootstrap else None,
    )  # fmt: skip


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --- output --------------------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]


def _confusion_lines(scores: ClassificationScores) -> list[str]:
    short = [lab[:4] for lab in scores.labels]
    rows = [["reference \\ predicted", *short, "recall"]]
    for lab, counts in zip(scores.labels, scores.confusion):
        rows.append([lab, *(str(n) for n in counts), _pct(scores.recall[lab])])
    return _table(rows)


def format_report(report: EvaluationReport) -> str:
    """The report as plain-text tables: scores per language, and the overall confusion matrices."""
    lines = [
        f"model: {report.model_id}{' (random weights: the scores mean nothing)' if report.random_weights else ''}",
        f"manifest: {report.manifest.path} ({report.manifest.items} items, sha256 {report.manifest.sha256[:12]})",
        f"operating point: {report.operating_point} "
        + (
            f"(every segment padded to {report.window_s:g} s)"
            if report.operating_point == "published"
            else "(a fast operating point: scores can differ from the published model's use)"
        ),
    ]
    for rep in report.protocols.values():
        lines += ["", f"[{rep.protocol}] {rep.description}"]
        has_dims = rep.overall.dimensions is not None
        head = ["language", "segments", "UAR 7", "UAR 4"] + ([f"CCC {d[:3]}" for d in DIMENSIONS] if has_dims else [])
        rows = [head]
        groups = list(rep.languages.items()) + ([("all", rep.overall)] if len(rep.languages) > 1 else [])
        for name, g in groups:
            row = [name, str(g.segments), _pct(g.seven_class.uar), _pct(g.four_class.uar)]
            if has_dims:
                row += [_num(g.dimensions.ccc[d]) if g.dimensions else "-" for d in DIMENSIONS]
            rows.append(row)
        if rep.mean_uar_over_languages is not None:
            rows.append(["mean of languages", "", _pct(rep.mean_uar_over_languages), _pct(rep.mean_uar4_over_languages)] + ([""] * 3 if has_dims else []))
        lines += _table(rows)
        lines += ["", "confusion (all languages):", *_confusion_lines(rep.overall.seven_class)]
        lines += _confidence_lines(rep)
    if report.warnings:
        lines += ["", *(f"warning: {w}" for w in report.warnings)]
    return "\n".join(lines)


def _interval_text(i) -> str:
    return "-" if i is None else f"{100 * i.estimate:.1f} % [{100 * i.low:.1f}, {100 * i.high:.1f}]"


def _confidence_lines(rep: ProtocolReport) -> list[str]:
    c = rep.confidence
    raw = c.uncalibrated
    lines = ["", f"confidence ({c.bins} equal-width bins): ECE {_pct(raw.ece)}, NLL {raw.nll:.3f}, mean confidence {_pct(raw.mean_confidence)}, "
             f"accuracy {_pct(raw.accuracy)}"]  # fmt: skip
    if c.calibrated is not None:
        cal = c.calibrated
        lines.append(f"calibrated: ECE {_pct(cal.ece)} (uncalibrated {_pct(raw.ece)}), NLL {cal.nll:.3f} (uncalibrated {raw.nll:.3f}), "
                     f"mean confidence {_pct(cal.mean_confidence)}, accuracy {_pct(cal.accuracy)}")  # fmt: skip
    if c.threshold is not None:
        t = c.threshold
        lines.append(f"uncertain below {t.threshold:.3f}: unflagged readings right {_pct(t.precision)} of the time, coverage {_pct(t.coverage)}")
    if rep.intervals is not None:
        iv = rep.intervals
        ccc = "  ".join(f"CCC {d[:3]} {v.estimate:.3f} [{v.low:.3f}, {v.high:.3f}]" for d, v in iv.ccc.items() if v is not None)
        lines.append(f"{100 * iv.level:g} % intervals ({iv.resamples} bootstrap resamples of {iv.clusters} {iv.clustered_by}s): "
                     f"UAR 7 {_interval_text(iv.uar)}  UAR 4 {_interval_text(iv.uar4)}" + (f"  {ccc}" if ccc else ""))  # fmt: skip
    return lines


def write_report(report: EvaluationReport, directory: str | os.PathLike, *, plot: bool = True) -> list[Path]:
    """Writes report.json and, with `plot`, confusion-<protocol>.png and reliability-<protocol>.png per
    protocol; returns the paths."""
    from emotion_tool.science.plot import plot_reliability

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json"]
    paths[0].write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if plot:
        for name, rep in report.protocols.items():
            title = f"{rep.protocol} (≤ {rep.max_segment_s:g} s): UAR {_pct(rep.overall.seven_class.uar)}"
            if report.random_weights:
                title += " — random weights"
            paths.append(plot_confusion(rep.overall.seven_class, out / f"confusion-{name}.png", title=title))
            c = rep.confidence
            curves = {"uncalibrated": c.uncalibrated, **({"calibrated": c.calibrated} if c.calibrated is not None else {})}
            title = f"{rep.protocol}: reliability ({c.uncalibrated.segments} segments)"
            if report.random_weights:
                title += " — random weights"
            paths.append(plot_reliability(curves, out / f"reliability-{name}.png", title=title))
    return paths
