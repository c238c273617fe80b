"""Installable the way MCP users install servers: server.json for the MCP Registry, the README's
mcp-name marker, and `uvx --from emotion-tool==<version> emotion-mcp` (the command a registry client builds) in a fresh environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from emotion_tool.config import DEFAULT_MODEL_ID, MODEL_ENV_VAR
from mcp_server.app_view import VIEW_URI

ROOT = Path(__file__).resolve().parents[1]
UVX_START_TIMEOUT_S = 900  # a first run resolves and installs every dependency into a new environment


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def server_json() -> dict:
    return json.loads((ROOT / "server.json").read_text())


def registry_command(package: dict, given: dict[str, str] | None = None) -> list[str]:
    """The launch command an MCP Registry client builds from a server.json package.

    The runtime, its runtimeArguments, then `identifier==version` (a PyPI package), then the
    packageArguments; `given` holds the values the user supplies for arguments without a fixed value.
    """
    given = given or {}

    def rendered(arguments: list[dict]) -> list[str]:
        out: list[str] = []
        for a in arguments:
            value = a.get("value", given.get(a.get("name") or a.get("valueHint", "")))
            if value is None:
                assert not a.get("isRequired"), a
                continue
            out += [a["name"], value] if a["type"] == "named" else [value]
        return out

    return [
        package["runtimeHint"],
        *rendered(package.get("runtimeArguments", [])),
        f"{package['identifier']}=={package['version']}",
        *rendered(package.get("packageArguments", [])),
    ]


def test_server_json_matches_the_package():
    server, project = server_json(), tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert re.fullmatch(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+", server["name"]), server["name"]
    assert len(server["description"]) <= 100
    (package,) = server["packages"]
    assert package["registryType"] == "pypi" and package["identifier"] == project["name"]
    assert server["version"] == package["version"] == project["version"]
    assert package["transport"] == {"type": "stdio"} and package["runtimeHint"] == "uvx"
    # uvx --from emotion-tool==<version> emotion-mcp: the console script is the package's own.
    spec = f"{project['name']}=={project['version']}"
    assert registry_command(package) == ["uvx", "--from", spec, "emotion-mcp"]
    assert registry_command(package, {"--allow-dir": "/srv/audio"})[-2:] == ["--allow-dir", "/srv/audio"]
    assert "emotion-mcp" in project["scripts"]
    (variable,) = package["environmentVariables"]
    assert variable["name"] == MODEL_ENV_VAR and variable["default"] == DEFAULT_MODEL_ID and variable["description"]
    deps = " ".join(project["dependencies"])
    assert "mcp>=" in deps, "emotion-mcp runs from the plain package: mcp must be a core dependency"


def test_readme_carries_the_registry_name():
    readme = (ROOT / "README.md").read_text()
    assert f"mcp-name: {server_json()['name']}" in readme
    assert "uvx --from emotion-tool emotion-mcp" in readme


def _pip_sources() -> list[str]:
    """The wheel locations pip is configured with here (find-links, extra indexes), as uv flags.

    On machines whose pip finds a local CPU build of torch, the same places give uv the same wheel,
    instead of a multi-GB CUDA build from PyPI.
    """
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    flags: list[str] = []
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        for location in value.strip().strip("'\"").split():
            if key.endswith(".find-links"):
                flags += ["--find-links", location]
            elif key.endswith(".extra-index-url"):
                flags += ["--extra-index-url", location]
    for location in os.environ.get("PIP_FIND_LINKS", "").split():
        flags += ["--find-links", location]
    pairs = dict.fromkeys(zip(flags[::2], flags[1::2]))  # each location once
    return [f for pair in pairs for f in pair]


@pytest.mark.anyio
async def test_uvx_runs_the_registry_command_in_a_fresh_environment(tiny_checkpoint: Path, speech_wav: Path, tmp_path: Path):
    """server.json's command, as a registry client builds it, in a new environment built from the package alone.

    `emotion-tool==<version>` resolves to a wheel and sdist built here from this checkout (uv's
    --find-links), as it would to the release on PyPI.
    """
    uvx = shutil.which("uvx") or str(Path(sys.executable).with_name("uvx"))
    if not Path(uvx).exists():
        pytest.fail("uvx is not installed; run scripts/setup.sh dev (it installs uv)")
    import torch

    dist = tmp_path / "dist"
    uv = str(Path(uvx).with_name("uv"))
    built = subprocess.run(
        [uv, "build", str(ROOT), "--out-dir", str(dist), "--no-build-isolation", "--python", sys.executable],
        capture_output=True, text=True, timeout=UVX_START_TIMEOUT_S,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    runtime, *command = registry_command(server_json()["packages"][0], {"--allow-dir": str(speech_wav.parent)})
    assert runtime == "uvx"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"torch=={torch.__version__}\n")  # the build this machine already has
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", MODEL_ENV_VAR, "EMOTION_MCP_TOKEN")}
    env.update(HF_HUB_OFFLINE="1", UV_PYTHON=f"{sys.version_info.major}.{sys.version_info.minor}")
    args = [
        "--find-links", str(dist), "--refresh-package", "emotion-tool",  # this checkout, never a cached build
        *_pip_sources(), "--index-strategy", "unsafe-best-match", "--constraints", str(constraints),
        *command, "--model", str(tiny_checkpoint), "--device", "cpu",
    ]  # fmt: skip
    params = StdioServerParameters(command=uvx, args=args, env=env, cwd=str(tmp_path))
    async with Client(params, read_timeout_seconds=UVX_START_TIMEOUT_S, mode="legacy") as c:
        info = c.server_info
        tools = {t.name for t in (await c.list_tools()).tools}
        view = (await c.read_resource(VIEW_URI)).contents[0]
        read = await c.call_tool("analyze_emotion", {"audio_path": str(speech_wav)})  # --allow-dir from server.json
    assert info is not None and info.version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert {"analyze_emotion", "start_emotion_session"} <= tools
    assert not read.is_error and read.structured_content["random_weights"], read.content
    assert "<svg" not in view.text[:50] and "ui/notifications/tool-result" in view.text  # the view shipped in the wheel
