"""Loading the OpenVINO runtime: the first load converts the encoder, the second reads it from the cache.

    python benchmarks/openvino_load.py               # medium size; JSON in benchmarks/results/openvino-load-cpu.json
    python benchmarks/openvino_load.py --size tiny   # a quick check that the script runs

Each load runs in a fresh process, as a user starting the CLI or the server would: the torch point
("published") first as the baseline, then "openvino+bf16" with an empty cache (conversion, saving,
compilation) and again with the cache it left (reading, compilation). Also timed: one padded 30-s
window through each, after the load. The checkpoint has RANDOM weights (loading does not depend on
the values); `pip install 'emotion-tool[openvino]'` first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

_CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
started = time.perf_counter()
from emotion_tool import EmotionRecognizer
rec = EmotionRecognizer.from_pretrained(sys.argv[1], device="cpu", operating_point=sys.argv[2])
loaded = time.perf_counter() - started
audio = np.random.default_rng(0).standard_normal(16000 * 5).astype(np.float32) * 0.1
t = time.perf_counter()
rec.classify_batch([audio])
first = time.perf_counter() - t
t = time.perf_counter()
rec.classify_batch([audio])
second = time.perf_counter() - t
print(json.dumps({"load_s": loaded, "first_window_s": first, "next_window_s": second,
                  "source": rec.openvino.source if rec.openvino is not None else "torch"}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("medium", "tiny"), default="medium")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/openvino-load-cpu.json (…-tiny.json for --size tiny)")
    args = p.parse_args()
    out = args.out or HERE / "results" / ("openvino-load-cpu.json" if args.size == "medium" else "openvino-load-cpu-tiny.json")

    import torch

    from emotion_tool.engine.openvino_runtime import openvino_available
    from emotion_tool.engine.operating_point import cpu_features, cpu_model
    from emotion_tool.engine.testing import SIZES, save_random_checkpoint

    if not openvino_available():
        raise SystemExit("this benchmark needs OpenVINO: pip install 'emotion-tool[openvino]'")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_random_checkpoint(Path(tmp) / args.size, config=SIZES[args.size])
        env = {**os.environ, "EMOTION_TOOL_CACHE": str(Path(tmp) / "cache"), "PYTHONPATH": str(HERE.parent)}
        rows = {}
        for name, point in (("torch, published", "published"), ("openvino+bf16, empty cache", "openvino+bf16"), ("openvino+bf16, from the cache", "openvino+bf16")):
            done = subprocess.run([sys.executable, "-c", _CHILD, str(ckpt), point], capture_output=True, text=True, env=env, timeout=1800)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
            rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name}: {rows[name]}", file=sys.stderr)
    report = {
        "size": args.size,
        "random_weights": True,
        "cpu": f"{cpu_model()} ({cpu_features().describe()})",
        "threads": torch.get_num_threads(),
        "loads": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{args.size}-size network, RANDOM weights, each load in a fresh process; CPU: {report['cpu']}, {report['threads']} threads")
    print(f"{'load':<32} {'load':>8} {'1st window':>11} {'next window':>12}  source")
    for name, r in rows.items():
        print(f"{name:<32} {r['load_s']:>7.2f}s {r['first_window_s']:>10.2f}s {r['next_window_s']:>11.2f}s  {r['source']}")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
