"""`emotion-mcp` as a process: stdio and streamable-HTTP clients, the bearer token, start-up failures."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import AsyncIterator, Iterator

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from emotion_tool import EmotionAnalysis

pytestmark = pytest.mark.subprocess  # every test here starts the commands in child processes

TOKEN = "test-token-" + "k" * 24
START_TIMEOUT_S = 120  # importing torch and loading the model on a busy machine
STOP_TIMEOUT_S = 15


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def emotion_mcp() -> list[str]:
    """The console script beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("emotion-mcp")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mcp_server"]


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EMOTION_MCP_TOKEN", "EMOTION_TOOL_MODEL")}
    env.update(HF_HUB_OFFLINE="1", **extra)
    return env


@contextmanager
def http_server(args: list[str], log: Path, *, port: int = 0, **env: str) -> Iterator[str]:
    """Starts `emotion-mcp --transport streamable-http` on a loopback port (0: any free one); yields its URL; always stops it."""
    with open(log, "w") as err:
        proc = subprocess.Popen(
            emotion_mcp() + ["--transport", "streamable-http", "--host", "127.0.0.1", "--port", str(port), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=server_env(**env),
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while (found := re.search(r"serving on (http://\S+/mcp)", log.read_text())) is None:
            if proc.poll() is not None:
                pytest.fail(f"emotion-mcp exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"emotion-mcp did not start within {START_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield found.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def http_url(tiny_checkpoint: Path, speech_wav: Path, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("http") / "server.log"
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(speech_wav.parent), "--max-request-mb", "0.5"]
    with http_server(args, log, EMOTION_MCP_TOKEN=TOKEN) as url:
        yield url


@asynccontextmanager
async def authed(url: str, token: str | None = TOKEN, **kwargs) -> AsyncIterator[Client]:
    """A streamable-HTTP client sending the bearer token (none when `token` is None)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http), **kwargs) as client:
            yield client


# --- streamable HTTP ----------------------------------------------------------------------------------


def test_http_refuses_requests_without_a_valid_token(http_url: str):
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": f"Basic {TOKEN}"}):
        response = httpx2.post(http_url, json=request, headers=headers, timeout=30)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "EMOTION_MCP_TOKEN" in response.json()["error_description"]


@pytest.mark.anyio
async def test_http_client_without_token_cannot_connect(http_url: str):
    with pytest.raises(BaseException) as failure:
        async with authed(http_url, token=None) as c:
            await c.list_tools()
    # The SDK reports the 401 as an error response (the status itself is checked with raw HTTP above).
    assert isinstance(failure.value, MCPError) or failure.group_contains(MCPError, match="error response")


@pytest.mark.anyio
async def test_http_client_with_token(http_url: str, speech_wav: Path):
    async with authed(http_url) as c:
        assert "analyze_emotion" in {t.name for t in (await c.list_tools()).tools}
        by_path = await c.call_tool("analyze_emotion", {"audio_path": "speech.wav"})
        by_b64 = await c.call_tool("analyze_emotion", {"audio_base64": base64.b64encode(speech_wav.read_bytes()).decode()})
        a, b = (EmotionAnalysis.model_validate(r.structured_content) for r in (by_path, by_b64))
        assert a.summary.probabilities == pytest.approx(b.summary.probabilities, abs=1e-5)
        bad = await c.call_tool("analyze_emotion", {"audio_path": "/etc/hostname"})
        assert bad.is_error and "outside the directories" in bad.content[0].text
        assert not (await c.call_tool("analyze_emotion", {"audio_path": "speech.wav"})).is_error


@pytest.mark.anyio
async def test_http_request_size_limits(http_url: str):
    async with authed(http_url) as c:  # within the HTTP body limit, over the payload limit: a tool error
        result = await c.call_tool("analyze_emotion", {"audio_base64": "A" * 600_000})
        assert result.is_error and "--max-request-mb" in result.content[0].text
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"x": "' + b"A" * 2_000_000 + b'"}}'
    response = httpx2.post(
        http_url, content=body, timeout=30,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
    )  # fmt: skip
    assert response.status_code == 413  # the transport refuses a body past the limit before parsing it


@pytest.mark.anyio
async def test_http_sessions_belong_to_their_client(http_url: str):
    async with authed(http_url, mode="legacy") as alice, authed(http_url, mode="legacy") as mallory:
        sid = (await alice.call_tool("start_emotion_session", {"sample_rate": 16000})).structured_content["session_id"]
        chunk = base64.b64encode(bytes(3200)).decode()
        stolen = await mallory.call_tool("push_audio", {"session_id": sid, "chunk_base64": chunk})
        assert stolen.is_error and "unknown session" in stolen.content[0].text
        peek = await mallory.call_tool("get_emotion_trace", {"session_id": sid})
        assert peek.is_error and "unknown session" in peek.content[0].text
        own = await alice.call_tool("push_audio", {"session_id": sid, "chunk_base64": chunk})
        assert not own.is_error and own.structured_content["received_s"] == pytest.approx(0.1)
        await alice.call_tool("end_emotion_session", {"session_id": sid})


@pytest.mark.anyio
async def test_http_serves_several_clients_at_once(http_url: str):
    results: list = []

    async def one_client():
        async with authed(http_url) as c:
            results.append(await c.call_tool("analyze_emotion", {"audio_path": "speech.wav"}))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one_client)
    assert len(results) == 3 and not any(r.is_error for r in results)
    labels = {r.structured_content["summary"]["label"] for r in results}
    assert len(labels) == 1


# --- stdio --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stdio_client(tiny_checkpoint: Path, speech_wav: Path):
    command, *prefix = emotion_mcp()
    params = StdioServerParameters(
        command=command,
        args=[*prefix, "--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(speech_wav.parent)],
        env={"HF_HUB_OFFLINE": "1"},
    )
    with anyio.fail_after(START_TIMEOUT_S):
        async with Client(params) as c:
            assert {"analyze_emotion", "push_audio"} <= {t.name for t in (await c.list_tools()).tools}
            result = await c.call_tool("analyze_emotion", {"audio_path": str(speech_wav), "trace": True})
            analysis = EmotionAnalysis.model_validate(result.structured_content)
            assert analysis.segments and analysis.random_weights
            bad = await c.call_tool("analyze_emotion", {"audio_base64": "%%%"})
            assert bad.is_error and "not valid base64" in bad.content[0].text
            again = await c.call_tool("analyze_emotion", {"audio_path": str(speech_wav)})
            assert not again.is_error
            info = (await c.read_resource("emotion://model")).contents[0].text
            assert str(tiny_checkpoint) in info


# --- start-up -----------------------------------------------------------------------------------------


def run_cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        emotion_mcp() + args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=START_TIMEOUT_S,
        env=server_env(**env),
    )  # fmt: skip


def test_unreachable_hub_is_one_line_not_a_traceback(tmp_path: Path):
    env = server_env(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens on port 9
    del env["HF_HUB_OFFLINE"]
    done = subprocess.run(
        emotion_mcp() + ["--model", "MERaLiON/MERaLiON-SER-v1"], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=START_TIMEOUT_S, env=env,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stdout == ""
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("emotion-mcp: cannot reach the Hugging Face Hub") and "--model DIR" in line


def test_refuses_public_address_without_token(tiny_checkpoint: Path):
    done = run_cli(["--model", str(tiny_checkpoint), "--transport", "streamable-http", "--host", "0.0.0.0"])
    assert done.returncode == 2 and "refusing to serve on 0.0.0.0" in done.stderr and "EMOTION_MCP_TOKEN" in done.stderr
    weak = run_cli(["--transport", "streamable-http"], EMOTION_MCP_TOKEN="1234")
    assert weak.returncode == 2 and "at least 16" in weak.stderr


def test_missing_allow_dir_is_refused(tmp_path: Path):
    done = run_cli(["--allow-dir", str(tmp_path / "nope")])
    assert done.returncode == 2 and "no such directory" in done.stderr and "Traceback" not in done.stderr


# --- the demo -----------------------------------------------------------------------------------------


def test_demo_client_analyses_and_streams(tiny_checkpoint: Path, speech_wav: Path):
    base = [sys.executable, "-m", "demos.mcp_client", str(speech_wav), "--model", str(tiny_checkpoint), "--device", "cpu"]
    shown = subprocess.run(base + ["--trace"], capture_output=True, text=True, timeout=START_TIMEOUT_S, env=server_env())
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "analyze_emotion: Reads the emotions" in shown.stdout and "summary: " in shown.stdout
    assert len(re.findall(r"^ +[\d.]+- *[\d.]+ s  ", shown.stdout, flags=re.M)) >= 2  # the trace
    assert "random weights" in shown.stdout  # a test model says so
    streamed = subprocess.run(base + ["--stream"], capture_output=True, text=True, timeout=START_TIMEOUT_S, env=server_env())
    assert streamed.returncode == 0, streamed.stderr[-2000:]
    assert len(re.findall(r"^ +[\d.]+- *[\d.]+ s  ", streamed.stdout, flags=re.M)) == 1  # one sentence, one utterance
    assert "overall: " in streamed.stdout and "random weights" in streamed.stdout
