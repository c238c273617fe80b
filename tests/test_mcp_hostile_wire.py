"""`emotion-mcp` against frames and headers a careless or hostile client sends, over real stdio and HTTP.

Each class gets instances of its own: strings that are not Unicode (lone surrogates in every kind of
argument, invalid UTF-8), malformed JSON-RPC (not JSON, batches, no method, the wrong version, odd
ids, deep nesting, a line over the message limit), header tricks (Host with userinfo, a doubled
Origin or Host, a body framed two ways), and limit flags that are not numbers. After each, the same
server answers a good request: one bad frame never stops it for anyone.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.test_mcp_hostile import INIT, served
from tests.test_mcp_transports import START_TIMEOUT_S, STOP_TIMEOUT_S, emotion_mcp, server_env

ANSWER_TIMEOUT_S = 60  # generous for a loaded machine; a request that is never answered is what fails


class StdioServer:
    """`emotion-mcp` over stdio with raw pipes: frames go in as bytes, answers come out as parsed lines."""

    def __init__(self, args: list[str], log: Path):
        self._err = open(log, "w")
        self.log = log
        self.proc = subprocess.Popen(
            emotion_mcp() + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=server_env()
        )
        self._pending = b""

    def send(self, frame: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame if frame.endswith(b"\n") else frame + b"\n")
        self.proc.stdin.flush()

    def request(self, message: dict) -> None:
        self.send(json.dumps(message).encode())

    def answer(self, timeout: float = ANSWER_TIMEOUT_S) -> dict:
        """The next JSON-RPC response (notifications such as logging are skipped)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                if not line.strip():
                    continue
                message = json.loads(line)
                if "id" in message:
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                pytest.fail(f"no answer within {timeout} s (server {'exited' if self.proc.poll() is not None else 'running'}):\n{self.log.read_text()[-3000:]}")
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    continue
                self._pending += chunk

    def ping(self, request_id: int) -> None:
        """The server still serves: a ping is answered."""
        self.request({"jsonrpc": "2.0", "id": request_id, "method": "ping"})
        reply = self.answer()
        assert reply == {"jsonrpc": "2.0", "id": request_id, "result": {}}, reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


@pytest.fixture(scope="module")
def stdio_server(tiny_checkpoint: Path, speech_wav: Path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stdio")
    server = StdioServer(["--model", str(tiny_checkpoint), "--allow-dir", str(speech_wav.parent), "--max-request-mb", "1"], tmp / "server.log")
    try:
        server.request(INIT)
        deadline = time.monotonic() + START_TIMEOUT_S
        reply = server.answer(timeout=max(1.0, deadline - time.monotonic()))
        assert reply["id"] == 1 and "result" in reply, reply
        server.request({"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield server
    finally:
        server.close()


def _call(request_id: int, name: str, arguments: str) -> bytes:
    """A tools/call frame whose arguments object is given as raw JSON text (so it may hold any escape)."""
    return b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":%s}}' % (request_id, name.encode(), arguments.encode())


LONE_SURROGATES = [
    pytest.param(_call(10, "analyze_emotion", r'{"audio_path":"speech\udc80.wav"}'), id="path"),
    pytest.param(_call(11, "analyze_emotion", r'{"audio_base64":"UklGRg\ud800=="}'), id="base64"),
    pytest.param(_call(12, "get_emotion_trace", r'{"session_id":"\udfff"}'), id="session-id"),
    pytest.param(_call(13, "analyze_emotion", r'{"audio_path":"ok.wav","audio_format":"wa\udbff"}'), id="format-hint"),
    pytest.param(b'{"jsonrpc":"2.0","id":14,"method":"prompts/get","params":{"name":"empathetic_reply","arguments":{"user_words":"hi \\ud83d","analysis_json":"{}"}}}', id="prompt-argument"),
    pytest.param(b'{"jsonrpc":"2.0","id":15,"method":"resources/read","params":{"uri":"emotion://sessions/\\udc00/trace"}}', id="resource-uri"),
    pytest.param(b'{"jsonrpc":"2.0","id":16,"method":"tools/call","params":{"name":"analyze_\\udc80","arguments":{}}}', id="tool-name"),
    pytest.param(b'{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"analyze_emotion","arguments":{"\\udc80":1}}}', id="argument-name"),
]


@pytest.mark.parametrize("frame", LONE_SURROGATES)
def test_a_string_that_is_not_unicode_is_answered_invalid_params_over_stdio(frame: bytes, stdio_server: StdioServer):
    request_id = json.loads(frame.decode("utf-8", "surrogatepass"))["id"]
    stdio_server.send(frame)
    reply = stdio_server.answer()
    assert reply["id"] == request_id and reply["error"]["code"] == -32602, reply
    assert "not valid Unicode" in reply["error"]["message"] or "Unicode" in reply["error"]["message"], reply
    stdio_server.ping(request_id + 1000)


MALFORMED = [
    pytest.param(b"this is not json", -32700, None, id="not-json"),
    pytest.param(b'{"jsonrpc":"2.0","id":20,"method":"ping"', -32700, None, id="truncated"),
    pytest.param(b'{"jsonrpc":"2.0","id":21,"method":"ping","params":{"x":"\xff\xfe"}}', -32700, 21, id="invalid-utf8"),
    pytest.param(b"[" * 20000 + b"]" * 20000, -32700, None, id="deep-nesting"),
    pytest.param(b'[{"jsonrpc":"2.0","id":22,"method":"ping"}]', -32600, None, id="batch"),
    pytest.param(b'{"jsonrpc":"2.0","id":23}', -32600, 23, id="no-method"),
    pytest.param(b'{"jsonrpc":"1.0","id":24,"method":"ping"}', -32600, 24, id="jsonrpc-1.0"),
    pytest.param(b'{"id":25,"method":"ping"}', -32600, 25, id="no-jsonrpc"),
    pytest.param(b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', -32600, None, id="object-id"),
    pytest.param(b'{"jsonrpc":"2.0","id":[26],"method":"ping"}', -32600, None, id="array-id"),
    pytest.param(b'{"jsonrpc":"2.0","id":true,"method":"ping"}', -32600, None, id="boolean-id"),
    pytest.param(b'"just a string"', -32600, None, id="string"),
    pytest.param(b"42", -32600, None, id="number"),
]


@pytest.mark.parametrize(("frame", "code", "request_id"), MALFORMED)
def test_malformed_json_rpc_gets_the_specifications_error_over_stdio(frame: bytes, code: int, request_id, stdio_server: StdioServer):
    stdio_server.send(frame)
    reply = stdio_server.answer()
    assert reply["jsonrpc"] == "2.0" and reply["error"]["code"] == code, reply
    assert reply["id"] == request_id, reply
    assert reply["error"]["message"], reply
    stdio_server.ping(900)


def test_a_line_over_the_message_limit_is_dropped_as_it_arrives_and_answered(stdio_server: StdioServer):
    """Over --max-request-mb 1: refused with a message naming the limit and the fix, and the next line is read."""
    big = b'{"jsonrpc":"2.0","id":30,"method":"tools/call","params":{"name":"analyze_emotion","arguments":{"audio_base64":"' + b"A" * (3 << 20)
    assert stdio_server.proc.stdin is not None
    for start in range(0, len(big), 1 << 18):  # in pieces, as a pipe delivers it; no newline until the end
        stdio_server.proc.stdin.write(big[start : start + (1 << 18)])
        stdio_server.proc.stdin.flush()
    stdio_server.send(b'"}}}')
    reply = stdio_server.answer()
    assert reply["error"]["code"] == -32600 and "--max-request-mb" in reply["error"]["message"], reply
    stdio_server.ping(31)


def test_a_good_tool_call_after_the_hostile_frames_reads_as_before(stdio_server: StdioServer, speech_wav: Path):
    stdio_server.request({"jsonrpc": "2.0", "id": 40, "method": "tools/call", "params": {"name": "analyze_emotion", "arguments": {"audio_path": str(speech_wav)}}})
    reply = stdio_server.answer()
    result = reply["result"]
    assert not result.get("isError"), result
    assert result["structuredContent"]["summary"]["label"] in result["structuredContent"]["labels"]


# --- HTTP -------------------------------------------------------------------------------------------


def _raw(url: str, head: list[str], body: bytes = b"") -> tuple[int, bytes]:
    """One request written byte for byte (headers exactly as given, duplicates included); the status and body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(("\r\n".join([f"POST {parts.path} HTTP/1.1", *head, "", ""])).encode("latin-1") + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                header, _, rest = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in header.split(b"\r\n") if line.lower().startswith(b"content-length:")), None)
                if length is not None and len(rest) >= length:
                    break
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def _json_head(url: str, body: bytes, *extra: str) -> list[str]:
    port = urlsplit(url).port
    base = [f"Host: 127.0.0.1:{port}", "Accept: application/json, text/event-stream", "Content-Type: application/json", "Connection: close"]
    return [*base, *extra, f"Content-Length: {len(body)}"]


@pytest.fixture(scope="module")
def http_url(tiny_checkpoint: Path, tmp_path_factory):
    log = tmp_path_factory.mktemp("http") / "server.log"
    with served(["--model", str(tiny_checkpoint)], log) as (_proc, url):
        yield url


def _still_serves(url: str) -> None:
    body = json.dumps(INIT).encode()
    status, reply = _raw(url, _json_head(url, body), body)
    assert status == 200, (status, reply)


def test_a_lone_surrogate_over_http_is_invalid_params_with_the_id(http_url: str):
    body = _call(50, "analyze_emotion", r'{"audio_path":"x\udc80.wav"}')
    status, reply = _raw(http_url, _json_head(http_url, body), body)
    message = json.loads(reply)
    assert status == 400 and message["id"] == 50 and message["error"]["code"] == -32602, (status, reply)
    _still_serves(http_url)


def test_invalid_utf8_over_http_is_a_parse_error_with_the_id(http_url: str):
    body = b'{"jsonrpc":"2.0","id":51,"method":"ping","params":{"x":"\xc3\x28"}}'
    status, reply = _raw(http_url, _json_head(http_url, body), body)
    message = json.loads(reply)
    assert status == 400 and message["id"] == 51 and message["error"]["code"] == -32700, (status, reply)
    _still_serves(http_url)


@pytest.mark.parametrize(
    "host",
    [
        "localhost:{port}@evil.example",
        "evil.example#127.0.0.1:{port}",
        "127.0.0.1:{port}.evil.example",
        "127.0.0.1:{port}:80",
        "127.0.0.1 :{port}",
        "[::1]x:{port}",
        "127.0.0.1:{port}/x",
    ],
)
def test_a_host_that_is_not_host_and_port_is_refused(host: str, http_url: str):
    body = json.dumps(INIT).encode()
    head = [h for h in _json_head(http_url, body) if not h.startswith("Host:")]
    status, reply = _raw(http_url, [f"Host: {host.format(port=urlsplit(http_url).port)}", *head], body)
    assert status in (400, 421), (status, reply)
    _still_serves(http_url)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["Origin: https://evil.example", "Origin: http://127.0.0.1"], id="two-origins-foreign-first"),
        pytest.param(["Origin: http://127.0.0.1", "Origin: https://evil.example"], id="two-origins-foreign-last"),
        pytest.param(["Host: evil.example"], id="two-hosts"),
        pytest.param(["Transfer-Encoding: chunked"], id="length-and-chunked"),
        pytest.param(["Content-Type: text/plain"], id="two-content-types"),
        pytest.param(["Origin: http://localhost:1@evil.example"], id="origin-with-userinfo"),
    ],
)
def test_headers_that_read_two_ways_are_refused(extra: list[str], http_url: str):
    body = json.dumps(INIT).encode()
    status, reply = _raw(http_url, _json_head(http_url, body, *extra), body)
    assert status in (400, 403), (status, reply)
    _still_serves(http_url)


# --- limit flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-duration", "nan"),
        ("--max-duration", "-1"),
        ("--max-duration", "1e306"),
        ("--max-request-mb", "nan"),
        ("--max-request-mb", "0"),
        ("--max-request-mb", "1e300"),
        ("--time-budget", "-inf"),
        ("--session-idle", "inf"),
        ("--max-sessions", "0"),
        ("--max-pending", "many"),
    ],
)
def test_a_limit_flag_that_is_not_a_number_it_takes_stops_the_start_with_one_line(flag: str, value: str, tiny_checkpoint: Path):
    run = subprocess.run(emotion_mcp() + ["--model", str(tiny_checkpoint), flag, value], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=server_env(), timeout=START_TIMEOUT_S)
    assert run.returncode == 2, run
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("emotion-mcp: error:") and flag in errors[0], run.stderr
    assert run.stderr.splitlines()[-1] == errors[0]  # argparse's usage, then the one line that says what to change
    assert "Traceback" not in run.stderr


def test_inf_limits_mean_none_and_analyses_still_run(tiny_checkpoint: Path, speech_wav: Path, tmp_path: Path):
    server = StdioServer(
        ["--model", str(tiny_checkpoint), "--allow-dir", str(speech_wav.parent), "--max-request-mb", "inf", "--max-duration", "inf", "--time-budget", "inf"],
        tmp_path / "server.log",
    )
    try:
        server.request(INIT)
        assert "result" in server.answer(timeout=START_TIMEOUT_S)
        server.request({"jsonrpc": "2.0", "method": "notifications/initialized"})
        server.request({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "analyze_emotion", "arguments": {"audio_path": str(speech_wav)}}})
        result = server.answer()["result"]
        assert not result.get("isError"), result
        assert result["structuredContent"]["summary"]["label"]
    finally:
        server.close()
