"""The emotion trace as an MCP App: a `ui://` view that hosts with MCP Apps draw beside a result.

`analyze_emotion`, `get_emotion_trace` and `end_emotion_session` carry `TOOL_UI_META`, pointing at
`VIEW_URI`; `apps_extension()` serves the view (one inline HTML file, no network use) and
advertises the extension. Results are the same for every client: hosts without MCP Apps show the
text and structured content as before, hosts with it hand the structured content to the view.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["VIEW_URI", "TOOL_UI_META", "apps_extension", "view_html", "ICONS"]

VIEW_URI = "ui://emotion/trace.html"
# `_meta` of a tool whose result the view draws (MCP Apps: `_meta.ui.resourceUri`).
TOOL_UI_META: dict[str, Any] = {"ui": {"resourceUri": VIEW_URI}}

# A small inline icon (an SVG data: URL, so clients need no network to show it): a voice wave. Base64, so the
# URL is a valid RFC 3986 URI (the schema's `format: uri`) whatever characters the SVG holds.
_ICON_SVG = (
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24'><rect width='24' height='24' rx='5' fill='#3f6fd8'/>"
    "<path d='M4 12h2M8 8v8M12 5v14M16 8v8M20 12h-2' stroke='white' stroke-width='2' stroke-linecap='round'/></svg>"
)
_ICON_URL = "data:image/svg+xml;base64," + base64.b64encode(_ICON_SVG.encode()).decode("ascii")


def _icons() -> list[Any]:
    from mcp.types import Icon

    return [Icon(src=_ICON_URL, mime_type="image/svg+xml", sizes=["any"])]


ICONS = _icons()


@lru_cache(maxsize=1)
def view_html() -> str:
    """The view's HTML (package data), read once."""
    return resources.files(__package__).joinpath("assets/trace_view.html").read_text(encoding="utf-8")


def apps_extension() -> Any:
    """The MCP Apps extension serving the view, for `MCPServer(extensions=[...])`.

    The tools are registered by the server itself with `TOOL_UI_META`; the extension holds only the
    resource, and its capability tells clients that this server has views.
    """
    from mcp.server.apps import Apps

    apps = Apps()
    apps.add_html_resource(
        VIEW_URI,
        view_html(),
        name="emotion_trace_view",
        title="Emotion trace chart",
        description="Interactive chart of a reading: the 7 probabilities stacked over time, valence/arousal/dominance, "
        "utterance or window boundaries, uncertain stretches shaded, values on hover",
        prefers_border=True,
    )
    return apps
