"""The command line: `emotion-tool` and its subcommands, on top of every other layer.

Layer 5. `main` assembles the parser from one module per subcommand (`analyze`, `agree`, `info`,
`random_model`, `train`, `evaluate`, `calibrate`, `batch`), each of which registers itself with
`register(sub)` and runs with `run(args)`; `arguments` declares the arguments they share (also used
by `emotion-mcp` and the demos). Nothing below this layer imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emotion_tool._lazy import lazy_names

__all__ = ["main", "run_command"]

if TYPE_CHECKING:
    from emotion_tool.cli.main import main, run_command

__getattr__, __dir__ = lazy_names(__name__, {".main": ("main", "run_command")})
