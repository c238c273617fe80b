"""Third-party MCP clients against `emotion-mcp`: the MCP Inspector CLI over stdio and HTTP (both
protocol eras), and the conformance suite's server scenarios (both eras, wire-schema checks included).

The Node tools are pinned in tests/mcp_clients/package.json; `scripts/setup.sh dev` installs them
(and Node 22 beside them) into tests/mcp_clients/node_modules.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from test_mcp_transports import TOKEN, emotion_mcp, http_server

CLIENTS = Path(__file__).with_name("mcp_clients")
EXPECTED_FAILURES = CLIENTS / "conformance_expected_failures.yml"  # 0.1.16: whole scenarios
EXPECTED_FAILURES_NEXT = CLIENTS / "conformance_expected_failures_next.yml"  # 0.2.0-alpha.12: single checks
CLIENT_TIMEOUT_S = 300  # a stdio run starts the server (torch import, model load) on a busy machine

pytestmark = pytest.mark.clients


def node_tool(name: str) -> list[str]:
    """`node <tool>` with the pinned Node 22 and tool."""
    bin_dir = CLIENTS / "node_modules" / ".bin"
    node, tool = bin_dir / "node", bin_dir / name
    if not (node.exists() and tool.exists()):
        pytest.fail(f"{tool} is not installed; run scripts/setup.sh dev (npm ci in {CLIENTS})")
    return [str(node), str(tool)]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, cwd=CLIENTS, **kwargs)


def inspector(target: list[str], *args: str, exit_code: int = 0) -> dict:
    """Runs the Inspector CLI; `target` is its connection options, ending with `--` and a command for stdio."""
    options, command = (target[: target.index("--")], target[target.index("--") :]) if "--" in target else (target, [])
    done = run([*node_tool("inspector"), "--cli", "--format", "json", "-q", *options, *args, *command])
    assert done.returncode == exit_code, f"inspector exited with {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def stdio_target(tiny_checkpoint: Path, speech_wav: Path) -> list[str]:
    # The Inspector starts the server with a minimal environment: pass what it needs explicitly.
    env = {"HF_HUB_OFFLINE": "1"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    flags = [f for k, v in env.items() for f in ("-e", f"{k}={v}")]
    return [*flags, "--", *emotion_mcp(), "--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(speech_wav.parent)]


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_inspector_over_stdio(tiny_checkpoint: Path, speech_wav: Path, era: str):
    target = stdio_target(tiny_checkpoint, speech_wav)
    listed = inspector(["--protocol-era", era, *target], "--method", "tools/list")["result"]
    tools = {t["name"]: t for t in listed["tools"]}
    assert {"analyze_emotion", "push_audio", "end_emotion_session"} <= set(tools)
    assert tools["analyze_emotion"]["_meta"]["ui"]["resourceUri"] == "ui://emotion/trace.html"
    called = inspector(
        ["--protocol-era", era, *target], "--method", "tools/call", "--tool-name", "analyze_emotion", "--tool-arg", "audio_path=speech.wav"
    )["result"]
    assert not called.get("isError") and called["structuredContent"]["summary"]["label"] in called["structuredContent"]["labels"]


@pytest.fixture(scope="module")
def http_url(tiny_checkpoint: Path, speech_wav: Path, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("inspector-http") / "server.log"
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--allow-dir", str(speech_wav.parent)]
    with http_server(args, log, EMOTION_MCP_TOKEN=TOKEN) as url:
        yield url


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_inspector_over_http(http_url: str, era: str):
    target = ["--protocol-era", era, "--transport", "http", "--server-url", http_url, "--header", f"Authorization: Bearer {TOKEN}"]
    tools = {t["name"] for t in inspector(target, "--method", "tools/list")["result"]["tools"]}
    assert "get_emotion_trace" in tools
    called = inspector(target, "--method", "tools/call", "--tool-name", "analyze_emotion", "--tool-arg", "audio_path=speech.wav")["result"]
    assert not called.get("isError") and 0 <= called["structuredContent"]["summary"]["valence"] <= 1
    refused = inspector(
        target, "--method", "tools/call", "--tool-name", "analyze_emotion", "--tool-arg", "audio_path=/etc/passwd", exit_code=5
    )["result"]  # 5: the Inspector's exit code for a tool error
    assert refused["isError"] and "outside the directories" in refused["content"][0]["text"]


def test_inspector_sees_the_app_view(http_url: str):
    target = ["--transport", "http", "--server-url", http_url, "--header", f"Authorization: Bearer {TOKEN}", "--advertise-apps"]
    info = inspector(target, "--method", "tools/call", "--tool-name", "get_emotion_trace", "--app-info")
    app = info.get("appInfo") or info.get("result") or info
    assert app["hasApp"] and app["resourceUri"] == "ui://emotion/trace.html", info
    assert app["resourceMimeType"] == "text/html;profile=mcp-app" and app["toolName"] == "get_emotion_trace"


# The conformance suite, in three runs over one server: the stable release over the 2025 revisions, and
# the next release (which also checks every message against its revision's JSON schema) over 2025-11-25
# and over 2026-07-28 (everything that revision requires, its extensions and drafts too).
CONFORMANCE_RUNS = {
    "0.1.16": ("@modelcontextprotocol/conformance", [], EXPECTED_FAILURES),
    "2025-11-25": ("conformance-next", ["--spec-version", "2025-11-25"], EXPECTED_FAILURES_NEXT),
    "2026-07-28": ("conformance-next", ["--requirements", "2026-07-28"], EXPECTED_FAILURES_NEXT),
}
MUST_PASS = {  # scenarios each run must show passing, beyond the baseline check (a guard against a silent empty run)
    "0.1.16": ["server-initialize", "logging-set-level", "ping", "tools-list", "dns-rebinding-protection"],
    "2025-11-25": ["server-initialize", "server-session-lifecycle", "logging-set-level", "tools-list", "resources-list", "prompts-list", "server-sse-multiple-streams"],
    "2026-07-28": ["tools-list", "sep-2164-resource-not-found", "caching", "http-header-validation", "dns-rebinding-protection"],
}


def conformance(package: str) -> list[str]:
    """`node <the suite>` for one of the two pinned releases (both install a `conformance` command)."""
    node, suite = CLIENTS / "node_modules" / ".bin" / "node", CLIENTS / "node_modules" / package / "dist" / "index.js"
    if not (node.exists() and suite.exists()):
        pytest.fail(f"{suite} is not installed; run scripts/setup.sh dev (npm ci in {CLIENTS})")
    return [str(node), str(suite)]


@pytest.fixture(scope="module")
def open_url(tiny_checkpoint: Path, tmp_path_factory) -> Iterator[str]:
    """A server on loopback without a token: the suite sends none."""
    with http_server(["--model", str(tiny_checkpoint), "--device", "cpu"], tmp_path_factory.mktemp("conformance") / "server.log") as url:
        yield url


@pytest.mark.parametrize("run_name", list(CONFORMANCE_RUNS))
def test_conformance_server_scenarios(open_url: str, run_name: str, tmp_path: Path):
    """Every check passes except those the expected-failures file lists (the suite's fixtures), schema checks included."""
    package, selection, expected = CONFORMANCE_RUNS[run_name]
    out = tmp_path / "out"
    done = run([*conformance(package), "server", "--url", open_url, *selection, "--expected-failures", str(expected), "-o", str(out)])
    summary = done.stdout[done.stdout.find("=== SUMMARY ===") :]
    assert done.returncode == 0, f"conformance suite: unexpected failures or stale entries\n{summary}\n{done.stderr[-2000:]}"
    assert "Baseline check passed" in done.stdout
    for scenario in MUST_PASS[run_name]:
        assert f"✓ {scenario}:" in summary, f"{scenario} did not pass\n{summary}"
    if package == "conformance-next":  # each scenario's messages, validated against the revision's schema
        schema_checks = [c for f in out.rglob("checks.json") for c in json.loads(f.read_text()) if c["id"] == "wire-schema-valid"]
        assert len(schema_checks) >= len(MUST_PASS[run_name]) and all(c["status"] == "SUCCESS" for c in schema_checks), [
            c.get("errorMessage") for c in schema_checks if c["status"] != "SUCCESS"
        ]
        assert sum(c["details"]["messagesValidated"] for c in schema_checks) > 50
