"""-32602 for an unknown tool, prompt, prompt argument or resource (`mcp_server.errors`), in both eras, with
one WARNING line in the log and no traceback; a known tool's bad arguments stay a tool error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

from mcp_server import ServerOptions, create_server
from test_mcp_transports import TOKEN, authed, http_server

MODES = ["legacy", "2026-07-28"]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path):
    return create_server(ServerOptions(model=str(tiny_checkpoint), device="cpu"))


REFUSALS = [  # (what the client does, words the error must hold)
    (lambda c: c.get_prompt("no_such_prompt", {}), "unknown prompt 'no_such_prompt'; this server's prompts are: 'empathetic_reply'"),
    (lambda c: c.get_prompt("empathetic_reply", {"user_words": "hi"}), "missing 'analysis_json'; its arguments are: 'user_words', 'analysis_json'"),
    (lambda c: c.get_prompt("empathetic_reply", {"user_words": "hi", "analysis_json": "{}", "mood": "x"}), "no argument 'mood'"),
    (lambda c: c.call_tool("no_such_tool", {}), "unknown tool 'no_such_tool'; this server's tools are: 'analyze_emotion'"),
    (lambda c: c.read_resource("emotion://nothing"), "unknown resource 'emotion://nothing'; this server's resources are: 'ui://emotion/trace.html', 'emotion://model'"),
    (lambda c: c.read_resource("emotion://sessions/ses_unknownunknown/trace"), "unknown session 'ses_unknownunknown'"),
    (lambda c: c.get_prompt("empathetic_reply", {"user_words": "hi", "analysis_json": "not json"}), "analysis_json is not an emotion analysis"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_unknown_names_are_invalid_params_without_a_traceback(server, mode: str, caplog):
    caplog.set_level(logging.INFO)
    async with Client(server, mode=mode) as c:
        for call, words in REFUSALS:
            caplog.clear()
            with pytest.raises(MCPError) as failure:
                await call(c)
            assert failure.value.error.code == INVALID_PARAMS and words in failure.value.error.message, failure.value.error
            assert not [r for r in caplog.records if r.exc_info or r.levelno > logging.WARNING], words
            assert len([r for r in caplog.records if r.levelno == logging.WARNING]) <= 1, words
        result = await c.call_tool("analyze_emotion", {"audio_base64": "not base64!"})  # a known tool: a tool error
        assert result.is_error and "audio_base64" in result.content[0].text


@pytest.mark.subprocess
@pytest.mark.anyio
async def test_the_servers_log_holds_one_line_per_refusal(tiny_checkpoint: Path, tmp_path: Path):
    log = tmp_path / "server.log"
    with http_server(["--model", str(tiny_checkpoint), "--device", "cpu"], log, EMOTION_MCP_TOKEN=TOKEN) as url:
        for mode in MODES:
            async with authed(url, mode=mode) as c:
                for _ in range(2):
                    with pytest.raises(MCPError) as failure:
                        await c.get_prompt("no_such_prompt", {})
                    assert failure.value.error.code == INVALID_PARAMS
    text = log.read_text()
    assert "Traceback" not in text and " ERROR " not in text, text
    refusals = [line for line in text.splitlines() if "unknown prompt 'no_such_prompt'" in line]
    assert len(refusals) == 4 and all(" WARNING " in line for line in refusals), text
