"""Peak memory of decoding the largest file the default limits let in, against reading it whole.

    python benchmarks/decode_memory.py          # table on stdout, JSON in benchmarks/results/

The largest file a limit of D seconds admits holds D × MAX_SAMPLES_PER_LIMIT_S samples (all channels
counted), e.g. D seconds of 48-kHz stereo. Each case runs in a fresh process; peak RSS is the
process's high-water mark, and "imports" is the same process before decoding (the baseline).
- emotion-tool: `load_audio` (decodes in blocks, mixing and resampling each block).
- whole-file read: `soundfile.read` of the same file, as decoding is commonly done (the file is
  decoded at its own rate and channels before anything else).
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

LIMITS_S = {"emotion-mcp --max-duration (600 s)": 600, "AnalysisOptions.max_duration_s (3600 s)": 3600}
RATE, CHANNELS = 48000, 2  # 96000 samples a second: the most a file may hold per second of the limit


def _child(kind: str, path: str, limit_s: float) -> None:
    import numpy as np  # noqa: F401
    import soundfile as sf
    import soxr  # noqa: F401

    from emotion_tool.audio import load_audio

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "emotion-tool":
        wav = load_audio(path, max_duration_s=limit_s)
    else:
        wav, _ = sf.read(path, dtype="float32", always_2d=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"imports_mb": before / 1024, "peak_mb": peak / 1024, "samples_out": int(wav.shape[0])}))


def _write_file(path: Path, seconds: int) -> None:
    import numpy as np
    import soundfile as sf

    t = np.arange(RATE) / RATE
    second = np.stack([0.1 * np.sin(2 * np.pi * 220 * t), 0.1 * np.sin(2 * np.pi * 330 * t)], axis=1).astype(np.float32)
    with sf.SoundFile(path, "w", samplerate=RATE, channels=CHANNELS, format="FLAC", subtype="PCM_16") as f:
        for _ in range(seconds):
            f.write(second)


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for limit_name, seconds in LIMITS_S.items():
            path = Path(tmp) / f"{seconds}s.flac"
            _write_file(path, seconds)
            for kind in ("emotion-tool", "whole-file read"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", kind, str(path), str(seconds)], capture_output=True, text=True, check=True
                )
                r = json.loads(out.stdout)
                rows.append({"limit": limit_name, "file": f"{seconds} s, {CHANNELS} ch, {RATE} Hz FLAC ({path.stat().st_size / 2**20:.1f} MiB)", "decoder": kind, **r})
    print(f"{'limit':40s} {'decoder':16s} {'imports MB':>10s} {'peak MB':>8s} {'decoding MB':>11s}")
    for r in rows:
        print(f"{r['limit']:40s} {r['decoder']:16s} {r['imports_mb']:10.0f} {r['peak_mb']:8.0f} {r['peak_mb'] - r['imports_mb']:11.0f}")
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / "decode-memory.json"
    path.write_text(json.dumps({"rows": rows, "machine": platform.machine(), "python": platform.python_version()}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(main())
