"""Live microphone demo: how you sound, utterance by utterance, and how the empathic agent answers.

    python -m demos.microphone                               # the default input device
    python -m demos.microphone --device 2 --save session/     # another device; keep trace and plot
    python -m demos.microphone --input-file speech.wav        # no microphone: replay a file in real time
    python -m demos.microphone --llm openai:gpt-4o-mini       # replies from a chat model

Audio flows: input callback -> `StreamingAnalyzer.feed` -> (worker) silero-vad utterances -> readings
-> the agent (on its own thread) -> the terminal. `--input-file` drives the same callback from a
thread that sleeps each block's duration, so it exercises exactly the microphone's path.
q or Enter (in a terminal) or Ctrl-C ends the session; the last utterance is then read and answered.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from emotion_tool import AudioError, CheckpointError, EmotionRecognizer
from emotion_tool.cli import run_command
from emotion_tool.plot import DIM_COLOURS, LABEL_COLOURS, save_figure
from emotion_tool.results import CalibrationNote, UtteranceReading
from emotion_tool.segmenter import STREAM_VAD
from emotion_tool.streaming import StreamingAnalyzer, StreamOptions

PROG = "python -m demos.microphone"
BLOCK_S = 0.05  # seconds of audio per callback block: 50 ms keeps the level meter lively
POLL_S = 0.05  # how often the main loop collects readings and redraws
TRACE_ROWS = 8  # utterances shown in the running trace
_DIMS = ("valence", "arousal", "dominance")


class DemoError(Exception):
    """A problem the user can fix (no PortAudio, no device, bad file...); printed as one line."""


class AgentTurn(BaseModel):
    """The agent's answer to one utterance."""

    index: int = Field(description="The utterance answered (UtteranceReading.index)")
    strategy: str | None = Field(description="The plan's name, e.g. 'de-escalate'; null if the agent failed")
    reply: str = Field(description="What the agent said, or why it could not answer")
    seconds: float = Field(description="Seconds the agent took")


class SessionRecord(BaseModel):
    """What `--save` writes as session.json: the readings of a live session and the agent's answers."""

    model_id: str = Field(description="The checkpoint that read the session")
    operating_point: str = Field(description="How utterances were fed to the network (\"published\" reproduces the model)")
    random_weights: bool = Field(description="True for random-weight test checkpoints: readings mean nothing")
    source: str = Field(description="The input device, or the replayed file")
    input_sample_rate: int = Field(description="Hz of the captured audio (resampled to 16 kHz for analysis)")
    duration_s: float = Field(description="Seconds of stream analysed")
    dropped_s: float = Field(description="Seconds of audio lost because analysis fell behind")
    stream_options: dict[str, Any] = Field(description="The StreamOptions the analyzer ran with")
    calibration: CalibrationNote | None = Field(
        default=None, exclude_if=lambda v: v is None, description="The calibration the readings went through; absent: none"
    )
    utterances: list[UtteranceReading] = Field(description="One final reading per utterance, in order")
    replies: list[AgentTurn] = Field(description="The agent's answers, one per utterance unless disabled")


# --- audio sources -----------------------------------------------------------------------------------

AudioCallback = Callable[[np.ndarray, int, Any, Any], None]
"""sounddevice's InputStream callback: callback(indata (frames, channels), frames, time, status)."""


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError when the PortAudio library is missing
        raise DemoError(
            f"PortAudio is not available ({e}); install it (Debian/Ubuntu: apt install libportaudio2, "
            "macOS: brew install portaudio), or try the demo without a microphone: --input-file FILE"
        ) from e
    except ImportError as e:
        raise DemoError(
            "the microphone needs the sounddevice package; pip install 'emotion-tool[demo]', "
            "or try the demo without a microphone: --input-file FILE"
        ) from e
    return sounddevice


def _device_arg(device: str | None) -> int | str | None:
    return int(device) if device is not None and device.isdigit() else device


def open_microphone(device: str | None, callback: AudioCallback) -> tuple[Any, int, str]:
    """An unstarted `sounddevice.InputStream` (mono float32) on `device` (index, name part, or the default).

    Returns:
        (stream, sample rate in Hz, device name).
    """
    sd = _import_sounddevice()
    try:
        info = sd.query_devices(_device_arg(device), kind="input")
    except (ValueError, sd.PortAudioError) as e:
        which = f"input device {device!r}" if device is not None else "default input device"
        raise DemoError(
            f"no {which} ({e}); list devices with --list-devices, pick one with --device, "
            "or try the demo without a microphone: --input-file FILE"
        ) from e
    rate = int(info["default_samplerate"])
    try:
        stream = sd.InputStream(
            device=info["index"],
            channels=1,
            samplerate=rate,
            dtype="float32",
            blocksize=int(rate * BLOCK_S),
            callback=callback,
        )
    except sd.PortAudioError as e:
        raise DemoError(f"cannot open {info['name']!r} for recording at {rate} Hz ({e}); try another --device") from e
    return stream, rate, str(info["name"])


class FileSource:
    """Replays a file through an input callback at real-time pace, like an `InputStream` would.

    A thread hands `callback` blocks of (frames, 1) float32 at the file's own rate and sleeps each
    block's duration (against a clock, so delays do not add up).
    """

    def __init__(self, path: str | os.PathLike, callback: AudioCallback, *, block_s: float = BLOCK_S):
        import soundfile as sf

        try:
            wav, self.samplerate = sf.read(path, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, OSError) as e:
            raise DemoError(f"cannot read {path} ({e}); give a WAV, FLAC, OGG or MP3 file") from e
        if wav.shape[0] == 0:
            raise DemoError(f"{path} holds no audio")
        self._wav = wav.mean(axis=1, keepdims=True, dtype=np.float32)
        self._callback = callback
        self._block = max(1, int(self.samplerate * block_s))
        self._stop = threading.Event()
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._play, name="file-source", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def close(self) -> None:
        self.stop()

    def _play(self) -> None:
        t0 = time.monotonic()
        for i in range(0, self._wav.shape[0], self._block):
            if self._stop.is_set():
                break
            block = self._wav[i : i + self._block]
            self._callback(block, block.shape[0], None, None)
            delay = t0 + (i + block.shape[0]) / self.samplerate - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
        self.finished.set()


class InputMonitor:
    """The input callback: meters the level and feeds the analyzer. Never raises into the audio thread."""

    def __init__(self, analyzer: StreamingAnalyzer | None = None):
        self.analyzer = analyzer  # set before the source starts
        self.level_db = -math.inf  # RMS of the latest block, dB full scale
        self.overflows = 0  # blocks the audio system reported as lost
        self.error: str | None = None  # the first bad chunk, if any

    def __call__(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self.overflows += 1
        rms = float(np.sqrt(np.mean(np.square(indata, dtype=np.float64)))) if frames else 0.0
        self.level_db = 20 * math.log10(rms) if rms > 0 else -math.inf
        if self.analyzer is None:
            return
        try:
            self.analyzer.feed(indata)
        except (AudioError, RuntimeError) as e:
            if self.error is None:
                self.error = str(e)


# --- the agent ---------------------------------------------------------------------------------------


class Responder:
    """Runs the empathic agent on its own thread, one utterance after another, in order."""

    def __init__(
        self, recognizer: EmotionRecognizer, chat_model: Any, *, thread_id: str, db_path: str | os.PathLike
    ):
        """chat_model: a LangChain chat model, a "provider:model" string, or None for the offline responder."""
        try:
            from agents import build_empathic_agent
        except ImportError as e:
            raise DemoError(
                f"the agent cannot be loaded ({e}); pip install 'emotion-tool[agents]', or run with --no-agent"
            ) from e
        try:
            self._graph = build_empathic_agent(recognizer, chat_model=chat_model, db_path=db_path)
        except (ImportError, RuntimeError, ValueError, TypeError) as e:
            raise DemoError(f"cannot set up the chat model {chat_model!r}: {e}") from e
        self._config = {"configurable": {"thread_id": thread_id}}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent")
        self._pending: list[concurrent.futures.Future[AgentTurn]] = []

    def submit(self, utterance: UtteranceReading) -> None:
        self._pending.append(self._pool.submit(self._answer, utterance))

    def ready(self, *, wait: bool = False) -> list[AgentTurn]:
        """Answers finished so far, in utterance order (all of them with `wait`)."""
        done: list[AgentTurn] = []
        while self._pending and (wait or self._pending[0].done()):
            done.append(self._pending.pop(0).result())
        return done

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _answer(self, utterance: UtteranceReading) -> AgentTurn:
        t0 = time.monotonic()
        try:
            out = self._graph.invoke({"reading": utterance.reading, "transcript": None}, config=self._config)
            text = _text_of(out["messages"][-1].content)
            strategy = out["strategy"].name
        except Exception as e:  # a failing chat model must not end the session; the turn says what failed
            strategy, text = None, f"(agent error: {e})"
        return AgentTurn(index=utterance.index, strategy=strategy, reply=text, seconds=time.monotonic() - t0)


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of content blocks (text blocks kept)."""
    if isinstance(content, str):
        return content
    parts = [p if isinstance(p, str) else p.get("text", "") for p in content if isinstance(p, (str, dict))]
    return " ".join(part for part in parts if part)


# --- display -----------------------------------------------------------------------------------------


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

    def render(self, session: "Session", monitor: InputMonitor, analyzer: StreamingAnalyzer) -> Any:
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


# --- the session -------------------------------------------------------------------------------------


class Session:
    """Collects readings and answers, and prints them (plainly, when the output is not a terminal)."""

    def __init__(self, responder: Responder | None, *, plain: bool):
        self.responder = responder
        self.plain = plain
        self.utterances: list[UtteranceReading] = []
        self.replies: list[AgentTurn] = []
        self.latest: UtteranceReading | None = None

    @property
    def responder_busy(self) -> bool:
        return self.responder is not None and self.responder.busy

    def take(self, readings: Sequence[UtteranceReading]) -> None:
        for u in readings:
            self.latest = u
            if self.plain:
                print(describe_utterance(u), flush=True)
            if u.interim:
                continue
            self.utterances.append(u)
            if self.responder is not None:
                self.responder.submit(u)

    def collect(self, *, wait: bool = False) -> None:
        if self.responder is None:
            return
        for turn in self.responder.ready(wait=wait):
            self.replies.append(turn)
            if self.plain:
                print(describe_turn(turn), flush=True)


def plot_session(record: SessionRecord, path: str | os.PathLike) -> Path:
    """Saves a PNG of a session: probabilities stacked per utterance, valence/arousal/dominance lines."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise DemoError("--save draws a plot with matplotlib; pip install 'emotion-tool[demo]'") from e

    fig, (ax_p, ax_d) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    us = record.utterances
    labels = list(us[0].reading.probabilities) if us else list(LABEL_COLOURS)
    starts = np.array([u.start_s for u in us])
    widths = np.array([u.end_s - u.start_s for u in us])
    bottom = np.zeros(len(us))
    for label in labels:
        p = np.array([u.reading.probabilities[label] for u in us])
        ax_p.bar(starts, p, width=widths, bottom=bottom, align="edge", label=label, color=LABEL_COLOURS.get(label))
        bottom += p
    strategies = {t.index: t.strategy for t in record.replies if t.strategy}
    for u in us:  # the agent's plan above each utterance
        if u.index in strategies:
            mid = (u.start_s + u.end_s) / 2
            ax_p.text(mid, 1.02, f"plan: {strategies[u.index]}", ha="center", va="bottom", fontsize=7)
    ax_p.set_ylim(0, 1.12)
    ax_p.set_ylabel("probability")
    ax_p.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    mids = starts + widths / 2
    for d in _DIMS:
        ax_d.plot(mids, [getattr(u.reading, d) for u in us], label=d, color=DIM_COLOURS[d], marker="o")
    ax_d.set_ylim(0, 1)
    ax_d.set_ylabel("0..1")
    ax_d.set_xlabel("stream time (s)")
    ax_d.set_xlim(0, max(record.duration_s, float(starts[-1] + widths[-1]) if us else 1.0))
    ax_d.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    title = f"live session: {record.source} — {len(us)} utterances"
    if record.random_weights:
        title += " — RANDOM WEIGHTS, readings mean nothing"
    ax_p.set_title(title)
    return save_figure(fig, path)


def save_session(record: SessionRecord, directory: str | os.PathLike) -> tuple[Path, Path]:
    """Writes session.json and session.png into `directory`."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "session.json"
    json_path.write_text(record.model_dump_json(indent=2), encoding="utf-8")
    return json_path, plot_session(record, out / "session.png")


def run(args: argparse.Namespace) -> int:
    plain = args.plain or not sys.stdout.isatty()
    if args.list_devices:
        print(_import_sounddevice().query_devices())
        return 0
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    # One callback for both sources; its analyzer is attached once the model is loaded. The input
    # is opened first so that a missing device is reported before a large model loads.
    monitor = InputMonitor()
    if args.input_file:
        source: Any = FileSource(args.input_file, monitor)
        rate, name = int(source.samplerate), f"file {Path(args.input_file).name}"
    else:
        source, rate, name = open_microphone(args.device, monitor)
    try:
        options = StreamOptions(
            sample_rate=rate,
            vad=replace(STREAM_VAD, min_silence_ms=args.min_silence_ms),
            max_utterance_s=args.max_utterance_s,
            interim_every_s=args.interim_s,
        )
        try:
            recognizer = EmotionRecognizer.from_pretrained(
                args.model, device=args.model_device, calibration=args.calibration, operating_point=args.operating_point
            )
        except (CheckpointError, ValueError, OSError) as e:
            raise DemoError(f"cannot load the model: {e}") from e
        with tempfile.TemporaryDirectory(prefix="emotion-mic-") as tmp:
            # Without --db the conversation lives as long as the session, in a file removed at the end.
            db_path = args.db or Path(tmp) / "conversation.sqlite"
            responder = None
            if not args.no_agent:
                responder = Responder(recognizer, args.llm, thread_id=args.thread, db_path=db_path)
            analyzer = monitor.analyzer = StreamingAnalyzer(recognizer, options=options)
            return _session(args, source, name, analyzer, monitor, responder, plain=plain)
    finally:
        source.close()


def _session(
    args: argparse.Namespace,
    source: Any,
    name: str,
    analyzer: StreamingAnalyzer,
    monitor: InputMonitor,
    responder: Responder | None,
    *,
    plain: bool,
) -> int:
    recognizer = analyzer.recognizer
    rate = analyzer.options.sample_rate
    session = Session(responder, plain=plain)
    view = LiveView(source=name, model=recognizer.model_id, random_weights=recognizer.random_weights)
    if plain:
        print(f"listening on {name} at {rate} Hz; model {recognizer.model_id}", flush=True)
        if recognizer.random_weights:
            print("warning: random-weight test checkpoint; the readings mean nothing", flush=True)
        if recognizer.calibration is not None:
            print(f"calibrated with {recognizer.info().calibration.source} (sha256 {recognizer.calibration.digest()})", flush=True)
    with contextlib.ExitStack() as stack:
        keys = stack.enter_context(KeyWatcher())
        redraw: Callable[[], None] | None = None
        if not plain:
            from rich.live import Live

            live = stack.enter_context(Live(view.render(session, monitor, analyzer), refresh_per_second=10))
            redraw = lambda: live.update(view.render(session, monitor, analyzer))  # noqa: E731
        source.start()
        try:
            _loop(source, analyzer, session, keys, redraw)
        except KeyboardInterrupt:
            pass
        finally:
            source.stop()
        session.take(analyzer.flush())  # the utterance still open when the session ended
        session.collect(wait=True)
        if redraw is not None:
            redraw()
    analyzer.close()
    if responder is not None:
        responder.close()

    record = SessionRecord(
        model_id=recognizer.model_id,
        operating_point=recognizer.operating_point(),
        random_weights=recognizer.random_weights,
        source=name,
        input_sample_rate=rate,
        duration_s=analyzer.stream_s,
        dropped_s=analyzer.dropped_s,
        stream_options=asdict(analyzer.options),
        calibration=recognizer.info().calibration,
        utterances=session.utterances,
        replies=session.replies,
    )
    n = len(record.utterances)
    print(f"session: {n} utterance{'' if n == 1 else 's'} in {record.duration_s:.1f} s", flush=True)
    if monitor.error:
        print(f"warning: audio was refused: {monitor.error}", flush=True)
    if record.dropped_s:
        print(f"warning: {record.dropped_s:.1f} s of audio dropped: analysis fell behind", flush=True)
    if args.save:
        json_path, png_path = save_session(record, args.save)
        print(f"saved {json_path} and {png_path}", flush=True)
    return 0


def _loop(
    source: Any,
    analyzer: StreamingAnalyzer,
    session: Session,
    keys: KeyWatcher,
    redraw: Callable[[], None] | None = None,
) -> None:
    finished = getattr(source, "finished", None)
    while not keys.pressed.is_set() and not (finished is not None and finished.is_set()):
        session.take(analyzer.poll())
        session.collect()
        if redraw is not None:
            redraw()
        time.sleep(POLL_S)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="Hub id or checkpoint directory (default: $EMOTION_TOOL_MODEL or the published model)")
    p.add_argument("--calibration", metavar="FILE", default=None, help="a calibration.json from `emotion-tool calibrate`: calibrated probabilities, named in the readings")
    p.add_argument("--model-device", default="auto", help="where the model runs: auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--operating-point", default="live", metavar="NAME",
                   help="live (default: the trimmed context in bf16, which answers within about a second on a CPU "
                   "but moves the readings), published (reproduces the model; a 30-s pass per utterance), or e.g. bf16")
    p.add_argument("--device", default=None, help="input device: index or part of its name (default: the system's default input)")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--input-file", metavar="FILE", help="replay this audio file in real time instead of recording")
    p.add_argument("--llm", metavar="PROVIDER:MODEL", default=None, help="chat model for the agent's replies (default: offline responder)")
    p.add_argument("--no-agent", action="store_true", help="show readings only; no agent replies")
    p.add_argument("--thread", default="mic-session", help="the agent's conversation id")
    p.add_argument("--db", metavar="FILE", help="keep the agent's conversation in this SQLite file (default: forgotten at the end)")
    p.add_argument("--save", metavar="DIR", help="write session.json and session.png into DIR when the session ends")
    p.add_argument("--min-silence-ms", type=int, default=500, help="a pause this long ends an utterance (default 500)")
    p.add_argument("--max-utterance-s", type=float, default=30.0, help="longer speech is cut and goes on (default 30)")
    p.add_argument("--interim-s", type=float, default=None, help="also read an utterance in progress every this many seconds")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: PyTorch's; 1 helps on a busy machine)")
    p.add_argument("--plain", action="store_true", help="print one line per utterance instead of the live view")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_command(PROG, lambda: run(args), errors=(DemoError,))


if __name__ == "__main__":
    sys.exit(main())
