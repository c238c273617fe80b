#!/usr/bin/env bash
# Sets up and analyses speech with the published MERaLiON-SER-v1 weights.
#   bash scripts/run.sh                 # analyses a sentence spoken by espeak-ng
#   bash scripts/run.sh my.wav other.mp3 --trace --plot trace.png
# The weights come from the Hugging Face Hub (or its cache). Where the Hub cannot be reached,
# point at a local copy of the model directory: EMOTION_TOOL_MODEL=/path/to/MERaLiON-SER-v1.
set -euo pipefail
# Paths on the command line are the user's, relative to where this was started: only the set-up runs
# in the repository, and files the analysis writes (plots) land in the current directory.
REPO="$(cd "$(dirname "$0")/.." && pwd)"
(cd "$REPO" && bash scripts/setup.sh all)
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  sample="${TMPDIR:-/tmp}/emotion-tool-sample.wav"
  espeak-ng -w "$sample.22k.wav" "I have been waiting for an hour and nobody has called me back. This is not acceptable."
  sox "$sample.22k.wav" -r 16000 -c 1 "$sample" && rm -f "$sample.22k.wav"
  args=("$sample" --trace)
fi
exec "$REPO/.venv/bin/emotion-tool" analyze "${args[@]}"
