"""Lists the demos and the command that runs each."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import demos


def main() -> None:
    print("Demos (each takes --help):")
    for module in sorted(m.name for m in pkgutil.iter_modules(demos.__path__) if not m.name.startswith("_")):
        # The docstring is read from the source, not imported: importing would load torch and more.
        tree = ast.parse((Path(demos.__path__[0]) / f"{module}.py").read_text(encoding="utf-8"))
        summary = (ast.get_docstring(tree) or "").split("\n")[0]
        print(f"  python -m demos.{module:<14} {summary}")


if __name__ == "__main__":
    main()
