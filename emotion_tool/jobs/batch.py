"""Batch analysis of archives: many recordings in, one resumable table (Parquet or JSON Lines) out.

    run_batch(loader, collect_items(["calls/**/*.wav"]), "readings.parquet")

Decoding runs in worker processes while the model runs in this one, so neither waits for the other.
Recordings go through `EmotionRecognizer.analyze_batch`, several at a time where the device batches
windows (a GPU), so a row holds what `analyze` returns at the same operating point. The table layout (one row per recording, and with a trace one
per trace segment, told apart by `kind`) is documented in the README's "Batch analysis" section;
`emotion_tool.jobs.batch_ray` runs the same analysis on a Ray cluster and writes the same table.

Layer 4, jobs (`emotion_tool.jobs`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import glob
import json
import multiprocessing
import os
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from emotion_tool.config import DIMENSIONS, SAMPLE_RATE
from emotion_tool.science.data import (
    AUDIO_SUFFIXES,
    ManifestItem,
    ManifestOptions,
    read_item_audio,
    read_manifest,
)

if TYPE_CHECKING:
    from emotion_tool.engine.recognizer import EmotionRecognizer
    from emotion_tool.engine.results import EmotionAnalysis

__all__ = ["BatchOptions", "BatchSummary", "collect_items", "run_batch", "read_table", "item_key"]

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
OUT_SUFFIXES = (".parquet", ".jsonl")
Loader = Callable[[], "EmotionRecognizer"]
"""Builds the recognizer; called once per process that runs the model (here, or in each Ray actor)."""


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs on one machine. What is read from each recording is the recognizer's
    `AnalysisOptions`; these only say how the work is spread."""

    workers: int = 1  # decoding processes; 0 decodes in the model's process (no overlap)
    prefetch: int = 8  # decoded recordings that may wait for the model (bounds memory: each is its full waveform)
    rows_per_part: int = 64  # Parquet: recordings per part file, i.e. at most this many are lost to a kill; JSON Lines flushes every recording
    threads: int | None = None  # torch threads for the model during the run; None: on the CPU, this process's cores minus `workers` (at least 1), so decoding and the model do not oversubscribe the cores (readings then differ from a default-thread `analyze` by float rounding only); on a GPU, torch's
    progress: bool = True  # a progress bar on stderr with recordings/s, audio hours per hour and the time left

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (decode in the model's process) or more, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1 (or None for torch's default), got {self.threads}")
        if self.prefetch < 1 or self.rows_per_part < 1:
            raise ValueError(f"prefetch and rows_per_part must be at least 1, got {self.prefetch} and {self.rows_per_part}")


@dataclass(frozen=True)
class BatchSummary:
    """What a run did."""

    out: Path  # the table
    items: int  # recordings asked for (after removing duplicates)
    skipped: int  # already in the table from an earlier run
    written: int  # recordings written by this run
    failed: int  # of those, rows with an error
    audio_s: float  # seconds of audio analysed by this run
    wall_s: float  # seconds this run took

    @property
    def recordings_per_hour(self) -> float:
        return 3600.0 * self.written / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def audio_hours_per_hour(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


# --- items ------------------------------------------------------------------------------------------


def collect_items(inputs: Sequence[str | os.PathLike]) -> list[ManifestItem]:
    """Recordings to analyse from a manifest (.csv/.tsv/.jsonl, labels optional) or paths, folders and
    globs (`**` recurses). Missing or unreadable files are kept: their rows carry the error.

    Raises:
        ValueError: nothing to analyse, a glob matching nothing, or a manifest that cannot be read.
    """
    if not inputs:
        raise ValueError("give a manifest (.csv, .tsv, .jsonl) or audio paths, folders or globs")
    items: list[ManifestItem] = []
    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text).expanduser()
        if path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
            options = ManifestOptions(check_audio=False, require_label=False, require_files=False)
            items.extend(read_manifest(path, options=options).items)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                raise ValueError(f"folder {path} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
            items.extend(_path_item(p) for p in found)
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file())
            if not found:
                raise ValueError(f"{text!r} matches no files; check the pattern (quote it so the shell leaves ** alone)")
            items.extend(_path_item(p) for p in found)
        else:
            items.append(_path_item(path))  # a missing file becomes a row with its error
    return items


def _path_item(path: Path) -> ManifestItem:
    return ManifestItem(audio=path.resolve(), label=None, line=0)


def item_key(item: ManifestItem) -> str:
    """The row key: the resolved path, with the stretch when the manifest names one ("a.wav#1.5-3")."""
    if item.start_s is None and item.end_s is None:
        return str(item.audio)
    return f"{item.audio}#{item.start_s or 0:g}-{'' if item.end_s is None else f'{item.end_s:g}'}"


def decode_item(item: ManifestItem, max_duration_s: float, *, keep_channels: bool = False) -> np.ndarray:
    """The item's 16 kHz mono float32 waveform (N,), decoded exactly as `analyze` decodes a path;
    with `keep_channels`, its channels apart (N, channels), for channels read as speakers.

    Raises:
        AudioError: missing, empty, undecodable, non-finite or too long.
    """
    from emotion_tool.audio import AudioError, load_audio, load_channels

    if item.start_s is None and item.end_s is None:
        if keep_channels:
            return load_channels(item.audio, max_duration_s=max_duration_s, name=str(item.audio)).T
        return load_audio(item.audio, max_duration_s=max_duration_s, name=str(item.audio))
    if not item.audio.is_file():
        raise AudioError("not_found", f"{item.audio}: no such file; check the manifest's audio column")
    wav = read_item_audio(item, keep_channels=keep_channels)
    if wav.shape[0] / SAMPLE_RATE > max_duration_s:
        raise AudioError("too_long", f"{item_key(item)} lasts {wav.shape[0] / SAMPLE_RATE:.1f} s, over the limit of {max_duration_s:g} s")
    return wav


def _decode_or_error(item: ManifestItem, max_duration_s: float, keep_channels: bool = False) -> np.ndarray | str:
    """Worker-side: the waveform, or the error as text (exceptions from odd files must not kill the run)."""
    try:
        return decode_item(item, max_duration_s, keep_channels=keep_channels)
    except Exception as e:  # any decoding failure belongs to this item's row, never to the run
        return _error_text(e)


def _error_text(e: BaseException) -> str:
    problem = getattr(e, "problem", None)
    return f"{problem or type(e).__name__}: {e}"


# --- rows ---------------------------------------------------------------------------------------------


def columns(labels: Sequence[str]) -> list[tuple[str, str]]:
    """(name, type) of every column, in order; types are "string", "int", "float", "bool", "strings"."""
    return [
        ("key", "string"), ("audio", "string"), ("kind", "string"), ("segment", "int"), ("speaker", "string"),
        ("start_s", "float"), ("end_s", "float"), ("duration_s", "float"), ("speech_ratio", "float"),
        ("is_speech", "bool"), ("label", "string"), ("confidence", "float"), ("margin", "float"), ("uncertain", "bool"),
        *[(f"p_{name}", "float") for name in labels], *[(d, "float") for d in DIMENSIONS],
        ("reference_label", "string"), ("operating_point", "string"), ("calibration", "string"), ("model_id", "string"),
        ("random_weights", "bool"), ("warnings", "strings"), ("error", "string"),
    ]  # fmt: skip


def analysis_rows(
    item: ManifestItem, analysis: "EmotionAnalysis | None", *, error: str | None, labels: Sequence[str],
    operating_point: str, model_id: str, random_weights: bool, calibration: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The item's rows: its trace segments (if any), then, with channels read as speakers, a
    `kind="speaker"` row per channel (`segment`: the channel's index), with diarized speakers a
    `kind="speaker"` row per speaker and a `kind="turn"` row per turn, then the recording row. Times
    are seconds from the start of the file; readings absent (None) where there is none."""
    base = {name: None for name, _ in columns(labels)}
    base.update(
        key=item_key(item), audio=str(item.audio), reference_label=item.label, operating_point=operating_point,
        calibration=calibration, model_id=model_id, random_weights=random_weights, warnings=[], error=error,
    )  # fmt: skip
    offset = item.start_s or 0.0
    if analysis is None:
        return [{**base, "kind": "recording", "start_s": offset, "end_s": item.end_s}]

    def reading(r) -> dict[str, Any]:
        if r is None:
            return {}
        out = {"label": r.label, "confidence": r.confidence, "margin": r.margin, "uncertain": r.uncertain}
        out.update({f"p_{k}": v for k, v in r.probabilities.items()})
        out.update(valence=r.valence, arousal=r.arousal, dominance=r.dominance)
        return out

    rows = [
        {**base, "kind": "segment", "segment": i, "start_s": offset + s.start_s, "end_s": offset + s.end_s,
         "duration_s": s.end_s - s.start_s, "speech_ratio": s.speech_ratio, "is_speech": s.is_speech,
         "speaker": s.speaker, **reading(s.reading)}
        for i, s in enumerate(analysis.segments)
    ]  # fmt: skip
    rows += [
        {**base, "kind": "speaker", "segment": p.channel, "speaker": p.speaker, "start_s": offset,
         "end_s": offset + analysis.duration_s, "duration_s": analysis.duration_s, "speech_ratio": p.speech_ratio,
         "is_speech": p.speech_s > 0, **reading(p.summary)}
        for p in analysis.speakers or []
    ]  # fmt: skip
    if analysis.diarization is not None:  # each turn's reading (a turn longer than 30 s: one row per window of it)
        rows += [
            {**base, "kind": "turn", "segment": i, "speaker": w.speaker, "start_s": offset + w.start_s, "end_s": offset + w.end_s,
             "duration_s": w.end_s - w.start_s, "is_speech": True, **reading(w)}
            for i, w in enumerate(analysis.windows)
        ]  # fmt: skip
    rows.append({
        **base, "kind": "recording", "start_s": offset, "end_s": offset + analysis.duration_s,
        "duration_s": analysis.duration_s, "speech_ratio": analysis.speech_ratio, "is_speech": analysis.speech_s > 0,
        "warnings": list(analysis.warnings), **reading(analysis.summary),
    })  # fmt: skip
    return rows


def calibration_name(rec: "EmotionRecognizer") -> str | None:
    """The `calibration` column: the calibration's file name and SHA-256 prefix, or None without one."""
    note = rec.info().calibration
    return None if note is None else f"{note.source} (sha256 {note.sha256})"


def analyze_item(rec: "EmotionRecognizer", item: ManifestItem, decoded: np.ndarray | str) -> list[dict[str, Any]]:
    """Rows for one decoded item (or its decoding error), as `analyze` reads it."""
    return analyze_items(rec, [(item, decoded)])[0]


def analyze_items(rec: "EmotionRecognizer", decoded: Sequence[tuple[ManifestItem, np.ndarray | str]]) -> list[list[dict[str, Any]]]:
    """Rows for each decoded item (or its decoding error), the waveforms read together by the
    recognizer's `analyze_batch` (its windows batched across recordings)."""
    wavs = [(i, d) for i, (_, d) in enumerate(decoded) if not isinstance(d, str)]
    outcome: dict[int, Any] = {i: d for i, (_, d) in enumerate(decoded) if isinstance(d, str)}
    names = [str(decoded[i][0].audio) for i, _ in wavs]
    try:
        results = rec.analyze_batch([w for _, w in wavs], sample_rate=SAMPLE_RATE, names=names) if wavs else []
    except Exception:  # something in the batch failed as a whole: read each alone, so only its own row says so
        results = []
        for (_, wav), name in zip(wavs, names):
            try:
                results.append(rec.analyze(wav, sample_rate=SAMPLE_RATE, name=name))
            except Exception as e:  # anything this one recording triggers belongs to its row
                results.append(e)
    outcome.update({i: r for (i, _), r in zip(wavs, results)})
    common = dict(
        labels=rec.labels, operating_point=rec.operating_point(), calibration=calibration_name(rec), model_id=rec.model_id,
        random_weights=rec.random_weights,
    )  # fmt: skip
    rows = []
    for i, (item, _) in enumerate(decoded):
        r = outcome[i]
        if isinstance(r, str):
            rows.append(analysis_rows(item, None, error=r, **common))
        elif isinstance(r, BaseException):
            rows.append(analysis_rows(item, None, error=_error_text(r), **common))
        else:
            rows.append(analysis_rows(item, r, error=None, **common))
    return rows


# --- the table ----------------------------------------------------------------------------------------


class TableWriter:
    """Appends rows to a Parquet or JSON Lines table and knows which recordings it already holds.

    JSON Lines is appended and flushed after every recording. Parquet is written as part files in
    `<out>.parts/` (each renamed into place whole, so a kill loses at most the part being filled) and
    combined into `<out>` by `close()`; a rerun reads `<out>` and any parts left by a killed run.
    Combining keeps one copy of each row, so parts that a killed `close()` left beside the table it
    had already written are not added twice. A recording counts as written once its
    `kind="recording"` row is; its segment rows come first.
    """

    def __init__(self, out: str | os.PathLike, *, labels: Sequence[str], rows_per_part: int = 64):
        self.out = Path(out)
        suffix = self.out.suffix.lower()
        if suffix not in OUT_SUFFIXES:
            raise ValueError(f"--out {self.out} must end in .parquet or .jsonl (the table's format is taken from it)")
        self.format = suffix[1:]
        self.labels = list(labels)
        self.rows_per_part = rows_per_part
        self.parts = self.out.with_name(self.out.name + ".parts")
        self._pending: list[dict[str, Any]] = []
        self._pending_items = 0
        _check_regular(self.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "parquet":
            self._schema = _arrow_schema(self.labels)
        existing = self._read_existing()
        self.done = {r["key"] for r in existing if r.get("kind") == "recording"}
        self.points = {
            (r.get("model_id"), r.get("operating_point"), r.get("calibration")) for r in existing if r.get("kind") == "recording"
        }  # fmt: skip
        if self.format == "jsonl":
            self._file = _open_append(self.out)
        else:
            numbers = [int(p.stem.removeprefix("part-")) for p in self.parts.glob("part-*.parquet")] if self.parts.is_dir() else []
            self._part_no = max(numbers, default=-1) + 1  # never over a part left by a killed run

    def check_compatible(self, *, model_id: str, operating_point: str, calibration: str | None = None) -> None:
        """Refuses to mix readings of another model, operating point or calibration into one table."""
        other = {p for p in self.points if p != (model_id, operating_point, calibration)}
        if other:
            held = "; ".join(f"{m!r} at {op!r}, calibration {c!r}" for m, op, c in sorted(other, key=str))
            raise ValueError(
                f"{self.out} already holds readings of {held}, not {model_id!r} at {operating_point!r}, calibration "
                f"{calibration!r}; give another --out, or the same model, operating point and --calibration to resume"
            )

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Adds one recording's rows."""
        if self.format == "jsonl":
            self._file.write("".join(json.dumps(r, allow_nan=False, default=_json_default) + "\n" for r in rows))
            self._file.flush()
        else:
            self._pending.extend(rows)
            self._pending_items += 1
            if self._pending_items >= self.rows_per_part:
                self._flush_part()
        self.done.update(r["key"] for r in rows if r["kind"] == "recording")

    def close(self) -> None:
        """Writes what is pending; for Parquet, combines `<out>` and the parts into `<out>`."""
        if self.format == "jsonl":
            self._file.close()
            return
        self._flush_part()
        if not self.parts.is_dir():
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(self.out, schema=self._schema)] if self.out.is_file() else []
        parts = sorted(self.parts.glob("part-*.parquet"))
        tables += [pq.read_table(p, schema=self._schema) for p in parts]
        table = _first_of_each_row(pa.concat_tables(tables)) if tables else self._schema.empty_table()
        tmp = self.out.with_name(self.out.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.out)  # a kill from here until the parts are gone leaves rows the next close() drops
        for p in parts:
            p.unlink()
        self.parts.rmdir()

    def _flush_part(self) -> None:
        if not self._pending:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.parts.mkdir(exist_ok=True)
        target = self.parts / f"part-{self._part_no:06d}.parquet"
        tmp = target.with_suffix(".tmp")
        pq.write_table(pa.Table.from_pylist(self._pending, schema=self._schema), tmp)
        os.replace(tmp, target)  # whole or absent: a kill never leaves half a part
        self._part_no += 1
        self._pending, self._pending_items = [], 0

    def _read_existing(self) -> list[dict[str, Any]]:
        if self.format == "jsonl":
            return self._read_jsonl()
        import pyarrow.parquet as pq

        files = ([self.out] if self.out.is_file() else []) + (sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else [])
        rows: list[dict[str, Any]] = []
        for f in files:
            try:  # a table written before the calibration column reads it as null
                rows += pq.read_table(f, columns=["key", "kind", "model_id", "operating_point", "calibration"], schema=self._schema).to_pylist()
            except Exception as e:  # pyarrow raises several types for damaged files
                raise ValueError(f"{f} is not a readable Parquet table of this tool ({e}); move it away or give another --out") from e
        return rows

    def _read_jsonl(self) -> list[dict[str, Any]]:
        """Rows of an earlier run. Drops a line cut by a kill and segment rows of a recording whose
        recording row never came, rewriting the file without them."""
        if not self.out.is_file():
            return []
        lines = self.out.read_text(encoding="utf-8").splitlines(keepends=True)
        rows = []
        for i, line in enumerate(lines):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                if i == len(lines) - 1:  # the last line of a killed run
                    break
                raise ValueError(f"{self.out} line {i + 1} is not JSON ({e.msg}); it is not a table of this tool, give another --out") from e
        complete = {r.get("key") for r in rows if r.get("kind") == "recording"}
        kept = [r for r in rows if r.get("key") in complete]
        if len(kept) != len(lines):
            tmp = self.out.with_name(self.out.name + ".tmp")
            tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in kept), encoding="utf-8")
            os.replace(tmp, self.out)
        return kept


def _check_regular(out: Path) -> None:
    """Refuses an --out that exists but is not a regular file: a FIFO would block the resume forever."""
    try:
        mode = os.stat(out).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file"
        raise ValueError(f"--out {out} is {kind}, not a regular file; give the path of a table file (a run reads it back to resume)")


def _open_append(out: Path):
    """Opens the JSON Lines table for appending without ever blocking (a FIFO swapped in is refused)."""
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"--out {out} is not a regular file; give the path of a table file (a run reads it back to resume)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def _first_of_each_row(table):
    """The table without repeated rows: the first of each (key, kind, segment)."""
    import pyarrow as pa

    seen: set[tuple] = set()
    keep = []
    for row in zip(*(table.column(c).to_pylist() for c in ("key", "kind", "segment"))):
        keep.append(row not in seen)
        seen.add(row)
    return table if all(keep) else table.filter(pa.array(keep))


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"cannot write {type(v).__name__} to JSON")


def _arrow_schema(labels: Sequence[str]):
    import pyarrow as pa

    kinds = {"string": pa.string(), "int": pa.int32(), "float": pa.float64(), "bool": pa.bool_(), "strings": pa.list_(pa.string())}
    return pa.schema([(name, kinds[t]) for name, t in columns(labels)])


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a table written by `run_batch` (Parquet or JSON Lines), as dicts."""
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


# --- the local run -------------------------------------------------------------------------------------


def pending_items(items: Iterable[ManifestItem], writer: TableWriter) -> tuple[list[ManifestItem], int, int]:
    """(items still to do, how many are unique, how many the table already holds)."""
    unique: dict[str, ManifestItem] = {}
    for item in items:
        unique.setdefault(item_key(item), item)
    todo = [it for k, it in unique.items() if k not in writer.done]
    return todo, len(unique), len(unique) - len(todo)


def run_batch(
    loader: Loader | "EmotionRecognizer",
    items: Sequence[ManifestItem],
    out: str | os.PathLike,
    *,
    options: BatchOptions = BatchOptions(),
) -> BatchSummary:
    """Analyses every item not yet in `out` and appends its rows.

    Args:
        loader: a recognizer, or a function that builds one.
        items: from `collect_items`.
        out: the table, .parquet or .jsonl.
        options: workers, prefetch, part size, progress.

    Raises:
        ValueError: `out` has another format, or holds readings of another model or operating point.
    """
    import torch

    rec = loader if hasattr(loader, "analyze") else loader()
    started = time.perf_counter()
    writer = TableWriter(out, labels=rec.labels, rows_per_part=options.rows_per_part)
    threads = torch.get_num_threads()
    model_threads = options.threads
    if model_threads is None and rec.device.type == "cpu":
        model_threads = max(1, cpu_cores() - options.workers)
    if model_threads is not None:
        torch.set_num_threads(model_threads)
    try:
        writer.check_compatible(model_id=rec.model_id, operating_point=rec.operating_point(), calibration=calibration_name(rec))
        todo, total, skipped = pending_items(items, writer)
        max_s = rec.options.max_duration_s
        bar = ThroughputBar(len(todo), skipped, enabled=options.progress)
        failed, audio_s = 0, 0.0
        keep_channels = rec.options.channels is not None  # channels read as speakers are decoded apart
        for group in _groups(_decoded(todo, max_s, options, keep_channels), rec.batch_size):
            for rows in analyze_items(rec, group):
                writer.write(rows)
                failed += rows[-1]["error"] is not None
                audio_s += rows[-1]["duration_s"] or 0.0
                bar.advance(rows[-1]["duration_s"] or 0.0)
        bar.close()
    finally:
        writer.close()
        torch.set_num_threads(threads)
    return BatchSummary(
        out=Path(out), items=total, skipped=skipped, written=len(todo), failed=failed, audio_s=audio_s,
        wall_s=time.perf_counter() - started,
    )  # fmt: skip


def cpu_cores() -> int:
    """CPUs this process may run on (its affinity, e.g. under taskset or a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_WINDOW_SAMPLES = 30 * SAMPLE_RATE  # 480000: a window the network reads at once


def _groups(decoded: Iterable[tuple[ManifestItem, np.ndarray | str]], windows: int):
    """Lists of consecutive (item, decoded) that hold about `windows` windows (a recording of up to
    30 s is one), so that short clips fill a batch together and long recordings go alone."""
    group, held = [], 0
    for item, d in decoded:
        group.append((item, d))
        held += 0 if isinstance(d, str) else max(1, -(-d.shape[0] // _WINDOW_SAMPLES))
        if held >= windows:
            yield group
            group, held = [], 0
    if group:
        yield group


def _exit_with_parent(parent_pid: int) -> None:
    """A decoding process's initializer: it ends when the process that started it is gone (even after
    kill -9), instead of waiting on its queue forever and keeping multiprocessing's resource tracker up."""
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:  # an orphan is handed to init (or a subreaper)
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _decoded(todo: list[ManifestItem], max_s: float, options: BatchOptions, keep_channels: bool = False):
    """(item, waveform or error text) in input order, decoded ahead by worker processes."""
    if options.workers == 0:
        for item in todo:
            yield item, _decode_or_error(item, max_s, keep_channels)
        return
    # spawn: a forked copy of a process that holds a torch thread pool can deadlock in it.
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(options.workers, mp_context=ctx, initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        queue: collections.deque = collections.deque()
        it = iter(todo)
        for item in it:
            queue.append((item, pool.submit(_decode_or_error, item, max_s, keep_channels)))
            if len(queue) >= options.workers + options.prefetch:
                break
        while queue:
            item, fut = queue.popleft()
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(_decode_or_error, nxt, max_s, keep_channels)))
            try:
                decoded = fut.result()
            except concurrent.futures.process.BrokenProcessPool as e:
                raise RuntimeError(f"a decoding process died (out of memory?) while reading {item.audio}; rerun to resume") from e
            yield item, decoded


class ThroughputBar:
    """Recordings done, recordings/s, audio hours per hour and the time left, on stderr (tqdm)."""

    def __init__(self, total: int, skipped: int, *, enabled: bool):
        from tqdm.auto import tqdm

        self._audio_s = 0.0
        self._t0 = time.perf_counter()
        self._bar = tqdm(
            total=total, unit="rec", desc="recordings", disable=not enabled or None, file=sys.stderr, dynamic_ncols=True,
            postfix=f"skipped {skipped} already written" if skipped else None,
        )  # fmt: skip

    def advance(self, audio_s: float) -> None:
        self._audio_s += audio_s
        elapsed = time.perf_counter() - self._t0
        self._bar.set_postfix_str(f"{self._audio_s / elapsed:.1f} audio h/h" if elapsed > 0 else "", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
