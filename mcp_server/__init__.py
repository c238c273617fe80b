"""An MCP server that lets assistants hear how the user sounds: `emotion-mcp`."""

from .server import SERVER_NAME, AppContext, ServerOptions, create_server

__all__ = ["create_server", "ServerOptions", "AppContext", "SERVER_NAME"]
