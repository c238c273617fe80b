"""`--session-dir`: each streaming session's readings appended to a file as they are read.

One JSON Lines file per session, `<session_id>.jsonl`: a header line (rate, encoding, model), one
line per utterance as soon as it is read (written, flushed and synced before the tool answers),
and an end line. The header names the OAuth principal that opened the session, and only that
principal reads the file back (none without OAuth). Nothing is rewritten, so a crash loses at most the line being written, and a
restarted server can still return an old session's trace (`read`). A damaged last line is skipped
with a warning.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from emotion_tool.engine.results import UtteranceReading

from .security import RequestError
from .sessions import Session, SessionTrace

__all__ = ["SessionJournal"]

_ID = re.compile(r"^ses_[A-Za-z0-9_-]{8,64}$")  # what SessionStore.new_id makes; nothing else names a file


class SessionJournal:
    """Append-only files of streaming sessions in one directory (created, mode 0700, if missing)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory).expanduser()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"--session-dir {directory}: cannot create it ({e.strerror}); give a writable directory") from e
        if not self.directory.is_dir() or not os.access(self.directory, os.W_OK):
            raise ValueError(f"--session-dir {directory}: not a writable directory; give a writable directory")

    def _path(self, session_id: str) -> Path:
        if not _ID.match(session_id):
            raise RequestError(f"unknown session {session_id!r}; start one with start_emotion_session")
        return self.directory / f"{session_id}.jsonl"

    def _append(self, session_id: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        fd = os.open(self._path(session_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)  # on disk before the caller hears of the reading
        finally:
            os.close(fd)

    def start(self, session: Session, *, model_id: str, random_weights: bool, principal: str | None = None) -> None:
        """Writes the header of a new session; `principal`: the OAuth caller that opened it, if any."""
        self._append(
            session.id,
            [
                {
                    "kind": "session",
                    "session_id": session.id,
                    "sample_rate": session.sample_rate,
                    "encoding": session.encoding,
                    "model_id": model_id,
                    "random_weights": random_weights,
                    "principal": principal,
                    "started_unix_s": time.time(),
                }
            ],
        )

    def utterances(self, session_id: str, readings: list[UtteranceReading], *, received_s: float) -> None:
        """Appends the utterances just read (one line each)."""
        self._append(
            session_id,
            [{"kind": "utterance", "received_s": received_s, "reading": r.model_dump(mode="json")} for r in readings],
        )

    def end(self, session_id: str, *, received_s: float) -> None:
        """Marks the session ended."""
        self._append(session_id, [{"kind": "end", "received_s": received_s}])

    def read(self, session_id: str, *, principal: str | None = None) -> SessionTrace | None:
        """The trace recorded for `session_id`, or None if there is no file for it or another principal opened it."""
        path = self._path(session_id)
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            return None
        header: dict[str, Any] | None = None
        utterances: list[UtteranceReading] = []
        ended, received_s, damaged = False, 0.0, 0
        for line in lines:
            try:
                record = json.loads(line)
                kind = record["kind"]
                if kind == "session":
                    header = record
                elif kind == "utterance":
                    utterances.append(UtteranceReading.model_validate(record["reading"]))
                    received_s = max(received_s, float(record["received_s"]))
                elif kind == "end":
                    ended, received_s = True, max(received_s, float(record["received_s"]))
            except (ValueError, KeyError, TypeError):
                damaged += 1
        if header is None or header.get("principal") != principal:  # someone else's: as if there were no file
            return None
        warnings = [f"Read from the session file {path.name} (the server restarted since, or the session expired)."]
        if damaged:
            warnings.append(f"{damaged} damaged line(s) of the session file were skipped (a crash while writing).")
        if header.get("random_weights"):
            warnings.append("This checkpoint has random weights (a test model): the readings mean nothing.")
        return SessionTrace(
            session_id=session_id,
            sample_rate=int(header["sample_rate"]),
            encoding=header["encoding"],
            ended=ended,
            received_s=received_s,
            utterances=utterances,
            model_id=str(header["model_id"]),
            random_weights=bool(header.get("random_weights")),
            warnings=warnings,
        )
