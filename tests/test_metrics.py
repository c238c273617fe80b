"""Scores of the evaluation protocol, checked against scikit-learn and Lin's formula."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from emotion_tool.config import LABELS
from emotion_tool.science.metrics import (
    PRIMARY_LABELS,
    classification_scores,
    concordance_correlation,
    confusion_matrix,
    dimension_scores,
    per_class_recall,
    unweighted_average_recall,
)


@st.composite
def label_pairs(draw):
    k = draw(st.integers(2, 7))
    n = draw(st.integers(1, 60))
    y_true = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    return k, y_true, y_pred


@given(label_pairs())
@settings(max_examples=200, deadline=None)
def test_uar_is_sklearn_balanced_accuracy(case):
    k, y_true, y_pred = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when y_pred has classes y_true lacks
        expected = balanced_accuracy_score(y_true, y_pred)
    assert unweighted_average_recall(y_true, y_pred, num_classes=k) == pytest.approx(expected, abs=1e-12)


@given(label_pairs())
@settings(max_examples=100, deadline=None)
def test_confusion_matrix_is_sklearns(case):
    k, y_true, y_pred = case
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, num_classes=k), sk_confusion_matrix(y_true, y_pred, labels=range(k)))


finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=80))
@settings(max_examples=200, deadline=None)
def test_ccc_matches_the_correlation_form_of_lins_formula(pairs):
    x = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    assume(x.std() > 1e-3 and y.std() > 1e-3)
    # Lin (1989): ρ_c = 2ρσ_xσ_y / (σ_x² + σ_y² + (μ_x − μ_y)²), computed here through Pearson's ρ.
    rho = np.corrcoef(x, y)[0, 1]
    expected = 2 * rho * x.std() * y.std() / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    got = concordance_correlation(x, y)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert -1.0 - 1e-12 <= got <= 1.0 + 1e-12
    assert concordance_correlation(y, x) == pytest.approx(got, rel=1e-12, abs=1e-12)


@given(st.lists(finite, min_size=2, max_size=50), st.floats(0.1, 5))
@settings(max_examples=100, deadline=None)
def test_ccc_is_one_only_for_agreement_and_penalises_shifts(xs, shift):
    x = np.array(xs)
    assume(x.std() > 1e-3)
    assert concordance_correlation(x, x) == pytest.approx(1.0)
    assert concordance_correlation(x, x + shift) < 1.0
    assert concordance_correlation(x, 2 * x) < 1.0  # perfectly correlated but not concordant


def test_ccc_undefined_cases_are_nan():
    assert math.isnan(concordance_correlation([0.5], [0.5]))
    assert math.isnan(concordance_correlation([0.5, 0.5], [0.5, 0.5]))
    assert concordance_correlation([0.5, 0.5], [0.2, 0.2]) == 0.0
    with pytest.raises(ValueError, match="3 values but reference has 2"):
        concordance_correlation([1, 2, 3], [1, 2])


def test_recall_is_nan_for_absent_classes_and_uar_skips_them():
    cm = confusion_matrix([0, 0, 1, 1], [0, 2, 1, 1], num_classes=3)
    recall = per_class_recall(cm)
    assert recall[0] == 0.5 and recall[1] == 1.0 and math.isnan(recall[2])
    assert unweighted_average_recall([0, 0, 1, 1], [0, 2, 1, 1], num_classes=3) == 0.75
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix([0, 3], [0, 0], num_classes=3)


def test_four_class_scores_leave_out_other_classes_and_pick_among_the_primary_ones():
    labels = list(LABELS)
    idx = labels.index

    def probs(**p):
        row = np.full(len(labels), 0.01)
        for k, v in p.items():
            row[idx(k)] = v
        return row / row.sum()

    y = [idx("sad"), idx("happy"), idx("fearful"), idx("angry")]
    p = np.stack([
        probs(fearful=0.6, sad=0.3),  # wrong in 7 classes, right among the 4 primary ones
        probs(happy=0.9),
        probs(fearful=0.9),  # a fearful segment: not part of the 4-class score
        probs(neutral=0.5, angry=0.4),
    ])  # fmt: skip
    seven = classification_scores(y, p, labels=labels)
    four = classification_scores(y, p, labels=labels, classes=PRIMARY_LABELS)
    assert seven.n == 4 and seven.uar == pytest.approx((0 + 1 + 1 + 0) / 4)
    assert seven.recall["neutral"] is None and seven.support["fearful"] == 1
    assert four.n == 3 and four.labels == list(PRIMARY_LABELS)
    assert four.recall == {"neutral": None, "angry": 0.0, "sad": 1.0, "happy": 1.0}
    assert four.uar == pytest.approx(2 / 3)
    assert sum(map(sum, four.confusion)) == 3
    assert four.confusion[PRIMARY_LABELS.index("angry")][PRIMARY_LABELS.index("neutral")] == 1
    with pytest.raises(ValueError, match="not among the model's labels"):
        classification_scores(y, p, labels=labels, classes=["calm"])


def test_dimension_scores_leave_out_missing_references():
    pred = np.array([[0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [0.9, 0.1, 0.5]])
    ref = np.array([[0.1, np.nan, 0.3], [0.5, np.nan, np.nan], [0.9, 0.2, 0.5]])
    s = dimension_scores(pred, ref, names=("valence", "arousal", "dominance"))
    assert s.n == {"valence": 3, "arousal": 1, "dominance": 2}
    assert s.ccc["valence"] == pytest.approx(1.0)
    assert s.ccc["arousal"] is None  # one pair: undefined, and JSON has no NaN
    assert s.ccc["dominance"] == pytest.approx(concordance_correlation([0.3, 0.5], [0.3, 0.5]))


def test_bootstrap_ccc_intervals_match_a_direct_resampling():
    """The CCC branch of `bootstrap_intervals`: each resample's CCC is Lin's CCC of the segments the
    resample draws, repeated as often as it draws them (NaN references left out), and the interval
    is the percentiles of those."""
    from emotion_tool.science.metrics import bootstrap_intervals, cluster_bootstrap

    rng = np.random.default_rng(3)
    n, labels = 40, list(LABELS)
    speakers = [f"s{i % 9}" for i in range(n)]
    y = rng.integers(0, len(labels), n)
    probs = rng.dirichlet(np.ones(len(labels)), n)
    ref = rng.uniform(0, 1, (n, 3))
    dims = np.clip(ref + rng.normal(0, 0.15, (n, 3)), 0, 1)
    ref[rng.choice(n, 10, replace=False), 1] = np.nan  # arousal missing for some segments
    ref[:, 2] = np.nan  # dominance missing everywhere
    names = ("valence", "arousal", "dominance")
    got = bootstrap_intervals(
        y, probs, labels=labels, clusters=speakers, clustered_by="speaker", dims=dims, ref_dims=ref, dim_names=names,
        resamples=200, level=0.9, seed=5,
    )  # fmt: skip
    weights = np.concatenate(list(cluster_bootstrap(speakers, resamples=200, seed=5)))
    assert weights.shape == (200, n)
    for j, name in enumerate(names[:2]):
        ok = ~np.isnan(ref[:, j])
        reps = []
        for w in weights:
            times = w[ok].astype(int)
            x, r = np.repeat(dims[ok, j], times), np.repeat(ref[ok, j], times)
            reps.append(concordance_correlation(x, r) if len(set(x.tolist())) > 1 else math.nan)
        reps = np.array([v for v in reps if math.isfinite(v)])
        low, high = np.quantile(reps, [0.05, 0.95])
        interval = got.ccc[name]
        assert interval.estimate == pytest.approx(concordance_correlation(dims[ok, j], ref[ok, j]), abs=1e-12)
        assert (interval.low, interval.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
        assert interval.low < interval.estimate < interval.high
    assert got.ccc["dominance"] is None
    assert got.clusters == 9 and got.resamples == 200 and got.level == 0.9
