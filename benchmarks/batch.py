"""Throughput of `emotion-tool batch`: one machine against Ray Data, with the same CPUs, in one run.

    python benchmarks/batch.py                       # 60 espeak-ng clips, tiny RANDOM-weight network (the README's table)
    python benchmarks/batch.py --size medium --clips 24   # the published network's size (random weights)

Prints recordings per hour and audio hours per hour for each configuration against the first
(local, decoding in the model's process), and writes JSON to benchmarks/results/batch-<device>.json.
Each configuration runs in a fresh process; its wall time includes starting decoding processes or
the Ray instance and loading the model in each actor, but not loading the model in the local run's
own process. Readings of random weights mean nothing; throughput does not depend on them.
The Ray configurations start a local instance (127.0.0.1) with --cpus CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

WORDS = ("the parcel", "my account", "the meeting", "this call", "the invoice", "our order", "the delay", "your offer")
VERBS = ("has not arrived", "was cancelled again", "looks fine to me", "is far too late", "made me very happy", "is still wrong")


def make_clips(folder: Path, count: int) -> list[Path]:
    """`count` short English sentences (about 1.5-3 s) from espeak-ng, resampled to 16 kHz by sox."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        out = folder / f"clip{i:04d}.wav"
        if not out.exists():
            raw = out.with_suffix(".raw.wav")
            text = f"{WORDS[i % len(WORDS)]} {VERBS[(i // len(WORDS)) % len(VERBS)]} number {i}"
            subprocess.run(["espeak-ng", "-s", str(150 + 5 * (i % 7)), "-p", str(30 + i % 40), "-w", str(raw), text], check=True, capture_output=True)
            subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True, capture_output=True)
            raw.unlink()
        paths.append(out)
    return paths


def run_one(config: dict) -> dict:
    """One configuration in this process; returns its summary."""
    import functools

    from emotion_tool import EmotionRecognizer
    from emotion_tool.jobs.batch import BatchOptions, collect_items, run_batch

    loader = functools.partial(EmotionRecognizer.from_pretrained, config["model"], device="cpu")
    items = collect_items(config["clips"])
    options = BatchOptions(workers=config.get("workers", 0), threads=config.get("threads"), progress=False)
    if config["engine"] == "local":
        summary = run_batch(loader(), items, config["out"], options=options)
    else:
        from emotion_tool.jobs.batch_ray import RayOptions, run_batch_ray

        rec = loader()
        summary = run_batch_ray(
            loader, items, config["out"], labels=rec.labels, model_id=rec.model_id, operating_point=rec.operating_point(),
            max_duration_s=rec.options.max_duration_s, options=options,
            ray_options=RayOptions(actors=config["actors"], cpus_per_actor=config["cpus_per_actor"], local_cpus=config["cpus"]),
        )  # fmt: skip
    return {
        "recordings": summary.written, "failed": summary.failed, "audio_s": summary.audio_s, "wall_s": summary.wall_s,
        "recordings_per_hour": summary.recordings_per_hour, "audio_hours_per_hour": summary.audio_hours_per_hour,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=60, help="recordings in the archive (default 60)")
    ap.add_argument("--size", choices=("tiny", "medium"), default="tiny", help="network size (random weights)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs for every configuration (Ray's local instance gets these)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "emotion-tool-bench-batch")
    ap.add_argument("--out", type=Path, default=None, help="JSON (default benchmarks/results/batch-cpu.json)")
    ap.add_argument("--no-ray", action="store_true", help="only the local configurations")
    ap.add_argument("--run-one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_one:
        print(json.dumps(run_one(json.loads(args.run_one))))
        return 0

    from emotion_tool.engine.testing import SIZES, save_random_checkpoint

    model = args.cache / f"{args.size}-random"
    if not (model / "config.json").exists():
        save_random_checkpoint(model, config=SIZES[args.size])
    clips = [str(p) for p in make_clips(args.cache / "clips", args.clips)]
    # Without --threads the model gets the cores the decoding workers leave (at least 1); the rows with
    # threads set give it every core, as torch does by default, to show what that costs.
    configs = [
        {"name": "local, decoding in the model's process", "engine": "local", "workers": 0},
        {"name": f"local, 1 decoding worker, {args.cpus} torch threads", "engine": "local", "workers": 1, "threads": args.cpus},
        {"name": f"local, 2 decoding workers, {args.cpus} torch threads", "engine": "local", "workers": 2, "threads": args.cpus},
        {"name": "local, 1 decoding worker (default threads)", "engine": "local", "workers": 1},
        {"name": "local, 2 decoding workers (default threads)", "engine": "local", "workers": 2},
    ]
    if not args.no_ray:
        configs += [
            {"name": f"ray, {args.cpus} CPUs, 1 model actor", "engine": "ray", "actors": 1, "cpus_per_actor": 1.0},
            {"name": f"ray, {args.cpus} CPUs, 2 model actors", "engine": "ray", "actors": 2, "cpus_per_actor": 0.5},
        ]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(configs):
            c = {**c, "model": str(model), "clips": clips, "out": str(Path(tmp) / f"run{i}.jsonl"), "cpus": args.cpus}
            env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
            proc = subprocess.run(
                ["taskset", "-c", f"0-{args.cpus - 1}", sys.executable, __file__, "--run-one", json.dumps(c)],
                capture_output=True, text=True, env=env,
            )  # fmt: skip
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"configuration {c['name']!r} failed")
            r = {"name": c["name"], **{k: c[k] for k in ("engine", "workers", "threads", "actors", "cpus_per_actor") if k in c}, **json.loads(proc.stdout.splitlines()[-1])}
            results.append(r)
            base = results[0]["recordings_per_hour"]
            print(
                f"{r['name']:<42} {r['recordings_per_hour']:>9.0f} rec/h  {r['audio_hours_per_hour']:>6.2f} audio h/h  "
                f"wall {r['wall_s']:6.1f} s  x{r['recordings_per_hour'] / base:.2f}",
                flush=True,
            )
    report = {
        "what": "emotion-tool batch throughput, local vs Ray Data, same CPUs (RANDOM weights; readings mean nothing)",
        "network": args.size, "clips": args.clips, "cpus": args.cpus, "device": "cpu",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count()},
        "results": results,
    }  # fmt: skip
    out = args.out or HERE / "results" / "batch-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
