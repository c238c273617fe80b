"""Live latency: a multi-utterance recording replayed at real time through the streaming analyzer.

    python benchmarks/live.py                  # table on stdout, JSON in benchmarks/results/live-cpu.json
    python benchmarks/live.py --size tiny      # a quick check that the script runs
    python benchmarks/live.py --points published,openvino+bf16,live --refine live:openvino+bf16
                                               # with a refinement: a fast reading, then the faithful one

The network is whisper-medium-size with RANDOM weights (speed does not depend on the values). Each
operating point gets the same espeak-ng recording, fed in 20-ms chunks on the wall clock as a
microphone would, through `StreamingAnalyzer` (silero-vad, one reading per utterance). Also run: a
Hub-style baseline (the Hub code's one padded fp32 pass per utterance, transformers' feature
extractor, behind the same segmenter) and, for the whole-file figure, a 5-s clip analysed at the
published point and in bf16.

Per point: p50/p95 latency (from each utterance's last voiced frame to its reading, so the closing
pause of `min_silence_ms` counts), real-time factor (seconds spent reading / seconds of audio),
audio dropped by a full queue, and the deviation of its readings from the published point's on the
same utterances (random weights: see benchmarks/real_encoder.py for a trained encoder).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

SR = 16000
CHUNK_S = 0.02  # what a microphone callback hands over
TEXTS = (
    "I called three times this week and nobody answered",
    "Could you please check what happened to my refund",
    "Thank you, that is a relief to hear",
    "Let us try again tomorrow morning if that works for you",
)
PAUSE_S = 2.0  # between turns, as a voice agent's user leaves room for the reply
POINTS = ("published", "bf16", "int8", "trimmed", "trimmed+bf16", "trimmed+int8")
READ_AHEAD_POINTS = ("trimmed+bf16", "trimmed+int8")  # cheap reads: a read wasted on a short pause costs little
AHEAD = ", read ahead"


def recording(cache: Path, texts: tuple[str, ...] = TEXTS, *, name: str = "live.wav", pause_s: float = PAUSE_S, tail_s: float = PAUSE_S) -> np.ndarray:
    """espeak-ng sentences `pause_s` apart at 16 kHz (cached in `cache/name`), then `tail_s` of silence."""
    import soundfile as sf

    sys.path.insert(0, str(HERE.parent / "tests"))
    from helpers import speak_with_pauses

    cache.mkdir(parents=True, exist_ok=True)
    path, _ = speak_with_pauses(texts, cache / name, pause_s=pause_s)
    wav, sr = sf.read(path, dtype="float32")
    assert sr == SR
    return np.concatenate([wav, np.zeros(int(tail_s * SR), np.float32)])


class _Timed:
    """Wraps a classifier and adds up the seconds its reads take."""

    def __init__(self, inner):
        self.inner = inner
        self.seconds = 0.0

    def __getattr__(self, name):  # operating_point, labels, ...: the wrapped classifier's
        return getattr(self.inner, name)

    def classify_batch(self, waveforms, *, min_confidence=None):
        t = time.perf_counter()
        try:
            return self.inner.classify_batch(waveforms, min_confidence=min_confidence)
        finally:
            self.seconds += time.perf_counter() - t


class _HubStyle:
    """The Hub code's way, behind the same segmenter: one padded fp32 pass per utterance."""

    def __init__(self, ckpt: Path):
        from emotion_tool.engine.checkpoint import read_checkpoint
        from hub_baseline import HubStyleRunner

        self.config = read_checkpoint(ckpt).config
        self.runner = HubStyleRunner(ckpt, self.config)

    def classify_batch(self, waveforms, *, min_confidence=None):
        from emotion_tool.engine.results import EmotionReading

        out = []
        for w in waveforms:
            p, d = self.runner(w)
            out.append(EmotionReading.from_outputs(p, d, labels=self.config.labels, start_s=0.0, end_s=len(w) / SR, min_confidence=min_confidence or 0.5))
        return out


def _percentiles(lat: list[float]) -> tuple[float | None, float | None]:
    return (float(np.percentile(lat, 50)), float(np.percentile(lat, 95))) if lat else (None, None)


def replay(classifier, wav: np.ndarray, *, read_ahead: bool = False, refine_with=None) -> dict:
    """Feeds `wav` at real time; returns latencies, RTF, dropped audio and the readings.

    With `refine_with` (a refinement: `StreamingAnalyzer(classifier, refine_with=...)`) the latencies are the
    fast readings', and `refined_*` those of the faithful readings that replace them (both from the end of
    speech); the readings kept are the faithful ones.
    """
    from emotion_tool.live.streaming import StreamingAnalyzer, StreamOptions

    timed = _Timed(classifier)
    timed_refine = _Timed(refine_with) if refine_with is not None else None
    chunk = int(CHUNK_S * SR)
    seen = []
    with StreamingAnalyzer(timed, options=StreamOptions(read_ahead=read_ahead), refine_with=timed_refine) as an:
        start = time.monotonic()
        for i, k in enumerate(range(0, len(wav), chunk)):
            delay = start + i * CHUNK_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            an.feed(wav[k : k + chunk])
            seen += an.poll()
        fed_s = time.monotonic() - start
        seen += an.flush()
        readings = an.trace
        dropped = an.dropped_s
    if timed_refine is None:
        lat = [u.latency_s for u in readings]
    else:
        lat = [u.latency_s for u in seen if u.refined is False and not u.interim]
    p50, p95 = _percentiles(lat)
    out = {
        "utterances": len(readings),
        "latency_s": lat,
        "p50_latency_s": p50,
        "p95_latency_s": p95,
        "rtf": (timed.seconds + (timed_refine.seconds if timed_refine else 0.0)) / (len(wav) / SR),
        "dropped_s": dropped,
        "replay_s": fed_s,
        "spans": [(u.start_s, u.end_s) for u in readings],
        "_readings": [u.reading for u in readings],
    }
    if timed_refine is not None:
        refined = [u.latency_s for u in seen if u.refined is True]
        out["refined_latency_s"] = refined
        out["refined_p50_latency_s"], out["refined_p95_latency_s"] = _percentiles(refined)
        out["refined_all"] = len(refined) == len(readings) and all(u.refined for u in readings)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=HERE / ".cache")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/live-cpu.json (live-cpu-tiny.json for --size tiny)")
    p.add_argument("--size", choices=("medium", "tiny"), default="medium")
    p.add_argument("--points", default=",".join(POINTS), help="comma-separated operating points to replay")
    p.add_argument("--no-baseline", action="store_true", help="skip the Hub-style baseline")
    p.add_argument("--read-ahead-points", default=",".join(READ_AHEAD_POINTS),
                   help="points replayed once more with StreamOptions(read_ahead=True) (reading during the closing pause); '' for none")
    p.add_argument("--refine", default="",
                   help="comma-separated FAST:FAITHFUL pairs replayed as a refinement (StreamingAnalyzer(fast, refine_with=faithful)), "
                   "e.g. live:published,live:openvino+bf16; '' for none (the default)")
    args = p.parse_args()
    out = args.out or HERE / "results" / ("live-cpu.json" if args.size == "medium" else "live-cpu-tiny.json")

    import torch

    from emotion_tool.science.agreement import compare_readings
    from emotion_tool.engine.operating_point import OperatingPoint, cpu_features, cpu_model
    from emotion_tool.engine.recognizer import EmotionRecognizer
    from speed import ensure_checkpoint

    ckpt = ensure_checkpoint(args.cache, args.size)
    wav = recording(args.cache)
    five = wav[:5 * SR] if len(wav) >= 5 * SR else wav
    points = [str(OperatingPoint.parse(n)) for n in args.points.split(",")]
    ahead_points = {str(OperatingPoint.parse(n)) for n in args.read_ahead_points.split(",") if n.strip()}
    refinements = []
    for pair in (x.strip() for x in args.refine.split(",") if x.strip()):
        if pair.count(":") != 1:
            p.error(f"--refine {pair!r}: give FAST:FAITHFUL, e.g. live:published")
        fast_name, faithful_name = (str(OperatingPoint.parse(n)) for n in pair.split(":"))
        refinements.append((fast_name, faithful_name))
    results: dict[str, dict] = {}
    clip: dict[str, dict] = {}

    def load(name: str) -> EmotionRecognizer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return EmotionRecognizer.from_pretrained(ckpt, device="cpu", operating_point=name)

    def clip_time(rec: EmotionRecognizer) -> tuple[float, object]:
        a = rec.analyze(five, sample_rate=SR)  # warm-up
        times = []
        for _ in range(3):
            t = time.perf_counter()
            a = rec.analyze(five, sample_rate=SR)
            times.append(time.perf_counter() - t)
        return statistics.median(times), a

    if not args.no_baseline:
        print("replaying: Hub-style baseline ...", file=sys.stderr, flush=True)
        hub = _HubStyle(ckpt)
        results["hub-style baseline"] = replay(hub, wav)
        del hub
        gc.collect()
    for name in points:
        print(f"replaying: {name} ...", file=sys.stderr, flush=True)
        rec = load(name)
        if name in ("published", "bf16"):
            seconds, a = clip_time(rec)
            clip[name] = {"seconds": seconds, "reading": a.summary}
        results[name] = replay(rec, wav)
        if name in ahead_points:
            print(f"replaying: {name}{AHEAD} ...", file=sys.stderr, flush=True)
            results[name + AHEAD] = replay(rec, wav, read_ahead=True)
        del rec
        gc.collect()
    for fast_name, faithful_name in refinements:
        name = f"{fast_name}, refined at {faithful_name}"
        print(f"replaying: {name} ...", file=sys.stderr, flush=True)
        fast_rec, faithful_rec = load(fast_name), load(faithful_name)
        faithful_rec.classify_batch([five])  # warm-up: the refiner's first read would otherwise pay for it
        results[name] = replay(fast_rec, wav, refine_with=faithful_rec)
        del fast_rec, faithful_rec
        gc.collect()

    ref = results.get("published")
    for name, r in results.items():
        if ref is None or name == "published" or r["utterances"] != ref["utterances"]:
            r["deviation"] = None
            continue
        dp, agree, mean_d, max_d = compare_readings(ref["_readings"], r["_readings"])
        r["deviation"] = {"max_probability_diff": dp, "label_agreement": agree, "mean_dim_diff": mean_d, "max_dim_diff": max_d}
    clip_report = {k: {"seconds": v["seconds"]} for k, v in clip.items()}
    if "published" in clip and "bf16" in clip:
        dp, agree, mean_d, max_d = compare_readings([clip["published"]["reading"]], [clip["bf16"]["reading"]])
        clip_report["bf16_speedup"] = clip["published"]["seconds"] / clip["bf16"]["seconds"]
        clip_report["bf16_deviation"] = {"max_probability_diff": dp, "label_agreement": agree, "mean_dim_diff": mean_d}
    real_path = HERE / "results" / "real-encoder.json"
    real = json.loads(real_path.read_text())["points"] if real_path.is_file() else {}
    report = {
        "note": f"RANDOM weights ({args.size} size); deviations on a trained encoder: benchmarks/results/real-encoder.json",
        "size": args.size,
        "recording_s": len(wav) / SR,
        "recording": f"{len(TEXTS)} espeak-ng sentences, {PAUSE_S:g}-s pauses",
        "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "cpu_model": cpu_model(), "cpu": cpu_features().describe(), "platform": platform.platform(), "torch": torch.__version__},
        "clip_5s_padded": clip_report,
        "points": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in results.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"RANDOM weights, {args.size} size; {report['machine']['cpus']} CPUs, {report['machine']['threads']} threads; CPU: {report['machine']['cpu_model']} ({report['machine']['cpu']})")
    print(f"recording: {report['recording']}, {report['recording_s']:.1f} s, replayed at real time in {CHUNK_S * 1000:g}-ms chunks\n")
    if "bf16_speedup" in clip_report:
        d = clip_report["bf16_deviation"]
        print(f"5-s clip, padded to 30 s: published {clip_report['published']['seconds']:.2f} s, bf16 {clip_report['bf16']['seconds']:.2f} s "
              f"= {clip_report['bf16_speedup']:.2f}x (random weights: max Δp {d['max_probability_diff']:.4f}, labels {d['label_agreement']:.0%}, mean Δdim {d['mean_dim_diff']:.4f})\n")  # fmt: skip
    rows = [("point", "utterances", "p50 latency", "p95 latency", "RTF", "dropped", "max Δp", "labels", "mean Δdim", "trained enc: pooled cos", "frame cos min")]
    for name, r in results.items():
        d = r.get("deviation")
        e = real.get(name.removesuffix(AHEAD))
        rows.append((
            name, str(r["utterances"]), f"{r['p50_latency_s']:.2f} s", f"{r['p95_latency_s']:.2f} s", f"{r['rtf']:.2f}", f"{r['dropped_s']:.1f} s",
            f"{d['max_probability_diff']:.4f}" if d else "", f"{d['label_agreement']:.0%}" if d else "", f"{d['mean_dim_diff']:.4f}" if d else "",
            f"{e['pooled_cosine_min']:.4f}" if e else ("1" if name == "published" else ""), f"{e['frame_cosine_min']:.4f}" if e else "",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(lines))
    refined_rows = [("refinement", "fast p50", "fast p95", "faithful p50", "faithful p95", "all replaced")]
    for name, r in results.items():
        if "refined_latency_s" in r and r["refined_p50_latency_s"] is not None:
            refined_rows.append((
                name, f"{r['p50_latency_s']:.2f} s", f"{r['p95_latency_s']:.2f} s", f"{r['refined_p50_latency_s']:.2f} s",
                f"{r['refined_p95_latency_s']:.2f} s", "yes" if r["refined_all"] else "no",
            ))  # fmt: skip
    if len(refined_rows) > 1:
        widths = [max(len(r[i]) for r in refined_rows) for i in range(len(refined_rows[0]))]
        table = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in refined_rows]
        table.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        print("\nlatency of both readings (from the end of speech; the faithful one replaces the fast one):")
        print("\n".join(table))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
