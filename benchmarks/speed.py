"""Speed and memory of emotion-tool, side by side with the way the published model is run today.

    python benchmarks/speed.py                 # table on stdout, JSON in benchmarks/results/

The network is whisper-medium-size with RANDOM weights, written in the published checkpoint layout
with the decoder tensors the published file carries: speed and memory do not depend on the values.
The deviations printed for the fast operating points are measured on these random weights and say
nothing about the published model's; run `emotion-tool agree` on your own audio and the real weights.

Each side runs in a fresh process (cold load and peak memory are per process):
- baseline: what the Hub code does (benchmarks/hub_baseline.py): the whole file incl. decoder,
  transformers WhisperModel, NumPy features, every clip padded to 30 s, batch 1, default threads.
- emotion-tool, exact (the published operating point), then its opt-in operating points: bf16 (the
  encoder in bf16 with fp32 accumulation, heads fp32), trimmed context, int8, and their combinations;
  with OpenVINO installed (`pip install 'emotion-tool[openvino]'`), the encoder through OpenVINO's CPU
  plugin in f32 ("openvino", an exact path) and bf16 ("openvino+bf16"), loaded once before timing (the
  first load converts and caches the model: benchmarks/openvino_load.py times that).

The CPU that produced the figures is printed with them and kept in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

CLIP_S = (1, 5, 15, 30)  # clip lengths measured one by one
RECORDING_S = 60  # the long recording, read with a 2-s / 1-s trace
SR = 16000


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def _timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls after one warm-up call, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


# --- inputs -----------------------------------------------------------------------------------------


def ensure_checkpoint(cache: Path, size: str) -> Path:
    """A random checkpoint in the published layout, decoder tensors included (~3 GB for medium)."""
    ckpt = cache / f"{size}-random-with-decoder"
    if (ckpt / "model.safetensors").is_file():
        return ckpt
    import torch

    from emotion_tool.engine.checkpoint import save_checkpoint
    from emotion_tool.engine.testing import SIZES, random_model
    from hub_baseline import random_decoder_tensors

    print(f"writing a {size}-size RANDOM-weight checkpoint with decoder tensors to {ckpt} ...", file=sys.stderr)
    config = SIZES[size]
    with torch.no_grad():
        model = random_model(config, sensitive=size != "medium")
        save_checkpoint(model, ckpt, random_init=True, extra_tensors=random_decoder_tensors(config))
    return ckpt


def ensure_audio(cache: Path) -> tuple[Path, str]:
    """A 60-s recording of speech with pauses (espeak-ng if present, else synthetic voiced sound)."""
    path = cache / "recording-60s.npy"
    kind_file = cache / "recording-60s.kind"
    if path.is_file() and kind_file.is_file():
        return path, kind_file.read_text()
    import shutil

    if shutil.which("espeak-ng") and shutil.which("sox"):
        sys.path.insert(0, str(HERE.parent / "tests"))
        from helpers import speak_with_pauses

        texts = [
            "I called three times this week and nobody answered",
            "Honestly I am starting to lose my patience with all of this",
            "Could you please check what happened to my refund",
            "Thank you that is a relief to hear",
            "I really did not expect it to take this long",
            "Let us try again tomorrow morning if that works for you",
        ]
        wav_path, _ = speak_with_pauses(tuple(texts), cache / "speech.wav", pause_s=0.6)
        from emotion_tool.audio import load_audio

        speech = load_audio(wav_path)  # 16 kHz mono float32, as the file already is
        kind = "espeak-ng speech with pauses"
    else:
        from emotion_tool.engine.testing import synthetic_voices

        speech = np.concatenate(synthetic_voices(np.random.default_rng(0), 12))
        kind = "synthetic voiced sound (espeak-ng not installed)"
    reps = int(np.ceil(RECORDING_S * SR / len(speech)))
    np.save(path, np.tile(speech, reps)[: RECORDING_S * SR].astype(np.float32))
    kind_file.write_text(kind)
    return path, kind


# --- workers (each in its own process) ----------------------------------------------------------------


def worker_baseline(ckpt: Path, audio: np.ndarray, repeats: int) -> dict:
    from emotion_tool.engine.checkpoint import read_checkpoint
    from emotion_tool.engine.windows import plan_trace
    from hub_baseline import HubStyleRunner

    config = read_checkpoint(ckpt).config
    t = time.perf_counter()
    runner = HubStyleRunner(ckpt, config)
    load_s = time.perf_counter() - t
    clips = {}
    for n in CLIP_S:
        clips[n], _ = _timed(lambda: runner(audio[: n * SR]), repeats)
    spans = plan_trace(len(audio), window_s=2.0, hop_s=1.0) + [(0, 30 * SR), (30 * SR, 60 * SR)]
    t = time.perf_counter()
    for s, e in spans:
        runner(audio[s:e])
    trace_s = time.perf_counter() - t
    return {"load_s": load_s, "clip_s": clips, "trace_s": trace_s, "trace_windows": len(spans), "peak_rss_gb": _peak_rss_gb()}


def worker_ours(ckpt: Path, audio: np.ndarray, repeats: int) -> dict:
    import copy

    import torch

    from emotion_tool import AnalysisOptions, EmotionRecognizer
    from emotion_tool.science.agreement import compare_readings

    t = time.perf_counter()
    rec = EmotionRecognizer.from_pretrained(ckpt, device="cpu")
    load_s = time.perf_counter() - t
    out: dict = {"load_s": load_s, "threads": torch.get_num_threads()}

    def clip_run(r, options):
        times, readings = {}, {}
        for n in CLIP_S:
            times[n], a = _timed(lambda: r.analyze(audio[: n * SR], sample_rate=SR, options=options), repeats)
            readings[n] = a.windows
        return times, readings

    def trace_run(r, options):
        t = time.perf_counter()
        a = r.analyze(audio, sample_rate=SR, options=options)
        return time.perf_counter() - t, [s.reading for s in a.segments if s.reading], a

    exact = AnalysisOptions()
    out["clip_s"], exact_clips = clip_run(rec, exact)
    out["trace_s"], exact_trace, a = trace_run(rec, AnalysisOptions(trace=True))
    out["trace_windows"] = len(a.windows) + len(exact_trace)
    out["peak_rss_gb"] = _peak_rss_gb()  # the exact path's peak, before the fast points load more

    int8 = EmotionRecognizer(copy.deepcopy(rec.model), model_id=rec.model_id, random_weights=True, precision="int8")
    with warnings.catch_warnings():  # a CPU without bf16 units warns; the figures then say how slow
        warnings.simplefilter("ignore")
        bf16 = EmotionRecognizer(copy.deepcopy(rec.model), model_id=rec.model_id, random_weights=True, precision="bf16")
    fast = {}
    for name, r, options in (
        ("bf16", bf16, exact),
        ("trimmed", rec, AnalysisOptions(context="trimmed")),
        ("trimmed+bf16", bf16, AnalysisOptions(context="trimmed")),
        ("int8", int8, exact),
        ("trimmed+int8", int8, AnalysisOptions(context="trimmed")),
    ):
        times, readings = clip_run(r, options)
        fast[name] = {"clip_s": times, "deviation": _deviation(compare_readings, exact_clips, readings)}
    for name, r, options in (
        ("shared-encoder", rec, AnalysisOptions(trace=True, trace_mode="shared-encoder")),
        ("trimmed+int8+shared-encoder", int8, AnalysisOptions(trace=True, trace_mode="shared-encoder", context="trimmed")),
    ):
        seconds, readings, _ = trace_run(r, options)
        p, agree, mean_d, max_d = compare_readings(exact_trace, readings)
        fast[name] = {"trace_s": seconds, "deviation": {"max_probability_diff": p, "label_agreement": agree, "mean_dim_diff": mean_d, "max_dim_diff": max_d, "readings": len(readings)}}
    del bf16, int8
    try:
        import openvino  # noqa: F401
    except ImportError:
        print("OpenVINO not installed: its points are left out (pip install 'emotion-tool[openvino]')", file=sys.stderr)
    else:
        for name in ("openvino", "openvino+bf16"):
            r = EmotionRecognizer.from_pretrained(ckpt, device="cpu", operating_point=name)
            times, readings = clip_run(r, exact)
            fast[name] = {"clip_s": times, "deviation": _deviation(compare_readings, exact_clips, readings)}
            del r
    out["fast"] = fast
    return out


def _machine() -> dict:
    from emotion_tool.engine.operating_point import cpu_features, cpu_model

    return {
        "cpus": os.cpu_count(), "cpu_model": cpu_model(), "cpu": cpu_features().describe(),
        "platform": platform.platform(), "python": platform.python_version(),
    }  # fmt: skip


def _deviation(compare, exact: dict, fast: dict) -> dict:
    e = [r for n in CLIP_S for r in exact[n]]
    f = [r for n in CLIP_S for r in fast[n]]
    p, agree, mean_d, max_d = compare(e, f)
    return {"max_probability_diff": p, "label_agreement": agree, "mean_dim_diff": mean_d, "max_dim_diff": max_d, "readings": len(f)}


def _run_worker(name: str, ckpt: Path, audio_path: Path, repeats: int) -> dict:
    print(f"running {name} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--checkpoint", str(ckpt), "--audio", str(audio_path), "--repeats", str(repeats)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- report ----------------------------------------------------------------------------------------


def _table(base: dict, ours: dict) -> str:
    rows = [("", "baseline (Hub code)", "emotion-tool exact", "ratio")]
    rows.append(("cold load", f"{base['load_s']:.1f} s", f"{ours['load_s']:.1f} s", f"{ours['load_s'] / base['load_s']:.2f}"))
    rows.append(("peak RSS", f"{base['peak_rss_gb']:.2f} GB", f"{ours['peak_rss_gb']:.2f} GB", f"{ours['peak_rss_gb'] / base['peak_rss_gb']:.2f}"))
    for n in CLIP_S:
        b, o = base["clip_s"][str(n)], ours["clip_s"][str(n)]
        rows.append((f"{n}-s clip (RTF)", f"{b:.2f} s ({b / n:.2f})", f"{o:.2f} s ({o / n:.2f})", f"{o / b:.2f}"))
    rows.append(
        (
            f"{RECORDING_S}-s trace, 2 s / 1 s",
            f"{base['trace_s']:.1f} s ({base['trace_windows']} passes)",
            f"{ours['trace_s']:.1f} s ({ours['trace_windows']} windows)",
            f"{ours['trace_s'] / base['trace_s']:.2f}",
        )
    )
    lines = _format(rows)
    fast_rows = [("fast operating point", "time", "speed-up vs exact", "max Δp", "labels agree", "mean Δdim")]
    for name, f in ours["fast"].items():
        d = f["deviation"]
        if "clip_s" in f:
            for n in CLIP_S:
                t = f["clip_s"][str(n)]
                fast_rows.append((f"{name}, {n}-s clip", f"{t:.2f} s", f"{ours['clip_s'][str(n)] / t:.1f}x", "", "", ""))
            fast_rows.append((f"{name}, all clips", "", "", f"{d['max_probability_diff']:.4f}", f"{d['label_agreement']:.0%}", f"{d['mean_dim_diff']:.4f}"))
        else:
            t = f["trace_s"]
            fast_rows.append(
                (f"{name}, {RECORDING_S}-s trace", f"{t:.1f} s", f"{ours['trace_s'] / t:.1f}x", f"{d['max_probability_diff']:.4f}", f"{d['label_agreement']:.0%}", f"{d['mean_dim_diff']:.4f}")
            )
    return "\n".join(lines + [""] + _format(fast_rows))


def _format(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=HERE / ".cache", help="where the random checkpoint and audio are kept")
    p.add_argument("--out", type=Path, default=HERE / "results" / "speed-cpu.json")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per clip (after one warm-up)")
    p.add_argument("--size", choices=("medium", "tiny"), default="medium", help="tiny: a quick check that the script runs")
    p.add_argument("--worker", choices=("baseline", "ours"), help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--audio", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        audio = np.load(args.audio)
        fn = worker_baseline if args.worker == "baseline" else worker_ours
        print(json.dumps(fn(args.checkpoint, audio, args.repeats)))
        return 0

    args.cache.mkdir(parents=True, exist_ok=True)
    ckpt = ensure_checkpoint(args.cache, args.size)
    audio_path, audio_kind = ensure_audio(args.cache)
    base = _run_worker("baseline", ckpt, audio_path, args.repeats)
    ours = _run_worker("ours", ckpt, audio_path, args.repeats)
    report = {
        "note": f"RANDOM weights ({args.size} size): speed and memory are representative at medium size; deviations are not the published model's",
        "size": args.size,
        "machine": _machine(),
        "audio": audio_kind,
        "baseline": base,
        "emotion_tool": ours,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(f"RANDOM weights, {args.size} size; {os.cpu_count()} CPUs, {ours['threads']} threads; CPU: {m['cpu_model']} ({m['cpu']}); audio: {audio_kind}\n")
    print(_table(json.loads(json.dumps(base)), json.loads(json.dumps(ours))))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
