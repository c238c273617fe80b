"""`emotion-mcp` against hostile or careless clients: foreign Host/Origin, slow requests, shutdown while busy,
long traces, cancellation, and clients that go away."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import anyio
import httpx2
import numpy as np
import pytest
import soundfile as sf
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.test_mcp_transports import START_TIMEOUT_S, STOP_TIMEOUT_S, emotion_mcp, server_env

EXIT_BOUND_S = 20  # generous: "a few seconds" on an idle machine; only a hang passes it
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}},
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def served(args: list[str], log: Path, *, host: str = "127.0.0.1", **env: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`emotion-mcp --transport streamable-http` on `host`, a free port; yields the process and the banner's URL."""
    with open(log, "w") as err:
        proc = subprocess.Popen(
            emotion_mcp() + ["--transport", "streamable-http", "--host", host, "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={k: v for k, v in server_env(**env).items() if k != "COLUMNS"},  # the default width: records must not wrap
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while (found := re.search(r"serving on (\S+) \(", log.read_text())) is None:
            if proc.poll() is not None:
                pytest.fail(f"emotion-mcp exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"emotion-mcp did not start within {START_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield proc, found.group(1)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _post(url: str, **headers: str) -> httpx2.Response:
    return httpx2.post(url, json=INIT, headers={**ACCEPT, **headers}, timeout=30)


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


# --- Host and Origin -----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.2", "::1", "[::1]", "LOCALHOST"])
@pytest.mark.subprocess  # starts emotion-mcp in a child process
def test_every_loopback_bind_without_token_refuses_foreign_host_and_origin(host: str, tiny_checkpoint: Path, tmp_path: Path):
    with served(["--model", str(tiny_checkpoint), "--device", "cpu"], tmp_path / "server.log", host=host) as (_, url):
        parts = urlsplit(url)  # the banner prints a URL a client can use (IPv6 bracketed once)
        assert parts.scheme == "http" and parts.hostname is not None and parts.path == "/mcp"
        assert _post(url).status_code == 200  # the URL as printed works, Host and all
        port = _port(url)
        for foreign in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
            response = _post(url, Host=foreign)
            assert response.status_code == 421, (foreign, response.text)
            assert "loopback" in response.text
        response = _post(url, Origin="http://evil.example")
        assert response.status_code == 403 and "--allow-origin" in response.text
        assert _post(url, Origin=f"http://localhost:{port}").status_code == 200  # a page on this machine
        assert _post(url, Host=f"LocalHost:{port}").status_code == 200  # case does not matter


@pytest.mark.subprocess  # starts emotion-mcp in a child process
def test_allowed_origin_may_call_and_a_bad_one_is_refused_at_start(tiny_checkpoint: Path, tmp_path: Path):
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--allow-origin", "https://app.example"]
    with served(args, tmp_path / "server.log") as (_, url):
        assert _post(url, Origin="https://app.example").status_code == 200
        assert _post(url, Origin="https://other.example").status_code == 403
    bad = subprocess.run(
        emotion_mcp() + ["--transport", "streamable-http", "--allow-origin", "app.example/path"],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=120,
    )
    assert bad.returncode == 2 and "scheme://host" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.subprocess  # starts emotion-mcp in a child process
def test_slow_headers_and_bodies_time_out(tiny_checkpoint: Path, tmp_path: Path):
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--header-timeout", "1", "--body-timeout", "1"]
    with served(args, tmp_path / "server.log") as (_, url):
        port = _port(url)
        with socket.create_connection(("127.0.0.1", port), timeout=EXIT_BOUND_S) as slow:
            slow.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
            assert slow.recv(1024) == b""  # closed by the server (a hang fails on the socket timeout)
        with socket.create_connection(("127.0.0.1", port), timeout=EXIT_BOUND_S) as slow:
            slow.sendall(
                b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{"
            )
            answer = slow.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408"), answer
        assert _post(url).status_code == 200  # still serving


# --- long work, cancellation, shutdown ------------------------------------------------------------------


@pytest.fixture(scope="module")
def very_long_wav(speech_wav: Path, tmp_path_factory) -> Path:
    """Twenty minutes of speech: a trace of it with a 0.5-s hop reads 2400 windows (within the budget)."""
    path = tmp_path_factory.mktemp("very_long") / "very_long.wav"
    speech, rate = sf.read(speech_wav, dtype="float32")
    sf.write(path, np.tile(speech, -(-rate * 1200 // speech.shape[0]))[: rate * 1200], rate, subtype="PCM_16")
    return path


LONG_TRACE = {"trace": True, "window_s": 1.0, "hop_s": 0.5}  # 2400 windows of the 20-minute recording


async def _wait_for_progress(progressed: anyio.Event) -> None:
    with anyio.fail_after(START_TIMEOUT_S):
        await progressed.wait()


def _long_trace_server_args(checkpoint: Path, wav: Path) -> list[str]:
    """emotion-mcp serving a long recording's trace, with INFO logs to read what it did."""
    return ["--model", str(checkpoint), "--device", "cpu", "--allow-dir", str(wav.parent), "--log-level", "INFO",
            "--max-duration", "1800", "--max-request-mb", "64"]  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.subprocess  # starts emotion-mcp in a child process
def test_a_busy_server_stops_on_a_signal_and_cancels_its_work(sig, tiny_checkpoint: Path, very_long_wav: Path, tmp_path: Path):
    log = tmp_path / "server.log"
    args = _long_trace_server_args(tiny_checkpoint, very_long_wav)
    with served(args, log) as (proc, url):
        outcome: dict = {}

        async def main() -> None:
            progressed = anyio.Event()

            async def on_progress(done, total, message):
                outcome["total"] = total
                progressed.set()

            async def long_call() -> None:
                try:
                    async with httpx2.AsyncClient(timeout=EXIT_BOUND_S * 3) as http:
                        async with Client(streamable_http_client(url, http_client=http)) as c:
                            outcome["result"] = await c.call_tool(
                                "analyze_emotion", {"audio_path": very_long_wav.name, **LONG_TRACE}, progress_callback=on_progress
                            )
                except BaseException as e:  # the server went away under the call: expected
                    outcome["error"] = e

            async with anyio.create_task_group() as tg:
                tg.start_soon(long_call)
                await _wait_for_progress(progressed)
                proc.send_signal(sig)
                started = time.monotonic()
                while proc.poll() is None and time.monotonic() - started < EXIT_BOUND_S:
                    await anyio.sleep(0.1)
                tg.cancel_scope.cancel()

        anyio.run(main)
        assert proc.poll() is not None, f"still running {EXIT_BOUND_S} s after {sig.name}:\n{log.read_text()}"
        text = log.read_text()
        assert outcome["total"] > 1000  # the long trace was under way
        if "result" in outcome:  # the caller was told, if the answer could still reach it
            assert outcome["result"].is_error and "shutting down" in outcome["result"].content[0].text
        assert "stopped a model call at its next window" in text, text
        assert "Traceback" not in text, text


@pytest.mark.subprocess  # starts emotion-mcp in a child process
def test_a_short_call_is_served_during_a_long_trace_and_a_departed_client_frees_the_model(
    tiny_checkpoint: Path, very_long_wav: Path, speech_wav: Path, tmp_path: Path
):
    import shutil

    shutil.copy(speech_wav, very_long_wav.parent / "short.wav")
    log = tmp_path / "server.log"
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(very_long_wav.parent),
            "--max-duration", "1800", "--max-request-mb", "64"]  # fmt: skip
    with served(args, log) as (_, url):
        events: list[str] = []

        async def short_call(tag: str) -> None:
            async with httpx2.AsyncClient(timeout=START_TIMEOUT_S) as http:
                async with Client(streamable_http_client(url, http_client=http)) as c:
                    result = await c.call_tool("analyze_emotion", {"audio_path": "short.wav"})
                    assert not result.is_error, result.content
                    events.append(tag)

        async def main() -> None:
            progressed = anyio.Event()

            async def on_progress(done, total, message):
                if done >= 2:
                    progressed.set()

            async def long_call() -> None:
                async with httpx2.AsyncClient(timeout=START_TIMEOUT_S * 5) as http:
                    async with Client(streamable_http_client(url, http_client=http)) as c:
                        await c.call_tool(
                            "analyze_emotion",
                            {"audio_path": very_long_wav.name, "trace": True, "window_s": 1.0, "hop_s": 0.5},
                            progress_callback=on_progress,
                        )
                        events.append("long finished")

            async with anyio.create_task_group() as tg:
                tg.start_soon(long_call)
                await _wait_for_progress(progressed)
                await short_call("short served during the trace")  # not after it: the trace takes turns by window
                tg.cancel_scope.cancel()  # the long client goes away (its connection closes)
            await short_call("short served after the disconnect")

        anyio.run(main)
        assert events == ["short served during the trace", "short served after the disconnect"]
        deadline = time.monotonic() + EXIT_BOUND_S
        while "stopped a model call at its next window: the caller went away" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()  # the departed client's trace was stopped
            time.sleep(0.1)
        text = log.read_text()
        assert "Traceback" not in text, text
        # One disconnect, one log line, at the default terminal width.
        lines = [line for line in text.splitlines() if "stopped a model call" in line or "the caller went away" in line]
        assert len(lines) == 1 and lines[0].endswith("stopped a model call at its next window: the caller went away"), text


@pytest.mark.subprocess  # starts emotion-mcp in a child process
def test_bounds_on_trace_work_are_tool_errors_that_say_the_fix(tiny_checkpoint: Path, very_long_wav: Path, tmp_path: Path):
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(very_long_wav.parent),
            "--max-duration", "1800", "--max-request-mb", "64"]  # fmt: skip
    with served(args, tmp_path / "server.log") as (_, url):

        async def main() -> list:
            async with httpx2.AsyncClient(timeout=START_TIMEOUT_S) as http:
                async with Client(streamable_http_client(url, http_client=http)) as c:
                    fifo = very_long_wav.parent / "stall.wav"
                    if not fifo.exists():
                        os.mkfifo(fifo)
                    with anyio.fail_after(EXIT_BOUND_S):  # refused by its type, never opened for reading
                        special = await c.call_tool("analyze_emotion", {"audio_path": fifo.name})
                    assert special.is_error and "not a regular file" in special.content[0].text
                    out = []
                    for hop in (0.1, 0.00001, float("nan")):
                        try:
                            out.append(await c.call_tool("analyze_emotion", {"audio_path": very_long_wav.name, "trace": True, "window_s": 1.0, "hop_s": hop}))
                        except MCPError as e:
                            out.append(e)
                    return out

        budget, tiny, nan = anyio.run(main)
        text = budget.content[0].text
        assert budget.is_error and "plans 11991 windows, over the limit of 2400" in text and "use hop_s >= 0.5" in text
        for refused in (tiny, nan):
            message = refused.content[0].text if hasattr(refused, "content") else str(refused)
            assert "hop_s" in message and ("greater than or equal to 0.1" in message or "valid number" in message), message


# --- stdio: signals, cancellation, time budget, the 2025-06-18 handshake ------------------------------

# Runs emotion-mcp with the client's stdin and stdout, and writes down its pid and, once it exits, its status,
# so that a test can signal the server itself and see it exit while its client still holds stdin open.
_WATCH = """
import os, subprocess, sys
pid_file, status_file, log_file, *command = sys.argv[1:]
with open(log_file, "w") as log:
    server = subprocess.Popen(command, stderr=log)
    with open(pid_file + ".part", "w") as f:
        f.write(str(server.pid))
    os.replace(pid_file + ".part", pid_file)
    status = server.wait()
with open(status_file + ".part", "w") as f:
    f.write(str(status))
os.replace(status_file + ".part", status_file)
"""


def _watched(args: list[str], where: Path):
    from mcp import StdioServerParameters

    files = [str(where / name) for name in ("pid", "status", "server.log")]
    return StdioServerParameters(command=sys.executable, args=["-c", _WATCH, *files, *emotion_mcp(), *args], env=server_env())


@pytest.mark.parametrize("sig, busy", [(signal.SIGINT, True), (signal.SIGTERM, True), (signal.SIGINT, False)])
@pytest.mark.subprocess  # starts emotion-mcp in a child process
def test_a_stdio_server_stops_on_a_signal_while_its_client_holds_stdin(sig, busy: bool, tiny_checkpoint: Path, very_long_wav: Path, tmp_path: Path):
    args = _long_trace_server_args(tiny_checkpoint, very_long_wav)
    status, log = tmp_path / "status", tmp_path / "server.log"
    outcome: dict = {}

    async def main() -> None:
        progressed = anyio.Event()

        async def on_progress(done, total, message):
            outcome["total"] = total
            progressed.set()

        with anyio.fail_after(START_TIMEOUT_S * 2):
            async with Client(_watched(args, tmp_path)) as c:
                async with anyio.create_task_group() as tg:

                    async def long_call() -> None:
                        try:
                            outcome["result"] = await c.call_tool(
                                "analyze_emotion", {"audio_path": very_long_wav.name, **LONG_TRACE}, progress_callback=on_progress
                            )
                        except Exception as e:  # the server went away under the call
                            outcome["error"] = e

                    if busy:
                        tg.start_soon(long_call)
                        await _wait_for_progress(progressed)
                    else:
                        assert (await c.list_tools()).tools  # serving, and idle
                    os.kill(int((tmp_path / "pid").read_text()), sig)
                    started = time.monotonic()
                    while not status.exists() and time.monotonic() - started < EXIT_BOUND_S:
                        await anyio.sleep(0.1)
                    outcome["exited"] = status.exists()  # before the client closed stdin
                    tg.cancel_scope.cancel()

    anyio.run(main)
    text = log.read_text()
    assert outcome["exited"], f"still running {EXIT_BOUND_S} s after {sig.name} with stdin open:\n{text}"
    assert status.read_text() == "0", text
    assert "Traceback" not in text, text
    if busy:
        assert outcome["total"] > 1000  # the long trace was under way, and was stopped between windows
        assert "stopped a model call at its next window: the server is shutting down" in text, text
        if "result" in outcome:  # the caller was told, if the answer reached it
            assert outcome["result"].is_error and "shutting down" in outcome["result"].content[0].text


class _RawStdio:
    """JSON-RPC spoken line by line to `emotion-mcp` over its stdin and stdout."""

    def __init__(self, process: anyio.abc.Process):
        from anyio.streams.buffered import BufferedByteReceiveStream

        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.lines = BufferedByteReceiveStream(process.stdout)
        self.notifications: list[dict] = []

    async def send(self, message: dict) -> None:
        await self.process.stdin.send((json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode())

    async def receive(self) -> dict:
        return json.loads(await self.lines.receive_until(b"\n", 1 << 24))

    async def response(self, request_id: int) -> dict:
        """The response to `request_id`; notifications and other responses on the way are kept."""
        while (message := await self.receive()).get("id") != request_id or "method" in message:
            self.notifications.append(message)
        return message


@pytest.mark.subprocess  # starts emotion-mcp in a child process
def test_stdio_2025_06_18_handshake_and_an_explicit_cancel_stop_a_long_trace(
    tiny_checkpoint: Path, very_long_wav: Path, speech_wav: Path, tmp_path: Path
):
    import shutil

    shutil.copy(speech_wav, very_long_wav.parent / "short.wav")
    log = tmp_path / "server.log"
    command = [*emotion_mcp(), "--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(very_long_wav.parent),
               "--max-duration", "1800", "--max-request-mb", "64", "--log-level", "INFO"]  # fmt: skip

    async def main() -> tuple[dict, dict, dict, list]:
        with open(log, "w") as err, anyio.fail_after(START_TIMEOUT_S * 3):
            async with await anyio.open_process(command, stderr=err, env=server_env()) as process:
                rpc = _RawStdio(process)
                client = {"name": "probe", "version": "0"}
                await rpc.send({"id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client}})
                init = await rpc.response(1)
                await rpc.send({"method": "notifications/initialized"})
                await rpc.send({"id": 2, "method": "tools/list"})
                listed = await rpc.response(2)
                long_call = {"name": "analyze_emotion", "arguments": {"audio_path": very_long_wav.name, **LONG_TRACE}, "_meta": {"progressToken": "long"}}
                await rpc.send({"id": 3, "method": "tools/call", "params": long_call})
                while not any(n.get("method") == "notifications/progress" for n in rpc.notifications):
                    rpc.notifications.append(await rpc.receive())
                await rpc.send({"method": "notifications/cancelled", "params": {"requestId": 3, "reason": "the user moved on"}})
                await rpc.send({"id": 4, "method": "tools/call", "params": {"name": "analyze_emotion", "arguments": {"audio_path": "short.wav"}}})
                short = await rpc.response(4)
                await process.stdin.aclose()  # the client goes: the server ends
                await process.wait()
                return init, listed, short, rpc.notifications

    init, listed, short, seen = anyio.run(main)
    text = log.read_text()
    assert init["result"]["protocolVersion"] == "2025-06-18" and init["result"]["serverInfo"]["name"] == "emotion"
    assert {"analyze_emotion", "start_emotion_session"} <= {t["name"] for t in listed["result"]["tools"]}
    assert not short["result"]["isError"] and short["result"]["structuredContent"]["summary"]["label"], short
    progress = [n["params"] for n in seen if n.get("method") == "notifications/progress"]
    assert progress[0]["total"] > 1000 and progress[-1]["progress"] < progress[0]["total"]  # stopped, not finished
    assert not any(n.get("id") == 3 and "result" in n and not n["result"].get("isError") for n in seen)
    assert "stopped a model call at its next window: the caller went away" in text and "Traceback" not in text, text


@pytest.mark.anyio
async def test_a_call_over_its_time_budget_is_a_tool_error_through_the_server(tiny_checkpoint: Path, very_long_wav: Path):
    from mcp import StdioServerParameters

    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(very_long_wav.parent),
            "--max-duration", "1800", "--max-request-mb", "64", "--time-budget", "1"]  # fmt: skip
    params = StdioServerParameters(command=emotion_mcp()[0], args=[*emotion_mcp()[1:], *args], env=server_env())
    with anyio.fail_after(START_TIMEOUT_S * 2):
        async with Client(params) as c:
            over = await c.call_tool("analyze_emotion", {"audio_path": very_long_wav.name, **LONG_TRACE})
            assert over.is_error
            message = over.content[0].text
            assert "ran past its time budget of 1 s and was stopped" in message and "--time-budget" in message, message
            tools = await c.list_tools()  # still serving
    assert tools.tools


# --- nothing recorded is lost ------------------------------------------------------------------------


@pytest.mark.subprocess  # starts emotion-mcp in a child process
def test_session_readings_survive_a_crash_with_session_dir(tiny_checkpoint: Path, sentences_wav, tmp_path: Path):
    import base64
    import json

    from mcp import StdioServerParameters

    path, _ = sentences_wav
    speech, rate = sf.read(path, dtype="int16")
    assert rate == 16000
    sessions = tmp_path / "sessions"
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--session-dir", str(sessions)]
    params = StdioServerParameters(command=emotion_mcp()[0], args=[*emotion_mcp()[1:], *args], env=server_env())

    async def first_life() -> tuple[str, int]:
        with anyio.fail_after(START_TIMEOUT_S * 2):
            async with Client(params) as c:
                sid = (await c.call_tool("start_emotion_session", {"sample_rate": 16000})).structured_content["session_id"]
                heard = 0
                for i in range(0, speech.shape[0], 8000):  # half-second chunks, never ending the session
                    chunk = base64.b64encode(speech[i : i + 8000].tobytes()).decode()
                    heard += len((await c.call_tool("push_audio", {"session_id": sid, "chunk_base64": chunk})).structured_content["readings"])
                assert heard >= 1
                file = sessions / f"{sid}.jsonl"
                lines = [json.loads(line) for line in file.read_text().splitlines()]
                assert lines[0]["kind"] == "session" and sum(r["kind"] == "utterance" for r in lines) == heard  # written as read
                # The server now stops with the session still open: its memory of it goes with it.
                return sid, heard

    sid, heard = anyio.run(first_life)

    async def second_life() -> dict:
        with anyio.fail_after(START_TIMEOUT_S * 2):
            async with Client(params) as c:
                return (await c.call_tool("get_emotion_trace", {"session_id": sid})).structured_content

    trace = anyio.run(second_life)
    assert trace["session_id"] == sid and len(trace["utterances"]) == heard and not trace["ended"]
    assert any("session file" in w for w in trace["warnings"])


# --- the queue, in process ---------------------------------------------------------------------------


def test_queue_takes_turns_by_window_and_stops_a_cancelled_job():
    from mcp_server.inference import InferenceQueue, JobCancelled

    queue = InferenceQueue(max_pending=4)
    order: list[str] = []
    long_windows = [0]

    def long_job(job) -> None:
        for _ in range(10_000):
            time.sleep(0.005)  # one window
            long_windows[0] += 1
            job.check()
        order.append("long finished")

    def short_job(job) -> str:
        time.sleep(0.005)
        job.check(more_to_do=False)
        order.append("short finished")
        return "short"

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(queue.run, long_job)
            while long_windows[0] < 3:
                await anyio.sleep(0.01)
            assert await queue.run(short_job) == "short"  # served while the long job is under way
            windows_then = long_windows[0]
            tg.cancel_scope.cancel()  # the long job's caller goes away
        assert long_windows[0] <= windows_then + 2  # it stopped at its next window
        assert queue.pending == 0

    anyio.run(main)
    assert order == ["short finished"]
    # A time budget stops a job between windows with an error that says how to ask for less.
    budget = InferenceQueue(max_pending=1, time_budget_s=0.05)
    with pytest.raises(JobCancelled, match="time budget of 0.05 s"):
        anyio.run(budget.run, long_job)


def test_origin_check_on_a_public_bind_with_a_token_leaves_host_names_alone():
    from mcp_server.security import HostOriginMiddleware

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = HostOriginMiddleware(app, bind_host="0.0.0.0", allowed_origins=["https://app.example"], check_host=False)

    def status(**headers: str) -> int:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
        anyio.run(guard, scope, receive, send)
        return sent[0]["status"]

    assert status(host="speech.example.org:8765") == 200  # the token guards this bind; its names are its own
    assert status(host="speech.example.org:8765", origin="https://app.example") == 200
    assert status(host="speech.example.org:8765", origin="https://evil.example") == 403


def test_oauth_counts_as_a_token_and_its_resource_host_is_a_name_of_the_server():
    from mcp_server import ServerOptions
    from mcp_server.auth import OAuthOptions
    from mcp_server.http import guarded_app

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    oauth = OAuthOptions(issuer_url="https://id.example.org", resource_url="https://GPU.example.org:8765/mcp")

    def status(bind: str, **headers: str) -> int:
        guard = guarded_app(app, host=bind, token=None, allowed_origins=(), options=ServerOptions(), oauth=oauth)
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "method": "GET", "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
        anyio.run(guard, scope, receive, send)
        return sent[0]["status"]

    # Loopback bind (e.g. behind a reverse proxy): foreign names refused, the resource's own name accepted.
    assert status("127.0.0.1", host="evil.example") == 421
    assert status("127.0.0.1", host="gpu.example.org:8765") == 200
    assert status("127.0.0.1", host="127.0.0.1:8765", origin="https://evil.example") == 403
    assert status("127.0.0.1", host="127.0.0.1:8765", origin="https://gpu.example.org:8765") == 200
    # Public bind: every request needs an issuer's token, so, as with a static token, host names are not checked.
    assert status("0.0.0.0", host="speech.example.org") == 200


@pytest.mark.subprocess
def test_a_2025_client_that_vanishes_mid_trace_has_its_call_stopped_once_it_does_not_resume(tiny_checkpoint: Path, very_long_wav: Path, tmp_path: Path):
    """The socket of a legacy (2025) session's POST is closed mid-trace, as a crashed client leaves it: the
    call stops once the session has not resumed within the grace, and the server logs it and serves on."""
    from mcp_server.departures import RESUME_GRACE_S

    log = tmp_path / "server.log"
    with served(_long_trace_server_args(tiny_checkpoint, very_long_wav), log) as (_, url):
        opened = _post(url)
        assert opened.status_code == 200, opened.text
        session = opened.headers["mcp-session-id"]
        legacy = {**ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
        assert httpx2.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=legacy, timeout=30).status_code == 202
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "analyze_emotion", "arguments": {"audio_path": very_long_wav.name, **LONG_TRACE}, "_meta": {"progressToken": "p"}}}  # fmt: skip
        body = json.dumps(call).encode()
        parts = urlsplit(url)
        head = [f"POST {parts.path} HTTP/1.1", f"Host: 127.0.0.1:{parts.port}", *(f"{k}: {v}" for k, v in legacy.items()), f"Content-Length: {len(body)}"]
        s = socket.create_connection((parts.hostname, parts.port), timeout=START_TIMEOUT_S)
        s.sendall("\r\n".join([*head, "", ""]).encode() + body)
        seen = b""
        while seen.count(b"notifications/progress") < 2:  # the trace is under way
            chunk = s.recv(65536)
            assert chunk, seen
            seen += chunk
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close with RST, as a crash does
        s.close()
        gone = time.monotonic()
        deadline = gone + RESUME_GRACE_S + EXIT_BOUND_S
        while "did not resume its stream" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert time.monotonic() - gone >= RESUME_GRACE_S * 0.9  # not before the grace: a dropped client may come back
        lines = [line for line in log.read_text().splitlines() if "stopped a model call" in line]
        assert len(lines) == 1 and lines[0].endswith(f"the client's connection closed and it did not resume its stream within {RESUME_GRACE_S:g} s"), log.read_text()
        # The model is free: the session's next call is served.
        again = httpx2.post(url, json={"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "analyze_emotion", "arguments": {"audio_path": very_long_wav.name, "trace": False}}}, headers=legacy, timeout=START_TIMEOUT_S * 4)
        assert again.status_code == 200 and '"isError":false' in again.text.replace(" ", ""), again.text[-500:]
