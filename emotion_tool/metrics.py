"""Scores of the MERaLiON-SER evaluation protocol: UAR, per-class recall, confusion matrix, CCC.

UAR (unweighted average recall) is the mean of the per-class recalls over the classes that occur in
the reference, which is scikit-learn's `balanced_accuracy_score`. CCC is Lin's concordance
correlation coefficient with population (1/n) moments. NumPy only; the training loss has its own
differentiable CCC in `train.py`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .config import DIMENSIONS

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
