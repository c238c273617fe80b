"""Evaluation: how items are cut, scores against a direct computation, the report, and the command line."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import speak
from emotion_tool import EmotionRecognizer
from emotion_tool.config import LABELS, FeatureConfig
from emotion_tool.science.data import ManifestOptions, read_item_audio, read_manifest
from emotion_tool.science.evaluate import (
    EvaluationOptions,
    EvaluationReport,
    _segment_spans,
    _utterance_spans,
    evaluate,
    format_report,
    write_report,
)
from emotion_tool.cli.evaluate import register, run
from emotion_tool.science.metrics import PRIMARY_LABELS, classification_scores, dimension_scores
from emotion_tool.engine.testing import TINY, save_random_checkpoint

SR = 16000


@given(st.integers(1, 60 * SR), st.sampled_from([1.0, 2.0, 3.0]), st.floats(0.1, 1.0))
@settings(max_examples=200, deadline=None)
def test_fine_grained_segments(n, segment_s, min_fraction):
    options = EvaluationOptions(segment_s=segment_s, min_segment_s=segment_s * min_fraction)
    spans = _segment_spans(n, options)
    seg, min_len = round(segment_s * SR), round(options.min_segment_s * SR)
    if n <= seg:
        assert spans == [(0, n)]
        return
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # consecutive
    assert all(e - s == seg for s, e in spans[:-1]) and 0 < spans[-1][1] - spans[-1][0] <= seg
    assert all(e - s >= min_len for s, e in spans)
    assert n - spans[-1][1] < min_len  # only a piece shorter than the minimum is left out


@given(st.integers(1, 120 * SR), st.sampled_from([5.0, 15.0, 30.0]))
@settings(max_examples=200, deadline=None)
def test_utterances_are_whole_up_to_the_limit_and_split_evenly_beyond(n, max_s):
    spans = _utterance_spans(n, max_s)
    assert spans[0][0] == 0 and spans[-1][1] == n and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    lengths = [e - s for s, e in spans]
    assert max(lengths) <= max_s * SR and max(lengths) - min(lengths) <= 1
    assert len(spans) == 1 if n <= max_s * SR else len(spans) == -(-n // int(max_s * SR))


def test_options_are_checked():
    with pytest.raises(ValueError, match="min_segment_s"):
        EvaluationOptions(segment_s=2.0, min_segment_s=3.0)
    with pytest.raises(ValueError, match="merge_max_s"):
        EvaluationOptions(segment_s=2.0, merge_max_s=1.0)
    with pytest.raises(ValueError, match="choose from"):
        EvaluationOptions(protocols=("whole",))


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six rows in two languages (one left out by the label map), dimensions on some, a 17-s item, a stretch of a file."""
    root = tmp_path_factory.mktemp("evalset")
    a = speak("I cannot believe you did that again.", root / "a.wav")
    speak("Well, that is fine, I suppose.", root / "b.wav", speed_wpm=120)
    speak("Saya sangat gembira hari ini.", root / "c.wav", voice="ms")
    wav_a, _ = sf.read(a, dtype="float32")
    long = np.concatenate([wav_a, np.zeros(SR, np.float32)] * 8)[: 17 * SR]
    sf.write(root / "long.wav", long, SR, subtype="PCM_16")
    rows = [
        {"audio": "a.wav", "label": "ang", "valence": 2, "arousal": 5, "dominance": 4, "language": "en"},
        {"audio": "b.wav", "label": "neutral", "valence": 3, "arousal": 2, "dominance": 3, "language": "en"},
        {"audio": "c.wav", "label": "joy", "language": "ms"},
        {"audio": "long.wav", "label": "fearful", "valence": 1, "arousal": 4, "dominance": 1, "language": "en"},
        {"audio": "long.wav", "start_s": 2.0, "end_s": 5.5, "label": "sad", "language": "ms"},
        {"audio": "b.wav", "label": "xxx", "language": "en"},
    ]
    manifest = root / "eval.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, ["audio", "start_s", "end_s", "label", "valence", "arousal", "dominance", "language"])
        w.writeheader()
        w.writerows(rows)
    return manifest


_OPTIONS = ManifestOptions(label_map={"xxx": None}, dim_scale=(1.0, 5.0))


def test_scores_match_a_direct_computation(recognizer: EmotionRecognizer, eval_set: Path):
    manifest = read_manifest(eval_set, options=_OPTIONS)
    assert len(manifest) == 5 and manifest.dropped == 1
    report = evaluate(recognizer, manifest)
    assert report.random_weights and any("random weights" in w for w in report.warnings)
    assert report.operating_point == "published" and report.window_s == 30.0
    assert report.manifest.sha256 == manifest.sha256 and report.manifest.dropped == 1
    assert report.manifest.balance["ms"]["happy"] == 1

    labels = recognizer.labels
    waves = [read_item_audio(it) for it in manifest.items]
    for protocol in ("segments", "utterances"):
        pieces, refs, ref_dims, langs = [], [], [], []
        for item, wave in zip(manifest.items, waves):
            step = 2 * SR if protocol == "segments" else len(wave)
            if protocol == "utterances" and len(wave) > 15 * SR:
                step = -(-len(wave) // 2)  # a 17-s item becomes two halves
            for s in range(0, len(wave), step):
                piece = wave[s : s + step]
                if protocol == "segments" and len(piece) < SR and len(wave) > 2 * SR:
                    continue
                pieces.append(piece)
                refs.append(labels.index(item.label))
                ref_dims.append([np.nan if d is None else d for d in item.dims])
                langs.append(item.group)
        readings = recognizer.classify_batch(pieces)
        probs = np.array([[r.probabilities[lab] for lab in labels] for r in readings])
        dims = np.array([[r.valence, r.arousal, r.dominance] for r in readings])
        rep = report.protocols[protocol]
        assert rep.overall.segments == len(pieces)
        assert rep.overall.seven_class == classification_scores(refs, probs, labels=labels)
        assert rep.overall.four_class == classification_scores(refs, probs, labels=labels, classes=PRIMARY_LABELS)
        ccc = dimension_scores(dims, np.array(ref_dims), names=("valence", "arousal", "dominance")).ccc
        for name, value in ccc.items():
            assert rep.overall.dimensions.ccc[name] == pytest.approx(value, abs=1e-4)  # batches differ: float32 noise
        ms = [i for i, g in enumerate(langs) if g == "ms"]
        assert rep.languages["ms"].seven_class == classification_scores([refs[i] for i in ms], probs[ms], labels=labels)
        assert rep.languages["ms"].dimensions is None  # no ms item has dimensions
        assert rep.mean_uar_over_languages == pytest.approx(
            np.mean([rep.languages[g].seven_class.uar for g in ("en", "ms")])
        )
    # The 17-s item: 9 segments of 2 s (the 1-s remainder is kept), 2 halves as utterances.
    assert report.protocols["segments"].overall.seven_class.support["fearful"] == 9
    assert report.protocols["utterances"].overall.seven_class.support["fearful"] == 2


def test_report_files_and_table(recognizer: EmotionRecognizer, eval_set: Path, tmp_path: Path):
    report = evaluate(recognizer, read_manifest(eval_set, options=_OPTIONS), options=EvaluationOptions(protocols=("utterances",)))
    paths = write_report(report, tmp_path / "out")
    assert [p.name for p in paths] == ["report.json", "confusion-utterances.png", "reliability-utterances.png"]
    assert EvaluationReport.model_validate_json(paths[0].read_text()) == report
    png = paths[1].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    text = format_report(report)
    assert "random weights" in text and "[utterances] whole utterances" in text and "mean of languages" in text
    assert "reference \\ predicted" in text and all(lab in text for lab in LABELS)
    assert "[segments]" not in text


def test_a_model_with_a_short_window_reads_merged_segments_up_to_it(eval_set: Path, tmp_path: Path):
    short = dataclasses.replace(TINY, max_source_positions=250, features=FeatureConfig(chunk_length=5))
    rec = EmotionRecognizer.from_pretrained(save_random_checkpoint(tmp_path / "tiny5", config=short), device="cpu")
    report = evaluate(rec, read_manifest(eval_set, options=_OPTIONS), options=EvaluationOptions(protocols=("utterances",)))
    assert report.protocols["utterances"].max_segment_s == 5.0
    assert report.protocols["utterances"].overall.seven_class.support["fearful"] == 4  # 17 s in 4 parts
    assert any("merged segments were cut to 5 s" in w for w in report.warnings)


def test_labels_the_model_lacks_are_refused(recognizer: EmotionRecognizer, eval_set: Path):
    manifest = read_manifest(eval_set, options=ManifestOptions(label_map={"xxx": None, "neutral": "sad"}, dim_scale=(1, 5)))
    manifest = manifest.model_copy(update={"items": [manifest.items[0].model_copy(update={"label": "bored"})]})
    with pytest.raises(ValueError, match=r"labels \['bored'\] that the model"):
        evaluate(recognizer, manifest)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotion-tool")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli(tiny_checkpoint: Path, eval_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"xxx": None}))
    args = _parser().parse_args([
        "eval", str(eval_set), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "report"),
        "--device", "cpu", "--label-map", str(label_map), "--dim-scale", "1", "5", "--protocol", "segments",
    ])  # fmt: skip
    assert args.func is run
    assert run(args) == 0
    captured = capsys.readouterr()
    assert "[segments] fine-grained segments" in captured.out and "[utterances]" not in captured.out
    assert "report.json" in captured.err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["model_id"] == str(tiny_checkpoint) and list(report["protocols"]) == ["segments"]
    assert report["operating_point"] == "published"
    assert (tmp_path / "report" / "confusion-segments.png").is_file()

    args = _parser().parse_args([
        "eval", str(eval_set), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "r2"), "--device", "cpu",
        "--label-map", '{"xxx": null}', "--dim-scale", "1", "5", "--protocol", "utterances", "--format", "json", "--no-plot",
        "--context", "trimmed",
    ])  # fmt: skip
    assert run(args) == 0
    printed = EvaluationReport.model_validate_json(capsys.readouterr().out)
    assert printed.protocols["utterances"].overall.dimensions is not None
    assert printed.operating_point == "trimmed"  # a fast operating point is scored, and recorded as such
    assert sorted(p.name for p in (tmp_path / "r2").iterdir()) == ["report.json"]

    bad = _parser().parse_args(["eval", str(eval_set), "--model", str(tiny_checkpoint), "--device", "cpu", "--label-map", "{oops"])
    with pytest.raises(ValueError, match="--label-map is not JSON"):
        run(bad)
    unmapped = _parser().parse_args(["eval", str(eval_set), "--model", str(tiny_checkpoint), "--device", "cpu", "--dim-scale", "1", "5"])
    with pytest.raises(ValueError, match="unknown label 'xxx'"):
        run(unmapped)
