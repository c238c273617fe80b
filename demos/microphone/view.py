"""What the terminal shows: the live view (level, current reading, trace, the agent's answers) and the key watcher."""

from __future__ import annotations

import math
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from emotion_tool.science.plot import DIM_COLOURS, LABEL_COLOURS
from emotion_tool.engine.results import UtteranceReading
from emotion_tool.live.streaming import StreamingAnalyzer

from .records import _DIMS, TRACE_ROWS, AgentTurn

if TYPE_CHECKING:
    from .sources import InputMonitor


# --- display -----------------------------------------------------------------------------------------


class Shown(Protocol):
    """What the view draws from a session (the app's `Session` is one)."""

    latest: UtteranceReading | None
    utterances: list[UtteranceReading]
    replies: Sequence[AgentTurn]

    @property
    def responder_busy(self) -> bool: ...


def describe_utterance(u: UtteranceReading) -> str:
    """One plain line per utterance, e.g. 'utterance 0  1.02-4.31 s  angry (0.71; ...)  latency 0.21 s'."""
    kind = "interim  " if u.interim else "utterance"
    cut = "  (cut at the maximum length)" if u.cut else ""
    times = f"{u.start_s:.2f}-{u.end_s:.2f} s"
    return f"{kind} {u.index}  {times}  {u.reading.describe()}  latency {u.latency_s:.2f} s{cut}"


def describe_turn(turn: AgentTurn) -> str:
    return f"agent {turn.index} [{turn.strategy or 'no plan'}]: {turn.reply}"


class LiveView:
    """The rich terminal view: level, speaking or silent, the latest reading, the agent, the trace."""

    def __init__(self, *, source: str, model: str, random_weights: bool):
        self.source = source
        self.model = model
        self.random_weights = random_weights

    def render(self, session: Shown, monitor: InputMonitor, analyzer: StreamingAnalyzer) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        head = Text.assemble(("emotion-tool live  ", "bold"), f"{self.source}  ·  {self.model}")
        if self.random_weights:
            head.append("\nRANDOM WEIGHTS: a test checkpoint; the readings mean nothing", style="bold red")
        level = max(0.0, min(1.0, (monitor.level_db + 60) / 60)) if math.isfinite(monitor.level_db) else 0.0
        meter = Text.assemble(
            ("input ", "dim"),
            ("█" * int(level * 30), "green" if level < 0.85 else "red"),
            ("·" * (30 - int(level * 30)), "dim"),
            f" {monitor.level_db:6.1f} dBFS  " if math.isfinite(monitor.level_db) else "   -inf dBFS  ",
            ("● speaking" if analyzer.speaking else "○ silent", "bold green" if analyzer.speaking else "dim"),
            f"   stream {analyzer.stream_s:6.1f} s",
        )
        if analyzer.dropped_s > 0:
            meter.append(f"   dropped {analyzer.dropped_s:.1f} s (analysis fell behind)", style="bold red")
        if monitor.error:
            meter.append(f"\n{monitor.error}", style="bold red")
        parts: list[Any] = [head, meter]

        latest = session.latest
        if latest is not None:
            r = latest.reading
            bars = Table.grid(padding=(0, 1))
            for label, p in sorted(r.probabilities.items(), key=lambda kv: -kv[1]):
                bars.add_row(label, Text("█" * round(p * 40), style=LABEL_COLOURS.get(label, "white")), f"{p:.2f}")
            dims = Table.grid(padding=(0, 1))
            for d in _DIMS:
                v = getattr(r, d)
                bar = Text("█" * round(v * 20) + "·" * (20 - round(v * 20)), style=DIM_COLOURS[d])
                dims.add_row(d, bar, f"{v:.2f}")
            state = "in progress" if latest.interim else f"latency {latest.latency_s:.2f} s"
            title = (
                f"utterance {latest.index}  {latest.start_s:.1f}-{latest.end_s:.1f} s  ·  "
                f"{'possibly ' if r.uncertain else ''}{r.label}, confidence {r.confidence:.2f}  ·  {state}"
            )
            parts.append(Panel(Group(bars, dims), title=title, title_align="left"))
        turn = session.replies[-1] if session.replies else None
        if turn is not None:
            parts.append(Panel(turn.reply, title=f"agent · {turn.strategy or 'no plan'}", title_align="left"))
        elif session.responder_busy:
            parts.append(Text("agent is thinking…", style="dim"))

        if session.utterances:
            table = Table(title="session trace", title_justify="left", expand=False)
            for col in ("#", "time (s)", "emotion", "conf", "val", "aro", "dom", "latency", "agent"):
                table.add_column(col)
            strategies = {t.index: t.strategy or "-" for t in session.replies}
            for u in session.utterances[-TRACE_ROWS:]:
                r = u.reading
                table.add_row(
                    str(u.index), f"{u.start_s:.1f}-{u.end_s:.1f}", r.label, f"{r.confidence:.2f}",
                    f"{r.valence:.2f}", f"{r.arousal:.2f}", f"{r.dominance:.2f}", f"{u.latency_s:.2f}",
                    strategies.get(u.index, "…"),
                )  # fmt: skip
            parts.append(table)
        parts.append(Text("q or Enter ends the session (Ctrl-C too)", style="dim"))
        return Group(*parts)


class KeyWatcher:
    """Sets `pressed` on q or Enter when stdin is a terminal; does nothing otherwise."""

    def __init__(self) -> None:
        self.pressed = threading.Event()
        self._saved: Any = None
        self._fd: int | None = None

    def __enter__(self) -> "KeyWatcher":
        try:
            import termios
            import tty

            if not sys.stdin.isatty() or os.tcgetpgrp(sys.stdin.fileno()) != os.getpgrp():
                return self  # no terminal, or running in the background (the terminal is not ours)
            self._fd = sys.stdin.fileno()
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)  # keys arrive one by one, without Enter
        except (ImportError, OSError, ValueError):  # Windows, or no usable terminal: Ctrl-C still works
            self._fd = None
            return self
        threading.Thread(target=self._watch, name="keys", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def _watch(self) -> None:
        import select

        while not self.pressed.is_set():
            ready, _, _ = select.select([sys.stdin], [], [], 0.2)
            if ready and sys.stdin.read(1) in ("q", "Q", "\n", "\r"):
                self.pressed.set()
