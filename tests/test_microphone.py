"""The microphone demo: from a replayed file, from a fake input stream, and through real PortAudio
capturing a PulseAudio null sink that espeak-ng speech is played into. Also the file-analysis demo."""

from __future__ import annotations

import _thread
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from demos import microphone
from demos.microphone import SessionRecord
from emotion_tool.live.streaming import StreamingAnalyzer

REPO = Path(__file__).resolve().parents[1]
UTTERANCE = re.compile(r"^utterance (\d+)\s+([\d.]+)-([\d.]+) s\s+(.*)  latency ([\d.]+) s")
AGENT = re.compile(r"^agent (\d+) \[([^\]]+)\]: (.+)")


def parse(stdout: str) -> tuple[list[tuple[int, float, float]], list[tuple[int, str, str]]]:
    """(index, start_s, end_s) of each utterance line and (index, strategy, reply) of each agent line."""
    utterances, turns = [], []
    for line in stdout.splitlines():
        if m := UTTERANCE.match(line):
            utterances.append((int(m[1]), float(m[2]), float(m[3])))
        elif m := AGENT.match(line):
            turns.append((int(m[1]), m[2], m[3]))
    return utterances, turns


def check_session(
    stdout: str, save_dir: Path, bounds: list[tuple[float, float]], *, offset_s: float | None = 0.0
) -> SessionRecord:
    """Per-utterance lines, one agent reply each, and the saved trace (JSON) and plot (PNG)."""
    utterances, turns = parse(stdout)
    assert [u[0] for u in utterances] == [0, 1, 2], stdout
    # Order and content, not seconds: a real-time capture on a busy machine shifts boundaries a little.
    spans = [(start, end) for _, start, end in utterances]
    assert all(start < end for start, end in spans), utterances
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), utterances
    if offset_s is None:  # capture started at an unknown moment before playback: align on the first start
        offset_s = utterances[0][1] - bounds[0][0]
    for k, (start, end) in enumerate(spans):  # each utterance is heard over its own sentence, not another
        overlap = [min(end - offset_s, true_end) - max(start - offset_s, true_start) for true_start, true_end in bounds]
        assert max(range(len(bounds)), key=overlap.__getitem__) == k and overlap[k] > 0, (k, spans, offset_s, bounds)
    assert [t[0] for t in turns] == [0, 1, 2], stdout
    assert all(t[1] != "no plan" and t[2].strip() for t in turns), turns
    assert "random-weight test checkpoint" in stdout

    record = SessionRecord.model_validate_json((save_dir / "session.json").read_text())
    assert [u.index for u in record.utterances] == [0, 1, 2]
    saved = [t for u in record.utterances for t in (u.start_s, u.end_s)]
    assert saved == pytest.approx([t for u in utterances for t in u[1:]], abs=0.01)
    assert [t.reply for t in record.replies] == [t[2] for t in turns]
    assert record.random_weights and record.dropped_s == 0.0
    png = (save_dir / "session.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    return record


def run_demo(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "demos.microphone", *args],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.subprocess
def test_demo_end_to_end_from_a_replayed_file(tiny_checkpoint, sentences_wav, recognizer, tmp_path):
    path, bounds = sentences_wav
    t0 = time.monotonic()
    done = run_demo("--input-file", str(path), "--model", str(tiny_checkpoint), "--save", str(tmp_path), "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    duration_s = sf.info(path).duration
    assert time.monotonic() - t0 >= duration_s  # replayed at real-time pace, not faster
    record = check_session(done.stdout, tmp_path, bounds)
    assert record.source == f"file {path.name}" and record.duration_s == pytest.approx(duration_s, abs=0.05)

    # The demo's readings are the streaming analyzer's on the same audio, at the demo's default
    # operating point ("live"), which the session file names.
    assert record.operating_point == "trimmed+bf16"
    assert record.stream_options["read_ahead"] is True  # on by default where reads are cheap; same readings
    from emotion_tool import EmotionRecognizer

    live = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="live")
    wav, _ = sf.read(path, dtype="float32")
    with StreamingAnalyzer(live) as an:
        expected = an.push(wav) + an.flush()
    for got, want in zip(record.utterances, expected):
        assert got.reading.probabilities == pytest.approx(want.reading.probabilities, abs=1e-4)


class FakeSoundDevice(types.ModuleType):
    """A stand-in for the sounddevice module: one 48 kHz microphone that 'hears' a recording.

    Its InputStream calls the callback from a thread with blocks of the recording, as fast as it
    can, then presses Ctrl-C (interrupts the main thread), as a user ending the session would.
    """

    PortAudioError = type("PortAudioError", (Exception,), {})

    def __init__(self, wav: np.ndarray, rate: int):
        super().__init__("sounddevice")
        self.wav, self.rate = wav, rate
        self.opened: dict = {}

    def query_devices(self, device=None, kind=None):
        if device not in (None, 0, "fake"):
            raise ValueError(f"No input device matching {device!r}")
        return {"name": "fake microphone", "index": 0, "default_samplerate": float(self.rate), "max_input_channels": 1}

    def InputStream(self, **kwargs):
        self.opened = kwargs
        return _FakeStream(self, **kwargs)


class _FakeStream:
    def __init__(self, sd: FakeSoundDevice, *, callback, blocksize, channels, dtype, **_):
        assert channels == 1 and dtype == "float32"
        self.sd, self.callback, self.blocksize = sd, callback, blocksize
        self.stopped = threading.Event()

    def start(self):
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        for i in range(0, len(self.sd.wav), self.blocksize):
            block = self.sd.wav[i : i + self.blocksize, None].copy()
            self.callback(block, len(block), None, None)
        time.sleep(0.5)
        if not self.stopped.is_set():
            _thread.interrupt_main()  # Ctrl-C

    def stop(self):
        self.stopped.set()

    def close(self):
        self.stopped.set()


def test_demo_records_from_the_input_stream_until_ctrl_c(tiny_checkpoint, sentences_wav, tmp_path, monkeypatch, capsys):
    path, bounds = sentences_wav
    wav, _ = sf.read(path, dtype="float32")
    fake = FakeSoundDevice(soxr.resample(wav, 16000, 48000).astype(np.float32), 48000)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    assert microphone.main(["--model", str(tiny_checkpoint), "--save", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "listening on fake microphone at 48000 Hz" in out
    assert fake.opened["samplerate"] == 48000 and fake.opened["device"] == 0
    check_session(out, tmp_path, bounds)


def test_agent_replies_come_in_order_and_a_failing_chat_model_does_not_end_the_session(
    recognizer, sentences_wav, tmp_path
):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    wav, _ = sf.read(sentences_wav[0], dtype="float32")
    with StreamingAnalyzer(recognizer) as an:
        utterances = an.push(wav) + an.flush()
    replies = [AIMessage(content=[{"type": "text", "text": "I hear you."}]) for _ in range(2)]  # content blocks
    blocks = GenericFakeChatModel(messages=iter(replies))
    responder = microphone.Responder(recognizer, blocks, thread_id="t", db_path=tmp_path / "a.sqlite")
    for u in utterances[:2]:
        responder.submit(u)
    turns = responder.ready(wait=True)
    responder.close()
    assert [(t.index, t.reply) for t in turns] == [(0, "I hear you."), (1, "I hear you.")]
    assert all(t.strategy for t in turns)

    empty = GenericFakeChatModel(messages=iter([]))  # raises on the first call, like a chat model that is down
    responder = microphone.Responder(recognizer, empty, thread_id="t", db_path=tmp_path / "b.sqlite")
    responder.submit(utterances[0])
    [turn] = responder.ready(wait=True)
    responder.close()
    assert turn.strategy is None and turn.reply.startswith("(agent error: ")


@pytest.mark.subprocess
def test_missing_portaudio_is_one_clear_line(tiny_checkpoint, tmp_path):
    # sounddevice raises OSError at import when the PortAudio library is missing; so does this stand-in.
    (tmp_path / "sounddevice.py").write_text('raise OSError("PortAudio library not found")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = run_demo("--model", str(tiny_checkpoint), "--no-agent", env=env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "PortAudio is not available (PortAudio library not found)" in done.stderr
    assert "apt install libportaudio2" in done.stderr and "--input-file" in done.stderr


@pytest.mark.subprocess
def test_missing_input_device_is_one_clear_line(tiny_checkpoint):
    try:
        import sounddevice  # noqa: F401  (raises OSError without PortAudio)
    except OSError:
        pytest.skip("PortAudio is not installed (Debian: apt install libportaudio2)")
    done = run_demo("--model", str(tiny_checkpoint), "--no-agent", "--device", "no such microphone")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]  # ALSA may log its own lines before PortAudio answers
    assert "Traceback" not in done.stderr
    assert "error: no input device 'no such microphone'" in last and "--list-devices" in last


@pytest.fixture
def pulse_env():
    """A private PulseAudio daemon whose default source is the monitor of a null sink.

    Yields the environment that points clients (paplay, and ALSA's pulse plugin under PortAudio) at it.
    """
    daemon_exe, paplay = shutil.which("pulseaudio"), shutil.which("paplay")
    if daemon_exe is None or paplay is None:
        pytest.skip("pulseaudio is not installed (Debian: apt install pulseaudio libasound2-plugins)")
    run_dir = Path(tempfile.mkdtemp(prefix="pa-"))  # short: a unix socket path has at most 107 bytes
    socket = run_dir / "native"
    script = run_dir / "default.pa"
    script.write_text(
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={socket}\n"
        "load-module module-null-sink sink_name=speech rate=48000\n"
        "set-default-sink speech\n"
        "set-default-source speech.monitor\n"
    )
    # The daemon's own state stays in run_dir; as root it warns about not using --system but runs.
    daemon_env = {**os.environ, **{k: str(run_dir) for k in ("HOME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "PULSE_RUNTIME_PATH")}}
    daemon = subprocess.Popen(
        [daemon_exe, "-n", "-F", str(script), "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
         "--log-target=stderr"],
        env=daemon_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not socket.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                daemon.kill()
                pytest.fail(f"the PulseAudio daemon did not start: {daemon.communicate()[1][-2000:]}")
            time.sleep(0.1)
        yield {**os.environ, "PULSE_SERVER": f"unix:{socket}"}
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(run_dir, ignore_errors=True)


def read_until(proc: subprocess.Popen, prefix: str, timeout: float) -> list[str]:
    """Lines of proc's stdout up to and including the first that starts with `prefix`."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline().decode()  # unbuffered: nothing read ahead is hidden from communicate()
            if not line:
                break
            lines.append(line)
            if line.startswith(prefix):
                return lines
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"the demo never printed {prefix!r}; stdout {lines}, stderr {err.decode()[-2000:]}")


@pytest.mark.subprocess
def test_demo_captures_the_default_input_through_portaudio(pulse_env, tiny_checkpoint, sentences_wav, tmp_path):
    path, bounds = sentences_wav
    demo = subprocess.Popen(
        [sys.executable, "-m", "demos.microphone", "--model", str(tiny_checkpoint), "--save", str(tmp_path), "--threads", "1"],
        cwd=REPO, env=pulse_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
    )  # fmt: skip
    try:
        head = read_until(demo, "listening on", timeout=90)
        assert head[-1].startswith("listening on default at ")
        # Real-time playback into the null sink; its monitor is what the "microphone" hears.
        subprocess.run([shutil.which("paplay"), str(path)], env=pulse_env, check=True, timeout=60)
        time.sleep(1.0)  # the closing pause reaches the analyzer
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = (b.decode() for b in demo.communicate(timeout=60))
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0, err
    assert "Traceback" not in err
    record = check_session("".join(head) + out, tmp_path, bounds, offset_s=None)
    assert record.source == "default"
    assert record.duration_s >= sf.info(path).duration


@pytest.mark.subprocess
def test_analyze_file_demo_prints_the_trace_and_draws_it(tiny_checkpoint, speech_wav, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "demos.analyze_file", str(speech_wav), "--model", str(tiny_checkpoint),
         "--out", str(tmp_path / "trace.png")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("speech.wav: ") and lines[1].startswith("overall: ")
    assert sum(1 for line in lines if re.match(r"^\s+[\d.]+-\s*[\d.]+ s  ", line)) >= 2
    assert "random weights" in done.stdout
    assert (tmp_path / "trace.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.subprocess
def test_analyze_file_demo_reports_a_bad_file_in_one_line(tiny_checkpoint, tmp_path):
    (tmp_path / "notes.wav").write_text("not audio")
    done = subprocess.run(
        [sys.executable, "-m", "demos.analyze_file", str(tmp_path / "notes.wav"), "--model", str(tiny_checkpoint)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot decode audio" in done.stderr
