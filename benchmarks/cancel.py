"""How long a cancelled analysis keeps the model busy: stopping between windows against stopping inside a pass.

    python benchmarks/cancel.py                # medium-size random network; JSON in benchmarks/results/cancel-cpu.json
    python benchmarks/cancel.py --size tiny    # a quick check that the script runs

A 90-s recording of speech is analysed with a trace at the published operating point through the MCP
server's own inference queue, and cancelled `--after` seconds in, as when a client sends
`notifications/cancelled` or goes away. Measured: seconds from the cancellation to the model being
free, once with the job stopping only between windows (the behaviour before in-pass stops) and once
stopping after any encoder layer (what `analyze_emotion` does). RANDOM weights: speed does not
depend on the values.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def tmp_cache() -> str:
    path = Path(tempfile.gettempdir()) / "emotion-tool-bench"
    path.mkdir(exist_ok=True)
    return str(path)


def speech(cache: Path):
    """A 4-s espeak-ng sentence at 16 kHz (the tests' own speech helper: espeak-ng, then sox)."""
    import soundfile as sf

    sys.path.insert(0, str(HERE.parent / "tests"))
    from helpers import speak

    wav = cache / "cancel-sentence.wav"
    if not wav.exists():
        speak("I have been waiting on the line for forty minutes and nobody can tell me anything.", wav)
    samples, _ = sf.read(wav, dtype="float32")
    return samples


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("medium", "tiny"), default="medium")
    p.add_argument("--after", type=float, default=3.0, help="seconds into the analysis at which it is cancelled (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="cancellations per way of stopping (default 3)")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/cancel-cpu.json (…-tiny.json for --size tiny)")
    args = p.parse_args()
    out = args.out or HERE / "results" / ("cancel-cpu.json" if args.size == "medium" else "cancel-cpu-tiny.json")

    import anyio
    import numpy as np
    import torch

    from emotion_tool import AnalysisOptions, EmotionRecognizer
    from emotion_tool.engine.operating_point import cpu_features, cpu_model
    from emotion_tool.engine.testing import SIZES, save_random_checkpoint
    from mcp_server.inference import InferenceQueue, JobCancelled

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_random_checkpoint(Path(tmp) / args.size, config=SIZES[args.size])
        rec = EmotionRecognizer.from_pretrained(ckpt, device="cpu")
    sentence = speech(Path(tmp_cache()))
    audio = np.tile(sentence, -(-90 * 16000 // sentence.shape[0]))[: 90 * 16000]  # 90 s of it
    options = AnalysisOptions(trace=True, window_s=2.0, hop_s=1.0)

    async def one(within_passes: bool) -> float:
        queue = InferenceQueue(2)
        stopped_at: list[float] = []

        def work(job):
            try:
                return rec.analyze(audio, sample_rate=16000, options=options, progress=lambda done, total: job.check(more_to_do=False))
            finally:
                stopped_at.append(time.perf_counter())

        cancelled_at = time.perf_counter() + args.after  # the moment the scope below cancels the call
        with anyio.move_on_after(args.after):
            try:
                await queue.run(work, within_passes=within_passes)
            except JobCancelled:
                pass
        return stopped_at[0] - cancelled_at if stopped_at else float("nan")

    rows = {}
    for within in (False, True):
        name = "inside a pass (after any layer)" if within else "between windows only"
        seconds = [anyio.run(one, within) for _ in range(args.repeats)]
        rows[name] = {"seconds": seconds, "max_s": max(seconds), "median_s": sorted(seconds)[len(seconds) // 2]}
        print(f"{name}: {', '.join(f'{s:.2f}' for s in seconds)} s", file=sys.stderr)
    report = {
        "size": args.size,
        "random_weights": True,
        "cancel_after_s": args.after,
        "threads": torch.get_num_threads(),
        "cpu": f"{cpu_model()} ({cpu_features().describe()})",
        "machine": f"{os.cpu_count()} cores",
        "torch": torch.__version__,
        "stop_latency": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{args.size}-size network, RANDOM weights, published point, trace 2 s / 1 s, cancelled {args.after:g} s in; CPU: {report['cpu']}, {report['threads']} threads")
    print(f"{'stopping':<34} {'median':>8} {'max':>8}")
    for name, r in rows.items():
        print(f"{name:<34} {r['median_s']:>7.2f}s {r['max_s']:>7.2f}s")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
