"""Scores of the MERaLiON-SER evaluation protocol: UAR, per-class recall, confusion matrix, CCC.

UAR (unweighted average recall) is the mean of the per-class recalls over the classes that occur in
the reference, which is scikit-learn's `balanced_accuracy_score`. CCC is Lin's concordance
correlation coefficient with population (1/n) moments. NumPy only; the training loss has its own
differentiable CCC in `train.py`.

Confidence intervals are percentile bootstrap intervals over clusters: whole speakers (or items)
are drawn with replacement, every segment of a drawn cluster comes along as often as it is drawn,
and the score is recomputed on each such resample. Segments of one speaker are not independent
evidence; resampling them one by one would make intervals too narrow.

Layer 3, science (`emotion_tool.science`).
"""

from __future__ import annotations

import math
import warnings
from typing import Hashable, Iterator, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from emotion_tool.config import DIMENSIONS

PRIMARY_LABELS: tuple[str, ...] = ("neutral", "angry", "sad", "happy")  # the paper's 4-class subset

__all__ = [
    "PRIMARY_LABELS",
    "ClassificationScores",
    "DimensionScores",
    "confusion_matrix",
    "per_class_recall",
    "unweighted_average_recall",
    "concordance_correlation",
    "classification_scores",
    "dimension_scores",
    "Interval",
    "ScoreIntervals",
    "cluster_bootstrap",
    "weighted_uar",
    "weighted_ccc",
    "bootstrap_intervals",
]


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], *, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): rows are reference classes, columns predicted classes."""
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} entries but y_pred has {p.size}; give one prediction per reference")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} holds class indices outside 0..{num_classes - 1}: {sorted(set(a.tolist()))}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def per_class_recall(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class (K,) from a confusion matrix; NaN for classes absent from the reference."""
    cm = np.asarray(confusion, dtype=np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def unweighted_average_recall(y_true: Sequence[int], y_pred: Sequence[int], *, num_classes: int) -> float:
    """Mean recall over the classes present in `y_true` (= balanced accuracy); NaN when `y_true` is empty."""
    recall = per_class_recall(confusion_matrix(y_true, y_pred, num_classes=num_classes))
    present = recall[~np.isnan(recall)]
    return float(present.mean()) if present.size else math.nan


def concordance_correlation(prediction: Sequence[float], reference: Sequence[float]) -> float:
    """Lin's CCC = 2·cov(x, y) / (var x + var y + (mean x − mean y)²), with 1/n moments.

    NaN when it is undefined: fewer than two pairs, or both series constant and equal.
    """
    x = np.asarray(prediction, dtype=np.float64).reshape(-1)
    y = np.asarray(reference, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"prediction has {x.size} values but reference has {y.size}")
    if x.size < 2:
        return math.nan
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    denom = x.var() + y.var() + (mx - my) ** 2
    return float(2.0 * cov / denom) if denom > 0 else math.nan


def _finite_or_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


class ClassificationScores(BaseModel):
    """Categorical scores on one set of segments, over `labels` (the classes scored)."""

    model_config = ConfigDict(frozen=True)

    labels: list[str] = Field(description="Classes scored, in the confusion matrix's order")
    n: int = Field(description="Segments scored (those whose reference is one of `labels`)")
    uar: float | None = Field(description="Unweighted average recall (balanced accuracy), 0..1; null if n = 0")
    accuracy: float | None = Field(description="Share of segments predicted right (weighted by class size)")
    recall: dict[str, float | None] = Field(description="Recall per class; null for classes with no reference segment")
    support: dict[str, int] = Field(description="Reference segments per class")
    confusion: list[list[int]] = Field(description="Counts: rows are reference classes, columns predictions")


class DimensionScores(BaseModel):
    """Concordance of predicted and reference valence, arousal and dominance (0..1 scale)."""

    model_config = ConfigDict(frozen=True)

    ccc: dict[str, float | None] = Field(description="CCC per dimension, −1..1; null where undefined")
    n: dict[str, int] = Field(description="Segments with a reference value, per dimension")


class EmotionScores(BaseModel):
    """The scores of one set of segments: all labels, the primary four, and the dimensions.

    One type for every place that scores: each group of an evaluation report, and the dev set of a
    training run (which adds its loss).
    """

    model_config = ConfigDict(frozen=True)

    segments: int = Field(description="Segments scored")
    seven_class: ClassificationScores = Field(description="All of the model's labels")
    four_class: ClassificationScores = Field(description="The primary classes neutral, angry, sad, happy")
    dimensions: DimensionScores | None = Field(default=None, description="CCC, when the reference has dimensions")
    categorical_loss: float | None = Field(
        default=None, description="Training's dev set: the loss's first term (weighted, smoothed cross-entropy) without augmentation"
    )


def emotion_scores(
    y_true: Sequence[int],
    probabilities: np.ndarray,
    dims: np.ndarray,
    reference_dims: np.ndarray,
    *,
    labels: Sequence[str],
    categorical_loss: float | None = None,
) -> EmotionScores:
    """Scores probabilities (n, len(labels)) and dims (n, 3) against reference indices and dims (NaN: not annotated)."""
    return EmotionScores(
        segments=len(y_true),
        seven_class=classification_scores(y_true, probabilities, labels=labels),
        four_class=classification_scores(y_true, probabilities, labels=labels, classes=[c for c in PRIMARY_LABELS if c in labels]),
        dimensions=dimension_scores(dims, reference_dims, names=DIMENSIONS) if (~np.isnan(reference_dims)).any() else None,
        categorical_loss=categorical_loss,
    )


def classification_scores(
    y_true: Sequence[int], probabilities: np.ndarray, *, labels: Sequence[str], classes: Sequence[str] | None = None
) -> ClassificationScores:
    """Scores of probabilities (n, len(labels)) against reference indices into `labels`.

    Args:
        y_true: reference class index per segment, into `labels`.
        probabilities: model output per segment, columns in `labels` order.
        labels: the model's labels.
        classes: score only these classes (e.g. `PRIMARY_LABELS`): segments whose reference is another
            class are left out, and the prediction is the most probable of `classes`. Default: all labels.
    """
    labels = list(labels)
    classes = list(classes) if classes is not None else labels
    unknown = [c for c in classes if c not in labels]
    if unknown:
        raise ValueError(f"classes {unknown} are not among the model's labels {labels}")
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(labels))
    if probs.shape[0] != len(y_true):
        raise ValueError(f"{len(y_true)} references but {probs.shape[0]} rows of probabilities; give one row per segment")
    cols = [labels.index(c) for c in classes]
    position = {col: i for i, col in enumerate(cols)}
    keep = [i for i, t in enumerate(y_true) if int(t) in position]
    t = np.array([position[int(y_true[i])] for i in keep], dtype=np.int64)
    p = probs[keep][:, cols].argmax(axis=1) if keep else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(t, p, num_classes=len(classes))
    recall = per_class_recall(cm)
    present = recall[~np.isnan(recall)]
    return ClassificationScores(
        labels=classes,
        n=len(keep),
        uar=float(present.mean()) if present.size else None,
        accuracy=float(np.trace(cm) / len(keep)) if keep else None,
        recall={c: _finite_or_none(r) for c, r in zip(classes, recall)},
        support={c: int(s) for c, s in zip(classes, cm.sum(axis=1))},
        confusion=cm.tolist(),
    )


def dimension_scores(prediction: np.ndarray, reference: np.ndarray, *, names: Sequence[str]) -> DimensionScores:
    """CCC per dimension of prediction (n, D) against reference (n, D); NaN references are left out."""
    pred = np.asarray(prediction, dtype=np.float64).reshape(-1, len(names))
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, len(names))
    ccc: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for j, name in enumerate(names):
        ok = ~np.isnan(ref[:, j])
        counts[name] = int(ok.sum())
        ccc[name] = _finite_or_none(concordance_correlation(pred[ok, j], ref[ok, j]))
    return DimensionScores(ccc=ccc, n=counts)


# --- bootstrap confidence intervals ----------------------------------------------------------------

_CHUNK = 256  # resamples drawn at once: bounds memory at (_CHUNK, segments) weights


def cluster_bootstrap(clusters: Sequence[Hashable], *, resamples: int = 1000, seed: int = 0) -> Iterator[np.ndarray]:
    """Yields weights (b, n), chunk by chunk, `resamples` rows in all: how many times each of the n
    segments is in a resample that draws as many clusters as there are, with replacement."""
    ids = {c: i for i, c in enumerate(dict.fromkeys(clusters))}
    index = np.array([ids[c] for c in clusters], dtype=np.int64)
    k = len(ids)
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, _CHUNK):
        counts = rng.multinomial(k, np.full(k, 1.0 / k), size=min(_CHUNK, resamples - start))
        yield counts[:, index].astype(np.float64)


def weighted_uar(y_true: Sequence[int], y_pred: Sequence[int], weights: np.ndarray, *, num_classes: int) -> np.ndarray:
    """UAR (b,) of each row of segment weights (b, n): recall per class with each segment counted
    `weight` times, averaged over the classes present in that row. NaN for rows without segments."""
    t = np.asarray(y_true, dtype=np.int64)
    onehot = np.eye(num_classes)[t]
    right = onehot * (np.asarray(y_pred, dtype=np.int64) == t)[:, None]
    w = np.atleast_2d(weights)
    support, hits = w @ onehot, w @ right
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without segments: NaN, as documented
        return np.nanmean(np.where(support > 0, hits / support, np.nan), axis=1)


def weighted_ccc(prediction: Sequence[float], reference: Sequence[float], weights: np.ndarray) -> np.ndarray:
    """CCC (b,) of each row of segment weights (b, n), with weighted 1/n moments; NaN where undefined."""
    x = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    w = np.atleast_2d(weights)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = (w @ x) / total, (w @ y) / total
        vx = (w @ (x * x)) / total - mx * mx
        vy = (w @ (y * y)) / total - my * my
        cov = (w @ (x * y)) / total - mx * my
        denom = vx + vy + (mx - my) ** 2
        ccc = 2 * cov / denom
    distinct = (w > 0).sum(axis=1) >= 2
    return np.where(distinct & (denom > 1e-15), ccc, np.nan)


class Interval(BaseModel):
    """A score and its bootstrap confidence interval."""

    model_config = ConfigDict(frozen=True)

    estimate: float = Field(description="The score on all segments")
    low: float = Field(description="Lower end of the interval")
    high: float = Field(description="Upper end of the interval")


class ScoreIntervals(BaseModel):
    """Bootstrap confidence intervals of the scores of one set of segments."""

    model_config = ConfigDict(frozen=True)

    level: float = Field(description="Coverage of each interval, e.g. 0.95")
    resamples: int = Field(description="Bootstrap resamples drawn")
    clustered_by: str = Field(description="What was resampled: \"speaker\" (items without one count as their own), or \"item\"")
    clusters: int = Field(description="Speakers or items resampled")
    seed: int
    uar: Interval | None = Field(description="7-class UAR")
    uar4: Interval | None = Field(description="4-class UAR (neutral, angry, sad, happy)")
    ccc: dict[str, Interval | None] = Field(description="CCC per dimension; null where there are no references")


def _interval(estimate: float, replicates: np.ndarray, level: float) -> Interval | None:
    ok = replicates[np.isfinite(replicates)]
    if not math.isfinite(estimate) or ok.size == 0:
        return None
    low, high = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2])
    return Interval(estimate=float(estimate), low=float(low), high=float(high))


def bootstrap_intervals(
    y_true: Sequence[int],
    probabilities: np.ndarray,
    *,
    labels: Sequence[str],
    clusters: Sequence[Hashable],
    clustered_by: str,
    dims: np.ndarray | None = None,
    ref_dims: np.ndarray | None = None,
    dim_names: Sequence[str] = (),
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> ScoreIntervals:
    """Percentile intervals of 7- and 4-class UAR and of CCC per dimension, every score computed on
    the same resamples of `clusters` (one cluster id per segment).

    Args:
        y_true: reference indices into `labels`, one per segment.
        probabilities: (n, len(labels)).
        labels: the model's labels.
        clusters: the speaker (or item) of each segment.
        clustered_by: what `clusters` are, for the report.
        dims, ref_dims: predicted and reference dimensions (n, D); NaN references are left out.
        dim_names: the D dimensions' names.
        resamples, level, seed: bootstrap resamples, interval coverage, random seed.
    """
    if not 0 < level < 1:
        raise ValueError(f"level is a coverage in (0, 1), e.g. 0.95; got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    labels = list(labels)
    t = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=np.float64).reshape(len(t), len(labels))
    pred7 = probs.argmax(axis=1)
    four = [labels.index(c) for c in PRIMARY_LABELS if c in labels]  # as `classification_scores(classes=PRIMARY_LABELS)`
    keep4 = np.isin(t, four)
    t4 = np.array([four.index(int(c)) for c in t[keep4]], dtype=np.int64)
    p4 = probs[keep4][:, four].argmax(axis=1) if keep4.any() else np.zeros(0, np.int64)
    ref = np.full((len(t), len(dim_names)), np.nan) if ref_dims is None else np.asarray(ref_dims, dtype=np.float64)
    pred_d = np.zeros_like(ref) if dims is None else np.asarray(dims, dtype=np.float64)
    reps: dict[str, list[np.ndarray]] = {"uar": [], "uar4": [], **{d: [] for d in dim_names}}
    for w in cluster_bootstrap(clusters, resamples=resamples, seed=seed):
        reps["uar"].append(weighted_uar(t, pred7, w, num_classes=len(labels)))
        reps["uar4"].append(weighted_uar(t4, p4, w[:, keep4], num_classes=len(four)))
        for j, d in enumerate(dim_names):
            ok = ~np.isnan(ref[:, j])
            reps[d].append(weighted_ccc(pred_d[ok, j], ref[ok, j], w[:, ok]))
    ones = np.ones((1, len(t)))
    est_uar = float(weighted_uar(t, pred7, ones, num_classes=len(labels))[0])
    est_uar4 = float(weighted_uar(t4, p4, ones[:, keep4], num_classes=len(four))[0]) if keep4.any() else math.nan
    ccc: dict[str, Interval | None] = {}
    for j, d in enumerate(dim_names):
        ok = ~np.isnan(ref[:, j])
        ccc[d] = _interval(concordance_correlation(pred_d[ok, j], ref[ok, j]), np.concatenate(reps[d]), level) if ok.sum() >= 2 else None
    return ScoreIntervals(
        level=level,
        resamples=resamples,
        clustered_by=clustered_by,
        clusters=len(set(clusters)),
        seed=seed,
        uar=_interval(est_uar, np.concatenate(reps["uar"]), level),
        uar4=_interval(est_uar4, np.concatenate(reps["uar4"]), level),
        ccc=ccc,
    )
