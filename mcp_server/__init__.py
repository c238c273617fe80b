"""An MCP server that lets assistants hear how the user sounds: `emotion-mcp`.

Names load on first use, so `import mcp_server` and `emotion-mcp --help` import neither torch nor the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["create_server", "ServerOptions", "AppContext", "SERVER_NAME"]

_LAZY = {"create_server": ".server", "SERVER_NAME": ".server", "ServerOptions": ".options", "AppContext": ".context"}

if TYPE_CHECKING:
    from .context import AppContext
    from .options import ServerOptions
    from .server import SERVER_NAME, create_server


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mcp_server' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
