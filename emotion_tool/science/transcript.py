"""The trace aligned with words: each line of a timed transcript (SRT, WebVTT or JSON) gets the reading
of its speaker's speech over the line's span.

`read_transcript` parses the file into `TranscriptLine`s (start, end, text, and the speaker where the
file names one: a WebVTT voice tag `<v Name>`, a JSON `speaker`, an SRT line starting `Name:`);
`align_transcript` picks each line's speaker (the one the file names, where the analysis has a speaker
of that name; else the one who speaks most during the line) and gives it the mean of that speaker's
readings over the line, each weighted by how long it overlaps the line: trace windows where the
analysis has a trace, else its windows (for diarized speakers, their turns).

Layer 3, science (`emotion_tool.science`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from emotion_tool.engine.results import EmotionAnalysis, EmotionReading, TranscriptLine

__all__ = ["TranscriptError", "read_transcript", "align_transcript"]

MAX_BYTES = 16 * 1024 * 1024  # a transcript larger than this is refused before it is read
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})"
_CUE = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_VOICE = re.compile(r"<v(?:\.[^ >]*)?\s+([^>]+)>")
_TAGS = re.compile(r"<[^>]*>")
_SRT_SPEAKER = re.compile(r"^\s*\[?([A-Za-z][\w .'-]{0,40}?)\]?:\s+(.*)$")


class TranscriptError(ValueError):
    """A transcript that cannot be read; the message names the file, the line and what to change."""


def _seconds(h: str | None, m: str, s: str, frac: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(frac.ljust(3, "0")) / 1000


def read_transcript(path: str | os.PathLike) -> list[TranscriptLine]:
    """The timed lines of an .srt, .vtt or .json transcript, in time order.

    JSON: a list of objects, or an object with "segments" (Whisper's output) or "words" (a list of
    objects), each with "start" and "end" (seconds; "start_s"/"end_s" too), "text" (or "word") and
    optionally "speaker".

    Raises:
        TranscriptError: missing, too large, not UTF-8, an unknown extension, or a line without valid times.
    """
    p = Path(path)
    if not p.is_file():
        raise TranscriptError(f"{p}: no such transcript file; give an .srt, .vtt or .json file with timestamps")
    if p.stat().st_size > MAX_BYTES:
        raise TranscriptError(f"{p}: {p.stat().st_size} bytes; transcripts over {MAX_BYTES // (1024 * 1024)} MiB are refused")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise TranscriptError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from e
    kind = p.suffix.lower()
    if kind in (".srt", ".vtt"):
        lines = _read_cues(text, p, vtt=kind == ".vtt")
    elif kind == ".json":
        lines = _read_json(text, p)
    else:
        raise TranscriptError(f"{p}: unknown transcript type {kind or '(none)'!r}; give an .srt, .vtt or .json file")
    if not lines:
        raise TranscriptError(f"{p}: no timed lines found; is it a transcript with timestamps?")
    return sorted(lines, key=lambda t: (t.start_s, t.end_s))


def _read_cues(text: str, p: Path, *, vtt: bool) -> list[TranscriptLine]:
    out: list[TranscriptLine] = []
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    for block in blocks:
        rows = [r for r in block.split("\n") if r.strip()]
        at = next((i for i, r in enumerate(rows) if "-->" in r), None)
        if at is None:
            continue  # a header (WEBVTT), a NOTE, a STYLE block or a bare index
        m = _CUE.match(rows[at])
        line_no = text[: text.find(rows[at])].count("\n") + 1
        if m is None:
            raise TranscriptError(f"{p}, line {line_no}: {rows[at].strip()!r} is not 'HH:MM:SS,mmm --> HH:MM:SS,mmm'")
        start, end = _seconds(*m.groups()[:4]), _seconds(*m.groups()[4:])
        if end < start:
            raise TranscriptError(f"{p}, line {line_no}: the cue ends ({end:.3f} s) before it starts ({start:.3f} s)")
        body = " ".join(rows[at + 1 :]).strip()
        speaker = None
        voice = _VOICE.search(body)
        if voice:
            speaker = voice.group(1).strip()
        body = _TAGS.sub("", body).strip()
        if not vtt and speaker is None and (named := _SRT_SPEAKER.match(body)):
            speaker, body = named.group(1).strip(), named.group(2).strip()
        if body:
            out.append(TranscriptLine(start_s=start, end_s=end, text=body, speaker=speaker))
    return out


def _read_json(text: str, p: Path) -> list[TranscriptLine]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TranscriptError(f"{p}, line {e.lineno}: not JSON ({e.msg})") from e
    if isinstance(data, dict):
        data = data.get("segments", data.get("words"))
    if not isinstance(data, list):
        raise TranscriptError(f"{p}: expected a list of {{start, end, text}} objects, or an object with 'segments' or 'words'")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise TranscriptError(f"{p}: item {i} is not an object with start, end and text")
        start, end = item.get("start", item.get("start_s")), item.get("end", item.get("end_s"))
        words = item.get("text", item.get("word"))
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v >= 0 for v in (start, end))
        if not ok or end < start or not isinstance(words, str):
            raise TranscriptError(f"{p}: item {i} needs numbers start <= end (seconds, >= 0) and a text; got {item!r:.120}")
        speaker = item.get("speaker")
        if words.strip():
            out.append(TranscriptLine(start_s=float(start), end_s=float(end), text=words.strip(), speaker=str(speaker) if speaker is not None else None))
    return out


def align_transcript(analysis: EmotionAnalysis, lines: Sequence[TranscriptLine]) -> list[TranscriptLine]:
    """Each line with its speaker (where the analysis has speakers) and the reading of that speaker's speech over the line.

    A line during which its speaker has no reading (silence, or a line past the audio's end) keeps `reading` None.
    """
    names = [p.speaker for p in analysis.speakers] if analysis.speakers else []

    def spans_of(speaker: str | None) -> list[tuple[float, float, EmotionReading]]:
        if analysis.segments:
            pieces = [(s.start_s, s.end_s, s.reading) for s in analysis.segments if s.reading is not None and (speaker is None or s.speaker == speaker)]
        else:
            pieces = [(w.start_s, w.end_s, w) for w in analysis.windows if speaker is None or w.speaker == speaker]
        return pieces

    def talk(speaker: str, a: float, b: float) -> float:
        if analysis.diarization is not None:
            return sum(max(0.0, min(b, t.end_s) - max(a, t.start_s)) for t in analysis.diarization.turns if t.speaker == speaker)
        return sum(max(0.0, min(b, s.end_s) - max(a, s.start_s)) * s.speech_ratio for s in analysis.segments if s.speaker == speaker) or sum(
            max(0.0, min(b, w.end_s) - max(a, w.start_s)) for w in analysis.windows if w.speaker == speaker
        )

    out = []
    for line in lines:
        a, b = line.start_s, max(line.end_s, line.start_s + 1e-3)
        speaker = None
        if names:
            speaker = line.speaker if line.speaker in names else max(names, key=lambda n: talk(n, a, b))
            if line.speaker not in names and talk(speaker, a, b) == 0:
                speaker = None  # nobody speaks during the line
        pieces = spans_of(speaker) if (speaker is not None or not names) else []
        weights = [max(0.0, min(b, e) - max(a, s)) for s, e, _ in pieces]
        reading = None
        if sum(weights) > 0:
            used = [(w, r) for w, (_, _, r) in zip(weights, pieces) if w > 0]
            probs = np.average([[r.probabilities[k] for k in analysis.labels] for _, r in used], axis=0, weights=[w for w, _ in used])
            dims = np.average([[r.valence, r.arousal, r.dominance] for _, r in used], axis=0, weights=[w for w, _ in used])
            unsure = sum(w for w, r in used if r.uncertain) >= 0.5 * sum(w for w, _ in used)  # most of the line read as uncertain
            reading = EmotionReading.from_outputs(
                probs, dims, labels=analysis.labels, start_s=line.start_s, end_s=line.end_s, min_confidence=0.0
            ).model_copy(update={"speaker": speaker, "uncertain": unsure})
        out.append(line.model_copy(update={"speaker": speaker if names else line.speaker, "reading": reading}))
    return out
