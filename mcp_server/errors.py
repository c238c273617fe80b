"""Requests that name something the server does not have: -32602 (invalid params), said so the caller can fix it.

The SDK answers an unknown prompt, or a prompt missing an argument, with an internal error (and a
traceback in the log), and an unknown tool with a tool result marked as an error. The specification
makes both protocol errors with code -32602, as it does an unknown resource. `InvalidParams` checks
those names before the SDK dispatches the request, answers -32602 with a message that names the bad
value and what exists, and logs one line at WARNING, without a traceback.

A known tool given bad arguments stays a tool result with `isError` (the specification's "tool
execution error", which the model reads and corrects); other bad values (an analysis that is not
JSON, a session id that is unknown) are -32602 where the handler itself finds them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

__all__ = ["InvalidParams"]

_log = logging.getLogger(__name__)


class InvalidParams:
    """Server middleware: -32602 for an unknown tool, prompt, prompt argument or resource."""

    def __init__(self, server: MCPServer[Any]):
        self._server = server

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        if ctx.request_id is not None:
            if ctx.method == "tools/call" and isinstance(params.get("name"), str):
                await self._check_tool(params["name"])
            elif ctx.method == "prompts/get" and isinstance(params.get("name"), str):
                await self._check_prompt(params["name"], params.get("arguments"))
            elif ctx.method == "resources/read" and isinstance(params.get("uri"), str):
                await self._check_resource(params["uri"])
        return await call_next(ctx)

    async def _check_tool(self, name: str) -> None:
        names = [t.name for t in await self._server.list_tools()]
        if name not in names:
            raise _invalid("tools/call", f"unknown tool {name!r}; this server's tools are: {_listed(names)}")

    async def _check_prompt(self, name: str, arguments: Any) -> None:
        prompts = {p.name: p for p in await self._server.list_prompts()}
        prompt = prompts.get(name)
        if prompt is None:
            raise _invalid("prompts/get", f"unknown prompt {name!r}; this server's prompts are: {_listed(prompts)}")
        given = arguments if isinstance(arguments, Mapping) else {}
        declared = [a.name for a in prompt.arguments or ()]
        missing = [a.name for a in prompt.arguments or () if a.required and given.get(a.name) is None]
        unknown = [a for a in given if a not in declared]
        if missing or unknown:
            what = "; ".join(
                part
                for part in (
                    f"missing {_listed(missing)}" if missing else "",
                    f"no argument {_listed(unknown)}" if unknown else "",
                )
                if part
            )
            raise _invalid("prompts/get", f"prompt {name!r}: {what}; its arguments are: {_listed(declared)}")

    async def _check_resource(self, uri: str) -> None:
        static = [str(r.uri) for r in await self._server.list_resources()]
        templates = [t.uri_template for t in await self._server.list_resource_templates()]
        if uri in static or any(_template_pattern(t).fullmatch(uri) for t in templates):
            return
        raise _invalid(
            "resources/read", f"unknown resource {uri!r}; this server's resources are: {_listed(static + templates)}", data={"uri": uri}
        )


def _invalid(method: str, message: str, *, data: Any = None) -> MCPError:
    _log.warning("%s refused: %s", method, message)
    return MCPError(code=INVALID_PARAMS, message=message, data=data)


def _listed(names: Any) -> str:
    return ", ".join(repr(n) for n in names) or "none"


def _template_pattern(template: str) -> re.Pattern[str]:
    """`emotion://sessions/{session_id}/trace` as a pattern: each variable is one non-empty path segment."""
    return re.compile("[^/]+".join(re.escape(part) for part in re.split(r"\{[^}]*\}", template)))
