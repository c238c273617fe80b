#!/usr/bin/env bash
# Sets up everything emotion-tool needs in ./.venv: system libraries, PyTorch (CPU build where no
# GPU is present), and the project with the extras named in $1 (default: all).
#   bash scripts/setup.sh            # users: the engine, MCP server, agents and demos
#   bash scripts/setup.sh dev        # developers: the above plus test tools
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-all}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# System packages: libsndfile (audio files), PortAudio (microphone), espeak-ng and sox (speech for
# tests and the quick start); for tests also PulseAudio and ALSA plugins (a virtual microphone),
# headless Chromium (the MCP App view is drawn and checked) and npm (the third-party MCP clients).
APT_PACKAGES=(libsndfile1 libportaudio2 espeak-ng sox)
[ "$EXTRAS" = "dev" ] && APT_PACKAGES+=(pulseaudio pulseaudio-utils libasound2-plugins alsa-utils chromium fonts-dejavu-core)
[ "$EXTRAS" = "dev" ] && ! command -v npm >/dev/null && APT_PACKAGES+=(nodejs npm)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then
    say "installing system packages with sudo: ${missing[*]}"
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "please install these system packages yourself: ${missing[*]}"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# PyTorch first: a plain `torch` requirement pulls a multi-GB CUDA build, useless without a GPU.
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    say "installing PyTorch (CUDA build: a GPU is present)"
    "$PY" -m pip install -q "torch>=2.4"
  elif "$PY" -m pip download -q --no-deps --no-index -d "$(mktemp -d)" "torch==2.13.0" >/dev/null 2>&1; then
    say "installing PyTorch 2.13.0 (CPU build) from the local wheel cache"
    "$PY" -m pip install -q "torch==2.13.0"
  else
    say "installing PyTorch (CPU build)"
    "$PY" -m pip install -q torch --index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi

# The project itself: skipped when nothing it is installed from has changed since the last set-up,
# so repeated runs start at once. The stamp names the extras and hashes what decides the install.
# "dev" includes "all", so a developer's environment also serves scripts/run.sh.
STAMP="$VENV/.emotion-tool-setup"
digest="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
had_extras= had_digest=
[ -f "$STAMP" ] && read -r had_extras had_digest <"$STAMP"
if [ "${had_digest:-}" = "$digest" ] && { [ "${had_extras:-}" = "$EXTRAS" ] || [ "${had_extras:-}/$EXTRAS" = "dev/all" ]; } \
  && "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('emotion_tool') is None)" >/dev/null 2>&1; then
  say "emotion-tool[$EXTRAS] is up to date in $VENV"
else
  say "installing emotion-tool[$EXTRAS]"
  rm -f "$STAMP"
  "$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$PY" -m pip install -q -e ".[$EXTRAS]"
  echo "$EXTRAS $digest" >"$STAMP"
fi

# Developers: the MCP Inspector CLI and the conformance suite, pinned, with the Node 22 they need
# (installed beside them from npm, whatever Node the system has), for tests/test_mcp_clients.py.
# Skipped when the lock file has not changed since the last install.
if [ "$EXTRAS" = "dev" ]; then
  CLIENTS=tests/mcp_clients
  lock="$(sha256sum "$CLIENTS/package-lock.json" | cut -c1-16)"
  if [ "$(cat "$CLIENTS/node_modules/.emotion-tool-setup" 2>/dev/null)" = "$lock" ]; then
    say "the MCP Inspector and conformance suite are up to date in $CLIENTS"
  else
    say "installing the MCP Inspector and conformance suite into $CLIENTS"
    (cd "$CLIENTS" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock" >"$CLIENTS/node_modules/.emotion-tool-setup"
  fi
fi

say "ready: activate with 'source $VENV/bin/activate'"
