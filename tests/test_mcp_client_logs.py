"""`logging/setLevel` for 2025 clients (`mcp_server.client_logs`): a client gets the server's records about
its own requests at its level, scrubbed; other clients' records, and the 2026-07-28 revision, get none."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import METHOD_NOT_FOUND

from mcp_server import ServerOptions, create_server
from mcp_server.client_logs import _Scrubber

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # the 2025 API, on purpose


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path):
    return create_server(ServerOptions(model=str(tiny_checkpoint), device="cpu"))


class Messages:
    def __init__(self):
        self.received = []

    async def __call__(self, params) -> None:
        self.received.append(params)


async def refused_prompt(client: Client) -> None:
    with pytest.raises(MCPError):
        await client.get_prompt("no_such_prompt", {})
    if client.protocol_version != "2026-07-28":  # (2026-07-28 has no ping; there a request's records ride its own stream)
        await client.send_ping()  # a round trip: whatever the server sent before its answer has been handled


@pytest.mark.anyio
async def test_records_reach_the_client_at_its_level(server):
    messages = Messages()
    async with Client(server, mode="legacy", logging_callback=messages) as c:
        assert c.server_capabilities.logging is not None
        await refused_prompt(c)
        assert messages.received == []  # no level set: nothing is sent
        await c.set_logging_level("warning")
        await refused_prompt(c)
        [message] = messages.received
        assert message.level == "warning" and message.logger == "mcp_server.errors"
        assert "unknown prompt 'no_such_prompt'" in message.data
        await c.set_logging_level("error")
        await refused_prompt(c)
        assert len(messages.received) == 1  # the refusal is a warning, below the level asked for


@pytest.mark.anyio
async def test_another_clients_records_are_not_sent(server):
    watcher, caller = Messages(), Messages()
    async with Client(server, mode="legacy", logging_callback=watcher) as watching, Client(
        server, mode="legacy", logging_callback=caller
    ) as calling:
        await watching.set_logging_level("debug")
        await calling.set_logging_level("debug")
        await refused_prompt(calling)
        await watching.send_ping()
        assert len(caller.received) == 1 and watcher.received == []


@pytest.mark.anyio
async def test_2026_offers_no_logging(server):
    messages = Messages()
    async with Client(server, mode="2026-07-28", logging_callback=messages, log_level="debug") as c:
        with pytest.raises(MCPError) as failure:
            await c.set_logging_level("debug")
        assert failure.value.error.code == METHOD_NOT_FOUND
        await refused_prompt(c)
        assert messages.received == []


def test_paths_outside_the_allowed_dirs_and_tokens_are_scrubbed(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("EMOTION_MCP_TOKEN", "s3cret-token-value-of-some-length")
    allowed = tmp_path / "recordings"
    scrub = _Scrubber([allowed])
    text = (
        f"read {allowed}/a.wav and {allowed}, not /etc/passwd or {tmp_path}/other/b.wav; "
        "sent Authorization: Bearer abc.def-ghi and s3cret-token-value-of-some-length; see emotion://sessions/x/trace"
    )
    assert scrub(text) == (
        f"read {allowed}/a.wav and {allowed}, not <path> or <path>; "
        "sent Authorization: Bearer <token> and <token>; see emotion://sessions/x/trace"
    )
