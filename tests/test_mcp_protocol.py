"""Both protocol eras (2026-07-28 stateless with server/discover, and the 2025 initialize handshake),
server identity and tool annotations, and OAuth resource-server mode against a local issuer."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import AsyncIterator, Iterator

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_server import ServerOptions, create_server
from test_mcp_transports import TOKEN, authed, http_server

MODES = ["legacy", "2026-07-28"]  # the 2025 handshake, and the current stateless revision
CHUNK = base64.b64encode(bytes(3200)).decode()  # 100 ms of silence, pcm_s16le at 16 kHz


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


# --- identity and annotations, both eras, in process ------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_server_identity_and_annotations(tiny_checkpoint: Path, mode: str):
    async with Client(create_server(ServerOptions(model=str(tiny_checkpoint), device="cpu")), mode=mode) as c:
        assert c.protocol_version == ("2026-07-28" if mode != "legacy" else c.protocol_version)
        if mode == "legacy":
            assert c.protocol_version.startswith("2025-")
        if mode == "legacy":  # 2026 carries serverInfo as a stamp on server/discover: test_discover_over_http
            info = c.server_info
            assert info is not None and info.name == "emotion" and info.version == version("emotion-tool")
        tools = {t.name: t for t in (await c.list_tools()).tools}
    a = {name: t.annotations for name, t in tools.items()}
    assert a["analyze_emotion"].read_only_hint and a["analyze_emotion"].idempotent_hint
    assert a["get_emotion_trace"].read_only_hint and a["get_emotion_trace"].idempotent_hint
    assert a["end_emotion_session"].idempotent_hint and not a["end_emotion_session"].read_only_hint
    for name in ("start_emotion_session", "push_audio"):  # each call opens a session or takes more audio
        assert not a[name].read_only_hint and not a[name].idempotent_hint
    assert all(t.annotations.open_world_hint is False and t.icons for t in tools.values())


# --- both eras over HTTP ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_url(tiny_checkpoint: Path, speech_wav: Path, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("http-eras") / "server.log"
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(speech_wav.parent)]
    with http_server(args, log, EMOTION_MCP_TOKEN=TOKEN) as url:
        yield url


def test_discover_over_http(http_url: str):
    """The stateless revision's `server/discover`, spoken raw: no handshake, no Mcp-Session-Id."""
    response = httpx2.post(
        http_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}},
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream",
                 "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"},
        timeout=60,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert "mcp-session-id" not in response.headers
    body = response.text if response.headers["content-type"].startswith("application/json") else _sse_data(response.text)
    result = json.loads(body)["result"]
    assert "2026-07-28" in result["supportedVersions"]
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["version"] == version("emotion-tool")
    assert "io.modelcontextprotocol/ui" in (result["capabilities"].get("extensions") or {})


def _sse_data(text: str) -> str:
    return next(line[5:].strip() for line in text.splitlines() if line.startswith("data:"))


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_http_both_eras_analyse_and_stream(http_url: str, mode: str):
    async with authed(http_url, mode=mode) as c:
        assert (c.protocol_version == "2026-07-28") == (mode != "legacy")
        result = await c.call_tool("analyze_emotion", {"audio_path": "speech.wav"})
        assert not result.is_error and result.structured_content["summary"]["label"]
        sid = (await c.call_tool("start_emotion_session", {"sample_rate": 16000})).structured_content["session_id"]
        pushed = await c.call_tool("push_audio", {"session_id": sid, "chunk_base64": CHUNK})
        assert not pushed.is_error and pushed.structured_content["received_s"] == pytest.approx(0.1)
        ended = await c.call_tool("end_emotion_session", {"session_id": sid})
        assert not ended.is_error and ended.structured_content["ended"]


@pytest.mark.anyio
async def test_stateless_session_ids_cannot_be_guessed(http_url: str):
    """Without Mcp-Session-Id or a token's principal, the 128-bit id is what keeps sessions apart."""
    async with authed(http_url, mode="2026-07-28") as alice, authed(http_url, mode="2026-07-28") as other:
        sid = (await alice.call_tool("start_emotion_session", {})).structured_content["session_id"]
        assert len(sid) >= 22
        for guess in (sid[:-1] + ("A" if sid[-1] != "A" else "B"), sid.upper(), "0" * len(sid), ""):
            peek = await other.call_tool("get_emotion_trace", {"session_id": guess})
            assert peek.is_error, guess
        await alice.call_tool("end_emotion_session", {"session_id": sid})


# --- OAuth resource server against a local issuer -------------------------------------------------


class Issuer:
    """A minimal authorization server on 127.0.0.1: RFC 8414 metadata and a JWKS, and tokens minted here."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwks = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                documents = {
                    "/.well-known/oauth-authorization-server": {
                        "issuer": issuer.url, "jwks_uri": issuer.url + "/jwks.json",
                        "authorization_endpoint": issuer.url + "/authorize", "token_endpoint": issuer.url + "/token",
                        "response_types_supported": ["code"],
                    },
                    "/jwks.json": jwks,
                }  # fmt: skip
                found = documents.get(self.path)
                body = json.dumps(found or {"error": "not found"}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def token(self, audience: str, *, sub: str = "alice", issuer: str | None = None, expires_in_s: float = 600, key=None, **claims) -> str:
        now = int(time.time())
        payload = {"iss": issuer or self.url, "sub": sub, "aud": audience, "iat": now, "exp": now + int(expires_in_s),
                   "client_id": f"{sub}-client", "scope": "emotion", **claims}  # fmt: skip
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": "k1"})

    def close(self):
        self.http.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    yield issuer
    issuer.close()


@pytest.fixture(scope="module")
def oauth_url(issuer: Issuer, tiny_checkpoint: Path, speech_wav: Path, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    log = tmp_path_factory.mktemp("oauth") / "server.log"
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(speech_wav.parent),
            "--oauth-issuer", issuer.url, "--oauth-resource", resource,
            "--session-dir", str(tmp_path_factory.mktemp("sessions"))]  # fmt: skip
    with http_server(args, log, port=port) as url:
        assert url == resource
        yield url


@asynccontextmanager
async def bearer(url: str, token: str, mode: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client


def test_protected_resource_metadata_and_401(oauth_url: str, issuer: Issuer):
    origin = oauth_url.rsplit("/mcp", 1)[0]
    metadata_url = origin + "/.well-known/oauth-protected-resource/mcp"
    metadata = httpx2.get(metadata_url, timeout=30).json()
    assert metadata["resource"] == oauth_url and metadata["authorization_servers"] == [issuer.url]

    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "no token": None,
        "another audience": issuer.token("http://127.0.0.1:1/mcp"),
        "another issuer": issuer.token(oauth_url, issuer="http://127.0.0.1:2"),
        "expired": issuer.token(oauth_url, expires_in_s=-3600),
        "forged signature": issuer.token(oauth_url, key=other_key),
        "not a JWT": "x" * 40,
    }
    for why, token in refused.items():
        headers = {"Accept": "application/json, text/event-stream", **({"Authorization": f"Bearer {token}"} if token else {})}
        response = httpx2.post(oauth_url, json=request, headers=headers, timeout=30)
        assert response.status_code == 401, why
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer") and f'resource_metadata="{metadata_url}"' in challenge, (why, challenge)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_oauth_sessions_belong_to_their_principal(oauth_url: str, issuer: Issuer, mode: str):
    alice_token, mallory_token = issuer.token(oauth_url, sub="alice"), issuer.token(oauth_url, sub="mallory")
    async with bearer(oauth_url, alice_token, mode) as alice, bearer(oauth_url, mallory_token, mode) as mallory:
        assert not (await alice.call_tool("analyze_emotion", {"audio_path": "speech.wav"})).is_error
        sid = (await alice.call_tool("start_emotion_session", {})).structured_content["session_id"]
        stolen = await mallory.call_tool("push_audio", {"session_id": sid, "chunk_base64": CHUNK})
        assert stolen.is_error and "unknown session" in stolen.content[0].text
        peek = await mallory.call_tool("get_emotion_trace", {"session_id": sid})
        assert peek.is_error and "unknown session" in peek.content[0].text
        own = await alice.call_tool("push_audio", {"session_id": sid, "chunk_base64": CHUNK})
        assert not own.is_error and own.structured_content["received_s"] == pytest.approx(0.1)
        assert not (await alice.call_tool("end_emotion_session", {"session_id": sid})).is_error
    if mode != "legacy":  # stateless: a new connection with the same principal reaches the session again
        async with bearer(oauth_url, issuer.token(oauth_url, sub="alice"), mode) as again:
            assert not (await again.call_tool("get_emotion_trace", {"session_id": sid})).is_error
    # The session file (--session-dir) is read back for its opener only, not for another principal.
    async with bearer(oauth_url, issuer.token(oauth_url, sub="mallory"), mode) as mallory:
        peek = await mallory.call_tool("get_emotion_trace", {"session_id": sid})
        assert peek.is_error and "unknown session" in peek.content[0].text


def test_oauth_server_checks_host_and_origin(oauth_url: str, issuer: Issuer):
    """A valid token does not let a request naming another site through on a loopback bind."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {issuer.token(oauth_url)}"}
    assert httpx2.post(oauth_url, json=request, headers={**headers, "Host": "evil.example"}, timeout=30).status_code == 421
    assert httpx2.post(oauth_url, json=request, headers={**headers, "Origin": "http://evil.example"}, timeout=30).status_code == 403


def test_oauth_flags_are_checked(tiny_checkpoint: Path):
    import subprocess

    from test_mcp_transports import emotion_mcp, server_env

    cases = {
        ("--oauth-issuer", "http://127.0.0.1:9"): "--oauth-resource",
        ("--transport", "streamable-http", "--oauth-issuer", "ftp://x", "--oauth-resource", "http://127.0.0.1:1/mcp"): "http(s) URL",
    }  # fmt: skip
    for args, expected in cases.items():
        if "--transport" not in args:
            args = ("--transport", "streamable-http", *args)
        done = subprocess.run(emotion_mcp() + ["--model", str(tiny_checkpoint), *args], capture_output=True, text=True,
                              env=server_env(), timeout=120)  # fmt: skip
        assert done.returncode == 2 and expected in done.stderr, done.stderr
    both = subprocess.run(
        emotion_mcp() + ["--transport", "streamable-http", "--oauth-issuer", "http://127.0.0.1:9", "--oauth-resource", "http://127.0.0.1:1/mcp"],
        capture_output=True, text=True, env=server_env(EMOTION_MCP_TOKEN=TOKEN), timeout=120,
    )  # fmt: skip
    assert both.returncode == 2 and "choose one" in both.stderr
