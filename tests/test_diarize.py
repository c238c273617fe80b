"""Diarization: a real one-channel conversation (two espeak-ng voices taking turns) through the diarizer,
the Python API, the CLI, the MCP tool, batch, the plot and the MCP view. The voice encoder's weights are
the real ones from the resemblyzer wheel; the emotion model is the tiny random-weight one, so each turn's
reading is checked against the same turn read alone, not against a label."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import speak, voiced
from emotion_tool import EmotionAnalysis
from emotion_tool.audio import diarize
from emotion_tool.audio.diarize import DiarizeOptions, Diarizer, DiarizerUnavailable, SpeakerTurn
from emotion_tool.audio.vad import SpeechDetector, VadOptions
from emotion_tool.engine.options import AnalysisOptions

RATE = 16000
PAUSE_S = 0.6  # silence between turns
# A found turn edge may sit this far from where the voice starts or stops in the recording: the voice
# activity detector pads speech by 30 ms and may cut a word's soft ending, and a 1.6-s d-vector window
# that straddles a pause is never read (each speech span is embedded on its own).
EDGE_TOL_S = 0.35
LINES = (
    ("agent", "Thank you for calling. I will look into your order right away."),
    ("customer", "No! This is the third time it broke and I want my money back now!"),
    ("agent", "I am sorry about that. Let me check what happened to the last one."),
    ("customer", "It stopped working after two days, and nobody answered my emails."),
)
VOICES = {"agent": dict(voice="en-gb", speed_wpm=130, pitch=25), "customer": dict(voice="en-us", speed_wpm=200, pitch=85)}


@dataclass(frozen=True)
class Conversation:
    path: Path
    turns: list[tuple[float, float, str]]  # where each voice sounds (energy-trimmed), and who it is


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> Conversation:
    d = tmp_path_factory.mktemp("meeting")
    gap = np.zeros(int(PAUSE_S * RATE), np.float32)
    pieces, turns, t = [gap], [], PAUSE_S
    for i, (who, text) in enumerate(LINES):
        wav = voiced(speak(text, d / f"line{i}.wav", **VOICES[who]))
        turns.append((t, t + len(wav) / RATE, who))
        pieces += [wav, gap]
        t += (len(wav) + len(gap)) / RATE
    path = d / "meeting.wav"
    sf.write(path, np.concatenate(pieces), RATE, subtype="PCM_16")
    return Conversation(path, turns)


def check_turns(found: list[tuple[float, float, str]], truth: list[tuple[float, float, str]]) -> None:
    """The turns found are the recording's: as many, the same speaker changes, each edge within EDGE_TOL_S."""
    assert len(found) == len(truth), f"found {found}, recorded {truth}"
    names = {}
    for (s, e, who), (ts, te, twho) in zip(found, truth):
        assert names.setdefault(twho, who) == who, f"{twho}'s turns were given to two speakers: {found}"
        assert abs(s - ts) <= EDGE_TOL_S and abs(e - te) <= EDGE_TOL_S, f"turn {(s, e)} vs the recording's {(ts, te)}"
    assert len(set(names.values())) == 2


def test_the_diarizer_finds_the_turns(conversation: Conversation):
    wav, _ = sf.read(conversation.path, dtype="float32")
    speech = SpeechDetector(VadOptions()).speech_spans(wav)
    turns = Diarizer().turns(wav, speech)
    check_turns([(t.start / RATE, t.end / RATE, str(t.speaker)) for t in turns], conversation.turns)
    assert [t.speaker for t in turns] == [0, 1, 0, 1]  # numbered in order of first speech
    given = Diarizer().turns(wav, speech, num_speakers=2)
    assert given == turns
    one = Diarizer().turns(wav, speech, num_speakers=1)
    assert {t.speaker for t in one} == {0} and one[0].start == turns[0].start and one[-1].end == turns[-1].end


def test_each_turn_is_read_as_its_own_utterance(recognizer, conversation: Conversation):
    a = recognizer.analyze(conversation.path, options=AnalysisOptions(diarize=True, trace=True))
    d = a.diarization
    assert d is not None and d.num_speakers == 2 and not d.given and "resemblyzer" in d.backend and not d.overlaps_found
    check_turns([(t.start_s, t.end_s, t.speaker) for t in d.turns], conversation.turns)
    assert [p.speaker for p in a.speakers] == ["speaker 1", "speaker 2"]
    assert [p.turns for p in a.speakers] == [2, 2] and all(p.channel is None for p in a.speakers)
    # Each turn is one window, read as the published model reads a recording: padded to 30 s, alone.
    wav, _ = sf.read(conversation.path, dtype="float32")
    assert [(w.start_s, w.end_s, w.speaker) for w in a.windows] == [(t.start_s, t.end_s, t.speaker) for t in d.turns]
    alone = recognizer.classify_batch([wav[round(t.start_s * RATE) : round(t.end_s * RATE)] for t in d.turns])
    for w, r in zip(a.windows, alone):
        np.testing.assert_allclose(list(w.probabilities.values()), list(r.probabilities.values()), atol=1e-5)
    for p in a.speakers:  # a speaker's summary: their turns, weighted by speech
        own = [w for w in a.windows if w.speaker == p.speaker]
        weights = np.array([w.end_s - w.start_s for w in own])
        mean = np.average([list(w.probabilities.values()) for w in own], axis=0, weights=weights)
        np.testing.assert_allclose(list(p.summary.probabilities.values()), mean, atol=1e-3)
        assert p.speech_s == pytest.approx(weights.sum(), abs=0.01)
    gap = np.abs(np.array(list(a.speakers[0].summary.probabilities.values())) - list(a.speakers[1].summary.probabilities.values())).max()
    assert gap > 1e-3  # two voices, two readings
    # The trace: each speaker's windows read only where that speaker speaks, the other voice silenced.
    for p in a.speakers:
        mine = [s for s in a.segments if s.speaker == p.speaker]
        assert mine and any(s.is_speech for s in mine) and any(not s.is_speech for s in mine)


def test_mono_output_is_unchanged_without_diarize(recognizer, conversation: Conversation):
    plain = recognizer.analyze(conversation.path, trace=True)
    data = json.loads(plain.model_dump_json())
    assert "speakers" not in data and "diarization" not in data and all("speaker" not in s for s in data["segments"])


def test_options_refuse_what_does_not_go_together():
    with pytest.raises(ValueError, match="choose one"):
        AnalysisOptions(diarize=True, channels=("a", "b"))
    with pytest.raises(ValueError, match="add diarize=True"):
        AnalysisOptions(num_speakers=2)
    for bad in (0, 9, True, 2.5, "2"):
        with pytest.raises(ValueError, match="num_speakers must be a whole number from 1 to 8"):
            AnalysisOptions(diarize=True, num_speakers=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trace_mode='windows'"):
        AnalysisOptions(diarize=True, trace_mode="shared-encoder")
    with pytest.raises(ValueError, match="threshold"):
        DiarizeOptions(threshold=0)


def test_a_missing_backend_says_how_to_install_it(monkeypatch, recognizer, conversation: Conversation):
    real = diarize.importlib.util.find_spec
    monkeypatch.setattr(diarize.importlib.util, "find_spec", lambda name, *a: None if name == "resemblyzer" else real(name, *a))
    with pytest.raises(DiarizerUnavailable, match=r"pip install 'emotion-tool\[diarize\]'"):
        Diarizer().turns(np.zeros(RATE, np.float32), [(0, RATE)])
    with pytest.raises(DiarizerUnavailable, match=r"emotion-tool\[diarize\]"):
        diarize.check_available()


def test_short_runs_join_a_neighbour_and_turns_map_back_to_the_recording():
    labels = np.array([0] * 100 + [1] * 10 + [0] * 100 + [1] * 200)
    smoothed = diarize._smooth(labels, 50)
    assert (smoothed[:210] == 0).all() and (smoothed[210:] == 1).all()
    # Two speech spans (0-2 s and 3-5 s, samples at 16 kHz); the second changes speaker at 4 s.
    spans = [(0, 32000), (48000, 80000)]
    frames = [np.zeros(200, int), np.array([0] * 100 + [1] * 100)]
    turns = diarize._to_turns(frames, spans, join_gap=32000)
    assert turns == [SpeakerTurn(0, 64000, 0), SpeakerTurn(64000, 80000, 1)]  # the pause joined, the change kept
    assert diarize._to_turns(frames, spans, join_gap=0)[0] == SpeakerTurn(0, 32000, 0)


def test_the_mel_front_end_is_the_one_the_encoder_was_trained_with():
    librosa = pytest.importorskip("librosa")  # installed with resemblyzer (the diarize extra)
    wav = np.random.default_rng(0).standard_normal(RATE * 2).astype(np.float32) * 0.1
    ref = librosa.feature.melspectrogram(y=wav, sr=RATE, n_fft=400, hop_length=160, n_mels=40).T
    mine = diarize._mel_frames(wav, diarize._mel_basis())
    assert mine.shape == ref.shape
    np.testing.assert_allclose(mine, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@pytest.mark.subprocess
def test_cli(tiny_checkpoint: Path, conversation: Conversation, tmp_path: Path):
    from PIL import Image

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "emotion_tool.cli", "analyze", str(conversation.path), "--model", str(tiny_checkpoint), "--device", "cpu", *args],
            capture_output=True, text=True, env={**os.environ, "COLUMNS": "160"}, timeout=300,
        )  # fmt: skip

    out = cli("--diarize", "--format", "json")
    assert out.returncode == 0, out.stderr
    a = EmotionAnalysis.model_validate_json(out.stdout)
    check_turns([(t.start_s, t.end_s, t.speaker) for t in a.diarization.turns], conversation.turns)
    plot = tmp_path / "meeting.png"
    table = cli("--diarize", "--speakers", "2", "--trace", "--plot", str(plot))
    assert table.returncode == 0, table.stderr
    assert "2 speakers, 4 turns" in table.stdout and "speaker 2" in table.stdout
    mono = tmp_path / "mono.png"
    assert cli("--trace", "--plot", str(mono)).returncode == 0
    assert Image.open(plot).height > 1.3 * Image.open(mono).height  # a strip of turns and one lane per speaker
    for bad, words in ((("--speakers", "9", "--diarize"), "--speakers '9'"), (("--speakers", "2"), "add diarize=True (--diarize)"),
                       (("--diarize", "--channels", "a,b"), "choose one")):  # fmt: skip
        r = cli(*bad)
        assert r.returncode == 2 and words in r.stderr, r.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_tool(tiny_checkpoint: Path, conversation: Conversation, monkeypatch):
    from mcp import Client

    from mcp_server import ServerOptions, create_server

    options = ServerOptions(model=str(tiny_checkpoint), device="cpu", allow_dirs=(conversation.path.parent,))
    async with Client(create_server(options)) as client:
        args = {"audio_path": conversation.path.name}
        result = await client.call_tool("analyze_emotion", {**args, "diarize": True, "num_speakers": 2})
        assert not result.is_error, result.content[0].text
        a = EmotionAnalysis.model_validate(result.structured_content)
        assert a.diarization.given and [p.speaker for p in a.speakers] == ["speaker 1", "speaker 2"]
        check_turns([(t.start_s, t.end_s, t.speaker) for t in a.diarization.turns], conversation.turns)
        for bad, words in (({"num_speakers": 0}, "num_speakers"), ({"num_speakers": 2}, "add diarize=True"),
                           ({"diarize": True, "channels": ["a", "b"]}, "choose one")):  # fmt: skip
            wrong = await client.call_tool("analyze_emotion", {**args, **bad})
            assert wrong.is_error and words in wrong.content[0].text, wrong.content[0].text
        real = diarize.importlib.util.find_spec
        monkeypatch.setattr(diarize.importlib.util, "find_spec", lambda name, *a: None if name == "resemblyzer" else real(name, *a))
        missing = await client.call_tool("analyze_emotion", {**args, "diarize": True})
        assert missing.is_error and "emotion-tool[diarize]" in missing.content[0].text
        monkeypatch.undo()
        assert not (await client.call_tool("analyze_emotion", args)).is_error  # the server goes on serving


def test_batch_rows_carry_speakers_and_turns(tiny_checkpoint: Path, conversation: Conversation, tmp_path: Path):
    import torch

    from emotion_tool import EmotionRecognizer
    from emotion_tool.jobs.batch import BatchOptions, collect_items, read_table, run_batch

    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", options=AnalysisOptions(diarize=True))
    out = tmp_path / "meetings.jsonl"
    summary = run_batch(rec, collect_items([conversation.path]), out, options=BatchOptions(workers=1, threads=torch.get_num_threads(), progress=False))
    assert summary.written == 1 and summary.failed == 0
    rows = read_table(out)
    people = [r for r in rows if r["kind"] == "speaker"]
    turns = [r for r in rows if r["kind"] == "turn"]
    assert [r["speaker"] for r in people] == ["speaker 1", "speaker 2"] and all(r["segment"] is None for r in people)
    check_turns([(r["start_s"], r["end_s"], r["speaker"]) for r in turns], conversation.turns)
    assert [r["segment"] for r in turns] == [0, 1, 2, 3] and all(r["label"] for r in turns)
    (recording,) = [r for r in rows if r["kind"] == "recording"]
    assert recording["speaker"] is None and recording["error"] is None


@pytest.mark.clients
def test_the_mcp_view_draws_a_lane_per_speaker(recognizer, conversation: Conversation, tmp_path: Path):
    from test_mcp_app_view import run_chromium, script_literal, view_html

    data = json.loads(recognizer.analyze(conversation.path, options=AnalysisOptions(diarize=True, trace=True)).model_dump_json())
    probe = f"""<script>
render({script_literal(data)});
document.body.setAttribute("data-lanes", [...document.querySelectorAll(".lane")].map(e => e.dataset.speaker + "=" + e.textContent).join("|"));
document.body.setAttribute("data-charts", document.querySelectorAll("#chart svg").length);
</script>"""
    page = tmp_path / "lanes.html"
    page.write_text(view_html().replace("</body>", probe + "</body>"))
    done = run_chromium(["--dump-dom", page.as_uri()], tmp_path / "profile-lanes")
    body = next((line for line in done.stdout.splitlines() if "data-lanes=" in line), None)
    assert body, f"no probe in the DOM:\n{done.stderr[-2000:]}"
    lanes = body.split('data-lanes="', 1)[1].split('"', 1)[0].split("|")
    charts = int(body.split('data-charts="', 1)[1].split('"', 1)[0])
    assert [lane.split("=", 1)[0] for lane in lanes] == ["speaker 1", "speaker 2"] and charts == 2
    assert all("2 turns" in lane for lane in lanes)
    assert "Speakers found by resemblyzer" in done.stdout


# --- the trace aligned with a timed transcript ------------------------------------------------------


def _write_transcripts(folder: Path, turns: list[tuple[float, float, str]]) -> dict[str, Path]:
    def stamp(s: float, sep: str) -> str:
        ms = round(s * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"

    texts = [text for _, text in LINES]
    srt = "\n".join(f"{i + 1}\n{stamp(s, ',')} --> {stamp(e, ',')}\n{text}\n" for i, ((s, e, _), text) in enumerate(zip(turns, texts)))
    vtt = "WEBVTT\n\nNOTE the customer's lines carry a voice tag\n\n" + "\n".join(
        f"{stamp(s, '.')} --> {stamp(e, '.')}\n{'<v speaker 2>' if who == 'customer' else ''}{text}\n" for (s, e, who), text in zip(turns, texts)
    )
    words = {"segments": [{"start": s, "end": e, "text": " " + text} for (s, e, _), text in zip(turns, texts)]}
    paths = {"srt": folder / "t.srt", "vtt": folder / "t.vtt", "json": folder / "t.json"}
    paths["srt"].write_text(srt)
    paths["vtt"].write_text(vtt)
    paths["json"].write_text(json.dumps(words))
    return paths


def test_transcripts_are_read_in_each_format(conversation: Conversation, tmp_path: Path):
    from emotion_tool.science.transcript import read_transcript

    for kind, path in _write_transcripts(tmp_path, conversation.turns).items():
        lines = read_transcript(path)
        assert [line.text for line in lines] == [text for _, text in LINES], kind
        for line, (s, e, _) in zip(lines, conversation.turns):
            assert line.start_s == pytest.approx(s, abs=1e-3) and line.end_s == pytest.approx(e, abs=1e-3)
        if kind == "vtt":
            assert [line.speaker for line in lines] == [None, "speaker 2", None, "speaker 2"]


def test_bad_transcripts_say_what_is_wrong(tmp_path: Path):
    from emotion_tool.science.transcript import TranscriptError, read_transcript

    cases = {
        "times.srt": ("1\n00:00:01 --> 00:00:02\nhello\n", "is not 'HH:MM:SS,mmm --> HH:MM:SS,mmm'"),
        "back.srt": ("1\n00:00:05,000 --> 00:00:02,000\nhello\n", "ends (2.000 s) before it starts"),
        "empty.vtt": ("WEBVTT\n\n", "no timed lines"),
        "bad.json": ('{"segments": [{"start": "one", "end": 2, "text": "x"}]}', "item 0 needs numbers"),
        "nan.json": ('[{"start": NaN, "end": 2, "text": "x"}]', "item 0 needs numbers"),
        "broken.json": ('[{"start": 1,', "not JSON"),
        "notes.txt": ("hello", "unknown transcript type '.txt'"),
    }
    for name, (text, words) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(TranscriptError, match=re.escape(words)):
            read_transcript(tmp_path / name)
    (tmp_path / "latin1.srt").write_bytes("1\n00:00:01,000 --> 00:00:02,000\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(TranscriptError, match="not UTF-8"):
        read_transcript(tmp_path / "latin1.srt")
    with pytest.raises(TranscriptError, match="no such transcript file"):
        read_transcript(tmp_path / "missing.srt")


def test_each_line_gets_its_speakers_reading(recognizer, conversation: Conversation, tmp_path: Path):
    from emotion_tool.science.transcript import align_transcript, read_transcript

    a = recognizer.analyze(conversation.path, options=AnalysisOptions(diarize=True))
    paths = _write_transcripts(tmp_path, conversation.turns)
    aligned = align_transcript(a, read_transcript(paths["srt"]))
    assert [line.speaker for line in aligned] == ["speaker 1", "speaker 2", "speaker 1", "speaker 2"]
    for line, turn in zip(aligned, a.windows):  # each line lies inside one turn: it gets that turn's reading
        np.testing.assert_allclose(list(line.reading.probabilities.values()), list(turn.probabilities.values()), atol=1e-6)
        assert line.reading.speaker == turn.speaker
    # A name from the transcript wins over who talks most; a line in silence has no reading.
    tagged = align_transcript(a, read_transcript(paths["vtt"]))
    assert [line.speaker for line in tagged] == ["speaker 1", "speaker 2", "speaker 1", "speaker 2"]
    from emotion_tool.engine.results import TranscriptLine

    (quiet,) = align_transcript(a, [TranscriptLine(start_s=0.0, end_s=0.3, text="(silence)")])
    assert quiet.reading is None and quiet.speaker is None
    # Mono (no speakers): every line reads the recording's windows over it.
    mono = align_transcript(recognizer.analyze(conversation.path), read_transcript(paths["json"]))
    assert all(line.reading is not None and line.speaker is None for line in mono)


@pytest.mark.subprocess
def test_cli_aligns_a_transcript(tiny_checkpoint: Path, conversation: Conversation, tmp_path: Path):
    paths = _write_transcripts(tmp_path, conversation.turns)
    out = subprocess.run(
        [sys.executable, "-m", "emotion_tool.cli", "analyze", str(conversation.path), "--model", str(tiny_checkpoint), "--device", "cpu",
         "--diarize", "--transcript", str(paths["vtt"]), "--format", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    a = EmotionAnalysis.model_validate_json(out.stdout)
    assert [line.text for line in a.transcript] == [text for _, text in LINES] and all(line.reading for line in a.transcript)
    bad = subprocess.run(
        [sys.executable, "-m", "emotion_tool.cli", "analyze", str(conversation.path), "--model", str(tiny_checkpoint), "--transcript", str(tmp_path / "none.srt")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "no such transcript file" in bad.stderr


def test_diarized_speakers_fold_into_their_own_profiles(recognizer, conversation: Conversation):
    from langgraph.store.memory import InMemoryStore

    from agents.recordings import fold_recording
    from agents.scale import load_profile

    a = recognizer.analyze(conversation.path, options=AnalysisOptions(diarize=True))
    store = InMemoryStore()
    with pytest.raises(ValueError, match="say who 'speaker 1', 'speaker 2' are"):
        fold_recording(store, a)
    with pytest.raises(ValueError, match="reads one voice"):
        fold_recording(store, recognizer.analyze(conversation.path))
    profiles = fold_recording(store, a, names={"speaker 1": "agent-ann", "speaker 2": "customer-42"})
    assert set(profiles) == {"agent-ann", "customer-42"}
    for who, name in (("agent-ann", "speaker 1"), ("customer-42", "speaker 2")):
        own = [w for w in a.windows if w.speaker == name]
        stored = load_profile(store, who)
        assert stored.turns == len(own) == 2
        assert stored.mean["valence"] == pytest.approx(np.mean([w.valence for w in own]))
    fold_recording(store, a, names={"speaker 1": "agent-ann", "speaker 2": "customer-42"})  # a retry counts once
    assert load_profile(store, "agent-ann").turns == 2
