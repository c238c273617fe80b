"""`--session-dir` against crafted files, and sessions kept to their owner whether live or read back.

Session files are opened like audio: a FIFO, a device, a symbolic link or an oversized file is one
clear error at once (never waited on, never read into memory), and a file with lines this server did
not write is never served as a trace. Ownership holds the same for a live session and its file, in
both protocol eras, over real HTTP.
"""

from __future__ import annotations

import base64
import json
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import anyio
import httpx2
import pytest
import soundfile as sf
from helpers import ManualClock
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_server import ServerOptions, create_server
from mcp_server.journal import MAX_FILE_BYTES
from tests.test_mcp_transports import TOKEN, http_server

ANSWER_BOUND_S = 30  # a FIFO that is waited on hangs; anything under this is an answer


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def pcm_chunks(wav_path: Path, chunk_s: float = 0.5) -> tuple[int, list[str]]:
    wav, rate = sf.read(wav_path, dtype="int16")
    step = int(rate * chunk_s)
    return rate, [base64.b64encode(wav[i : i + step].astype("<i2").tobytes()).decode() for i in range(0, len(wav), step)]


def error_text(result) -> str:
    assert result.is_error, result
    return result.content[0].text


async def record_session(client: Client, wav: Path) -> str:
    """A whole session over `client`: started, its audio pushed, ended. Returns its id."""
    rate, chunks = pcm_chunks(wav)
    started = await client.call_tool("start_emotion_session", {"sample_rate": rate})
    assert not started.is_error, started.content[0].text
    session_id = started.structured_content["session_id"]
    for chunk in chunks:
        pushed = await client.call_tool("push_audio", {"session_id": session_id, "chunk_base64": chunk})
        assert not pushed.is_error, pushed.content[0].text
    ended = await client.call_tool("end_emotion_session", {"session_id": session_id})
    assert not ended.is_error, ended.content[0].text
    return session_id


# --- crafted files, in process ------------------------------------------------------------------------


@pytest.fixture
def journalled(tiny_checkpoint: Path, speech_wav: Path, tmp_path: Path):
    """An in-process server with --session-dir and a clock the test moves; yields (options, clock, dir)."""
    directory = tmp_path / "sessions"
    options = ServerOptions(model=str(tiny_checkpoint), device="cpu", allow_dirs=(speech_wav.parent,), session_dir=directory, session_idle_s=60.0)
    return options, ManualClock(), directory


FAKE_ID = "ses_" + "A" * 22


async def trace_error(client: Client, session_id: str = FAKE_ID) -> str:
    with anyio.fail_after(ANSWER_BOUND_S):
        result = await client.call_tool("get_emotion_trace", {"session_id": session_id})
    return error_text(result)


@pytest.mark.anyio
async def test_a_fifo_named_like_a_session_file_is_refused_at_once(journalled):
    options, clock, directory = journalled
    async with Client(create_server(options, clock=clock)) as c:
        os.mkfifo(directory / f"{FAKE_ID}.jsonl")
        text = await trace_error(c)
        assert "not a regular file" in text or "FIFO" in text, text
        assert "--session-dir" in text
        with anyio.fail_after(ANSWER_BOUND_S):  # and the resource too
            with pytest.raises(MCPError, match="not a regular file|FIFO"):
                await c.read_resource(f"emotion://sessions/{FAKE_ID}/trace")
        assert not (await c.call_tool("start_emotion_session", {})).is_error  # the server goes on


@pytest.mark.anyio
@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null", "elsewhere"])
async def test_a_session_file_that_is_a_symbolic_link_is_refused(target: str, journalled, tmp_path: Path):
    options, clock, directory = journalled
    async with Client(create_server(options, clock=clock)) as c:
        if target == "elsewhere":
            target = str(tmp_path / "elsewhere.jsonl")
            Path(target).write_text(json.dumps({"kind": "session", "session_id": FAKE_ID, "sample_rate": 16000, "encoding": "pcm_s16le", "model_id": "x"}) + "\n")
        (directory / f"{FAKE_ID}.jsonl").symlink_to(target)
        text = await trace_error(c)
        assert "symbolic link" in text and "remove" in text, text


@pytest.mark.anyio
async def test_a_directory_and_an_oversized_file_are_refused_without_reading_them(journalled):
    options, clock, directory = journalled
    async with Client(create_server(options, clock=clock)) as c:
        (directory / f"{FAKE_ID}.jsonl").mkdir()
        assert "not a regular file" in await trace_error(c)
        big = "ses_" + "B" * 22
        with open(directory / f"{big}.jsonl", "wb") as f:
            f.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used, and it must not be read into memory
        text = await trace_error(c, big)
        assert "MiB" in text and "move it out of --session-dir" in text, text


def header(session_id: str, **changes) -> dict:
    return {"kind": "session", "session_id": session_id, "sample_rate": 16000, "encoding": "pcm_s16le", "model_id": "m", "random_weights": True, "owner": "anonymous", "principal": None, **changes}


async def a_real_file(client: Client, clock: ManualClock, directory: Path, speech_wav: Path) -> tuple[str, list[str]]:
    """A session recorded by this server and expired from memory: its id and its file's lines."""
    session_id = await record_session(client, speech_wav)
    clock.advance(61.0)
    lines = (directory / f"{session_id}.jsonl").read_text().splitlines()
    assert len(lines) >= 3 and json.loads(lines[0])["owner"] == "anonymous"
    return session_id, lines


@pytest.mark.anyio
async def test_a_session_file_is_served_after_its_session_expired(journalled, speech_wav: Path):
    options, clock, directory = journalled
    async with Client(create_server(options, clock=clock)) as c:
        session_id, lines = await a_real_file(c, clock, directory, speech_wav)
        read = await c.call_tool("get_emotion_trace", {"session_id": session_id})
        assert not read.is_error, read.content[0].text
        trace = read.structured_content
        assert trace["ended"] and len(trace["utterances"]) == sum(json.loads(x)["kind"] == "utterance" for x in lines)
        assert any("Read from the session file" in w for w in trace["warnings"])


def _crafted(lines: list[str], session_id: str) -> dict[str, list[str]]:
    """Ways to change a real file so that it is no longer what this server wrote."""
    utterance = next(json.loads(x) for x in lines if json.loads(x)["kind"] == "utterance")
    nan_reading = json.loads(json.dumps(utterance))
    nan_reading["reading"]["reading"]["valence"] = float("nan")
    wrong_probabilities = json.loads(json.dumps(utterance))
    wrong_probabilities["reading"]["reading"]["confidence"] = "very"
    return {
        "header names another session": [json.dumps(header("ses_" + "Z" * 22)), *lines[1:]],
        "header is not first": [lines[1], *lines],
        "absurd rate": [json.dumps(header(session_id, sample_rate=10**12)), *lines[1:]],
        "unknown encoding": [json.dumps(header(session_id, encoding="mp3")), *lines[1:]],
        "unknown kind": [lines[0], json.dumps({"kind": "note", "received_s": 1.0}), *lines[1:]],
        "a reading that is not a reading": [lines[0], json.dumps({"kind": "utterance", "received_s": 1.0, "reading": {"label": "happy"}})],
        "a NaN inside a reading": [lines[0], json.dumps(nan_reading)],
        "a string for a number": [lines[0], json.dumps(wrong_probabilities)],
        "a time that is not finite": [lines[0], json.dumps({**utterance, "received_s": float("inf")})],
        "a negative time": [lines[0], json.dumps({**utterance, "received_s": -5})],
        "a line after the end": [*lines, lines[1]],
        "not JSON in the middle": [lines[0], "{{{", *lines[1:]],
        "an array for a line": [lines[0], "[1, 2]", *lines[1:]],
    }


@pytest.mark.anyio
async def test_a_file_with_lines_this_server_did_not_write_is_one_clear_error(journalled, speech_wav: Path):
    options, clock, directory = journalled
    async with Client(create_server(options, clock=clock)) as c:
        session_id, lines = await a_real_file(c, clock, directory, speech_wav)
        path = directory / f"{session_id}.jsonl"
        for name, crafted in _crafted(lines, session_id).items():
            path.write_text("\n".join(crafted) + "\n")
            text = await trace_error(c, session_id)
            assert "is not one this server wrote (line " in text and "Move the file out of --session-dir" in text, (name, text)
            with pytest.raises(MCPError, match="not one this server wrote"):
                await c.read_resource(f"emotion://sessions/{session_id}/trace")
        # A crash while writing leaves a last line cut short: that one is skipped with a warning.
        path.write_text("\n".join(lines) + "\n" + lines[1][: len(lines[1]) // 2])
        read = await c.call_tool("get_emotion_trace", {"session_id": session_id})
        assert not read.is_error, read.content[0].text
        assert any("cut short" in w for w in read.structured_content["warnings"])


@pytest.mark.anyio
async def test_completions_never_offer_a_crafted_file(journalled, speech_wav: Path):
    """Over stdio-like in-process clients the one caller owns its files; a crafted one is left out."""
    options, clock, directory = journalled
    async with Client(create_server(options, clock=clock), mode="legacy") as c:
        os.mkfifo(directory / f"{FAKE_ID}.jsonl")
        (directory / ("ses_" + "C" * 22 + ".jsonl")).symlink_to("/dev/zero")
        with anyio.fail_after(ANSWER_BOUND_S):
            done = await c.complete(
                {"type": "ref/resource", "uri": "emotion://sessions/{session_id}/trace"}, {"name": "session_id", "value": "ses_"}
            )
        assert FAKE_ID not in done.completion.values and not any(v.startswith("ses_CCC") for v in done.completion.values)


# --- ownership over HTTP, both eras ----------------------------------------------------------------


@pytest.fixture(scope="module")
def http_url(tiny_checkpoint: Path, speech_wav: Path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("owners")
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--session-dir", str(tmp / "sessions"), "--session-idle", "3"]
    with http_server(args, tmp / "server.log", EMOTION_MCP_TOKEN=TOKEN) as url:
        yield url


@asynccontextmanager
async def connect(url: str, mode: str = "legacy", **headers: str) -> AsyncIterator[tuple[Client, dict]]:
    """A client with the token and any extra headers; yields it and the last Mcp-Session-Id the server gave it."""
    seen: dict[str, str] = {}

    async def remember(response) -> None:
        if "mcp-session-id" in response.headers:
            seen["mcp-session-id"] = response.headers["mcp-session-id"]

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}", **headers}, timeout=60, event_hooks={"response": [remember]}) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client, seen


async def refused(client: Client, session_id: str) -> None:
    """Neither the tool nor the resource gives `client` the session's trace, and it cannot push into it."""
    text = error_text(await client.call_tool("get_emotion_trace", {"session_id": session_id}))
    assert "unknown session" in text or "another client" in text or "expired" in text, text
    with pytest.raises(MCPError):
        await client.read_resource(f"emotion://sessions/{session_id}/trace")
    pushed = await client.call_tool("push_audio", {"session_id": session_id, "chunk_base64": base64.b64encode(b"\0\0" * 1600).decode()})
    assert pushed.is_error


@pytest.mark.anyio
@pytest.mark.subprocess
async def test_a_legacy_session_stays_its_clients_live_and_from_its_file(http_url: str, speech_wav: Path):
    async with connect(http_url) as (alice, alice_seen):
        rate, chunks = pcm_chunks(speech_wav)
        started = await alice.call_tool("start_emotion_session", {"sample_rate": rate})
        session_id = started.structured_content["session_id"]
        assert alice_seen.get("mcp-session-id")
        async with connect(http_url) as (mallory, _), connect(http_url, mode="2026-07-28") as (stateless, _), connect(
            http_url, mode="2026-07-28", **{"Mcp-Session-Id": alice_seen["mcp-session-id"]}
        ) as (copycat, _):
            # Live: another legacy client, a stateless one, and a stateless one with alice's header copied.
            for other in (mallory, stateless, copycat):
                await refused(other, session_id)
            pushed = await alice.call_tool("push_audio", {"session_id": session_id, "chunk_base64": chunks[0]})
            assert not pushed.is_error, pushed.content[0].text
            assert (await alice.call_tool("get_emotion_trace", {"session_id": session_id})).structured_content["received_s"] > 0
            # Read back from its file once expired (--session-idle 3): still only alice's.
            await anyio.sleep(4)
            await stateless.call_tool("start_emotion_session", {})  # a call sweeps expired sessions
            for other in (mallory, stateless, copycat):
                await refused(other, session_id)
            read = await alice.call_tool("get_emotion_trace", {"session_id": session_id})
            assert not read.is_error, read.content[0].text
            assert any("Read from the session file" in w for w in read.structured_content["warnings"])


@pytest.mark.anyio
@pytest.mark.subprocess
async def test_a_stateless_session_is_read_by_whoever_holds_its_id_but_not_by_legacy_clients(http_url: str, speech_wav: Path):
    """Without OAuth a stateless caller has no identity: the 128-bit id is the capability. A legacy client,
    which has one, does not get a stateless client's session, live or from its file."""
    async with connect(http_url, mode="2026-07-28") as (opener, _), connect(http_url, mode="2026-07-28") as (holder, _), connect(http_url) as (legacy, _):
        session_id = await record_session(opener, speech_wav)
        assert not (await holder.call_tool("get_emotion_trace", {"session_id": session_id})).is_error
        await refused(legacy, session_id)
        await anyio.sleep(4)
        await holder.call_tool("start_emotion_session", {})
        read = await holder.call_tool("get_emotion_trace", {"session_id": session_id})
        assert not read.is_error and any("Read from the session file" in w for w in read.structured_content["warnings"])
        await refused(legacy, session_id)
