"""The session loop and the command line: sources feed the analyzer, readings go to the agent and the view."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from emotion_tool import CheckpointError, EmotionRecognizer
from emotion_tool.cli.arguments import add_calibration_arg
from emotion_tool.cli import run_command
from emotion_tool.engine.results import UtteranceReading
from emotion_tool.live.segmenter import STREAM_VAD
from emotion_tool.live.streaming import StreamingAnalyzer, StreamOptions

from .records import POLL_S, PROG, DemoError, SessionRecord, AgentTurn
from .responder import Responder
from .saving import save_session
from .sources import FileSource, InputMonitor, _import_sounddevice, open_microphone
from .view import KeyWatcher, LiveView, describe_turn, describe_utterance


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


def run(args: argparse.Namespace) -> int:
    plain = args.plain or not sys.stdout.isatty()
    if args.list_devices:
        devices = _import_sounddevice().query_devices()
        if len(devices) == 0:
            print(
                "no audio devices found (PortAudio sees none: no sound card, or no access to it); "
                "try the demo without a microphone: --input-file FILE"
            )
        else:
            print(devices)
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
        # Reading during the closing pause costs a wasted read when speech resumes: worth it where reads are cheap.
        read_ahead = args.read_ahead if args.read_ahead is not None else recognizer.point.context == "trimmed"
        options = replace(options, read_ahead=read_ahead)
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
    add_calibration_arg(p, help="a calibration.json from `emotion-tool calibrate`: calibrated probabilities, named in the readings")
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
    p.add_argument("--read-ahead", action=argparse.BooleanOptionalAction, default=None,
                   help="read each utterance during its closing pause, so its reading is ready sooner (same numbers); "
                        "default: on for the trimmed-context points such as 'live', whose reads are cheap")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: PyTorch's; 1 helps on a busy machine)")
    p.add_argument("--plain", action="store_true", help="print one line per utterance instead of the live view")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_command(PROG, lambda: run(args), errors=(DemoError,))
