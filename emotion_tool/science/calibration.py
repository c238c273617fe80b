"""Calibrated confidence: temperature scaling, expected calibration error, abstention, the calibration file.

A calibration maps the network's categorical logits z (K,) to probabilities softmax(z / T + b): one
temperature T for all classes, and a bias b per class where the development data has enough
segments of every class (`CalibrationOptions.min_per_class`). Temperature alone never changes the
most probable label; a bias can. Both are fitted by minimising the mean negative log-likelihood
(NLL) of the reference labels, which is convex in (1/T, b) and solved by Newton's method.

Expected calibration error (ECE) compares confidence (the top probability) with accuracy in
`bins` equal-width bins over [0, 1], each (lo, hi] (the first also holds 0), as
scikit-learn's `calibration_curve(strategy="uniform")` bins them:
ECE = sum over bins of (segments in bin / all segments) * |accuracy in bin - mean confidence in bin|.

    emotion-tool calibrate MANIFEST --model ID_OR_DIR [--target-precision 0.8] [--out FILE]

Layer 3 (science). The file a fit writes is the engine's (`emotion_tool.engine.calibrated`, which the
recognizer applies); `emotion-tool calibrate` is `emotion_tool.cli.calibrate`.
"""

from __future__ import annotations

import datetime as _dt
from typing import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from emotion_tool.engine.calibrated import (  # the file format, re-exported for callers of this module
    CALIBRATION_FILE,
    CALIBRATION_FORMAT,
    Abstention,
    Calibration,
    FittedOn,
    ReliabilityBin,
    ReliabilitySummary,
    load_calibration,
    log_softmax,
    scale_logits,
)
from emotion_tool.engine.options import ECE_BINS, CalibrationOptions

__all__ = [
    "Calibration",
    "CalibrationOptions",
    "ReliabilitySummary",
    "fit_temperature",
    "reliability",
    "choose_threshold",
    "load_calibration",
    "fit_calibration",
    "CALIBRATION_FILE",
    "CALIBRATION_FORMAT",
    "Abstention",
    "FittedOn",
    "ReliabilityBin",
]

TEMPERATURE_RANGE = (0.05, 100.0)  # a fit that reaches an end says the scores carry (almost) no information
_NEWTON_STEPS = 100
_RIDGE = 1e-8  # keeps Newton's system solvable: a bias is defined only up to a constant shared by all classes


# --- the math --------------------------------------------------------------------------------------


def _check(logits: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if z.ndim != 2 or z.shape[0] != y.shape[0] or z.shape[0] == 0:
        raise ValueError(f"need logits (n, K) and n labels with n > 0; got logits {z.shape} and {y.shape[0]} labels")
    if not np.isfinite(z).all():
        raise ValueError("logits hold NaN or infinite values; check the model's outputs")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must be class indices in 0..{z.shape[1] - 1}, got {sorted(set(y.tolist()))}")
    return z, y


def nll(logits: np.ndarray, labels: Sequence[int], *, temperature: float = 1.0, bias: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature + bias)."""
    z, y = _check(logits, labels)
    return float(-log_softmax(scale_logits(z, temperature, bias))[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, labels: Sequence[int], *, bias: bool = False) -> tuple[float, np.ndarray | None]:
    """The temperature T (and, with `bias`, a bias per class, mean 0) minimising the NLL of `labels`.

    Args:
        logits: (n, K) categorical logits.
        labels: n reference class indices.
        bias: also fit a bias b (K,): probabilities are softmax(logits / T + b).

    Returns:
        (T, b): T within `TEMPERATURE_RANGE`; b is None without `bias`.
    """
    z, y = _check(logits, labels)
    n, k = z.shape
    onehot = np.eye(k)[y]
    a_lo, a_hi = 1.0 / TEMPERATURE_RANGE[1], 1.0 / TEMPERATURE_RANGE[0]  # a = 1/T, in which the NLL is convex

    def loss(a: float, b: np.ndarray) -> float:
        return float(-(log_softmax(a * z + b) * onehot).sum() / n)

    def solve(a: float, b: np.ndarray, fit_a: bool) -> tuple[float, np.ndarray]:
        for _ in range(_NEWTON_STEPS):
            p = np.exp(log_softmax(a * z + b))
            r = p - onehot  # d loss / d logits, per segment
            pz = (p * z).sum(axis=1, keepdims=True)
            g_a = float((r * z).sum()) / n
            g_b = r.sum(axis=0) / n if bias else np.zeros(0)
            h_aa = float((p * z * z).sum() - (pz * pz).sum()) / n
            h_ab = (p * z - p * pz).sum(axis=0) / n
            h_bb = (np.diag(p.sum(axis=0)) - p.T @ p) / n
            if fit_a and bias:
                g = np.concatenate([[g_a], g_b])
                h = np.block([[np.array([[h_aa]]), h_ab[None, :]], [h_ab[:, None], h_bb]])
            elif fit_a:
                g, h = np.array([g_a]), np.array([[h_aa]])
            else:
                g, h = g_b, h_bb
            step = np.linalg.solve(h + _RIDGE * np.eye(len(g)), g)
            before, t = loss(a, b), 1.0
            while True:  # backtracking: Newton's step can overshoot far from the optimum
                a_new = float(np.clip(a - t * step[0], a_lo, a_hi)) if fit_a else a
                b_new = b - t * (step[1:] if fit_a else step) if bias else b
                if loss(a_new, b_new) <= before + 1e-12 or t < 1e-6:
                    break
                t /= 2
            done = abs(before - loss(a_new, b_new)) < 1e-12
            a, b = a_new, b_new
            if done:
                break
        return a, b

    a, b = solve(1.0, np.zeros(k), True)
    if bias and a in (a_lo, a_hi):  # at a bound of T: the bias alone is still free to improve
        a, b = solve(a, b, False)
    return 1.0 / a, (b - b.mean()) if bias else None


def reliability(probabilities: np.ndarray, labels: Sequence[int], *, bins: int = ECE_BINS) -> ReliabilitySummary:
    """ECE, NLL and the per-bin accuracy and confidence of probabilities (n, K) against reference indices."""
    p = np.asarray(probabilities, dtype=np.float64)
    _, y = _check(np.log(np.clip(p, 1e-300, None)), labels)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], conf, side="left")  # (lo, hi]; scikit-learn's calibration_curve
    rows, ece = [], 0.0
    for i in range(bins):
        m = which == i
        count = int(m.sum())
        acc = float(correct[m].mean()) if count else None
        mean_conf = float(conf[m].mean()) if count else None
        if count:
            ece += count / len(y) * abs(acc - mean_conf)  # type: ignore[operator]
        rows.append(ReliabilityBin(low=float(edges[i]), high=float(edges[i + 1]), segments=count, accuracy=acc, confidence=mean_conf))
    return ReliabilitySummary(
        segments=len(y),
        ece=float(ece),
        nll=float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-300, None)).mean()),
        accuracy=float(correct.mean()),
        mean_confidence=float(conf.mean()),
        bins=rows,
    )


def choose_threshold(
    probabilities: np.ndarray, labels: Sequence[int], *, target_precision: float, min_accepted: int = 10
) -> Abstention:
    """The lowest threshold t such that readings with top probability >= t are right at least
    `target_precision` of the time (over at least `min_accepted` segments): the most coverage
    the target allows on this data."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    hits = np.cumsum(correct)
    best: int | None = None
    for i in range(len(conf)):
        if i + 1 < len(conf) and conf[i + 1] == conf[i]:
            continue  # a threshold keeps or flags equal confidences together
        if i + 1 >= min_accepted and hits[i] / (i + 1) >= target_precision:
            best = i
    if best is None:
        return Abstention(target_precision=target_precision, threshold=None, precision=None, coverage=0.0, segments=len(conf))
    return Abstention(
        target_precision=target_precision,
        threshold=float(conf[best]),
        precision=float(hits[best] / (best + 1)),
        coverage=float((best + 1) / len(conf)),
        segments=len(conf),
    )


def precision_at(probabilities: np.ndarray, labels: Sequence[int], threshold: float) -> tuple[float | None, float]:
    """(precision, coverage) of readings with top probability >= threshold."""
    p = np.asarray(probabilities, dtype=np.float64)
    keep = p.max(axis=1) >= threshold
    right = p.argmax(axis=1) == np.asarray(labels)
    return (float(right[keep].mean()) if keep.any() else None), float(keep.mean())


# --- fitting on a manifest -------------------------------------------------------------------------


def fit_calibration(
    logits: np.ndarray,
    labels: Sequence[int],
    *,
    label_names: Sequence[str],
    model_id: str,
    operating_point: str,
    random_weights: bool,
    fitted_on: FittedOn,
    options: CalibrationOptions = CalibrationOptions(),
) -> Calibration:
    """Fits temperature (and bias, where every label has `options.min_per_class` segments) and the
    `uncertain` threshold on development logits (n, K) with reference indices into `label_names`."""
    z, y = _check(logits, labels)
    counts = np.bincount(y, minlength=len(label_names))
    short = [f"{lab} ({int(c)})" for lab, c in zip(label_names, counts) if c < options.min_per_class]
    if not options.bias:
        use_bias, rule = False, "temperature only: a bias was not asked for"
    elif short:
        use_bias = False
        rule = f"temperature only: a per-class bias needs at least {options.min_per_class} segments of every label; too few of {', '.join(short)}"
    else:
        use_bias, rule = True, f"temperature and per-class bias: every label has at least {options.min_per_class} segments"
    temperature, bias = fit_temperature(z, y, bias=use_bias)
    warnings: list[str] = []
    if random_weights:
        warnings.append("Fitted on a random-weight checkpoint (a test model): this calibration means nothing.")
    if not TEMPERATURE_RANGE[0] * 1.001 < temperature < TEMPERATURE_RANGE[1] * 0.999:
        warnings.append(f"The temperature reached the end of its range ({temperature:g}): on this data the scores carry almost no information about the label.")
    raw = np.exp(log_softmax(z))
    calibrated = np.exp(log_softmax(scale_logits(z, temperature, bias)))
    abstention = None
    if options.target_precision is not None:
        abstention = choose_threshold(calibrated, y, target_precision=options.target_precision, min_accepted=options.min_accepted)
        if abstention.threshold is None:
            warnings.append(
                f"No threshold reaches precision {options.target_precision:g} on this data (over at least {options.min_accepted} "
                "segments); the uncertain flag keeps the recognizer's threshold."
            )
    if len(y) < 100:
        warnings.append(f"Fitted on {len(y)} segments only: expect the calibration to be rough.")
    return Calibration(
        model_id=model_id,
        labels=list(label_names),
        operating_point=operating_point,
        random_weights=random_weights,
        temperature=float(temperature),
        bias=None if bias is None else {lab: float(v) for lab, v in zip(label_names, bias)},
        bias_rule=rule,
        min_confidence=abstention.threshold if abstention else None,
        abstention=abstention,
        fitted_on=fitted_on.model_copy(update={"per_class": {lab: int(c) for lab, c in zip(label_names, counts)}}),
        before=reliability(raw, y, bins=options.bins),
        after=reliability(calibrated, y, bins=options.bins),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        emotion_tool_version=_version(),
        warnings=warnings,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emotion-tool")
    except PackageNotFoundError:
        return "unknown (not installed)"


def format_calibration(c: Calibration) -> str:
    """The calibration as a few lines of text."""
    pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    lines = [
        f"model: {c.model_id}{' (random weights: this calibration means nothing)' if c.random_weights else ''}",
        f"operating point: {c.operating_point}",
        f"fitted on: {c.fitted_on.manifest} ({c.fitted_on.segments} segments, {'+'.join(c.fitted_on.protocols)}, sha256 {c.fitted_on.sha256[:12]})",
        f"temperature: {c.temperature:.4g}",
        f"bias: {', '.join(f'{k} {v:+.3f}' for k, v in c.bias.items()) if c.bias else 'none'} ({c.bias_rule})",
        f"ECE ({len(c.before.bins)} bins): {pct(c.before.ece)} before, {pct(c.after.ece)} after; "
        f"NLL {c.before.nll:.3f} before, {c.after.nll:.3f} after (on the fitting data)",
    ]
    if c.abstention is not None:
        a = c.abstention
        lines.append(
            f"uncertain below {a.threshold:.3f}: unflagged readings right {pct(a.precision)} of the time (target {pct(a.target_precision)}), "
            f"coverage {pct(a.coverage)}"
            if a.threshold is not None
            else f"uncertain threshold: target precision {pct(a.target_precision)} not reached on this data; the recognizer keeps its own"
        )
    lines += [f"warning: {w}" for w in c.warnings]
    return "\n".join(lines)


class ThresholdCheck(BaseModel):
    """Precision and coverage at a calibration's `uncertain` threshold, on the data evaluated."""

    model_config = ConfigDict(frozen=True)

    threshold: float
    precision: float | None = Field(description="Share of right labels among unflagged segments; null when none is unflagged")
    coverage: float = Field(description="Share of segments left unflagged")


class ConfidenceReport(BaseModel):
    """Calibration of the scores on the data evaluated: the network's own, and calibrated when a calibration is in use."""

    model_config = ConfigDict(frozen=True)

    bins: int = Field(description="Equal-width confidence bins of ECE and the reliability diagram")
    uncalibrated: ReliabilitySummary = Field(description="The network's own probabilities")
    calibrated: ReliabilitySummary | None = Field(default=None, description="Through the calibration in use; null without one")
    threshold: ThresholdCheck | None = Field(default=None, description="At the calibration's fitted uncertain threshold")


def confidence_report(logits: np.ndarray, labels: Sequence[int], calibration: Calibration | None, *, bins: int = ECE_BINS) -> ConfidenceReport:
    """The reliability of logits (n, K) against reference indices, raw and through `calibration`."""
    raw = reliability(np.exp(log_softmax(np.asarray(logits, dtype=np.float64))), labels, bins=bins)
    if calibration is None:
        return ConfidenceReport(bins=bins, uncalibrated=raw)
    probs = calibration.probabilities(logits)
    check = None
    if calibration.min_confidence is not None:
        precision, coverage = precision_at(probs, labels, calibration.min_confidence)
        check = ThresholdCheck(threshold=calibration.min_confidence, precision=precision, coverage=coverage)
    return ConfidenceReport(bins=bins, uncalibrated=raw, calibrated=reliability(probs, labels, bins=bins), threshold=check)
