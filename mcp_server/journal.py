"""`--session-dir`: each streaming session's readings appended to a file as they are read.

One JSON Lines file per session, `<session_id>.jsonl`: a header line (rate, encoding, model, and
who opened it), one line per utterance as soon as it is read (written, flushed and synced before
the tool answers), and an end line. Nothing is rewritten, so a crash loses at most the line being
written, and a restarted server can still return an old session's trace (`read`).

A session file is read back only for the caller that opened the session: the same key the live
session is bound to (`context.client_key`: the OAuth principal, a 2025-era client's
`Mcp-Session-Id`, or no one, where the session id itself is the capability). Files are opened the
way audio files are: regular files only (a FIFO, a device or a symbolic link is refused, never
waited on), without blocking, at most `MAX_FILE_BYTES`, and every line checked against what this
server writes. A damaged last line (a crash while writing) is skipped with a warning; any other
line that is not what this server wrote makes the file one clear error, never a trace.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from emotion_tool.engine.results import UtteranceReading

from .security import RequestError
from .sessions import Session, SessionTrace

__all__ = ["SessionJournal", "JournalError", "MAX_FILE_BYTES"]

_ID = re.compile(r"^ses_[A-Za-z0-9_-]{8,64}$")  # what SessionStore.new_id makes; nothing else names a file
# A session lasts at most an hour (`max_session_s`); an utterance line is about 1 KB and utterances are
# at least a fraction of a second apart, so a real file stays well under this.
MAX_FILE_BYTES = 32 * 1024 * 1024
_HEADER_BYTES = 64 * 1024  # the header line is a few hundred bytes
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_ENCODINGS = ("pcm_s16le", "pcm_f32le")


class JournalError(RequestError):
    """A session file that cannot be served: not a regular file, too large, or not what this server wrote."""


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
        path = self._path(session_id)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _NONBLOCK | _CLOEXEC, 0o600)
        except OSError as e:
            raise self._unusable(path, e) from e
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise JournalError(f"the session file {path.name} in --session-dir is not a regular file; remove it (readings were not recorded)")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)  # on disk before the caller hears of the reading
        finally:
            os.close(fd)

    @staticmethod
    def _unusable(path: Path, e: OSError) -> JournalError:
        if e.errno == errno.ELOOP:
            why = "is a symbolic link; session files are regular files this server writes: remove the link"
        elif e.errno == errno.ENXIO:
            why = "is a FIFO or socket; remove it from --session-dir"
        else:
            why = f"cannot be opened ({e.strerror}); check --session-dir"
        return JournalError(f"the session file {path.name} {why}")

    def start(self, session: Session, *, model_id: str, random_weights: bool, principal: str | None = None) -> None:
        """Writes the header of a new session: who opened it (`session.owner`, and `principal`, the OAuth
        caller, if any), its audio format and the model."""
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
                    "owner": session.owner,
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

    def refined(self, session_id: str, reading: UtteranceReading, *, received_s: float) -> None:
        """Appends a faithful reading that replaces the fast one of the same index (a refinement)."""
        self._append(session_id, [{"kind": "refined", "received_s": received_s, "reading": reading.model_dump(mode="json")}])

    def end(self, session_id: str, *, received_s: float) -> None:
        """Marks the session ended."""
        self._append(session_id, [{"kind": "end", "received_s": received_s}])

    def read(self, session_id: str, *, owner: str) -> SessionTrace | None:
        """The trace recorded for `session_id`, or None if there is no file for it or another caller opened it.

        Raises:
            JournalError: the file is not a regular file, is over `MAX_FILE_BYTES`, or holds a line this
                server did not write (the message names it and says what to do).
        """
        path = self._path(session_id)
        data = self._read_bytes(path)
        if data is None:
            return None
        lines = data.split(b"\n")
        complete = lines[:-1]  # what ends in a newline; the rest is a line a crash cut short, or nothing
        torn = lines[-1]
        if not complete:
            return None  # not even a header was finished: nothing was ever answered from this file
        header = self._header(path, complete[0], session_id)
        if _owner_of(header) != owner:  # someone else's: as if there were no file
            return None
        utterances: list[UtteranceReading] = []
        ended, received_s = False, 0.0
        for number, line in enumerate(complete[1:], start=2):
            if ended:
                raise self._damaged(path, number, "a line after the end line")
            try:
                record = json.loads(line)
                kind = record["kind"] if isinstance(record, dict) else None
                if kind == "utterance":
                    utterances.append(UtteranceReading.model_validate(record["reading"]))
                elif kind == "refined":
                    faithful = UtteranceReading.model_validate(record["reading"])
                    at_index = [i for i, u in enumerate(utterances) if u.index == faithful.index]
                    if not at_index:
                        raise ValueError(f"a refined reading of utterance {faithful.index}, which no line before it has")
                    utterances[at_index[0]] = faithful
                elif kind != "end":
                    raise ValueError(f"kind {kind!r} is not utterance, refined or end")
                at = record["received_s"]
                if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at) or at < 0:
                    raise ValueError(f"received_s {at!r} is not a time in seconds")
            except (ValueError, KeyError, TypeError, ValidationError) as e:
                raise self._damaged(path, number, _reason(e)) from e
            received_s = max(received_s, float(at))
            ended = kind == "end"
        warnings = [f"Read from the session file {path.name} (the server restarted since, or the session expired)."]
        if torn.strip():
            warnings.append("The last line of the session file was cut short (a crash while writing) and was skipped.")
        if header.get("random_weights"):
            warnings.append("This checkpoint has random weights (a test model): the readings mean nothing.")
        return SessionTrace(
            session_id=session_id,
            sample_rate=header["sample_rate"],
            encoding=header["encoding"],
            ended=ended,
            received_s=received_s,
            utterances=utterances,
            model_id=header["model_id"],
            random_weights=bool(header.get("random_weights")),
            warnings=warnings,
        )

    def belongs_to(self, session_id: str, owner: str) -> bool:
        """Whether `owner` opened the session of this file, from its header line alone (what completions ask
        of every file as the user types: the rest of the file is not read). A file that is not this server's
        belongs to no one."""
        try:
            data = self._read_bytes(self._path(session_id), limit=_HEADER_BYTES)
        except JournalError:
            return False
        if not data or b"\n" not in data:
            return False
        try:
            header = self._header(self._path(session_id), data.split(b"\n", 1)[0], session_id)
        except JournalError:
            return False
        return _owner_of(header) == owner

    def _read_bytes(self, path: Path, *, limit: int | None = None) -> bytes | None:
        """The file's bytes (at most `limit` of them), or None where there is none; opened like audio:
        never blocking, regular files only, bounded."""
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._unusable(path, e) from e
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise JournalError(f"the session file {path.name} is not a regular file (a FIFO, device or directory); remove it from --session-dir")
            if info.st_size > MAX_FILE_BYTES:
                raise JournalError(
                    f"the session file {path.name} holds {info.st_size / 2**20:.0f} MiB, more than a session ever writes "
                    f"({MAX_FILE_BYTES / 2**20:.0f} MiB); it is not served: move it out of --session-dir"
                )
            chunks, left = [], (MAX_FILE_BYTES + 1) if limit is None else limit
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
                chunks.append(chunk)
                left -= len(chunk)
            if left <= 0 and limit is None:  # it grew past the bound while being read
                raise JournalError(f"the session file {path.name} grew past {MAX_FILE_BYTES / 2**20:.0f} MiB while being read; it is not served")
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _header(self, path: Path, line: bytes, session_id: str) -> dict[str, Any]:
        try:
            header = json.loads(line)
            if not isinstance(header, dict) or header.get("kind") != "session":
                raise ValueError("the first line is not the session's header")
            if header.get("session_id") != session_id:
                raise ValueError(f"it names session {header.get('session_id')!r}, not the file's {session_id!r}")
            rate = header.get("sample_rate")
            if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 48000:
                raise ValueError(f"sample_rate {rate!r} is not a rate a session takes")
            if header.get("encoding") not in _ENCODINGS:
                raise ValueError(f"encoding {header.get('encoding')!r} is not one of {', '.join(_ENCODINGS)}")
            if not isinstance(header.get("model_id"), str):
                raise ValueError("model_id is not a string")
            for key in ("owner", "principal"):
                if header.get(key) is not None and not isinstance(header[key], str):
                    raise ValueError(f"{key} is not a string")
        except (ValueError, TypeError) as e:
            raise self._damaged(path, 1, _reason(e)) from e
        return header

    @staticmethod
    def _damaged(path: Path, number: int, reason: str) -> JournalError:
        return JournalError(
            f"the session file {path.name} is not one this server wrote (line {number}: {reason}); its trace is not "
            "served. Move the file out of --session-dir; other sessions are unaffected"
        )


def _owner_of(header: dict[str, Any]) -> str:
    """Who opened the session; files from before owners were recorded name only the OAuth principal."""
    owner = header.get("owner")
    if isinstance(owner, str):
        return owner
    return header.get("principal") or "anonymous"


def _reason(e: Exception) -> str:
    if isinstance(e, ValidationError):
        first = e.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    if isinstance(e, KeyError):
        return f"no {e.args[0]!r}"
    return str(e)[:200]
