"""Realtime speech-to-speech models: how long after the end of the user's speech each turn's note reaches the model.

    python benchmarks/realtime.py                 # medium-size random network at the live point; JSON in benchmarks/results/realtime-cpu.json
    python benchmarks/realtime.py --size tiny     # a quick check that the script runs

Each run feeds an espeak-ng recording of four turns (2-s pauses) in real time through a framework's
own OpenAI Realtime plugin, unchanged, to the local stand-in for the OpenAI Realtime API
(`emotion_tool.integrations.fake_realtime`), with the plugin wired as `demos/pipecat_file.py
--realtime` and `demos/livekit_file.py --realtime` wire it (the same functions run here):

- pipecat: `OpenAIRealtimeLLMService`, the model's turn detection (not answering), `realtime_note()`;
- livekit-model: `RealtimeModel` with the model's turn detection (not answering), `listen()` asks for the reply;
- livekit-vad: `RealtimeModel` with its turn detection off, LiveKit's VAD ends turns, `on_user_turn_completed`.

Per turn: end of speech (when the stand-in received the audio holding the turn's last loud frame) to
the note in the model's conversation, and to the response's creation; the reading's own latency (from
the end of its speech, as the listener counts it). The model's turn detection waits 500 ms of silence
before it says the turn ended, and LiveKit's VAD and endpointing about as long: that wait is in every
figure, as it is in a real call. A turn whose reading is not ready within `note_wait_s` is answered
without a note and counted as such. The network has RANDOM weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

SR = 16000
TEXTS = (
    "I called three times this week and nobody answered",
    "Could you please check what happened to my refund",
    "Thank you, that is a relief to hear",
    "Let us try again tomorrow morning if that works for you",
)
PAUSE_S = 2.0  # between turns: room for the reply
SETUPS = ("pipecat", "livekit-model", "livekit-vad")


def recording(cache: Path) -> np.ndarray:
    from live import recording as spoken  # benchmarks/live.py: the same espeak-ng recording, other sentences

    return spoken(cache, TEXTS, name="realtime.wav", pause_s=PAUSE_S, tail_s=0.0)


def checkpoint(cache: Path, size: str) -> Path:
    """A random-weight checkpoint of the published layout (the encoder alone: about 1.2 GB for medium)."""
    ckpt = cache / f"{size}-random"
    if not (ckpt / "model.safetensors").is_file():
        from emotion_tool.engine.testing import SIZES, save_random_checkpoint

        print(f"writing a {size}-size RANDOM-weight checkpoint to {ckpt} ...", file=sys.stderr)
        save_random_checkpoint(ckpt, config=SIZES[size])
    return ckpt


def turn_figures(session, trace, *, turns: str) -> list[dict]:
    """For each response to a user turn: end of speech to the note and to the response, and whether a note came."""
    from emotion_tool.integrations.fake_realtime import item_text
    from emotion_tool.integrations.note import is_turn_note

    speech = [(t.audio_end_ms, t.speech_ended_at) for t in session.turns] if turns == "model" else list(session.speech)
    out = []
    for response in [r for r in session.responses if any(i.get("role") == "user" and not item_text(i) for i in r.items_before)]:
        users = [k for k, i in enumerate(response.items_before) if i.get("role") == "user" and not item_text(i)]
        after = response.items_before[users[-1] + 1 :]
        notes = [i for i in after if is_turn_note(item_text(i))]
        ended = [at for _, at in speech if at <= response.created_at]
        if not ended:
            continue
        end = ended[-1]  # the speech this response answers: the latest that ended before it
        row = {"response_s": response.created_at - end, "note": bool(notes)}
        if notes:
            row["note_s"] = session.item_times[notes[-1]["id"]] - end
        out.append(row)
    for row, u in zip(out, trace):
        row["reading_latency_s"] = u.latency_s
    return out


def summary(rows: list[dict]) -> dict:
    def stat(key: str) -> dict:
        values = [r[key] for r in rows if key in r]
        if not values:
            return {}
        return {"p50": statistics.median(values), "max": max(values), "values": values}

    return {
        "turns": len(rows),
        "with_note": sum(r["note"] for r in rows),
        "end_of_speech_to_note_s": stat("note_s"),
        "end_of_speech_to_response_s": stat("response_s"),
        "reading_latency_s": stat("reading_latency_s"),
    }


async def run_one(setup: str, recognizer, wav: np.ndarray, note_wait_s: float) -> dict:
    from emotion_tool.integrations.listener import PerceptionOptions

    options = PerceptionOptions(note_wait_s=note_wait_s)
    if setup == "pipecat":
        from demos.pipecat_file import realtime_session
        from emotion_tool.integrations.pipecat import EmotionPerceiver

        emotion = EmotionPerceiver(recognizer, options=options)
        session = await realtime_session(emotion, wav)
        turns = "model"
    else:
        from demos.livekit_file import realtime_session
        from emotion_tool.integrations.livekit import LiveKitEmotion

        turns = setup.removeprefix("livekit-")
        emotion = LiveKitEmotion(recognizer, options=options)
        session = await realtime_session(emotion, wav, turns=turns)
    result = summary(turn_figures(session, emotion.trace, turns=turns))
    result["dropped_s"] = emotion.stats.dropped_s
    result["audio_at_model_s"] = session.audio_s
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=("medium", "tiny"), default="medium")
    p.add_argument("--points", default="live", help="operating points, comma-separated (default: live)")
    p.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    p.add_argument("--note-wait-s", type=float, default=1.0, help="PerceptionOptions.note_wait_s (default 1, the plugins' default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", type=Path, default=HERE / ".cache")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/realtime-cpu.json (realtime-cpu-tiny.json for --size tiny)")
    args = p.parse_args()
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    if unknown := [s for s in setups if s not in SETUPS]:
        p.error(f"unknown setup {unknown[0]!r}; setups: {', '.join(SETUPS)}")
    out = args.out or HERE / "results" / ("realtime-cpu.json" if args.size == "medium" else "realtime-cpu-tiny.json")

    import torch

    from emotion_tool import EmotionRecognizer
    from emotion_tool.engine.operating_point import cpu_features, cpu_model

    wav = recording(args.cache)
    ckpt = checkpoint(args.cache, args.size)
    report = {
        "note": f"RANDOM weights ({args.size} size); latency does not depend on the weights",
        "size": args.size,
        "recording": f"{len(TEXTS)} espeak-ng sentences, {PAUSE_S:g}-s pauses, {len(wav) / SR:.1f} s",
        "note_wait_s": args.note_wait_s,
        "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "cpu": f"{cpu_model()} ({cpu_features().describe()})",
                    "platform": platform.platform(), "torch": torch.__version__, "device": args.device},  # fmt: skip
        "runs": {},
    }
    print(f"RANDOM weights, {args.size} size; {os.cpu_count()} CPUs, {torch.get_num_threads()} threads; CPU: {report['machine']['cpu']}; "
          f"note_wait_s {args.note_wait_s:g}")  # fmt: skip
    print(f"{'setup':<15} {'point':<10} {'turns':>5} {'notes':>5} {'speech end→note p50/max':>25} {'→response p50/max':>20} {'reading p50':>12}")
    for point in [s.strip() for s in args.points.split(",") if s.strip()]:
        recognizer = EmotionRecognizer.from_pretrained(ckpt, device=args.device, operating_point=point)
        for setup in setups:
            r = asyncio.run(run_one(setup, recognizer, wav, args.note_wait_s))
            report["runs"][f"{setup} {point}"] = r
            n, resp, read = r["end_of_speech_to_note_s"], r["end_of_speech_to_response_s"], r["reading_latency_s"]
            fmt = lambda s: f"{s['p50']:.2f} / {s['max']:.2f} s" if s else "-"  # noqa: E731
            print(f"{setup:<15} {point:<10} {r['turns']:>5} {r['with_note']:>5} {fmt(n):>25} {fmt(resp):>20} "
                  f"{(str(round(read['p50'], 2)) + ' s') if read else '-':>12}")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
