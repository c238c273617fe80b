"""Resident and peak memory of each precision, each in a fresh process.

    python benchmarks/memory.py                # table on stdout, JSON in benchmarks/results/memory-cpu.json

Loads the whisper-medium-size RANDOM-weight checkpoint of benchmarks/speed.py at each precision,
analyses a 5-s clip, and reports the process's resident memory after loading and its peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

POINTS = ("published", "bf16", "int8")


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


def worker(ckpt: Path, point: str) -> dict:
    import warnings

    import numpy as np

    from emotion_tool import EmotionRecognizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = EmotionRecognizer.from_pretrained(ckpt, device="cpu", operating_point=point)
    loaded = _rss_gb()
    peak_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    wav = (0.1 * np.random.default_rng(0).standard_normal(5 * 16000)).astype(np.float32)
    rec.analyze(wav, sample_rate=16000)
    return {
        "resident_after_load_gb": loaded,
        "peak_during_load_gb": peak_load,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "operating_point": rec.operating_point(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=HERE / ".cache")
    p.add_argument("--size", choices=("medium", "tiny"), default="medium")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.checkpoint, args.worker)))
        return 0
    from speed import ensure_checkpoint

    ckpt = ensure_checkpoint(args.cache, args.size)
    out = args.out or HERE / "results" / ("memory-cpu.json" if args.size == "medium" else "memory-cpu-tiny.json")
    results = {}
    for point in POINTS:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", point, "--checkpoint", str(ckpt)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            sys.exit(f"{point} failed:\n{proc.stderr}")
        results[point] = json.loads(proc.stdout.strip().splitlines()[-1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"size": args.size, "note": "RANDOM weights; memory does not depend on the values", "points": results}, indent=2) + "\n")
    print(f"{args.size}-size RANDOM-weight checkpoint, 5-s clip analysed")
    print("| operating point | resident after load | peak during load | peak |")
    print("|---|---|---|---|")
    for point, r in results.items():
        print(f"| {point} | {r['resident_after_load_gb']:.2f} GB | {r['peak_during_load_gb']:.2f} GB | {r['peak_gb']:.2f} GB |")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
