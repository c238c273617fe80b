"""Where one utterance's time goes, from the end of speech to its reading, at each operating point.

    python benchmarks/utterance_path.py                # medium size; table on stdout, JSON in benchmarks/results/
    python benchmarks/utterance_path.py --size tiny    # a quick check that the script runs

The network is whisper-medium-size with RANDOM weights (speed does not depend on the values). One 3-s
espeak-ng utterance (synthetic voiced sound where espeak-ng is missing) is read the way the streaming
analyzer reads it (`classify_batch`, one window), after a warm-up, best of `--repeats`, and its parts
are timed on their own in the same process:

- the closing pause: the streaming analyzer waits `min_silence_ms` (500 ms) of silence before an
  utterance counts as ended (reading ahead starts the read `speech_pad_ms`, 100 ms, into that pause);
- features: the log-mel spectrogram of the waveform padded to 30 s;
- encoder: one pass over the padded 3000 mel frames (1500 states), or the utterance's own frames at a
  trimmed point;
- pooling and heads: the ECAPA-TDNN, the hybrid attention pooling and the heads over those states;
- the rest: what `classify_batch` spends beyond these (padding, copies, the reading's fields).

The sum of the pause and the read is what a reading costs with nothing else running; live replays
(`benchmarks/live.py`) add the queues, the VAD and whatever else shares the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

SR = 16000
POINTS = ("published", "bf16", "openvino+bf16", "live")
UTTERANCE = "Could you please check what happened to my refund"


def utterance(cache: Path) -> tuple[np.ndarray, str]:
    """About 3 s of espeak-ng speech at 16 kHz (cached), or synthetic voiced sound without espeak-ng."""
    import shutil

    if shutil.which("espeak-ng") and shutil.which("sox"):
        sys.path.insert(0, str(HERE.parent / "tests"))
        from helpers import speak, voiced

        cache.mkdir(parents=True, exist_ok=True)
        return voiced(speak(UTTERANCE, cache / "utterance.wav")), "espeak-ng speech"
    from emotion_tool.engine.testing import synthetic_voices

    return np.concatenate(synthetic_voices(np.random.default_rng(0), 3))[: 3 * SR], "synthetic voiced sound (espeak-ng not installed)"


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(rec, wav: np.ndarray, repeats: int) -> dict:
    import torch

    from emotion_tool.engine.features import log_mel_spectrogram, pad_or_trim

    cfg = rec.model.config.features
    trimmed = rec.point.context == "trimmed"

    def features():
        return log_mel_spectrogram(torch.from_numpy(pad_or_trim(wav, cfg.n_samples)[None]).to(rec.device), cfg)

    with torch.inference_mode():
        feats = features()
        if trimmed:
            feats = feats[..., : 2 * rec._frames(len(wav))]
        feats = feats.to(rec._encoder_dtype)
        hidden = rec.model.whisper.encoder(feats)
        out = {
            "features_s": _best(features, repeats),
            "encoder_s": _best(lambda: rec.model.whisper.encoder(feats), repeats),
            "pooling_heads_s": _best(lambda: rec.model.heads(rec.model.embed(hidden.to(rec.dtype))), repeats),
            "frames": int(hidden.shape[1]),
        }
    out["read_s"] = _best(lambda: rec.classify_batch([wav]), repeats)
    out["rest_s"] = max(0.0, out["read_s"] - out["features_s"] - out["encoder_s"] - out["pooling_heads_s"])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=HERE / ".cache")
    p.add_argument("--size", choices=("medium", "tiny"), default="medium")
    p.add_argument("--points", default=",".join(POINTS), help="comma-separated operating points (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per part after a warm-up (default 3)")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/utterance-path-cpu.json (…-tiny.json for --size tiny)")
    args = p.parse_args()
    out_path = args.out or HERE / "results" / ("utterance-path-cpu.json" if args.size == "medium" else "utterance-path-cpu-tiny.json")

    import torch

    from emotion_tool.engine.operating_point import OperatingPoint, cpu_features, cpu_model
    from emotion_tool.engine.recognizer import EmotionRecognizer
    from emotion_tool.live.segmenter import StreamOptions
    from speed import ensure_checkpoint

    ckpt = ensure_checkpoint(args.cache, args.size)
    wav, kind = utterance(args.cache)
    vad = StreamOptions().vad
    pause_s, ahead_s = vad.min_silence_ms / 1000, (vad.min_silence_ms - vad.speech_pad_ms) / 1000
    rows = {}
    for name in (str(OperatingPoint.parse(n)) for n in args.points.split(",") if n.strip()):
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rec = EmotionRecognizer.from_pretrained(ckpt, device="cpu", operating_point=name)
        except (ImportError, ValueError) as e:  # e.g. OpenVINO not installed
            print(f"  left out: {e}", file=sys.stderr)
            continue
        rows[name] = measure(rec, wav, args.repeats)
        del rec
    report = {
        "note": f"RANDOM weights ({args.size} size): speed does not depend on the values",
        "size": args.size,
        "utterance_s": len(wav) / SR,
        "audio": kind,
        "closing_pause_s": pause_s,
        "pause_left_when_reading_ahead_s": ahead_s,
        "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "cpu_model": cpu_model(), "cpu": cpu_features().describe(), "platform": platform.platform(), "torch": torch.__version__},
        "points": rows,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")

    m = report["machine"]
    print(f"RANDOM weights, {args.size} size; {m['cpus']} CPUs, {m['threads']} threads; CPU: {m['cpu_model']} ({m['cpu']})")
    print(f"one {report['utterance_s']:.1f}-s utterance ({kind}); closing pause {pause_s:g} s (reading ahead starts the read {pause_s - ahead_s:g} s into it)\n")
    table = [("point", "frames", "features", "encoder", "pooling+heads", "rest", "read", "pause + read", "read ahead: pause + read")]
    for name, r in rows.items():
        table.append((
            name, str(r["frames"]), f"{r['features_s']:.3f} s", f"{r['encoder_s']:.3f} s", f"{r['pooling_heads_s']:.3f} s",
            f"{r['rest_s']:.3f} s", f"{r['read_s']:.3f} s", f"{pause_s + r['read_s']:.2f} s",
            f"{max(pause_s, pause_s - ahead_s + r['read_s']):.2f} s",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(lines))
    print(f"\nwritten to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
