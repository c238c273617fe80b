"""Batch analysis on a local Ray instance (loopback, 2 CPUs): the local run's table, resumption, errors."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray's import: it then binds 127.0.0.1
ray = pytest.importorskip("ray", reason="the Ray path needs the ray extra: pip install 'emotion-tool[ray]'")

from emotion_tool import AnalysisOptions, EmotionRecognizer  # noqa: E402
from emotion_tool.jobs.batch import BatchOptions, collect_items, read_table, run_batch  # noqa: E402
from emotion_tool.jobs.batch_ray import RayOptions, run_batch_ray  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    """One Ray instance for the module, reachable on 127.0.0.1 only."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(audio_dir: Path, speech_wav: Path, sentences_wav) -> list[str]:
    folder = audio_dir / "ray-archive"
    folder.mkdir(exist_ok=True)
    shutil.copy(speech_wav, folder / "speech.wav")
    shutil.copy(sentences_wav[0], folder / "sentences.wav")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + os.urandom(100))
    sf.write(folder / "short.wav", np.zeros(3200, dtype=np.float32), 16000)
    return [str(folder / n) for n in ("speech.wav", "sentences.wav", "corrupt.wav", "short.wav", "missing.wav")]


def _rows(path):
    return {(r["key"], r["kind"], r["segment"]): r for r in read_table(path)}


def test_ray_binds_loopback_only(local_ray):
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert ray.cluster_resources()["CPU"] == 2
    if shutil.which("ss"):
        listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines()
        ours = [line for line in listening if any(f"({name}" in line or f'"{name}' in line for name in ("gcs_server", "raylet", "ray::"))]
        hosts = {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in ours}
        assert ours and hosts <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, ours


def test_ray_table_equals_local_and_resumes(local_ray, tiny_checkpoint, clips, tmp_path):
    import torch

    options = AnalysisOptions(trace=True)
    loader = functools.partial(EmotionRecognizer.from_pretrained, str(tiny_checkpoint), device="cpu", options=options)
    rec = loader()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a 1-CPU actor: the same summation order, so the same bits
    try:
        run_batch(rec, collect_items(clips), tmp_path / "local.jsonl", options=BatchOptions(progress=False))
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "ray.parquet"
    kwargs = dict(labels=rec.labels, model_id=rec.model_id, operating_point=rec.operating_point(), max_duration_s=3600.0,
                  ray_options=RayOptions(actors=1), options=BatchOptions(progress=False, rows_per_part=2))  # fmt: skip
    first = run_batch_ray(loader, collect_items(clips[:2]), out, **kwargs)
    assert (first.written, first.failed) == (2, 0)
    second = run_batch_ray(loader, collect_items(clips), out, **kwargs)
    assert (second.skipped, second.written, second.failed) == (2, 3, 3)
    ray_rows, local_rows = _rows(out), _rows(tmp_path / "local.jsonl")
    assert ray_rows == local_rows
    errors = {Path(r["audio"]).name: r["error"].split(":")[0] for r in ray_rows.values() if r["error"]}
    assert errors == {"corrupt.wav": "decode", "short.wav": "too_short", "missing.wav": "not_found"}
    assert any(k[1] == "segment" for k in ray_rows)


def test_an_actor_reads_the_recordings_of_a_call_in_shared_batches(tiny_checkpoint, clips):
    """The actor alone (no cluster needed): one call's recordings share forward passes and read as alone."""
    import pyarrow as pa

    from emotion_tool.jobs.batch import analyze_item
    from emotion_tool.jobs.batch_ray import _Analyzer, _decode_row, _item_of

    loader = functools.partial(EmotionRecognizer.from_pretrained, str(tiny_checkpoint), device="cpu", options=AnalysisOptions(batch_size=4))
    actor = _Analyzer(loader)
    source = [{"audio": c, "start_s": None, "end_s": None, "label": None, "line": 0} for c in clips]
    decoded = [_decode_row(r, max_duration_s=3600.0) for r in source]
    sizes: list[int] = []
    handle = actor.rec.model.whisper.encoder.register_forward_hook(lambda module, args, out: sizes.append(int(out.shape[0])))
    try:
        table = actor(pa.Table.from_pylist(decoded))
    finally:
        handle.remove()
    assert sizes == [2]  # speech and sentences (one window each) in one pass; the other three do not decode or are too short
    alone = [r for row in decoded for r in analyze_item(
        actor.rec, _item_of(row), row["decode_error"] or np.frombuffer(row["wav"], dtype=np.float32))]  # fmt: skip
    got = {(r["key"], r["kind"]): r for r in table.to_pylist()}
    want = {(r["key"], r["kind"]): r for r in alone}
    assert got.keys() == want.keys()
    for k, r in want.items():
        for col, v in r.items():
            assert got[k][col] == (pytest.approx(v, abs=1e-5) if isinstance(v, float) else v), col
