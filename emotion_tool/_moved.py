"""Old import paths of modules that moved into the layers, kept working with a DeprecationWarning.

`import emotion_tool.streaming` (and `from emotion_tool.streaming import ...`) gives the module now at
`emotion_tool.live.streaming`, under both names, so code written against the flat layout runs
unchanged while it warns once per module.

Layer 0, the foundation: imports nothing else from the package.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "vad": "audio.vad",
    **{m: f"engine.{m}" for m in ("options", "operating_point", "results", "windows", "features", "model", "checkpoint", "recognizer", "testing")},
    "segmenter": "live.segmenter",
    "streaming": "live.streaming",
    **{m: f"science.{m}" for m in ("metrics", "data", "evaluate", "calibration", "agreement", "empathy", "plot")},
    "batch": "jobs.batch",
    "batch_ray": "jobs.batch_ray",
    "train": "jobs.train",
    "arguments": "cli.arguments",
}  # old name under emotion_tool -> new path under emotion_tool


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self._specs: dict = {}

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - the finder protocol
        package, _, rest = fullname.partition(".")
        if package != "emotion_tool" or not rest:
            return None
        head, _, tail = rest.partition(".")
        if head not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):  # noqa: ANN001
        head, _, tail = spec.name.removeprefix("emotion_tool.").partition(".")
        new = f"emotion_tool.{MOVED[head]}" + (f".{tail}" if tail else "")
        if not tail:
            warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__  # the import system writes the old name's spec over it
        return module

    def exec_module(self, module) -> None:  # noqa: ANN001 - the module is the moved one, already run
        module.__spec__ = self._specs.pop(module.__spec__.name, module.__spec__)


def alias_moved_modules() -> None:
    """Installs the finder for the old paths (once per process)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())  # before the path finder, which would load a second copy
