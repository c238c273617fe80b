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
from emotion_tool.jobs.batch import BatchOptions, TableWriter, analyze_item, collect_items, item_key, read_table, run_batch

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


def _same_threads(**kw) -> BatchOptions:
    """Options whose model runs torch's current thread count, as `analyze` here does: the same bits."""
    import torch

    return BatchOptions(threads=torch.get_num_threads(), progress=False, **kw)


def test_rows_equal_analyze_and_errors_stay_per_item(tracer, archive, tmp_path):
    items = collect_items([str(p) for p in archive.values()])
    summary = run_batch(tracer, items, tmp_path / "t.jsonl", options=_same_threads(workers=1, prefetch=2))
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
    run_batch(recognizer, items, tmp_path / "a.parquet", options=_same_threads(workers=0))
    run_batch(recognizer, items, tmp_path / "b.jsonl", options=_same_threads(workers=2, prefetch=1))
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
    summary = run_batch(tracer, items, out, options=_same_threads())
    assert (summary.skipped, summary.written) == (1, 1)
    assert _by_key(read_table(out)) == _by_key(full[0] + full[1])


def _decode(item):
    from emotion_tool.jobs.batch import decode_item

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


# --- batching across recordings, threads, workers, odd outputs, calibration, crash-safe combining -----


def _encoder_batches(rec: EmotionRecognizer) -> tuple[list[int], object]:
    """Batch sizes of the encoder's forward passes, recorded until the returned handle is removed."""
    sizes: list[int] = []
    handle = rec.model.whisper.encoder.register_forward_hook(lambda module, args, out: sizes.append(int(out.shape[0])))
    return sizes, handle


def _close(a: dict, b: dict) -> None:
    """Two rows are the same row, their numbers equal within 1e-5."""
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float) and isinstance(b[k], float):
            assert a[k] == pytest.approx(b[k], abs=1e-5), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("trace", [False, True])
def test_recordings_share_forward_passes_and_read_as_alone(tiny_checkpoint, recognizer, archive, tmp_path, trace):
    batched = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", options=AnalysisOptions(trace=trace, batch_size=4))
    items = collect_items([str(p) for p in archive.values()])
    sizes, handle = _encoder_batches(batched)
    try:
        run_batch(batched, items, tmp_path / "t.jsonl", options=BatchOptions(workers=0, progress=False))
    finally:
        handle.remove()
    if not trace:  # three clips of one window each: one forward pass of all three, not three of one
        assert sizes == [3]
    rows = _by_key(read_table(tmp_path / "t.jsonl"))
    expected = _by_key([r for it in items for r in analyze_item(batched, it, _decode_or_error(it))])  # one recording a call
    assert rows.keys() == expected.keys() and sum(r["error"] is None for r in rows.values()) >= 3
    for k in expected:
        _close(rows[k], expected[k])


def _decode_or_error(item):
    from emotion_tool.jobs.batch import _decode_or_error

    return _decode_or_error(item, 3600.0)


def test_the_model_gets_the_cores_the_decoding_workers_leave(recognizer, archive, tmp_path):
    import torch

    items = collect_items([str(archive["speech"])])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    seen: list[int] = []
    handle = recognizer.model.whisper.encoder.register_forward_hook(lambda *a: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(7)
    try:
        run_batch(recognizer, items, tmp_path / "a.jsonl", options=BatchOptions(workers=1, progress=False))
        run_batch(recognizer, items, tmp_path / "b.jsonl", options=BatchOptions(workers=1, threads=3, progress=False))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
        handle.remove()
    assert seen == [max(1, cores - 1), 3]  # cores minus the decoding worker by default; --threads wins
    assert after == 7  # the caller's thread count comes back


def _descendants(pid: int) -> set[int]:
    """Live processes under `pid` (from /proc; zombies count as gone)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(d.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_decoding_workers_end_when_the_command_is_killed(tiny_checkpoint, speech_wav, tmp_path):
    import signal
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(400):  # distinct paths (hard links), so every one is a recording to decode
        os.link(speech_wav, folder / f"clip{i:03d}.wav")
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "emotion_tool.cli", "batch", str(folder), "--out", str(out), "--model", str(tiny_checkpoint),
           "--device", "cpu", "--workers", "2", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (out.exists() and out.read_text().count("\n") >= 3):  # the workers are decoding and the model reading
            assert proc.poll() is None and time.monotonic() < deadline, "the batch did not start writing rows"
            time.sleep(0.2)
        workers = _descendants(proc.pid)
        assert len(workers) >= 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 120
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [p for p in workers if _alive(p)], "processes of the killed batch are still running"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in _descendants(proc.pid) if proc.poll() is None else ():
            os.kill(p, signal.SIGKILL)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_an_output_that_is_not_a_regular_file_is_refused(tiny_checkpoint, archive, tmp_path):
    fifo = tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "emotion_tool.cli", "batch", str(archive["speech"]), "--out", str(fifo),
           "--model", str(tiny_checkpoint), "--device", "cpu", "--no-progress"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # before the check, this waited for a reader forever
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert "is a FIFO, not a regular file" in line and "--out" in line


def _calibration_file(rec: EmotionRecognizer, path: Path, temperature: float) -> Path:
    from emotion_tool.science.calibration import CalibrationOptions, FittedOn, fit_calibration

    k = len(rec.labels)
    cal = fit_calibration(
        np.eye(k), list(range(k)), label_names=rec.labels, model_id=rec.model_id, operating_point="published",
        random_weights=True, options=CalibrationOptions(bias=False, target_precision=None),
        fitted_on=FittedOn(manifest="dev.csv", sha256="0" * 64, items=k, segments=k, protocols=["utterances"], per_class={}),
    )  # fmt: skip
    return cal.model_copy(update={"temperature": temperature}).save(path)


def test_cli_batch_with_a_calibration_names_it_and_refuses_to_mix(tiny_checkpoint, recognizer, archive, tmp_path):
    cal = _calibration_file(recognizer, tmp_path / "cal.json", 0.25)
    out = tmp_path / "r.jsonl"
    cli = [sys.executable, "-m", "emotion_tool.cli", "batch"]
    base = ["--out", str(out), "--model", str(tiny_checkpoint), "--device", "cpu", "--no-progress"]
    done = subprocess.run([*cli, str(archive["speech"]), *base, "--calibration", str(cal)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (row,) = read_table(out)
    calibrated = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", calibration=cal).analyze(archive["speech"])
    note = calibrated.calibration
    assert row["calibration"] == f"{note.source} (sha256 {note.sha256})"
    assert row["p_neutral"] == pytest.approx(calibrated.summary.probabilities["neutral"], abs=1e-6)
    assert row["p_neutral"] != pytest.approx(recognizer.analyze(archive["speech"]).summary.probabilities["neutral"], abs=1e-4)
    other = _calibration_file(recognizer, tmp_path / "other.json", 4.0)
    for extra in ([], ["--calibration", str(other)]):
        refused = subprocess.run([*cli, str(archive["speech"]), str(archive["high"]), *base, *extra], capture_output=True, text=True, timeout=600)
        assert refused.returncode == 2
        line = refused.stderr.strip().splitlines()[-1]
        assert "already holds readings" in line and "calibration" in line and "another --out" in line
    assert len(read_table(out)) == 1


def test_rows_without_a_calibration_say_so(recognizer, archive, tmp_path):
    run_batch(recognizer, collect_items([str(archive["speech"]), str(archive["corrupt"])]), tmp_path / "t.parquet", options=BatchOptions(progress=False))
    assert [r["calibration"] for r in read_table(tmp_path / "t.parquet")] == [None, None]


def test_a_parquet_run_killed_while_combining_does_not_repeat_rows(recognizer, archive, tmp_path):
    out = tmp_path / "t.parquet"
    parts = tmp_path / "t.parquet.parts"
    items = collect_items([str(archive[n]) for n in ("speech", "high", "sentences", "corrupt")])
    writer = TableWriter(out, labels=recognizer.labels, rows_per_part=1)
    for it in items[:2]:
        writer.write(analyze_item(recognizer, it, _decode(it)))
    # As a kill between replacing the table and deleting the parts leaves it: the combined table
    # and the parts it was combined from.
    kept = tmp_path / "kept"
    shutil.copytree(parts, kept)
    writer.close()
    shutil.copytree(kept, parts)
    summary = run_batch(recognizer, items, out, options=BatchOptions(progress=False, rows_per_part=1))
    assert (summary.skipped, summary.written) == (2, 2)
    keys = [r["key"] for r in read_table(out)]
    assert sorted(keys) == sorted(item_key(i) for i in items)  # each recording once
    assert not parts.exists()
