"""Batch analysis on one machine: the table equals `analyze`, errors stay per item, runs resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion_tool import AnalysisOptions, EmotionRecognizer
from emotion_tool.batch import BatchOptions, TableWriter, analyze_item, collect_items, item_key, read_table, run_batch

from helpers import speak


@pytest.fixture(scope="module")
def archive(audio_dir: Path, speech_wav: Path, sentences_wav) -> dict[str, Path]:
    """Three spoken clips, a corrupt file, a clip too short to judge, and a path that does not exist."""
    folder = audio_dir / "archive"
    folder.mkdir(exist_ok=True)
    clips = {
        "speech": shutil.copy(speech_wav, folder / "speech.wav"),
        "sentences": shutil.copy(sentences_wav[0], folder / "sentences.wav"),
        "high": speak("Where did you put the keys this time", folder / "high.wav", pitch=80),
    }
    (folder / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + os.urandom(200))
    sf.write(folder / "short.wav", np.zeros(3200, dtype=np.float32), 16000)  # 0.2 s
    return {**{k: Path(v) for k, v in clips.items()}, "corrupt": folder / "corrupt.wav", "short": folder / "short.wav",
            "missing": folder / "missing.wav"}  # fmt: skip


@pytest.fixture(scope="module")
def tracer(tiny_checkpoint: Path) -> EmotionRecognizer:
    return EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", options=AnalysisOptions(trace=True))


def _by_key(rows):
    return {(r["key"], r["kind"], r["segment"]): r for r in rows}


def test_rows_equal_analyze_and_errors_stay_per_item(tracer, archive, tmp_path):
    items = collect_items([str(p) for p in archive.values()])
    summary = run_batch(tracer, items, tmp_path / "t.jsonl", options=BatchOptions(workers=1, prefetch=2, progress=False))
    assert (summary.items, summary.written, summary.failed, summary.skipped) == (6, 6, 3, 0)
    rows = read_table(tmp_path / "t.jsonl")
    recs = {Path(r["audio"]).stem: r for r in rows if r["kind"] == "recording"}
    assert recs["corrupt"]["error"].startswith("decode: ") and recs["corrupt"]["label"] is None
    assert recs["missing"]["error"].startswith("not_found: ")
    assert recs["short"]["error"].startswith("too_short: ")
    for name in ("speech", "sentences", "high"):
        a = tracer.analyze(archive[name])
        r = recs[name]
        assert r["error"] is None and r["label"] == a.summary.label
        assert [r[f"p_{k}"] for k in tracer.labels] == [a.summary.probabilities[k] for k in tracer.labels]
        assert (r["valence"], r["arousal"], r["dominance"]) == (a.summary.valence, a.summary.arousal, a.summary.dominance)
        assert (r["duration_s"], r["speech_ratio"], r["operating_point"]) == (a.duration_s, a.speech_ratio, "published")
        assert r["random_weights"] is True and r["model_id"] == a.model_id
        segs = sorted((x for x in rows if x["kind"] == "segment" and x["key"] == r["key"]), key=lambda x: x["segment"])
        assert len(segs) == len(a.segments) > 0
        for row, seg in zip(segs, a.segments):
            assert (row["start_s"], row["end_s"], row["is_speech"]) == (seg.start_s, seg.end_s, seg.is_speech)
            assert row["label"] == (seg.reading.label if seg.reading else None)
    assert len({recs[n]["p_neutral"] for n in ("speech", "sentences", "high")}) == 3  # rows follow their audio


def test_workers_and_formats_agree(recognizer, archive, tmp_path):
    items = collect_items([str(p) for p in archive.values()])
    run_batch(recognizer, items, tmp_path / "a.parquet", options=BatchOptions(workers=0, progress=False))
    run_batch(recognizer, items, tmp_path / "b.jsonl", options=BatchOptions(workers=2, prefetch=1, progress=False))
    assert _by_key(read_table(tmp_path / "a.parquet")) == _by_key(read_table(tmp_path / "b.jsonl"))
    assert not (tmp_path / "a.parquet.parts").exists()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_rerun_skips_what_is_written(recognizer, archive, tmp_path, suffix):
    out = tmp_path / f"t{suffix}"
    items = collect_items([str(p) for p in archive.values()])
    first = run_batch(recognizer, items[:2], out, options=BatchOptions(progress=False))
    second = run_batch(recognizer, items + items[:1], out, options=BatchOptions(progress=False))
    assert (first.written, second.items, second.skipped, second.written) == (2, 6, 2, 4)
    rows = read_table(out)
    assert sorted(r["key"] for r in rows) == sorted(item_key(i) for i in items)
    assert run_batch(recognizer, items, out, options=BatchOptions(progress=False)).written == 0


def test_a_killed_jsonl_run_loses_only_its_last_recording(tracer, archive, tmp_path):
    out = tmp_path / "t.jsonl"
    items = collect_items([str(archive["speech"]), str(archive["sentences"])])
    full = [analyze_item(tracer, it, _decode(it)) for it in items]
    # As a kill leaves it: the first recording whole, the second's segment rows without its recording
    # row, and half a line.
    lines = [json.dumps(r) for r in full[0]] + [json.dumps(r) for r in full[1][:-1]]
    out.write_text("\n".join(lines) + "\n" + json.dumps(full[1][-1])[:40], encoding="utf-8")
    summary = run_batch(tracer, items, out, options=BatchOptions(progress=False))
    assert (summary.skipped, summary.written) == (1, 1)
    assert _by_key(read_table(out)) == _by_key(full[0] + full[1])


def _decode(item):
    from emotion_tool.batch import decode_item

    return decode_item(item, 3600.0)


def test_a_killed_parquet_run_keeps_its_parts(recognizer, archive, tmp_path):
    out = tmp_path / "t.parquet"
    items = collect_items([str(archive[n]) for n in ("speech", "high", "corrupt")])
    writer = TableWriter(out, labels=recognizer.labels, rows_per_part=1)
    writer.write(analyze_item(recognizer, items[0], _decode(items[0])))  # then killed: never closed
    assert len(list((tmp_path / "t.parquet.parts").glob("part-*.parquet"))) == 1 and not out.exists()
    summary = run_batch(recognizer, items, out, options=BatchOptions(progress=False, rows_per_part=1))
    assert (summary.skipped, summary.written, summary.failed) == (1, 2, 1)
    assert sorted(r["key"] for r in read_table(out)) == sorted(item_key(i) for i in items)
    assert not (tmp_path / "t.parquet.parts").exists()


def test_a_table_of_another_operating_point_is_refused(recognizer, tiny_checkpoint, archive, tmp_path):
    out = tmp_path / "t.jsonl"
    items = collect_items([str(archive["speech"])])
    run_batch(recognizer, items, out, options=BatchOptions(progress=False))
    trimmed = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", options=AnalysisOptions(context="trimmed"))
    with pytest.raises(ValueError, match="already holds readings of .*published.*another --out"):
        run_batch(trimmed, items, out, options=BatchOptions(progress=False))
    with pytest.raises(ValueError, match=r"must end in \.parquet or \.jsonl"):
        run_batch(recognizer, items, tmp_path / "t.csv", options=BatchOptions(progress=False))


def test_inputs_manifest_folders_globs(archive, tmp_path):
    folder = archive["speech"].parent
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"audio,label,start_s,end_s\n{archive['speech']},angry,,\n{archive['sentences']},,0.5,2.5\n"
                        f"{archive['missing']},,,\n", encoding="utf-8")  # fmt: skip
    items = collect_items([manifest])
    assert [i.label for i in items] == ["angry", None, None]
    assert item_key(items[1]) == f"{archive['sentences']}#0.5-2.5"
    assert {i.audio.name for i in collect_items([folder])} == {"speech.wav", "sentences.wav", "high.wav", "corrupt.wav", "short.wav"}
    assert len(collect_items([str(folder / "*.wav")])) == 5
    with pytest.raises(ValueError, match="matches no files"):
        collect_items([str(folder / "*.flac")])
    with pytest.raises(ValueError, match="give a manifest"):
        collect_items([])


def test_cli_batch_manifest_to_parquet(tiny_checkpoint, archive, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps({"audio": str(archive[n])}) for n in ("speech", "corrupt", "sentences")) + "\n")
    cmd = [sys.executable, "-m", "emotion_tool.cli", "batch", str(manifest), "--out", str(tmp_path / "r.parquet"),
           "--model", str(tiny_checkpoint), "--device", "cpu", "--trace", "--no-progress"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 recording(s) written (1 with an error)" in done.stderr and "random weights" in done.stderr
    rows = read_table(tmp_path / "r.parquet")
    assert {r["kind"] for r in rows} == {"recording", "segment"}
    assert sum(r["kind"] == "recording" for r in rows) == 3
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0 and "0 recording(s) written" in again.stderr and "3 already there" in again.stderr
    bad = subprocess.run([*cmd[:6], str(tmp_path / "r.txt"), *cmd[7:]], capture_output=True, text=True)
    assert bad.returncode == 2 and "must end in .parquet or .jsonl" in bad.stderr
