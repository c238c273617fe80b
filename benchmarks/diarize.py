"""Speaker error of the diarizer on conversations built from espeak-ng voices with known turns.

    python benchmarks/diarize.py            # JSON in benchmarks/results/diarize-cpu.json

Each conversation is a sequence of espeak-ng sentences, one voice per speaker, with a pause between
turns; where each voice sounds (energy-trimmed) is the reference. Scored on 10-ms frames, as the
diarization error rate is usually scored (no forgiveness collar): missed speech (reference speech the
diarizer gave no speaker), false alarm (speaker given where no voice sounds: mostly the detector's
padding and the pauses inside a turn), and speaker confusion (the wrong speaker, after the best
mapping of found speakers to reference ones); once with the number of speakers found, once given
(`--speakers N`). The baseline in the same run is what every recording
got before: one voice for the whole recording (its error is the speech of everyone but the main
speaker). Also timed: the diarizer's seconds per minute of audio on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

RATE = 16000
FRAME = 160  # 10 ms
LINES = [
    "Thank you for calling, how can I help you today?",
    "My parcel was supposed to arrive on Monday and it still has not come.",
    "I am sorry to hear that. Let me look up your order.",
    "I have been waiting at home all week for it.",
    "I can see it left the depot this morning, so it should reach you today.",
    "That is what they told me yesterday as well.",
    "I understand. I will add a note and call the courier myself.",
    "Fine. Please call me back when you know more.",
    "Of course. Is there anything else I can do for you?",
]
VOICES = {
    "low-slow": dict(voice="en-gb", speed_wpm=130, pitch=25),
    "high-fast": dict(voice="en-us", speed_wpm=200, pitch=85),
    "us-male": dict(voice="en-us", speed_wpm=160, pitch=45),
    "us-female": dict(voice="en-us+f3", speed_wpm=165, pitch=60),
    "scottish": dict(voice="en-gb-scotland", speed_wpm=150, pitch=40),
}
SCENES = [  # (name, speakers in turn order, pause between turns in seconds)
    ("2 voices, distinct, 0.6-s pauses", ["low-slow", "high-fast"] * 3, 0.6),
    ("2 voices, distinct, 0.15-s pauses", ["low-slow", "high-fast"] * 3, 0.15),
    ("2 voices, male/female US, 0.6-s pauses", ["us-male", "us-female"] * 3, 0.6),
    ("3 voices, 0.5-s pauses", ["low-slow", "high-fast", "scottish"] * 2, 0.5),
    ("2 voices, one long monologue then short replies", ["us-male", "us-female", "us-male", "us-female", "us-male", "us-female"], 0.4),
]


def build(scene: tuple[str, list[str], float], folder: Path) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    from helpers import speak, voiced

    name, order, pause = scene
    gap = np.zeros(int(pause * RATE), np.float32)
    pieces, truth, t = [np.zeros(RATE // 2, np.float32)], [], RATE // 2
    for i, who in enumerate(order):
        text = LINES[i % len(LINES)]
        if name.startswith("2 voices, one long") and i == 0:
            text = " ".join(LINES[:4])
        elif name.startswith("2 voices, one long"):
            text = ["Yes.", "Right, I see.", "Okay.", "Thanks."][i % 4] if who == "us-female" else LINES[i]
        wav = voiced(speak(text, folder / f"{abs(hash((name, i)))}.wav", **VOICES[who]))
        truth.append((t, t + len(wav), who))
        pieces += [wav, gap]
        t += len(wav) + len(gap)
    return np.concatenate(pieces), truth


def score(n: int, truth: list[tuple[int, int, str]], found: list[tuple[int, int, object]]) -> dict:
    """Missed, false alarm and confusion, as shares of the reference speech, on 10-ms frames."""
    from scipy.optimize import linear_sum_assignment

    frames = n // FRAME + 1
    ref_names = sorted({w for _, _, w in truth})
    hyp_names = sorted({str(w) for _, _, w in found})
    ref = np.full(frames, -1)
    hyp = np.full(frames, -1)
    for s, e, w in truth:
        ref[s // FRAME : e // FRAME] = ref_names.index(w)
    for s, e, w in found:
        hyp[s // FRAME : e // FRAME] = hyp_names.index(str(w))
    speech = ref >= 0
    both = speech & (hyp >= 0)
    overlap = np.zeros((len(ref_names), max(1, len(hyp_names))))
    for r, h in zip(ref[both], hyp[both]):
        overlap[r, h] += 1
    rows, cols = linear_sum_assignment(-overlap)
    matched = overlap[rows, cols].sum()
    total = speech.sum()
    missed = (speech & (hyp < 0)).sum() / total
    false_alarm = ((~speech) & (hyp >= 0)).sum() / total
    confusion = (both.sum() - matched) / total
    return {"missed": missed, "false_alarm": false_alarm, "confusion": confusion, "der": missed + false_alarm + confusion,
            "speakers_found": len(hyp_names), "speakers": len(ref_names)}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE / "results" / "diarize-cpu.json")
    args = p.parse_args()

    import torch

    from emotion_tool.audio.diarize import Diarizer, backend_name
    from emotion_tool.audio.vad import SpeechDetector, VadOptions
    from emotion_tool.engine.operating_point import cpu_features, cpu_model

    diarizer = Diarizer()
    detector = SpeechDetector(VadOptions())
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for scene in SCENES:
            wav, truth = build(scene, Path(d))
            speech = detector.speech_spans(wav)
            diarizer.turns(wav[: RATE * 3], speech[:1])  # load the encoder before timing
            t0 = time.perf_counter()
            turns = diarizer.turns(wav, speech)
            took = time.perf_counter() - t0
            found = score(len(wav), truth, [(t.start, t.end, t.speaker) for t in turns])
            k = len({w for _, _, w in truth})
            given = score(len(wav), truth, [(t.start, t.end, t.speaker) for t in diarizer.turns(wav, speech, num_speakers=k)])
            one_voice = score(len(wav), truth, [(s, e, 0) for s, e in speech])  # the baseline: every recording read as one voice
            rows.append({"scene": scene[0], "audio_s": len(wav) / RATE, "turns": len(truth), "turns_found": len(turns),
                         "diarizer": found, "number_given": given, "one_voice": one_voice, "seconds_per_audio_minute": took / (len(wav) / RATE / 60)})  # fmt: skip
    report = {
        "backend": backend_name(),
        "cpu": f"{cpu_model()} ({cpu_features().describe()})",
        "machine": f"{os.cpu_count()} cores",
        "threads": torch.get_num_threads(),
        "scenes": rows,
    }
    print(f"Diarizer: {report['backend']}\nCPU: {report['cpu']}, {report['threads']} threads; 10-ms frames, no collar\n")
    print("| conversation | audio | turns (found) | speakers (found) | missed | false alarm | confusion | DER | DER, number given | one-voice baseline DER | diarizer s / audio min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f, b = r["diarizer"], r["one_voice"]
        print(f"| {r['scene']} | {r['audio_s']:.0f} s | {r['turns']} ({r['turns_found']}) | {f['speakers']} ({f['speakers_found']}) | "
              f"{100 * f['missed']:.1f} % | {100 * f['false_alarm']:.1f} % | {100 * f['confusion']:.1f} % | **{100 * f['der']:.1f} %** | "
              f"{100 * r['number_given']['der']:.1f} % | {100 * b['der']:.1f} % | {r['seconds_per_audio_minute']:.2f} |")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
