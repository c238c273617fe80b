"""Lists the demos and the commands that run each."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import demos

# The console command an install adds for each demo (pyproject.toml's [project.scripts]).
COMMANDS = {
    "analyze_file": "emotion-demo-file",
    "conversation": "emotion-demo-chat",
    "mcp_client": "emotion-demo-mcp",
    "microphone": "emotion-demo-mic",
    "pipecat_file": "emotion-demo-pipecat",
    "livekit_file": "emotion-demo-livekit",
}


def main() -> None:
    print("Demos (each takes --help):")
    for m in sorted(pkgutil.iter_modules(demos.__path__), key=lambda m: m.name):
        if m.name.startswith("_"):
            continue
        # The docstring is read from the source, not imported: importing would load torch and more.
        source = Path(demos.__path__[0]) / (f"{m.name}/__init__.py" if m.ispkg else f"{m.name}.py")
        summary = (ast.get_docstring(ast.parse(source.read_text(encoding="utf-8"))) or "").split("\n")[0]
        command = COMMANDS.get(m.name, "")
        print(f"  {command:<20} python -m demos.{m.name:<14} {summary}")


if __name__ == "__main__":
    main()
