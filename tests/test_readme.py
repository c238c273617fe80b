"""Every example in README.md and the pages under docs/ runs as written.

Each ```python block runs as its own program, and each ```bash / ```console block as a bash script,
in a prepared working directory that stands for the repository's root as a new user has it: the
files the examples name (`turn.wav`, `call.wav`, manifests, a training config, ...) are there, and
so is a `.gitignore` copied from the repository, so a block that leaves a file `git status` would
show fails. What cannot exist here is set up outside the blocks, through the environment only:

- `$EMOTION_TOOL_MODEL` and `~/models/MERaLiON-SER-v1` are a tiny random-weight checkpoint (`HOME`
  is a fresh folder, which also holds `~/Recordings`);
- the provider package `langchain_openai` is an offline fake (tests/readme_fakes), so examples that
  name `"openai:gpt-4o-mini"` run without a key;
- `pip` is a stand-in that installs nothing: it checks that what the line asks for is already
  satisfied here, and refuses `emotion-tool` from PyPI, where it is not published.

A block the tests cannot run says why in the README text and carries, on the line before its
fence, `<!-- readme-test: skip (the reason) -->`; it is reported as skipped with that reason. A
server block carries `<!-- readme-test: until TEXT -->`: it passes once TEXT appears in its output,
and is then stopped; a block right after it marked `<!-- readme-test: with the server above -->`
runs while that server is up (the pair is one test).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import speak

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]  # the front door and the pages it links
FAKES = Path(__file__).resolve().parent / "readme_fakes"
RUNNABLE = {"python", "bash", "console"}
BLOCK_TIMEOUT_S = 600  # a hung example fails instead of hanging the suite
SERVER_DEADLINE_S = 240  # give up waiting for a server's ready line (2 busy cores, cold imports)
MARKER = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours in servers' logs
KNOWN_MARKERS = ("skip (", "until ", "with the server above", "in the repository")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    markers: tuple[str, ...]  # the readme-test markers on the lines right above the fence
    page: str = "README.md"  # the file, relative to the repository's root

    @property
    def where(self) -> str:
        return f"{self.page} line {self.line}"

    @property
    def stem(self) -> str:
        """A file name for the block's script, unique across pages."""
        return f"{self.page.removesuffix('.md').replace('/', '-')}-L{self.line}"

    def marked(self, prefix: str) -> str | None:
        """The rest of the first marker that starts with `prefix`, or None."""
        return next((m[len(prefix) :] for m in self.markers if m.startswith(prefix)), None)

    @property
    def id(self) -> str:
        first = next((ln for ln in self.code.splitlines() if ln.strip() and not ln.startswith("#")), "")
        words = re.sub(r"[^A-Za-z0-9_.-]+", "-", first.removeprefix("$ "))[:40].strip("-")
        page = "" if self.page == "README.md" else self.page.removesuffix(".md").replace("docs/", "") + "-"
        return f"{page}L{self.line}-{self.lang}-{words}"


def readme_blocks(text: str, page: str = "README.md") -> list[Block]:
    """The fenced blocks of a Markdown text, with the marker on the line before each."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        fence = re.match(r"^(```+)(\w*)", lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1)))
            markers, k = [], i - 1
            while k >= 0 and (m := MARKER.fullmatch(lines[k].strip())):
                markers.insert(0, m.group(1))
                k -= 1
            blocks.append(Block(i + 1, fence.group(2), "\n".join(lines[i + 1 : end]) + "\n", tuple(markers), page))
            i = end
        i += 1
    return blocks


def all_blocks() -> list[Block]:
    """The blocks of README.md and of every page under docs/, in that order."""
    return [b for path in PAGES for b in readme_blocks(path.read_text(), str(path.relative_to(REPO)))]


def _cases() -> list:
    cases = []
    for path in PAGES:
        cases += _page_cases([b for b in all_blocks() if b.page == str(path.relative_to(REPO)) and b.lang in RUNNABLE])
    return cases


def _page_cases(blocks: list[Block]) -> list:
    """One page's cases: a server block pairs with the blocks after it on the same page."""
    cases, servers, used = [], {}, set()
    for k, block in enumerate(blocks):
        for marker in block.markers:
            if not marker.startswith(KNOWN_MARKERS):
                raise ValueError(f"{block.page} above line {block.line}: unknown readme-test marker {marker!r}")
        server = None
        if block.marked("with the server above") is not None:
            server = next((b for b in reversed(blocks[:k]) if b.marked("until ")), None)
            if server is None:
                raise ValueError(f"{block.where}: no server block (marked 'until') above it")
            used.add(server.line)
        servers[block.line] = server
    for block in blocks:
        if block.line in used:
            continue  # runs together with the block that needs it
        server = servers[block.line]
        skip = block.marked("skip (")
        marks = [pytest.mark.skip(reason=f"{block.where}: {skip.removesuffix(')')}")] if skip else []
        if block.marked("in the repository's .venv") is not None and Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
            marks = [pytest.mark.skip(reason=f"{block.where}: runs the repository's own .venv; these tests run in {sys.prefix}")]
        cases.append(pytest.param(block, server, id=block.id, marks=marks))
    return cases


# --- the user's machine ---------------------------------------------------------------------------

PIP_STANDIN = '''\
"""pip for README examples: installs nothing; fails unless what is asked for is already satisfied."""
import re, sys, tomllib
from importlib import metadata
from packaging.requirements import Requirement

REPO = {repo!r}
args = sys.argv[1:]
if not args or args[0] != "install":
    sys.exit(f"pip stand-in: only `pip install` is expected in README examples, got {{args}}")
extras = tomllib.load(open(REPO + "/pyproject.toml", "rb"))["project"]["optional-dependencies"]

def satisfied(req: Requirement, seen: set) -> None:
    if req.name == "emotion-tool":
        for extra in req.extras - seen:
            if extra not in extras:
                sys.exit(f"pip stand-in: emotion-tool has no extra {{extra!r}} (extras: {{sorted(extras)}})")
            seen.add(extra)
            for r in extras[extra]:
                satisfied(Requirement(r), seen)
        return
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        sys.exit(f"pip stand-in: {{req}} is not installed in the test environment")
    if not req.specifier.contains(have, prereleases=True):
        sys.exit(f"pip stand-in: {{req}} is wanted, {{have}} is installed")
    for extra in req.extras:
        for r in metadata.requires(req.name) or []:
            r = Requirement(r)
            if r.marker is not None and r.marker.evaluate({{"extra": extra}}) and not r.marker.evaluate({{"extra": ""}}):
                satisfied(Requirement(str(r).split(";")[0]), set())

editable, i = False, 1
while i < len(args):
    a = args[i]
    i += 1
    if a in ("-e", "--editable"):
        editable = True
        continue
    if a.startswith("-"):
        continue
    local = re.fullmatch(r"\\.(\\[[\\w,-]+\\])?", a)
    if local:  # the working directory stands for the repository's root
        satisfied(Requirement("emotion-tool" + (local.group(1) or "")), set())
    elif Requirement(a).name == "emotion-tool":
        sys.exit("pip stand-in: emotion-tool is not on PyPI yet; install it from the repository: pip install -e .")
    else:
        satisfied(Requirement(a), set())
'''


def _write_manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("audio,label,language,speaker\n" + "".join(f"{a},{lab},en,s{k % 2}\n" for k, (a, lab) in enumerate(rows)))
    return path


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, speech_wav: Path) -> dict:
    """A home folder, a working directory (a git checkout of the user's) and the environment."""
    root = tmp_path_factory.mktemp("readme")
    home, work, bin_dir, blocks = root / "home", root / "work", root / "bin", root / "blocks"
    for d in (home, work, bin_dir, blocks):
        d.mkdir()
    model = home / "models" / "MERaLiON-SER-v1"
    shutil.copytree(tiny_checkpoint, model)
    shutil.copytree(tiny_checkpoint, work / "my-checkpoint")

    voices = {"turn": "Where is my order", "turn1": "I have been waiting for an hour", "turn2": "Thanks that helps",
              "turn3": "Can I talk to a person please", "call": "Nobody has called me back about my parcel"}  # fmt: skip
    for name, words in voices.items():
        speak(words, work / f"{name}.wav")
    shutil.copy(speech_wav, work / "speech.wav")
    shutil.copy(speech_wav, work / "my.wav")
    (work / "my-calls").mkdir()
    shutil.copy(work / "call.wav", work / "my-calls" / "a.wav")
    shutil.copy(work / "turn1.wav", work / "my-calls" / "b.wav")
    (work / "calls" / "monday").mkdir(parents=True)  # an archive for the batch examples
    shutil.copy(work / "call.wav", work / "calls" / "monday" / "0001.wav")
    shutil.copy(work / "turn1.wav", work / "calls" / "0002.wav")
    (work / "calls.csv").write_text("audio\ncalls/monday/0001.wav\ncalls/0002.wav\n")
    (home / "Recordings").mkdir()
    for name in ("call.wav", "turn.wav"):
        shutil.copy(work / name, home / "Recordings" / name)
    shutil.copy(work / "call.wav", home / "Recordings" / "a.wav")

    # Manifests and a training config as the fine-tuning and calibration sections name them.
    labels = ["angry", "neutral", "sad", "happy"]
    rows = [(f"../{n}.wav", labels[k % 4]) for k, n in enumerate(voices)] * 2
    for name in ("train", "dev", "test"):
        _write_manifest(work / "data" / f"{name}.csv", rows)
    for name in ("dev", "test"):
        _write_manifest(work / f"{name}.csv", [(a.removeprefix("../"), lab) for a, lab in rows])
    (work / "my_config.toml").write_text(
        textwrap.dedent(f"""\
        train_manifest = "data/train.csv"
        dev_manifest = "data/dev.csv"
        output_dir = "runs/ser-finetune"
        base_model = "{model}"
        epochs = 1
        batch_size = 4
        num_workers = 0
        device = "cpu"
        """)
    )

    # The user's own checkout: their inputs are theirs (excluded), everything else must be ignored.
    shutil.copy(REPO / ".gitignore", work / ".gitignore")
    git = ["git", "-c", "user.name=u", "-c", "user.email=u@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    inputs = sorted(p.name for p in work.iterdir() if p.name not in (".git", ".gitignore"))
    (work / ".git" / "info" / "exclude").write_text("".join(f"/{n}\n" for n in inputs))
    subprocess.run([*git, "add", ".gitignore"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "checkout"], cwd=work, check=True)

    pip = bin_dir / "pip"
    pip.write_text(f"#!{sys.executable}\n" + PIP_STANDIN.format(repo=str(REPO)))
    pip.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "EMOTION_", "HF_", "PYTEST_"))}
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join([str(FAKES), str(REPO)]),
        EMOTION_TOOL_MODEL=str(model),
        HF_HUB_OFFLINE="1",
        OPENAI_API_KEY="sk-offline-fake",
        MPLBACKEND="Agg",
    )
    return {"home": home, "work": work, "blocks": blocks, "env": env}


def _script(block: Block, folder: Path) -> list[str]:
    """The command that runs a block as written."""
    if block.lang == "python":
        path = folder / f"{block.stem}.py"
        path.write_text(block.code)
        return [sys.executable, str(path)]
    code = block.code
    if block.lang == "console":  # prompts start commands; their continuation lines follow
        code = "\n".join(ln[2:] if ln.startswith("$ ") else ln for ln in code.splitlines() if ln.startswith("$ ") or ln.startswith("  "))
    path = folder / f"{block.stem}.sh"
    path.write_text("set -euo pipefail\n" + code)
    return ["bash", str(path)]


def _cwd(block: Block, machine: dict) -> Path:
    """Where a block runs: the repository for blocks marked so (they name its files), else the user's folder."""
    return REPO if block.marked("in the repository") is not None else machine["work"]


def _ready(ready: str, log: Path) -> bool:
    """Whether a server is up: `URL answers` polls the URL; other text is looked for in its output."""
    if ready.endswith(" answers"):
        try:
            with urllib.request.urlopen(ready.removesuffix(" answers"), timeout=5) as response:
                return response.status == 200
        except (OSError, ValueError):
            return False
    return ready in ANSI.sub("", log.read_text(errors="replace"))


def _start_server(block: Block, machine: dict) -> tuple[subprocess.Popen, Path]:
    ready = block.marked("until ")
    log = machine["blocks"] / f"{block.stem}.log"
    proc = subprocess.Popen(_script(block, machine["blocks"]), cwd=_cwd(block, machine), env=machine["env"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    give_up = time.monotonic() + SERVER_DEADLINE_S
    while not _ready(ready, log):
        if proc.poll() is not None:
            pytest.fail(f"{block.where}: the server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > give_up:
            _stop(proc)
            pytest.fail(f"{block.where}: {ready!r} never appeared:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    return proc, log


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _exported(proc: subprocess.Popen, env: dict) -> dict:
    """Variables a server block exported (read from its processes), as the user's shell would keep them."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(status.read_text().rsplit(")", 1)[1].split()[2]) != proc.pid:  # process group
                continue
            pairs = (status.parent / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        for pair in pairs:
            name, _, value = pair.decode(errors="replace").partition("=")
            if name and env.get(name) != value and name not in ("_", "SHLVL", "PWD", "OLDPWD"):
                found[name] = value
    return found


def _run(block: Block, machine: dict, extra_env: dict | None = None) -> None:
    if block.marked("until "):
        _stop(_start_server(block, machine)[0])
        return
    env = {**machine["env"], **(extra_env or {})}
    try:
        done = subprocess.run(_script(block, machine["blocks"]), cwd=_cwd(block, machine), env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=BLOCK_TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{block.where}: still running after {BLOCK_TIMEOUT_S} s:\n{e.stdout}\n{e.stderr}")
    if done.returncode != 0:
        pytest.fail(
            f"{block.where} ({block.lang}) failed with exit status {done.returncode}:\n"
            f"{block.code}\n--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-6000:]}"
        )


@pytest.mark.parametrize(("block", "server"), _cases())
def test_readme_example_runs_as_written(block: Block, server: Block | None, machine: dict) -> None:
    if server is not None:
        proc, log = _start_server(server, machine)
        try:
            _run(block, machine, _exported(proc, machine["env"]))
        finally:
            _stop(proc)
    else:
        _run(block, machine)
    left = subprocess.run(["git", "status", "--porcelain"], cwd=machine["work"], capture_output=True, text=True, check=True)
    assert left.stdout == "", f"{block.where} left files that .gitignore does not cover:\n{left.stdout}"


def test_markers_and_skips_are_read():
    """The parser finds the blocks, and a marker on the line before a fence is what a case is skipped with."""
    text = "a\n<!-- readme-test: skip (needs a microphone) -->\n```bash\necho hi\n```\n```python\nprint(1)\n```\n"
    first, second = readme_blocks(text)
    assert (first.lang, first.code, first.markers) == ("bash", "echo hi\n", ("skip (needs a microphone)",))
    assert (first.marked("skip ("), second.line, second.lang, second.markers) == ("needs a microphone)", 6, "python", ())
    assert any(p.marks for p in _cases()), "the README marks no block as skipped; is the marker parsed?"


DATA = {"json", "toml", "csv"}


@pytest.mark.parametrize("block", [b for b in all_blocks() if b.lang in DATA], ids=lambda b: b.id)
def test_readme_data_block_is_read_by_what_it_configures(block: Block, tmp_path: Path) -> None:
    """Configs and manifests shown in README parse, and are accepted by the code that reads them."""
    import json
    import tomllib

    from emotion_tool.science.data import ManifestOptions, read_manifest
    from emotion_tool.jobs.train.config import load_config

    where = f"{block.where}"
    if block.lang == "toml":
        tomllib.loads(block.code)
        path = tmp_path / "config.toml"
        path.write_text(block.code)
        assert load_config(path).train_manifest is not None, where
        return
    # A manifest lists recordings the reader opens later; here only its rows are checked.
    options = ManifestOptions(check_audio=False, require_files=False, label_map={"calm": "neutral"})
    if block.lang == "csv":
        path = tmp_path / "manifest.csv"
        path.write_text(block.code)
        assert len(read_manifest(path, options=options)) == len(block.code.strip().splitlines()) - 1, where
        return
    try:
        config = json.loads(block.code)
    except json.JSONDecodeError:  # JSON Lines: a manifest, one object a line
        lines = block.code.strip().splitlines()
        assert all(isinstance(json.loads(ln), dict) for ln in lines), where
        path = tmp_path / "manifest.jsonl"
        path.write_text(block.code)
        assert len(read_manifest(path, options=options)) == len(lines), where
        return
    # An MCP client's config: each server's command is a console script this package installs.
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    servers = config["mcpServers"]
    assert servers and all(Path(s["command"]).name in scripts for s in servers.values()), where
