"""Every message the server sends is valid against the published JSON schema of the revision it is sent under.

A client in each era (2025-11-25 through the handshake, 2026-07-28 stateless) drives every kind of exchange
the server has: listings, both tools on recordings and live sessions with progress, resources, the prompt,
completions, trace updates (resources/subscribe, subscriptions/listen), log messages and error answers. The
transport between them records each message in its wire form; tests/mcp_clients/wire_schema.mjs validates
them with the schemas and validator of the conformance suite (the specification's schema/<revision>/schema.json).
The conformance runs in test_mcp_clients.py check the HTTP framing of the same messages.
"""

from __future__ import annotations

import base64
import json
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import anyio
import pytest
import soundfile as sf
from mcp import Client
from mcp.client._memory import InMemoryTransport
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp.types import ResourceTemplateReference

from mcp_server import ServerOptions, create_server
from mcp_server.subscriptions import TRACE_TEMPLATE, trace_uri

pytestmark = [pytest.mark.clients, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

VALIDATOR = Path(__file__).with_name("mcp_clients") / "wire_schema.mjs"
NODE = VALIDATOR.parent / "node_modules" / ".bin" / "node"
ERAS = {"legacy": "2025-11-25", "2026-07-28": "2026-07-28"}  # Client mode -> the revision its messages follow
CHUNK_S = 0.1


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def validate(messages: list[dict]) -> list[list[str]]:
    """The validator's errors for each message (empty: valid)."""
    if not NODE.exists() or not (VALIDATOR.parent / "node_modules" / "conformance-next").exists():
        pytest.fail(f"the conformance suite is not installed in {VALIDATOR.parent}; run scripts/setup.sh dev")
    done = subprocess.run([str(NODE), str(VALIDATOR)], input=json.dumps(messages), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert {"2025-11-25", "2026-07-28"} <= set(verdict["revisions"])
    return verdict["verdicts"]


class Wire:
    """The messages each side sent, as JSON text would carry them."""

    def __init__(self):
        self.sent_by_server: list[dict] = []
        self.methods: dict[object, str] = {}  # request id -> method, for the server's answers

    def client_sent(self, message: SessionMessage) -> None:
        wire = json.loads(message.message.model_dump_json(by_alias=True, exclude_unset=True))
        if "method" in wire and "id" in wire:
            self.methods[wire["id"]] = wire["method"]

    def server_sent(self, message: SessionMessage) -> None:
        self.sent_by_server.append(json.loads(message.message.model_dump_json(by_alias=True, exclude_unset=True)))


@asynccontextmanager
async def recorded(server, wire: Wire) -> AsyncIterator:
    """The SDK's in-memory transport, with every message recorded in passing."""
    async with InMemoryTransport(server) as (read, write):
        to_client, from_server = anyio.create_memory_object_stream(64)
        to_server, from_client = anyio.create_memory_object_stream(64)

        async def server_to_client() -> None:
            async with to_client:
                async for item in read:
                    if isinstance(item, SessionMessage):
                        wire.server_sent(item)
                    await to_client.send(item)

        async def client_to_server() -> None:
            async with from_client:
                async for item in from_client:
                    wire.client_sent(item)
                    await write.send(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(server_to_client)
            tg.start_soon(client_to_server)
            yield from_server, to_server
            tg.cancel_scope.cancel()


async def every_exchange(c: Client, legacy: bool, speech_wav: Path, sentences_wav: Path) -> None:
    await c.list_tools()
    await c.list_resources()
    await c.list_resource_templates()
    await c.list_prompts()
    await c.read_resource("emotion://model")
    await c.read_resource("ui://emotion/trace.html")
    analysis = await c.call_tool(
        "analyze_emotion", {"audio_base64": base64.b64encode(speech_wav.read_bytes()).decode(), "trace": True},
        progress_callback=lambda *_: anyio.lowlevel.checkpoint(),
    )  # fmt: skip
    assert not analysis.is_error
    await c.get_prompt("empathetic_reply", {"user_words": "fine", "analysis_json": json.dumps(analysis.structured_content)})
    if legacy:
        await c.set_logging_level("debug")
    for bad in (lambda: c.get_prompt("no_such_prompt", {}), lambda: c.call_tool("no_such_tool", {}), lambda: c.read_resource("emotion://none")):
        with pytest.raises(MCPError):
            await bad()

    wav, rate = sf.read(sentences_wav, dtype="int16")
    session_id = (await c.call_tool("start_emotion_session", {"sample_rate": rate})).structured_content["session_id"]
    await c.complete(ResourceTemplateReference(type="ref/resource", uri=TRACE_TEMPLATE), {"name": "session_id", "value": "ses_"})

    async def stream() -> int:
        step, utterances = int(rate * CHUNK_S), 0
        for i in range(0, len(wav), step):
            pushed = await c.call_tool("push_audio", {"session_id": session_id, "chunk_base64": base64.b64encode(wav[i : i + step].tobytes()).decode()})
            utterances += sum(not r["interim"] for r in pushed.structured_content["readings"])
        return utterances

    if legacy:
        await c.subscribe_resource(trace_uri(session_id))
        assert await stream() > 0
        await c.unsubscribe_resource(trace_uri(session_id))
    else:
        async with c.listen(resource_subscriptions=[trace_uri(session_id)]) as sub:
            assert await stream() > 0
            with anyio.fail_after(30):
                await sub.__anext__()
    await c.read_resource(trace_uri(session_id))
    await c.call_tool("end_emotion_session", {"session_id": session_id})


@pytest.mark.anyio
@pytest.mark.parametrize("mode", list(ERAS))
async def test_every_message_is_valid_for_its_revision(tiny_checkpoint: Path, speech_wav: Path, sentences_wav, mode: str):
    server = create_server(ServerOptions(model=str(tiny_checkpoint), device="cpu"))
    wire = Wire()
    async with Client(recorded(server, wire), mode=mode) as c:
        await every_exchange(c, mode == "legacy", speech_wav, sentences_wav[0])
        negotiated = c.protocol_version
    assert negotiated == ERAS[mode]
    sent = [{"version": negotiated, "message": m, "requestMethod": wire.methods.get(m.get("id"))} for m in wire.sent_by_server]
    verdicts = validate(sent)
    invalid = [(item["message"], errors) for item, errors in zip(sent, verdicts) if errors]
    assert not invalid, json.dumps(invalid[:3], indent=1)[:4000]

    kinds = {m.get("method") or ("error" if "error" in m else wire.methods.get(m.get("id"))) for m in wire.sent_by_server}
    expected = {"tools/call", "resources/read", "prompts/get", "completion/complete", "notifications/progress", "notifications/resources/updated", "error"}
    expected |= {"initialize", "notifications/message", "resources/subscribe"} if mode == "legacy" else {"notifications/subscriptions/acknowledged"}
    assert expected <= kinds, expected - kinds


def test_the_validator_refuses_what_the_schema_forbids():
    """The old icon, a data: URI with spaces, is no URI; a result without its required fields is no result."""
    icon = {"src": "data:image/svg+xml;utf8,%3Csvg viewBox=%270 0 24 24%27%3E", "mimeType": "image/svg+xml"}
    initialize = {"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-11-25", "capabilities": {},
                                                        "serverInfo": {"name": "emotion", "version": "1", "icons": [icon]}}}  # fmt: skip
    completion = {"jsonrpc": "2.0", "id": 1, "result": {"completion": {"total": 1}}}
    verdicts = validate([
        {"version": "2025-11-25", "message": initialize, "requestMethod": "initialize"},
        {"version": "2026-07-28", "message": completion, "requestMethod": "completion/complete"},
    ])  # fmt: skip
    assert any('format "uri"' in e and "icons/0/src" in e for e in verdicts[0]), verdicts[0]
    assert any("values" in e for e in verdicts[1]), verdicts[1]
