"""An MCP server that lets assistants hear how the user sounds: `emotion-mcp`.

Names load on first use, so `import mcp_server` and `emotion-mcp --help` import neither torch nor the SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emotion_tool._lazy import lazy_names

__all__ = ["create_server", "ServerOptions", "AppContext", "SERVER_NAME"]

if TYPE_CHECKING:
    from .context import AppContext
    from .options import ServerOptions
    from .server import SERVER_NAME, create_server

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        ".server": ("create_server", "SERVER_NAME"),
        ".options": ("ServerOptions",),
        ".context": ("AppContext",),
    },
)
