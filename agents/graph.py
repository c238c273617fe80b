"""The ready agent: perceive → plan → respond, with conversations kept per thread and each
speaker's profile kept across threads, both in SQLite by default."""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

try:
    import fcntl
except ImportError:  # Windows: set-up is serialized by SQLite alone
    fcntl = None  # type: ignore[assignment]

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from .nodes import (
    EmotionPerceptionNode,
    PlannerNode,
    ResponderNode,
    Transcriber,
    TranscriptionNode,
)
from .planning import PlanningConfig
from .prompts import SYSTEM_PROMPT
from .state import STATE_TYPES, EmpathicState, InputState, OutputState
from .turns import SerialTurnsGraph

if TYPE_CHECKING:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.store.sqlite import SqliteStore

    from emotion_tool import AnalysisOptions, EmotionRecognizer

DB_ENV_VAR = "EMOTION_TOOL_AGENT_DB"  # overrides the default conversation database file
DB_FILE_NAME = "conversations.sqlite"


def default_db_path() -> Path:
    """$EMOTION_TOOL_AGENT_DB, else conversations.sqlite in the user's data directory for emotion-tool.

    Linux: $XDG_DATA_HOME or ~/.local/share; macOS: ~/Library/Application Support; Windows: %LOCALAPPDATA%.
    """
    if os.environ.get(DB_ENV_VAR):
        return Path(os.environ[DB_ENV_VAR]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "emotion-tool" / DB_FILE_NAME


def sqlite_checkpointer(path: str | os.PathLike | None = None) -> "SqliteSaver":
    """A SQLite checkpointer on `path` (default `default_db_path()`), creating the file if needed.

    Its serializer revives the state's pydantic types (readings, history entries, plans) as
    themselves. Close it with ``saver.conn.close()`` when done.
    """
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: F401  (is it installed?)
    except ImportError as e:
        raise RuntimeError(
            'the default checkpointer needs langgraph-checkpoint-sqlite; pip install "emotion-tool[agents]", '
            "or pass checkpointer=InMemorySaver() (or False for none)"
        ) from e
    db = Path(path).expanduser() if path is not None else default_db_path()
    conn = open_database(db, check_same_thread=False)  # LangGraph may run nodes on worker threads
    try:
        saver = _saver_class()(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES))
        saver.db_path = db
        with _setting_up(db):
            saver.setup()
    except sqlite3.Error as e:
        conn.close()
        raise unreadable_database(db, e) from e
    return saver


@contextmanager
def _setting_up(db: Path) -> Iterator[None]:
    """Holds `<db>.setup.lock` while a checkpointer or store creates or migrates its tables.

    Two processes opening a new database at once would otherwise both run the store's migrations, and
    the second fails on the migration the first has just recorded. The lock is an advisory lock on a
    file of its own, dropped by the system if the process dies.
    """
    if fcntl is None:
        yield
        return
    fd = os.open(f"{db}.setup.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def unreadable_database(db: str | os.PathLike, error: sqlite3.Error) -> RuntimeError:
    """The error for a conversation file SQLite cannot use, with what to do about it."""
    return RuntimeError(
        f"{db}: cannot use it as the conversation database ({error}); if it is damaged or not a database, "
        "move it aside (a new one is created) or give another file"
    )


def sqlite_store(path: str | os.PathLike | None = None) -> "SqliteStore":
    """A SQLite store on `path` (default `default_db_path()`, beside the conversations), set up.

    It keeps each speaker's profile across threads. Close it with ``store.conn.close()`` when done.
    """
    try:
        from langgraph.store.sqlite import SqliteStore  # noqa: F401  (is it installed?)
    except ImportError as e:
        raise RuntimeError(
            'the default store needs langgraph-checkpoint-sqlite; pip install "emotion-tool[agents]", '
            "or pass store=InMemoryStore() (or False for none)"
        ) from e
    db = Path(path).expanduser() if path is not None else default_db_path()
    conn = open_database(db, check_same_thread=False, isolation_level=None)  # autocommit, as SqliteStore expects
    try:
        store = _store_class()(conn)
        store.db_path = db
        with _setting_up(db):
            store.setup()
    except sqlite3.Error as e:
        conn.close()
        raise unreadable_database(db, e) from e
    return store


def unwritable_database(db: str | os.PathLike, error: sqlite3.Error) -> RuntimeError:
    """The error for a write the conversation database refused mid-turn (a full disk, a lost lock, a
    file made read-only), with what to do about it."""
    return RuntimeError(
        f"{db}: this turn could not be saved ({error}); what was saved before is kept. Free space on its disk "
        "(or make it writable again) and send the turn again; the agent reopens the same file"
    )


def _refusing(cls: type, methods: tuple[str, ...]) -> type:
    """`cls` with `methods` turning SQLite's errors into `unwritable_database`'s message."""

    def wrap(name: str):  # type: ignore[no-untyped-def]
        inner = getattr(cls, name)

        def method(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[no-untyped-def]
            try:
                return inner(self, *args, **kwargs)
            except sqlite3.OperationalError as e:
                raise unwritable_database(getattr(self, "db_path", "the conversation database"), e) from e

        method.__name__ = name
        method.__doc__ = inner.__doc__
        return method

    return type(cls.__name__, (cls,), {name: wrap(name) for name in methods})


@lru_cache(maxsize=1)
def _saver_class() -> type:
    from langgraph.checkpoint.sqlite import SqliteSaver

    return _refusing(SqliteSaver, ("put", "put_writes", "delete_thread"))


@lru_cache(maxsize=1)
def _store_class() -> type:
    from langgraph.store.sqlite import SqliteStore

    return _refusing(SqliteStore, ("batch",))


def open_database(db: Path, **connect: Any) -> sqlite3.Connection:
    """A connection to the conversation database at `db`, checked before any turn depends on it.

    Refused with a message naming the path and the fix: a path whose folder cannot be made, one that
    is not a regular file (a FIFO would block the opening, a directory cannot hold a database), a file
    or folder this process may not write, and a file SQLite cannot read (damaged, or not a database).
    An empty file is a new database. A database left behind by a full disk (its rollback journal
    beside it) opens once there is space again: SQLite rolls the unfinished write back, and nothing
    committed before it is lost.

    Raises:
        ValueError: the path cannot hold the database.
        RuntimeError: SQLite cannot use the file.
    """
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{db}: cannot create its folder ({e.strerror}); give a path in a writable folder") from e
    try:
        mode = db.stat().st_mode
    except FileNotFoundError:
        mode = None  # created by the connection
    if mode is not None and not stat.S_ISREG(mode):
        raise ValueError(f"{db} is not a regular file (a folder, FIFO or device); give the path of a conversation database file (it is created if missing)")
    where = db if mode is not None else db.parent
    if not os.access(where, os.W_OK):
        raise ValueError(f"{where} is read-only for this process; give a conversation database path it may write (the folder must be writable too, for SQLite's journal)")
    try:
        conn = sqlite3.connect(db, **connect)
    except sqlite3.Error as e:
        raise unreadable_database(db, e) from e
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a file that is not SQLite fails here, not mid-turn
    except sqlite3.Error as e:
        conn.close()
        raise unreadable_database(db, e) from e
    return conn


def resolve_chat_model(chat_model: BaseChatModel | Runnable | str | None) -> BaseChatModel | Runnable | None:
    """A chat model from an instance or a "provider:model" string (through LangChain's init_chat_model)."""
    if chat_model is None or isinstance(chat_model, Runnable):
        return chat_model
    if not isinstance(chat_model, str):
        raise TypeError(
            f"chat_model must be a LangChain chat model, a 'provider:model' string or None, "
            f"got {type(chat_model).__name__}"
        )
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as e:
        raise RuntimeError(
            f"chat_model={chat_model!r} is built by init_chat_model from the langchain package; "
            "pip install langchain plus the provider's package (e.g. langchain-openai), "
            "or pass a chat model instance"
        ) from e
    return init_chat_model(chat_model)


def build_empathic_agent(
    recognizer: "EmotionRecognizer",
    *,
    chat_model: BaseChatModel | Runnable | str | None = None,
    checkpointer: BaseCheckpointSaver | Literal[False] | None = None,
    store: BaseStore | Literal[False] | None = None,
    db_path: str | os.PathLike | None = None,
    send_audio: bool = False,
    planning: PlanningConfig = PlanningConfig(),
    transcriber: Transcriber | None = None,
    analysis_options: "AnalysisOptions | None" = None,
    system_prompt: str = SYSTEM_PROMPT,
    refine_with: "EmotionRecognizer | None" = None,
) -> CompiledStateGraph:
    """An emotion-aware conversational agent: perceive → plan → respond (→ transcribe first, if asked).

    Invoke it once per user turn on a thread::

        graph.invoke({"audio": "turn.wav", "transcript": "optional words"},
                     config={"configurable": {"thread_id": "t1"}})

    Args:
        recognizer: the engine that reads emotions.
        chat_model: a LangChain chat model, a "provider:model" string for init_chat_model, or None
            for the deterministic offline responder.
        checkpointer: where conversations persist; None opens SQLite at `db_path`, False compiles
            without one (e.g. when a LangGraph server supplies persistence).
        store: where each speaker's profile persists across conversations (any LangGraph
            `BaseStore`); None opens SQLite at `db_path` when `checkpointer` is None too, and means
            none beside a checkpointer of your own; False compiles without one (a LangGraph server
            supplies its own). Without a store the speaker's scale comes from the thread alone.
        db_path: the SQLite file for the default checkpointer and store (default `default_db_path()`).
        send_audio: give the chat model the user's audio as an audio content block; set it only for
            models that take audio input.
        planning: thresholds of the planner.
        transcriber: speech-to-text for turns that arrive without words (e.g. `WhisperTranscriber`).
        analysis_options: analysis options for perception (defaults: the recognizer's).
        system_prompt: the responder's system message template.
        refine_with: a faithful recognizer (e.g. at "published") beside a fast `recognizer` (e.g. at
            "live"): each turn is answered on the fast reading, then read again faithfully on a thread of
            its own; the faithful reading replaces the fast one in the history at the thread's next turn,
            and the speaker's profile is corrected with it (`EmotionPerceptionNode`).
    """
    if db_path is not None and checkpointer is not None:
        raise ValueError(
            "db_path chooses the file of the default SQLite checkpointer and store; pass either it or checkpointer"
        )
    graph = StateGraph(EmpathicState, input_schema=InputState, output_schema=OutputState)
    graph.add_node("perceive", EmotionPerceptionNode(recognizer, options=analysis_options, refine_with=refine_with))
    graph.add_node("plan", PlannerNode(planning))
    graph.add_node(
        "respond", ResponderNode(resolve_chat_model(chat_model), send_audio=send_audio, system_prompt=system_prompt)
    )
    if transcriber is not None:
        graph.add_node("transcribe", TranscriptionNode(transcriber))
        graph.add_edge(START, "transcribe")
        graph.add_edge("transcribe", "perceive")
    else:
        graph.add_edge(START, "perceive")
    graph.add_edge("perceive", "plan")
    graph.add_edge("plan", "respond")
    graph.add_edge("respond", END)
    if store is None:
        store = sqlite_store(db_path) if checkpointer is None else False
    if checkpointer is None:
        checkpointer = sqlite_checkpointer(db_path)
    compiled = graph.compile(
        checkpointer=None if checkpointer is False else checkpointer,
        store=None if store is False else store,
        name="empathic_agent",
    )
    compiled.__class__ = SerialTurnsGraph  # the same graph, one turn at a time per thread (agents/turns.py)
    return compiled
