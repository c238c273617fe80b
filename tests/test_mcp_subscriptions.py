"""Live trace updates (`mcp_server.subscriptions`): one update per utterance in both eras, ownership, bounds, the end.

In process for the counts and bounds (2025: resources/subscribe; 2026-07-28: subscriptions/listen), and
over streamable HTTP for ownership, where two clients are two transport sessions.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Iterator

import anyio
import pytest
import soundfile as sf
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, ResourceUpdatedNotification

from mcp_server import ServerOptions, create_server
from mcp_server.subscriptions import MAX_LISTENS_PER_CLIENT, MAX_WATCHED_PER_CLIENT, trace_uri
from test_mcp_transports import TOKEN, authed, http_server

CHUNK_S = 0.1  # live-speech chunks of 100 ms
WAIT_S = 30  # for a notification already sent to arrive on a busy machine

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # the 2025 API, on purpose


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path):
    return create_server(ServerOptions(model=str(tiny_checkpoint), device="cpu", max_sessions=MAX_WATCHED_PER_CLIENT + 2))


def chunks(wav_path: Path) -> tuple[int, list[str]]:
    """The recording as 100-ms base64 chunks of pcm_s16le, and its rate."""
    wav, rate = sf.read(wav_path, dtype="int16")
    step = int(rate * CHUNK_S)
    return rate, [base64.b64encode(wav[i : i + step].astype("<i2").tobytes()).decode() for i in range(0, len(wav), step)]


class Updates:
    """The `notifications/resources/updated` a 2025 client receives, counted per URI."""

    def __init__(self):
        self.uris: list[str] = []
        self._arrived = anyio.Event()

    async def __call__(self, message) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(message.params.uri)
            self._arrived.set()

    async def until(self, count: int) -> None:
        with anyio.fail_after(WAIT_S):
            while len(self.uris) < count:
                self._arrived = anyio.Event()
                await self._arrived.wait()


async def start(client: Client, rate: int) -> str:
    started = await client.call_tool("start_emotion_session", {"sample_rate": rate})
    assert not started.is_error, started.content[0].text
    return started.structured_content["session_id"]


async def push(client: Client, session_id: str, chunk: str) -> int:
    """Pushes one chunk; returns how many utterances it closed (final readings)."""
    pushed = await client.call_tool("push_audio", {"session_id": session_id, "chunk_base64": chunk})
    assert not pushed.is_error, pushed.content[0].text
    return sum(not r["interim"] for r in pushed.structured_content["readings"])


@pytest.mark.anyio
async def test_2025_one_update_per_utterance_then_one_at_the_end(server, sentences_wav):
    path, bounds = sentences_wav
    rate, pcm = chunks(path)
    updates = Updates()
    async with Client(server, mode="legacy", message_handler=updates) as c:
        assert c.server_capabilities.resources.subscribe
        session_id = await start(c, rate)
        uri = trace_uri(session_id)
        await c.subscribe_resource(uri)
        utterances = 0
        for chunk in pcm:
            utterances += await push(c, session_id, chunk)
            await updates.until(utterances)  # each utterance's update arrives before the next chunk is pushed
            assert len(updates.uris) == utterances
        assert utterances == len(bounds) and set(updates.uris) == {uri}

        await c.call_tool("end_emotion_session", {"session_id": session_id})
        await updates.until(utterances + 1)  # the end is the trace's last change
        with pytest.raises(MCPError, match="has ended") as refused:  # and the watch is over
            await c.subscribe_resource(uri)
        assert refused.value.error.code == INVALID_PARAMS


@pytest.mark.anyio
async def test_2025_unsubscribe_stops_the_updates(server, sentences_wav):
    rate, pcm = chunks(sentences_wav[0])
    updates = Updates()
    async with Client(server, mode="legacy", message_handler=updates) as c:
        watched, other = await start(c, rate), await start(c, rate)
        await c.subscribe_resource(trace_uri(watched))
        await c.subscribe_resource(trace_uri(other))
        await c.unsubscribe_resource(trace_uri(other))
        await c.unsubscribe_resource(trace_uri(other))  # twice: no error
        utterances = {watched: 0, other: 0}
        for chunk in pcm:
            for session_id in (other, watched):  # `other` first: its update, if any were sent, would arrive first
                utterances[session_id] += await push(c, session_id, chunk)
            await updates.until(utterances[watched])
        assert utterances[other] > 0 and updates.uris == [trace_uri(watched)] * utterances[watched]


@pytest.mark.anyio
async def test_2025_subscriptions_are_refused_for_what_is_not_a_live_trace(server):
    async with Client(server, mode="legacy") as c:
        for uri, words in (
            ("emotion://model", "never changes"),
            (trace_uri("ses_" + "A" * 22), "unknown session"),
            ("emotion://sessions//trace", "never changes"),
        ):
            with pytest.raises(MCPError, match=words) as refused:
                await c.subscribe_resource(uri)
            assert refused.value.error.code == INVALID_PARAMS, uri


@pytest.mark.anyio
async def test_2025_watches_per_connection_are_bounded(server):
    async with Client(server, mode="legacy") as c:
        sessions = [await start(c, 16000) for _ in range(MAX_WATCHED_PER_CLIENT + 1)]
        for session_id in sessions[:-1]:
            await c.subscribe_resource(trace_uri(session_id))
        await c.subscribe_resource(trace_uri(sessions[0]))  # again: still one watch
        with pytest.raises(MCPError, match=f"already watches {MAX_WATCHED_PER_CLIENT}"):
            await c.subscribe_resource(trace_uri(sessions[-1]))
        await c.unsubscribe_resource(trace_uri(sessions[0]))
        await c.subscribe_resource(trace_uri(sessions[-1]))  # room again
        for session_id in sessions:
            await c.call_tool("end_emotion_session", {"session_id": session_id})


@pytest.mark.anyio
async def test_2026_listen_gets_one_event_per_utterance_for_its_own_sessions(server, sentences_wav):
    path, bounds = sentences_wav
    rate, pcm = chunks(path)
    async with Client(server, mode="2026-07-28") as c:
        session_id = await start(c, rate)
        unknown = trace_uri("ses_" + "B" * 22)
        async with c.listen(resource_subscriptions=[trace_uri(session_id), unknown, "emotion://model"]) as sub:
            assert sub.honored.resource_subscriptions == [trace_uri(session_id)]  # the ack says what is watched
            utterances = events = 0
            for chunk in pcm:
                closed = await push(c, session_id, chunk)
                utterances += closed
                for _ in range(closed):
                    with anyio.fail_after(WAIT_S):
                        event = await sub.__anext__()
                    assert event.uri == trace_uri(session_id)
                    events += 1
            assert events == utterances == len(bounds)
            await c.call_tool("end_emotion_session", {"session_id": session_id})
            with anyio.fail_after(WAIT_S):
                assert (await sub.__anext__()).uri == trace_uri(session_id)  # the end


@pytest.mark.anyio
async def test_2026_listen_streams_per_client_are_bounded(server):
    async with Client(server, mode="2026-07-28") as c:
        session_id = await start(c, 16000)
        async with anyio.create_task_group() as tg:
            opened = 0
            held = anyio.Event()

            async def hold_one() -> None:
                nonlocal opened
                async with c.listen(resource_subscriptions=[trace_uri(session_id)]):
                    opened += 1
                    await held.wait()

            for _ in range(MAX_LISTENS_PER_CLIENT):
                tg.start_soon(hold_one)
            with anyio.fail_after(WAIT_S):
                while opened < MAX_LISTENS_PER_CLIENT:
                    await anyio.sleep(0.01)
            with pytest.raises(MCPError, match="listen streams of this client are open"):
                async with c.listen(resource_subscriptions=[trace_uri(session_id)]):
                    pass
            held.set()
        async with c.listen(resource_subscriptions=[trace_uri(session_id)]) as sub:  # closed ones made room
            assert sub.honored.resource_subscriptions == [trace_uri(session_id)]
        await c.call_tool("end_emotion_session", {"session_id": session_id})


# --- ownership between clients, over HTTP -----------------------------------------------------------


@pytest.fixture(scope="module")
def http_url(tiny_checkpoint: Path, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("subscriptions") / "server.log"
    with http_server(["--model", str(tiny_checkpoint), "--device", "cpu"], log, EMOTION_MCP_TOKEN=TOKEN) as url:
        yield url


@pytest.mark.anyio
@pytest.mark.subprocess
async def test_another_client_cannot_watch_a_session(http_url: str, sentences_wav):
    rate, pcm = chunks(sentences_wav[0])
    alice_updates, mallory_updates = Updates(), Updates()
    async with authed(http_url, mode="legacy", message_handler=alice_updates) as alice, authed(
        http_url, mode="legacy", message_handler=mallory_updates
    ) as mallory:
        session_id = await start(alice, rate)
        with pytest.raises(MCPError, match="belongs to another client") as refused:
            await mallory.subscribe_resource(trace_uri(session_id))
        assert refused.value.error.code == INVALID_PARAMS
        await alice.subscribe_resource(trace_uri(session_id))
        utterances = 0
        for chunk in pcm:
            utterances += await push(alice, session_id, chunk)
        await alice_updates.until(utterances)
        assert utterances > 0 and mallory_updates.uris == []
        await alice.call_tool("end_emotion_session", {"session_id": session_id})


@pytest.mark.anyio
@pytest.mark.subprocess
async def test_2026_listen_over_http_streams_a_sessions_updates(http_url: str, sentences_wav):
    rate, pcm = chunks(sentences_wav[0])
    async with authed(http_url, mode="2026-07-28") as c:
        session_id = await start(c, rate)
        async with c.listen(resource_subscriptions=[trace_uri(session_id)]) as sub:
            utterances = 0
            for chunk in pcm:
                closed = await push(c, session_id, chunk)
                for _ in range(closed):
                    with anyio.fail_after(WAIT_S):
                        assert (await sub.__anext__()).uri == trace_uri(session_id)
                utterances += closed
            assert utterances > 0
        await c.call_tool("end_emotion_session", {"session_id": session_id})
