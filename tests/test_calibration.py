"""Calibration: known temperatures recovered, ECE and intervals against direct computations, the
recognizer's calibrated readings, and calibrate then eval from the command line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.calibration import calibration_curve

from helpers import speak
from emotion_tool import EmotionRecognizer
from emotion_tool.science.calibration import (
    Calibration,
    CalibrationOptions,
    FittedOn,
    choose_threshold,
    fit_calibration,
    fit_temperature,
    load_calibration,
    nll,
    reliability,
)
from emotion_tool.science.metrics import (
    bootstrap_intervals,
    cluster_bootstrap,
    concordance_correlation,
    unweighted_average_recall,
    weighted_ccc,
    weighted_uar,
)
from emotion_tool.engine.recognizer import AnalysisOptions

K = 7


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _draw(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    u = rng.random((len(probs), 1))
    return np.minimum((probs.cumsum(axis=1) < u).sum(axis=1), probs.shape[1] - 1)


def _synthetic(n: int, temperature: float, bias: np.ndarray | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from softmax(logits / temperature + bias): the truth is known."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3.0, size=(n, K))
    return z, _draw(rng, _softmax(z / temperature + (0 if bias is None else bias)))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_a_known_temperature_is_recovered(temperature):
    z, y = _synthetic(20000, temperature)
    fitted, bias = fit_temperature(z, y)
    assert bias is None
    assert fitted == pytest.approx(temperature, rel=0.05)
    best = nll(z, y, temperature=fitted)
    assert all(best <= nll(z, y, temperature=fitted * f) for f in (0.9, 0.97, 1.03, 1.1))  # a minimum


def test_a_known_temperature_and_bias_are_recovered():
    true_bias = np.array([0.8, -0.5, 0.0, 0.3, -1.0, 0.6, -0.2])
    true_bias -= true_bias.mean()
    z, y = _synthetic(40000, 1.8, true_bias, seed=1)
    fitted, bias = fit_temperature(z, y, bias=True)
    assert fitted == pytest.approx(1.8, rel=0.05)
    assert np.abs(bias - true_bias).max() < 0.1 and abs(bias.mean()) < 1e-9
    t_only, _ = fit_temperature(z, y)
    assert nll(z, y, temperature=fitted, bias=bias) < nll(z, y, temperature=t_only)


def test_uninformative_scores_reach_the_end_of_the_range_and_say_so():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 3.0, size=(500, K))
    y = (z.argmax(axis=1) + 1 + rng.integers(0, K - 1, 500)) % K  # never the top class: the scores mislead
    cal = _fit(z, y)
    assert cal.temperature == pytest.approx(100.0, rel=1e-3)
    assert any("almost no information" in w for w in cal.warnings)


def test_ece_matches_a_direct_computation_and_sklearn():
    rng = np.random.default_rng(3)
    probs = _softmax(rng.normal(0, 2.0, size=(3000, K)))
    probs[0] = np.full(K, 1 / K)  # confidences on bin edges: 1/7 and, below, exactly 0.2 and 1.0
    probs[1] = [0.2] * 5 + [0.0, 0.0]
    probs[2] = [1.0] + [0.0] * (K - 1)
    y = _draw(rng, probs)
    s = reliability(probs, y, bins=10)
    conf, correct = probs.max(axis=1), (probs.argmax(axis=1) == y)
    ece = 0.0
    for lo in np.arange(10) / 10:  # bins (lo, lo + 0.1], the first also holding 0
        m = (conf > lo) & (conf <= lo + 0.1 + 1e-12) if lo > 0 else conf <= 0.1 + 1e-12
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    assert s.ece == pytest.approx(ece, abs=1e-12)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=10, strategy="uniform")
    full = [b for b in s.bins if b.segments]
    np.testing.assert_allclose([b.accuracy for b in full], prob_true, atol=1e-12)
    np.testing.assert_allclose([b.confidence for b in full], prob_pred, atol=1e-12)
    assert sum(b.segments for b in s.bins) == 3000
    assert s.nll == pytest.approx(-np.log(probs[np.arange(3000), y]).mean())


def test_calibrated_probabilities_lower_ece_and_nll_on_miscalibrated_data():
    z, y = _synthetic(5000, 3.0, seed=4)  # the logits are three times too sharp
    cal = _fit(z, y)
    assert cal.before.ece > 0.1 and cal.after.ece < 0.03
    assert cal.after.nll < cal.before.nll
    assert cal.bias is not None  # 5000 segments: enough of every label
    np.testing.assert_allclose(cal.probabilities(z), _softmax(z / cal.temperature + cal.bias_vector()), rtol=1e-12)


def test_the_threshold_is_the_lowest_that_reaches_the_target():
    rng = np.random.default_rng(5)
    probs = _softmax(rng.normal(0, 2.0, size=(400, K)))
    y = _draw(rng, probs)
    a = choose_threshold(probs, y, target_precision=0.7, min_accepted=10)
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == y
    ok = [t for t in np.unique(conf) if (conf >= t).sum() >= 10 and right[conf >= t].mean() >= 0.7]
    assert a.threshold == min(ok)
    assert a.precision == pytest.approx(right[conf >= a.threshold].mean()) and a.precision >= 0.7
    assert a.coverage == pytest.approx((conf >= a.threshold).mean())
    never = choose_threshold(probs, (probs.argmax(axis=1) + 1) % K, target_precision=0.5)
    assert never.threshold is None and never.coverage == 0.0


def test_bias_is_fitted_only_with_enough_segments_of_every_label():
    z, y = _synthetic(2000, 1.0, seed=6)
    assert _fit(z, y).bias is not None
    few = np.flatnonzero(y == 3)[5:]
    keep = np.setdiff1d(np.arange(len(y)), few)
    cal = _fit(z[keep], y[keep])
    assert cal.bias is None and "too few of angry (5)" in cal.bias_rule


def test_bootstrap_weights_give_the_scores_of_explicit_resamples():
    rng = np.random.default_rng(7)
    n = 60
    y, pred = rng.integers(0, 4, n), rng.integers(0, 4, n)
    x, ref = rng.random(n), rng.random(n)
    clusters = [f"s{i % 9}" for i in range(n)]
    weights = np.concatenate(list(cluster_bootstrap(clusters, resamples=300, seed=1)))
    assert weights.shape == (300, n) and np.all(weights.sum(axis=1) > 0)
    uar, ccc = weighted_uar(y, pred, weights, num_classes=4), weighted_ccc(x, ref, weights)
    for b in range(0, 300, 37):
        idx = np.repeat(np.arange(n), weights[b].astype(int))  # the resample, segment by segment
        assert uar[b] == pytest.approx(unweighted_average_recall(y[idx], pred[idx], num_classes=4), abs=1e-12)
        assert ccc[b] == pytest.approx(concordance_correlation(x[idx], ref[idx]), abs=1e-9)
    per_speaker = weights.reshape(300, -1)[:, :9]  # segment i belongs to speaker i % 9: whole speakers are drawn
    assert np.all(weights[:, 9:18] == per_speaker) and np.all(per_speaker.sum(axis=1) == 9)


def test_intervals_match_the_normal_approximation_and_widen_with_speaker_effects():
    rng = np.random.default_rng(8)
    n = 800
    labels = ["neutral", "happy"]
    y = np.zeros(n, dtype=np.int64)  # one class: UAR is plain accuracy, a mean of n Bernoulli draws
    right = rng.random(n) < 0.7
    probs = np.where(right[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
    iv = bootstrap_intervals(y, probs, labels=labels, clusters=list(range(n)), clustered_by="item", resamples=4000, seed=0)
    p = right.mean()
    half = 1.96 * np.sqrt(p * (1 - p) / n)
    assert iv.uar.estimate == pytest.approx(p)
    assert iv.uar.low == pytest.approx(p - half, abs=0.25 * half) and iv.uar.high == pytest.approx(p + half, abs=0.25 * half)

    speaker = np.arange(n) // 40  # 20 speakers of 40 segments, each with their own accuracy
    right = rng.random(n) < rng.uniform(0.3, 1.0, 20)[speaker]
    probs = np.where(right[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
    by_item = bootstrap_intervals(y, probs, labels=labels, clusters=list(range(n)), clustered_by="item", resamples=2000)
    by_speaker = bootstrap_intervals(y, probs, labels=labels, clusters=speaker.tolist(), clustered_by="speaker", resamples=2000)
    means = np.array([right[speaker == s].mean() for s in range(20)])
    half = 1.96 * means.std() / np.sqrt(20)  # equal clusters: the interval of a mean of 20 speaker means
    assert by_speaker.clusters == 20 and by_speaker.uar.high - by_speaker.uar.low > 2 * (by_item.uar.high - by_item.uar.low)
    assert by_speaker.uar.high - by_speaker.uar.low == pytest.approx(2 * half, rel=0.3)


def _fit(z, y, **kw) -> Calibration:
    return fit_calibration(
        z, y, label_names=["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"], model_id="m",
        operating_point="published", random_weights=False, options=CalibrationOptions(**kw),
        fitted_on=FittedOn(manifest="dev.csv", sha256="0" * 64, items=len(y), segments=len(y), protocols=["utterances"], per_class={}),
    )  # fmt: skip


# --- the recognizer with a calibration -----------------------------------------------------------


def _calibration_for(recognizer: EmotionRecognizer, temperature: float, *, threshold: float | None = None, bias=None, **kw) -> Calibration:
    base = _fit(np.zeros((2, K)), np.array([0, 1]), target_precision=None)
    return base.model_copy(update={
        "model_id": recognizer.model_id, "temperature": temperature, "min_confidence": threshold, "labels": recognizer.labels,
        "bias": bias, **kw,
    })  # fmt: skip


def test_readings_without_a_calibration_are_unchanged(recognizer: EmotionRecognizer, speech_wav: Path):
    a = recognizer.analyze(speech_wav)
    assert a.calibration is None and "calibration" not in a.model_dump_json() and "calibration" not in recognizer.info().model_dump_json()
    assert recognizer.min_confidence == 0.5


def test_calibrated_readings_name_the_calibration(tiny_checkpoint: Path, recognizer: EmotionRecognizer, speech_wav: Path, tmp_path: Path):
    wav, _ = sf.read(speech_wav, dtype="float32")
    raw = recognizer.logits_batch([wav])
    bias = {lab: 0.1 * i for i, lab in enumerate(recognizer.labels)}
    path = _calibration_for(recognizer, 0.5, threshold=0.99, bias=bias).save(tmp_path / "cal.json")
    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", calibration=path)
    z = raw.logits.astype(np.float64) / 0.5 + np.array(list(bias.values()))
    reading = rec.classify_batch([wav])[0]
    np.testing.assert_allclose(list(reading.probabilities.values()), _softmax(z)[0], atol=1e-5)
    assert reading.uncertain == (reading.confidence < 0.99) and rec.min_confidence == 0.99
    a = rec.analyze(speech_wav)
    assert a.calibration is not None and a.calibration.source == "cal.json" and a.calibration.temperature == 0.5 and a.calibration.bias
    assert a.calibration.sha256 == load_calibration(path)[0].digest()
    assert rec.info().calibration == a.calibration and json.loads(a.model_dump_json())["calibration"]["min_confidence"] == 0.99
    assert a.summary.uncertain == (a.summary.confidence < 0.99)
    explicit = rec.analyze(speech_wav, options=AnalysisOptions(min_confidence=0.0))
    assert not explicit.summary.uncertain  # an explicit threshold wins over the fitted one
    np.testing.assert_array_equal(rec.logits_batch([wav]).logits, raw.logits)  # logits are never calibrated


def test_a_calibration_for_other_labels_is_refused_and_other_fits_are_flagged(tiny_checkpoint: Path, recognizer: EmotionRecognizer):
    wrong = _calibration_for(recognizer, 1.0).model_copy(update={"labels": list(reversed(recognizer.labels))})
    with pytest.raises(ValueError, match="fitted for labels"):
        EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", calibration=wrong)
    other = _calibration_for(recognizer, 1.0, operating_point="trimmed", model_id="someone/else")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", calibration=other)
    texts = [str(w.message) for w in caught]
    assert any("fitted for someone/else" in t for t in texts) and any("fitted at the trimmed operating point" in t for t in texts)
    assert rec._calibration_warnings == [t for t in texts if "calibration" in t]
    with pytest.raises(ValueError, match="does not exist"):
        EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", calibration=Path("/nonexistent/cal.json"))


# --- calibrate, then eval, from the command line -------------------------------------------------

TEXTS = ("I would like to talk about my order", "It has been three weeks", "Please tell me what is going on", "Leave me alone")
VOICES = (("en", 160, 50), ("en+f3", 120, 70), ("en-us", 200, 30), ("en+m3", 140, 60))


@pytest.fixture(scope="module")
def dev_set(tmp_path_factory: pytest.TempPathFactory, recognizer: EmotionRecognizer) -> Path:
    """16 spoken clips labelled so that the random model is underconfident: its top label is the
    reference for 14 of them, yet its confidence is far lower (about 0.35). Eight speakers."""
    root = tmp_path_factory.mktemp("devset")
    paths = [speak(t, root / f"c{i}{j}.wav", voice=v, speed_wpm=s, pitch=p) for i, t in enumerate(TEXTS) for j, (v, s, p) in enumerate(VOICES)]
    readings = recognizer.classify_batch([sf.read(p, dtype="float32")[0] for p in paths])
    rows = []
    for i, (p, r) in enumerate(zip(paths, readings)):
        second = sorted(r.probabilities, key=r.probabilities.get)[-2]
        label = r.label if i % 8 else second  # every eighth: the runner-up
        rows.append({"audio": p.name, "label": label, "speaker": f"spk{i % 8}"})
    manifest = root / "dev.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, ["audio", "label", "speaker"])
        w.writeheader()
        w.writerows(rows)
    return manifest


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emotion_tool.cli", *map(str, args)], capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip


def test_calibrate_then_eval_shows_a_lower_ece(tiny_checkpoint: Path, dev_set: Path, tmp_path: Path):
    cal_path = tmp_path / "cal.json"
    out = _cli("calibrate", dev_set, "--model", tiny_checkpoint, "--device", "cpu", "--out", cal_path, "--target-precision", "0.8")
    assert out.returncode == 0, out.stderr
    assert "means nothing" in out.stdout and "temperature only" in out.stdout and "coverage" in out.stdout
    cal = Calibration.model_validate_json(cal_path.read_text())
    assert cal.random_weights and cal.operating_point == "published" and cal.fitted_on.sha256 and cal.fitted_on.segments == 16
    assert cal.temperature < 1  # underconfident: sharpened
    assert cal.min_confidence is not None and cal.abstention.precision >= 0.8

    report_dir = tmp_path / "eval"
    out = _cli("eval", dev_set, "--model", tiny_checkpoint, "--device", "cpu", "--calibration", cal_path, "--protocol", "utterances",
               "--out", report_dir, "--bootstrap", "200")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "calibrated: ECE" in out.stdout and "bootstrap resamples of 8 speakers" in out.stdout and "random weights" in out.stdout
    report = json.loads((report_dir / "report.json").read_text())
    conf = report["protocols"]["utterances"]["confidence"]
    before, after = conf["uncalibrated"]["ece"], conf["calibrated"]["ece"]
    assert before > 0.3 and after < before - 0.2, (before, after)
    assert conf["calibrated"]["nll"] < conf["uncalibrated"]["nll"]
    assert report["calibration"]["source"] == "cal.json" and report["calibration"]["random_weights"]
    assert any("fitted on this same manifest" in w for w in report["warnings"])
    iv = report["protocols"]["utterances"]["intervals"]
    assert iv["clustered_by"] == "speaker" and iv["uar"]["low"] <= iv["uar"]["estimate"] <= iv["uar"]["high"]
    png = (report_dir / "reliability-utterances.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    out = _cli("analyze", dev_set.parent / "c00.wav", "--model", tiny_checkpoint, "--device", "cpu", "--calibration", cal_path, "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["calibration"]["sha256"] == cal.digest()


def test_calibrate_writes_beside_the_checkpoint_by_default(tmp_path: Path, dev_set: Path):
    from emotion_tool.engine.testing import save_random_checkpoint

    ckpt = save_random_checkpoint(tmp_path / "ckpt")
    out = _cli("calibrate", dev_set, "--model", ckpt, "--device", "cpu", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert Calibration.model_validate_json((ckpt / "calibration.json").read_text()) == Calibration.model_validate_json(out.stdout)
    bad = _cli("calibrate", dev_set, "--model", ckpt, "--device", "cpu", "--target-precision", "1.5")
    assert bad.returncode == 2 and "target_precision is a fraction" in bad.stderr


# --- the MCP server, the agent and the demos load a calibration ----------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_mcp_server_names_its_calibration(tiny_checkpoint: Path, recognizer: EmotionRecognizer, speech_wav: Path, tmp_path: Path):
    import base64

    from mcp import Client

    from mcp_server import ServerOptions, create_server
    from mcp_server.sessions import SessionSummary

    cal = _calibration_for(recognizer, 0.5, threshold=0.999)
    path = cal.save(tmp_path / "cal.json")
    server = create_server(ServerOptions(model=str(tiny_checkpoint), device="cpu", allow_dirs=(speech_wav.parent,), calibration=path))
    async with Client(server) as client:
        result = await client.call_tool("analyze_emotion", {"audio_path": str(speech_wav)})
        assert not result.is_error, result.content[0].text
        assert result.structured_content["calibration"]["sha256"] == cal.digest()
        assert result.structured_content["summary"]["uncertain"]  # the fitted threshold (0.999) flags it
        info = json.loads((await client.read_resource("emotion://model")).contents[0].text)
        assert info["calibration"]["source"] == "cal.json"
        started = await client.call_tool("start_emotion_session", {"sample_rate": 16000})
        sid = started.structured_content["session_id"]
        wav, _ = sf.read(speech_wav, dtype="int16")
        wav = np.concatenate([wav, np.zeros(16000, np.int16)])  # a pause closes the utterance
        for i in range(0, len(wav), 8000):
            pushed = await client.call_tool("push_audio", {"session_id": sid, "chunk_base64": base64.b64encode(wav[i : i + 8000].tobytes()).decode()})
            assert not pushed.is_error, pushed.content[0].text
        summary = SessionSummary.model_validate((await client.call_tool("end_emotion_session", {"session_id": sid})).structured_content)
    assert summary.calibration is not None and summary.calibration.sha256 == cal.digest()
    assert summary.utterances and all(u.reading.uncertain for u in summary.utterances) and summary.overall.uncertain

    async with Client(create_server(ServerOptions(model=str(tiny_checkpoint), device="cpu", allow_dirs=(speech_wav.parent,)))) as client:
        result = await client.call_tool("analyze_emotion", {"audio_path": str(speech_wav)})
        assert "calibration" not in result.structured_content


def test_the_agent_and_the_demo_name_the_calibration(tiny_checkpoint: Path, recognizer: EmotionRecognizer, speech_wav: Path, tmp_path: Path):
    from langgraph.checkpoint.memory import InMemorySaver

    from agents import build_empathic_agent

    path = _calibration_for(recognizer, 2.0).save(tmp_path / "cal.json")
    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", calibration=path)
    graph = build_empathic_agent(rec, checkpointer=InMemorySaver())
    out = graph.invoke({"audio": str(speech_wav), "transcript": "hello"}, config={"configurable": {"thread_id": "c1"}})
    turn = out["emotion_history"][-1]
    assert turn.calibration is not None and turn.calibration.source == "cal.json" and turn.calibration.temperature == 2.0

    demo = subprocess.run(
        [sys.executable, "-m", "demos.analyze_file", str(speech_wav), "--model", str(tiny_checkpoint), "--device", "cpu",
         "--calibration", str(path), "--out", str(tmp_path / "trace.png")],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    assert f"calibrated with cal.json (sha256 {rec.calibration.digest()}" in demo.stdout
