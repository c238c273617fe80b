"""The speed benchmark: its baseline computes what the engine computes, and the script runs.

Timings are not asserted here; benchmarks/speed.py measures them.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))


def test_hub_style_baseline_matches_the_engine(tmp_path, recognizer, speech_wav):
    import torch

    from emotion_tool.engine.checkpoint import save_checkpoint
    from hub_baseline import HubStyleRunner, random_decoder_tensors

    config = recognizer.model.config
    ckpt = save_checkpoint(recognizer.model, tmp_path / "with-decoder", random_init=True, extra_tensors=random_decoder_tensors(config))
    with torch.no_grad():
        runner = HubStyleRunner(ckpt, config)
    assert any(n.startswith("whisper.decoder.") for n in runner.model.state_dict())  # loaded, as the Hub code does
    wav, _ = sf.read(speech_wav, dtype="float32")
    p, d = runner(wav)
    r = recognizer.classify_batch([wav])[0]
    np.testing.assert_allclose(list(r.probabilities.values()), p, atol=2e-4)
    np.testing.assert_allclose([r.valence, r.arousal, r.dominance], d, atol=2e-4)


@pytest.mark.subprocess
def test_speed_script_runs_on_a_tiny_network(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "speed.py"), "--size", "tiny", "--repeats", "1", "--cache", str(tmp_path / "cache"), "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM weights" in proc.stdout and "| cold load" in proc.stdout and "shared-encoder, 60-s trace" in proc.stdout
    report = json.loads(out.read_text())
    for side in ("baseline", "emotion_tool"):
        assert set(report[side]) >= {"load_s", "peak_rss_gb", "clip_s", "trace_s"}
        assert set(report[side]["clip_s"]) == {"1", "5", "15", "30"}
    expected = {"bf16", "trimmed", "trimmed+bf16", "int8", "trimmed+int8", "shared-encoder", "trimmed+int8+shared-encoder"}
    try:
        import openvino  # noqa: F401
    except ImportError:
        pass
    else:  # its f32 path is exact, its bf16 close; both timed beside the torch points
        expected |= {"openvino", "openvino+bf16"}
        assert report["emotion_tool"]["fast"]["openvino"]["deviation"]["max_probability_diff"] < 1e-4
        assert report["emotion_tool"]["fast"]["openvino+bf16"]["deviation"]["label_agreement"] is not None
    assert set(report["emotion_tool"]["fast"]) == expected
    assert report["machine"]["cpu_model"] and "CPU: " in proc.stdout
    assert report["emotion_tool"]["trace_windows"] >= 59


def test_batch_script_runs_on_a_tiny_network(tmp_path):
    out = tmp_path / "batch.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "batch.py"), "--clips", "2", "--no-ray", "--cache", str(tmp_path / "cache"), "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["workers"] for r in report["results"]] == [0, 1, 2, 1, 2]
    assert all(r["recordings"] == 2 and r["failed"] == 0 and r["audio_s"] > 1 for r in report["results"])


def test_load_script_runs_clients_against_a_spawned_server(tmp_path):
    """benchmarks/load.py end to end, briefly: every admitted call returns; a small queue answers some "busy";
    a hostile client beside the load gets an answer to each of its requests and the load still returns."""
    out = subprocess.run(
        [sys.executable, str(BENCH / "load.py"), "--spawn", "--clients", "4", "--max-pending", "1", "--duration", "3", "--hostile", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("load-*.json")]
    load = report["load"]
    assert report["random_weights"] and load["clients"] == 4 and load["lost"] == 0 and load["errors"] == 0
    assert load["every_admitted_call_returned"] and load["answered"] >= 1 and 0 <= load["busy_share"] <= 1
    beside = report["load_with_hostile_client"]
    assert beside["every_admitted_call_returned"] and beside["answered"] >= 1 and beside["lost"] == 0
    assert beside["hostile"]["sent"] >= 12 and beside["hostile"]["unanswered"] == 0, beside["hostile"]
    assert "RANDOM weights" in out.stdout and "hostile client:" in out.stdout


@pytest.mark.subprocess
def test_encoder_paths_script_measures_each_path_against_fp32(tmp_path):
    out = tmp_path / "paths.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "encoder_paths.py"), "--size", "tiny", "--repeats", "1", "--no-compile", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RANDOM weights" in proc.stdout
    report = json.loads(out.read_text())
    rows = {r["path"]: r for r in report["paths"]}
    published = rows["fp32, eager (published)"]
    assert published["max_abs_diff"] == 0.0 and published["cosine"] == pytest.approx(1.0, abs=1e-6)
    # The reduced-precision paths move the states, a little: the script measures, it does not assume.
    for name in ("bf16, attention in fp32", "bf16, attention in bf16", "int8, torch.ao dynamic (operating point int8)"):
        assert 0 < rows[name]["max_abs_diff"] < 1 and rows[name]["cosine"] > 0.99, name
    assert report["kernels"].startswith("bf16 encoders attend in ")  # which of the two this CPU runs
    if "fp32, OpenVINO (operating point openvino)" in rows:  # OpenVINO installed: its f32 is exact, its bf16 close
        assert rows["fp32, OpenVINO (operating point openvino)"]["max_abs_diff"] < 1e-4
        assert 0 < rows["bf16, OpenVINO (operating point openvino+bf16)"]["max_abs_diff"] < 1
    assert not any("torch.compile" in name for name in rows)


@pytest.mark.subprocess
def test_live_script_replays_points_and_reads_ahead(tmp_path):
    out = tmp_path / "live.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "live.py"), "--size", "tiny", "--points", "published,live", "--no-baseline",
         "--read-ahead-points", "live", "--refine", "live:published", "--cache", str(tmp_path / "cache"), "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RANDOM weights" in proc.stdout and "CPU: " in proc.stdout
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_model"]  # every table names the CPU that produced it
    points = report["points"]
    assert set(points) == {"published", "trimmed+bf16", "trimmed+bf16, read ahead", "trimmed+bf16, refined at published"}
    assert points["published"]["utterances"] == 4 and all(p["dropped_s"] == 0 for p in points.values())
    # Reading ahead changes when a reading is ready, not what it says.
    assert points["trimmed+bf16, read ahead"]["deviation"] == points["trimmed+bf16"]["deviation"]
    # A refinement has both readings' latencies, and keeps the faithful ones: the published point's numbers.
    refined = points["trimmed+bf16, refined at published"]
    assert len(refined["latency_s"]) == len(refined["refined_latency_s"]) == 4 and refined["refined_all"]
    assert refined["deviation"]["max_probability_diff"] < 1e-5
    assert "latency of both readings" in proc.stdout


@pytest.mark.subprocess
def test_openvino_load_script_times_a_converting_and_a_cached_load(tmp_path):
    pytest.importorskip("openvino", reason="pip install 'emotion-tool[openvino]'")
    out = tmp_path / "loads.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "openvino_load.py"), "--size", "tiny", "--out", str(out)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    loads = json.loads(out.read_text())["loads"]
    assert loads["openvino+bf16, empty cache"]["source"] == "converted"
    assert loads["openvino+bf16, from the cache"]["source"].startswith("read from the cache")
    assert loads["torch, published"]["source"] == "torch" and "RANDOM weights" in proc.stdout


@pytest.mark.subprocess
def test_utterance_path_script_breaks_one_reading_into_its_parts(tmp_path):
    out = tmp_path / "path.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "utterance_path.py"), "--size", "tiny", "--points", "published,live", "--repeats", "1",
         "--cache", str(tmp_path / "cache"), "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RANDOM weights" in proc.stdout and "CPU: " in proc.stdout
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_model"] and report["closing_pause_s"] == 0.5
    points = report["points"]
    assert set(points) == {"published", "trimmed+bf16"}
    assert points["published"]["frames"] == 1500 and points["trimmed+bf16"]["frames"] < 1500  # the padded context, and the trimmed one
    for r in points.values():
        assert all(r[k] > 0 for k in ("features_s", "encoder_s", "pooling_heads_s", "read_s")) and r["rest_s"] >= 0
