"""Resumable 2025 streams (`mcp_server.events`): the bounded store, kept apart per transport session, and a
real HTTP client that drops a long analysis's stream and reconnects with Last-Event-ID to get its result."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx2
import numpy as np
import pytest
import soundfile as sf
from mcp.types import JSONRPCNotification, jsonrpc_message_adapter

from helpers import ManualClock
from mcp_server.events import RETRY_MS, ResumableEvents, _scope
from test_mcp_transports import TOKEN, http_server

LONG_S = 60.0  # the long recording: a trace of it is over a hundred windows, each reported as progress
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream"}
VERSION = "2025-11-25"  # the first revision whose POST streams open with a priming event


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def note(n: int):
    return jsonrpc_message_adapter.validate_python({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x" * n}})


class Replayed:
    def __init__(self):
        self.ids: list[str] = []

    async def __call__(self, event) -> None:
        self.ids.append(event.event_id)


# --- the store ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_replay_sends_the_rest_of_one_stream():
    store = ResumableEvents()
    priming = await store.store_event("1", None)
    first = await store.store_event("1", note(1))
    await store.store_event("2", note(1))  # another stream of the same session
    rest = [await store.store_event("1", note(1)) for _ in range(3)]
    replayed = Replayed()
    assert await store.replay_events_after(first, replayed) == "1" and replayed.ids == rest
    replayed = Replayed()
    assert await store.replay_events_after(priming, replayed) == "1" and replayed.ids == [first, *rest]
    assert await store.replay_events_after("no-such-event", Replayed()) is None
    assert len(set([priming, first, *rest])) == 5 and all(len(i) >= 16 for i in rest)  # random, unguessable ids


@pytest.mark.anyio
async def test_streams_of_two_sessions_with_the_same_request_id_stay_apart():
    store = ResumableEvents()
    token = _scope.set("session-a")
    a_first = await store.store_event("1", note(1))
    _scope.reset(token)
    token = _scope.set("session-b")
    b_events = [await store.store_event("1", note(2)) for _ in range(2)]  # request id 1 again, in session b
    assert await store.replay_events_after(a_first, Replayed()) is None  # b cannot resume a's stream
    _scope.reset(token)
    token = _scope.set("session-a")
    a_rest = await store.store_event("1", note(1))
    replayed = Replayed()
    assert await store.replay_events_after(a_first, replayed) == "1" and replayed.ids == [a_rest]
    assert not set(b_events) & set(replayed.ids)
    _scope.reset(token)


@pytest.mark.anyio
async def test_the_store_is_bounded_by_count_bytes_and_age():
    clock = ManualClock()
    store = ResumableEvents(max_events=3, max_bytes=10_000, ttl_s=60, clock=clock)
    ids = [await store.store_event("1", note(10)) for _ in range(5)]
    assert store.stored == 3 and await store.replay_events_after(ids[1], Replayed()) is None  # the oldest went first
    replayed = Replayed()
    assert await store.replay_events_after(ids[2], replayed) == "1" and replayed.ids == ids[3:]

    big = await store.store_event("2", note(6_000))
    await store.store_event("2", note(6_000))  # together over max_bytes: the older ones go
    assert await store.replay_events_after(big, Replayed()) is None and store.stored == 1

    clock.advance(61)
    assert await store.replay_events_after(ids[-1], Replayed()) is None
    await store.store_event("3", None)
    assert store.stored == 1  # only the new one: the rest aged out


def test_bounds_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        ResumableEvents(max_events=0)


# --- over HTTP: drop a long call's stream, resume it ---------------------------------------------------


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """SSE events as dicts of their fields."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[name] = event[name] + "\n" + value if name == "data" and name in event else value


@pytest.fixture(scope="module")
def long_wav(speech_wav: Path, tmp_path_factory) -> Path:
    speech, rate = sf.read(speech_wav, dtype="float32")
    pause = np.zeros(int(0.7 * rate), dtype="float32")
    times = int(np.ceil(LONG_S * rate / (len(speech) + len(pause))))
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate([np.concatenate([speech, pause])] * times)[: int(LONG_S * rate)], rate)
    return path


@pytest.fixture(scope="module")
def http_url(tiny_checkpoint: Path, long_wav: Path, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("events") / "server.log"
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(long_wav.parent)]
    with http_server(args, log, EMOTION_MCP_TOKEN=TOKEN) as url:
        yield url


def open_session(http: httpx2.Client, url: str) -> dict[str, str]:
    """initialize and initialized; the headers the session's later requests carry."""
    hello = {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "resume-test", "version": "1"}}
    response = http.post(url, headers=HEADERS, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello})
    assert response.status_code == 200, response.text
    headers = {**HEADERS, "Mcp-Session-Id": response.headers["mcp-session-id"], "MCP-Protocol-Version": VERSION}
    assert http.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
    return headers


def message(event: dict[str, str]):
    return jsonrpc_message_adapter.validate_json(event["data"]) if event.get("data") else None


@pytest.mark.subprocess
def test_a_dropped_long_analysis_resumes_with_last_event_id(http_url: str, long_wav: Path):
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "analyze_emotion", "arguments": {"audio_path": long_wav.name, "trace": True, "hop_s": 0.5},
        "_meta": {"progressToken": "long"}}}  # fmt: skip
    with httpx2.Client(timeout=120) as http:
        headers = open_session(http, http_url)
        before: list[dict[str, str]] = []
        with http.stream("POST", http_url, headers=headers, json=call) as stream:
            assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
            for event in sse_events(stream.iter_lines()):
                before.append(event)
                if isinstance(message(event), JSONRPCNotification):
                    break  # the first progress report: drop the connection here, mid-analysis
        priming, first = before[0], message(before[-1])
        assert priming["id"] and priming.get("data", "") == "" and priming["retry"] == str(RETRY_MS)
        assert first.method == "notifications/progress" and first.params["progress"] < first.params["total"]
        assert all(e.get("id") for e in before)

        resume = {**headers, "Accept": "text/event-stream", "Last-Event-ID": before[-1]["id"]}
        progress, result = [], None
        with http.stream("GET", http_url, headers=resume) as stream:
            assert stream.status_code == 200
            for event in sse_events(stream.iter_lines()):
                got = message(event)
                if got is None:
                    continue  # the resumed stream's own priming event
                assert event["id"] not in {e["id"] for e in before}  # nothing seen twice
                if isinstance(got, JSONRPCNotification):
                    progress.append(got.params["progress"])
                else:
                    result = got
                    break
        assert result is not None and result.id == 7, "the resumed stream ended without the call's result"
        assert progress and progress == sorted(progress) and progress[0] > first.params["progress"]
        analysis = result.result["structuredContent"]
        assert analysis["duration_s"] == pytest.approx(LONG_S, abs=0.05) and analysis["trace_hop_s"] == 0.5
        assert progress[-1] <= first.params["total"]

        # Another session presenting that id resumes nothing of this one's stream.
        other = open_session(http, http_url)
        with http.stream("GET", http_url, headers={**other, "Accept": "text/event-stream", "Last-Event-ID": before[-1]["id"]}) as stream:
            stolen = [message(e) for e in sse_events(stream.iter_lines())]
        assert [m for m in stolen if m is not None] == []
