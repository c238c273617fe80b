"""`completion/complete` (`mcp_server.completions`): the caller's own session ids and nothing else, capped
and prefix-matched, in both eras; the prompt's free-text arguments; -32602 for what does not exist."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, PromptReference, ResourceTemplateReference

import mcp_server.completions as completions
from mcp_server import ServerOptions, create_server
from mcp_server.subscriptions import TRACE_TEMPLATE
from test_mcp_protocol import Issuer, bearer, free_port
from test_mcp_transports import TOKEN, authed, http_server

MODES = ["legacy", "2026-07-28"]
TRACE = ResourceTemplateReference(type="ref/resource", uri=TRACE_TEMPLATE)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path):
    return create_server(ServerOptions(model=str(tiny_checkpoint), device="cpu"))


async def session_ids(client: Client, typed: str):
    return (await client.complete(TRACE, {"name": "session_id", "value": typed})).completion


async def start(client: Client) -> str:
    return (await client.call_tool("start_emotion_session", {})).structured_content["session_id"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_session_ids_complete_by_prefix(server, mode: str):
    async with Client(server, mode=mode) as c:
        if mode == "legacy":
            assert c.server_capabilities.completions is not None
        before = (await session_ids(c, "")).values
        first, second = await start(c), await start(c)
        offered = await session_ids(c, "ses_")
        assert offered.values[:2] == [second, first]  # newest first
        assert offered.total == len(offered.values) == len(before) + 2 and offered.has_more is False
        narrowed = await session_ids(c, first[:12])
        assert first in narrowed.values and all(v.startswith(first[:12]) for v in narrowed.values)
        assert (await session_ids(c, first + "x")).values == []
        assert (await session_ids(c, "nothing-starts-so")).total == 0
        for session_id in (first, second):
            await c.call_tool("end_emotion_session", {"session_id": session_id})


@pytest.mark.anyio
async def test_a_capped_completion_says_it_has_more(server, monkeypatch):
    monkeypatch.setattr(completions, "MAX_VALUES", 2)
    async with Client(server, mode="legacy") as c:
        sessions = [await start(c) for _ in range(3)]
        offered = await session_ids(c, "")
        assert len(offered.values) == 2 and offered.has_more is True and offered.total is None
        assert offered.values == sessions[::-1][:2]
        monkeypatch.setattr(completions, "MAX_VALUES", 100)
        assert set(sessions) <= set((await session_ids(c, "")).values)
        for session_id in sessions:
            await c.call_tool("end_emotion_session", {"session_id": session_id})


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_prompt_arguments_are_free_text_and_unknown_names_are_invalid_params(server, mode: str):
    async with Client(server, mode=mode) as c:
        for argument in ("user_words", "analysis_json"):
            free = await c.complete(PromptReference(type="ref/prompt", name="empathetic_reply"), {"name": argument, "value": "I"})
            assert free.completion.values == [] and free.completion.total == 0 and free.completion.has_more is False
        for typed, offered in (("", ["prose", "rcs"]), ("r", ["rcs"]), ("x", [])):
            formats = await c.complete(PromptReference(type="ref/prompt", name="empathetic_reply"), {"name": "note_format", "value": typed})
            assert formats.completion.values == offered and formats.completion.total == len(offered)
        refused = [
            (PromptReference(type="ref/prompt", name="no_such_prompt"), "user_words", "unknown prompt 'no_such_prompt'"),
            (PromptReference(type="ref/prompt", name="empathetic_reply"), "tone", "no argument 'tone'; its arguments are: 'user_words'"),
            (ResourceTemplateReference(type="ref/resource", uri="emotion://model"), "x", "unknown resource template"),
            (TRACE, "sample_rate", "no argument 'sample_rate'; its arguments are: 'session_id'"),
        ]
        for ref, argument, words in refused:
            with pytest.raises(MCPError, match=words) as failure:
                await c.complete(ref, {"name": argument, "value": ""})
            assert failure.value.error.code == INVALID_PARAMS


# --- other clients' sessions are never offered ------------------------------------------------------


@pytest.fixture(scope="module")
def http_url(tiny_checkpoint: Path, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("completions") / "server.log"
    with http_server(["--model", str(tiny_checkpoint), "--device", "cpu"], log, EMOTION_MCP_TOKEN=TOKEN) as url:
        yield url


@pytest.mark.anyio
@pytest.mark.subprocess
async def test_another_clients_sessions_are_not_offered(http_url: str):
    async with authed(http_url, mode="legacy") as alice, authed(http_url, mode="legacy") as bob:
        mine = await start(alice)
        assert (await session_ids(alice, "")).values == [mine]
        assert mine not in (await session_ids(bob, "")).values and (await session_ids(bob, mine[:10])).total == 0
        await alice.call_tool("end_emotion_session", {"session_id": mine})


@pytest.fixture(scope="module")
def oauth_url(tiny_checkpoint: Path, tmp_path_factory) -> Iterator[tuple[str, Issuer]]:
    issuer = Issuer()
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--oauth-issuer", issuer.url, "--oauth-resource", resource,
            "--session-dir", str(tmp_path_factory.mktemp("completion-sessions"))]  # fmt: skip
    try:
        with http_server(args, tmp_path_factory.mktemp("completions-oauth") / "server.log", port=port) as url:
            yield url, issuer
    finally:
        issuer.close()


@pytest.mark.anyio
@pytest.mark.subprocess
async def test_session_files_are_offered_to_their_principal_only(oauth_url):
    url, issuer = oauth_url
    async with bearer(url, issuer.token(url, sub="alice"), "legacy") as alice:
        recorded = await start(alice)
        await alice.call_tool("end_emotion_session", {"session_id": recorded})
    # A new connection: alice's transport session differs, so the session is offered from its file.
    async with bearer(url, issuer.token(url, sub="alice"), "legacy") as again, bearer(url, issuer.token(url, sub="mallory"), "legacy") as mallory:
        assert recorded in (await session_ids(again, "")).values
        assert recorded not in (await session_ids(mallory, "")).values
