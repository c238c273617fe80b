"""The MCP App view: its resource and tool metadata, unchanged results for clients without apps, and
the chart as headless Chromium draws it from a real 60-s trace."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mcp import Client
from mcp.client import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from mcp_server import ServerOptions, create_server
from mcp_server.app_view import VIEW_URI, view_html

UI_TOOLS = {"analyze_emotion", "get_emotion_trace", "end_emotion_session"}
# The view's colours (trace_view.html): emotions stacked, then valence/arousal/dominance lines.
EMOTION_RGB = {
    "neutral": (0x9E, 0x9E, 0x9E), "happy": (0xF4, 0xC4, 0x30), "sad": (0x3F, 0x6F, 0xD8), "angry": (0xD8, 0x3A, 0x3A),
    "fearful": (0x8E, 0x44, 0xAD), "disgusted": (0x2E, 0x8B, 0x57), "surprised": (0xFF, 0x8C, 0x1A),
}  # fmt: skip
DIMENSION_RGB = {"valence": (0x11, 0x11, 0x11), "arousal": (0xE0, 0x00, 0x7A), "dominance": (0x00, 0x8B, 0x8B)}
WARNING_RGB = (0xFD, 0xE8, 0xE8)
CHART_H_PX, CHART_W_PX = 180, 712  # the stacked panel in the view's coordinates (about the same on screen at this width)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def long_wav(speech_wav: Path, tmp_path_factory) -> Path:
    """A minute of speech: the same sentence again and again with a second of silence between."""
    speech, rate = sf.read(speech_wav, dtype="float32")
    gap = np.zeros(rate, dtype=np.float32)
    pieces, total = [], 0
    while total < 60 * rate:
        pieces += [speech, gap]
        total += len(speech) + len(gap)
    path = tmp_path_factory.mktemp("long") / "minute.wav"
    sf.write(path, np.concatenate(pieces)[: 60 * rate], rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def options(tiny_checkpoint: Path, long_wav: Path) -> ServerOptions:
    return ServerOptions(model=str(tiny_checkpoint), device="cpu", allow_dirs=(long_wav.parent,))


def apps_client(server, **kwargs) -> Client:
    """A client that renders MCP Apps (it advertises the extension with the app MIME type)."""
    return Client(server, extensions=[advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})], **kwargs)


# --- metadata ----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_view_resource_and_tool_metadata(options: ServerOptions, mode: str):
    async with apps_client(create_server(options), mode=mode) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        for name, tool in tools.items():
            ui = (tool.meta or {}).get("ui")
            assert (ui == {"resourceUri": VIEW_URI}) == (name in UI_TOOLS), (name, tool.meta)
            assert tool.icons and tool.icons[0].src.startswith("data:image/svg+xml"), name
        resources = {str(r.uri): r for r in (await c.list_resources()).resources}
        assert resources[VIEW_URI].mime_type == APP_MIME_TYPE == "text/html;profile=mcp-app"
        contents = (await c.read_resource(VIEW_URI)).contents
        assert len(contents) == 1 and contents[0].mime_type == APP_MIME_TYPE
        assert contents[0].text == view_html()


def test_view_is_self_contained():
    html = view_html()
    for needle in ("<script src", "<link", "@import", "url(http", "fetch(", "XMLHttpRequest", "https://fonts"):
        assert needle not in html, needle


@pytest.mark.anyio
async def test_clients_without_apps_get_the_same_result(options: ServerOptions):
    server = create_server(options)
    args = {"audio_path": "minute.wav", "trace": True}
    async with apps_client(server) as with_apps, Client(server) as plain:
        a = await with_apps.call_tool("analyze_emotion", args)
        b = await plain.call_tool("analyze_emotion", args)
    assert not a.is_error and not b.is_error
    assert a.structured_content == b.structured_content
    assert [block.model_dump() for block in a.content] == [block.model_dump() for block in b.content]
    assert len(b.content) == 1 and b.content[0].type == "text"
    assert json.loads(b.content[0].text) == b.structured_content  # the text is the reading itself, as before


# --- the picture -------------------------------------------------------------------------------------


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.fail("headless Chromium is not installed; run scripts/setup.sh dev (it installs the chromium package)")


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
        # Virtual time (the page runs until idle, however busy the machine) covers one renderer process
        # only; a sandboxed iframe would get its own, and the picture would be taken before it drew.
        "--virtual-time-budget=5000", "--disable-features=IsolateSandboxedIframes",
    ]  # fmt: skip
    return subprocess.run([chromium(), *flags, *args], capture_output=True, text=True, timeout=180)


def script_literal(value) -> str:
    """`value` as a JavaScript literal that is safe inside <script> (no "</" to end it early)."""
    return json.dumps(value).replace("</", "<\\/")


def host_page(result: dict) -> str:
    """A minimal MCP Apps host: the view in a sandboxed iframe, answering ui/initialize, then sending the result."""
    return f"""<!DOCTYPE html><html><body style="margin:0;background:#fff">
<iframe id="view" sandbox="allow-scripts" style="border:0;width:800px;height:640px"></iframe>
<script>
const RESULT = {script_literal(result)};
const frame = document.getElementById("view");
window.addEventListener("message", ev => {{
  const m = ev.data;
  if (m.method === "ui/initialize")
    ev.source.postMessage({{jsonrpc: "2.0", id: m.id, result: {{protocolVersion: m.params.protocolVersion,
      hostInfo: {{name: "test-host", version: "1"}}, hostCapabilities: {{}}, hostContext: {{theme: "light"}}}}}}, "*");
  else if (m.method === "ui/notifications/initialized")
    ev.source.postMessage({{jsonrpc: "2.0", method: "ui/notifications/tool-result", params: RESULT}}, "*");
}});
frame.srcdoc = {script_literal(view_html())};
</script></body></html>"""


def colour_pixels(png: Path, rgb: tuple[int, int, int], tolerance: int = 6) -> int:
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).max(axis=-1) <= tolerance).sum())


def screenshot(result: dict, tmp_path: Path, name: str) -> Path:
    page = tmp_path / f"{name}.html"
    page.write_text(host_page(result))
    png = tmp_path / f"{name}.png"
    done = run_chromium([f"--screenshot={png}", "--window-size=800,660", page.as_uri()], tmp_path / f"profile-{name}")
    assert png.exists(), f"Chromium wrote no screenshot:\n{done.stderr[-2000:]}"
    return png


@pytest.mark.clients
@pytest.mark.anyio
async def test_chromium_draws_a_minute_long_trace(options: ServerOptions, tmp_path: Path):
    async with apps_client(create_server(options)) as c:
        result = await c.call_tool("analyze_emotion", {"audio_path": "minute.wav", "trace": True, "window_s": 2, "hop_s": 1})
    assert not result.is_error
    data = result.structured_content
    assert data["duration_s"] == pytest.approx(60, abs=0.1) and len(data["segments"]) >= 50 and data["random_weights"]
    wire = {"content": [b.model_dump(mode="json") for b in result.content], "structuredContent": data, "isError": False}

    drawn = screenshot(wire, tmp_path, "trace")
    readings = [s["reading"] for s in data["segments"] if s["reading"]]
    for label, rgb in EMOTION_RGB.items():
        mean_p = float(np.mean([r["probabilities"][label] for r in readings]))
        area_px = mean_p * CHART_H_PX * CHART_W_PX
        if area_px >= 2000:  # a band a few pixels high on average must show, even with uncertain stretches striped over it
            found = colour_pixels(drawn, rgb)
            assert found > 0.2 * area_px, f"{label} (mean p {mean_p:.2f}): {found} pixels of its colour, about {area_px:.0f} expected"
    for dim, rgb in DIMENSION_RGB.items():
        assert colour_pixels(drawn, rgb, tolerance=10) > 100, f"the {dim} line is missing"
    assert colour_pixels(drawn, WARNING_RGB, tolerance=3) > 2000, "the random-weights warning is not shown"

    # The same host with a result that holds no reading draws no chart: the colours above came from the data.
    empty = {**data, "segments": [], "windows": [], "random_weights": False, "warnings": []}
    blank = screenshot({"content": [], "structuredContent": empty, "isError": False}, tmp_path, "blank")
    chromatic = [rgb for rgb in [*EMOTION_RGB.values(), *DIMENSION_RGB.values()] if max(rgb) - min(rgb) > 40]  # not text greys
    assert all(colour_pixels(blank, rgb) < 20 for rgb in chromatic)
    assert colour_pixels(blank, WARNING_RGB, tolerance=3) < 20


@pytest.mark.clients
@pytest.mark.anyio
async def test_session_trace_view_shows_values_on_hover(options: ServerOptions, long_wav: Path, tmp_path: Path):
    """A streaming session's trace, rendered top-level with a pointer over the first utterance."""
    import base64

    audio, rate = sf.read(long_wav, dtype="int16")
    async with apps_client(create_server(options)) as c:
        sid = (await c.call_tool("start_emotion_session", {"sample_rate": rate})).structured_content["session_id"]
        for start in range(0, 12 * rate, rate // 2):
            await c.call_tool("push_audio", {"session_id": sid, "chunk_base64": base64.b64encode(audio[start : start + rate // 2].tobytes()).decode()})
        summary = (await c.call_tool("end_emotion_session", {"session_id": sid})).structured_content
    first = summary["utterances"][0]
    assert len(summary["utterances"]) >= 2
    # Point at the middle of the first utterance: x in the view's coordinates (LEFT 38, plot 712 wide).
    duration = max(summary["received_s"], summary["utterances"][-1]["end_s"])
    x_view = 38 + (first["start_s"] + first["end_s"]) / 2 / duration * 712
    probe = f"""<script>
render({script_literal(summary)});
const svg = document.querySelector("svg"), box = svg.getBoundingClientRect(), scale = box.width / 760;
svg.lastElementChild.dispatchEvent(new MouseEvent("mousemove", {{clientX: box.left + {x_view} * scale, clientY: box.top + 60 * scale, bubbles: true}}));
document.body.setAttribute("data-tip", document.getElementById("tip").style.display + "|" + document.getElementById("tip").textContent);
</script>"""
    page = tmp_path / "hover.html"
    page.write_text(view_html().replace("</body>", probe + "</body>"))
    done = run_chromium(["--dump-dom", page.as_uri()], tmp_path / "profile-hover")
    found = [line for line in done.stdout.splitlines() if "data-tip=" in line]
    assert found, f"no hover probe in the DOM:\n{done.stderr[-2000:]}"
    tip = found[0].split('data-tip="', 1)[1].split('"', 1)[0]
    assert tip.startswith("block|"), tip
    label = first["reading"]["label"]
    assert "utterance 1" in tip and f"{label} {round(100 * first['reading']['probabilities'][label])}%" in tip, tip
    assert f"valence {first['reading']['valence']:.2f}" in tip


def _window(start_s: float, end_s: float, *, uncertain: bool) -> dict:
    reading = {"label": "neutral", "confidence": 1.0, "probabilities": {label: float(label == "neutral") for label in EMOTION_RGB},
               "valence": 0.9, "arousal": 0.9, "dominance": 0.9, "uncertain": uncertain}  # fmt: skip
    return {"start_s": start_s, "end_s": end_s, **reading}


def drawn_flat(data: dict, tmp_path: Path, name: str) -> np.ndarray:
    """The view's chart for `data` as grey levels, one pixel per unit of the view's coordinates (760 wide)."""
    from PIL import Image

    probe = f"""<script>
render({script_literal(data)});
document.querySelector("svg").style.cssText = "position:fixed;left:0;top:0;width:760px;height:auto;background:#fff";
</script>"""
    page = tmp_path / f"{name}.html"
    page.write_text(view_html().replace("</body>", probe + "</body>"))
    png = tmp_path / f"{name}.png"
    done = run_chromium([f"--screenshot={png}", "--window-size=800,400", "--force-device-scale-factor=1", page.as_uri()], tmp_path / f"profile-{name}")
    assert png.exists(), f"Chromium wrote no screenshot:\n{done.stderr[-2000:]}"
    return np.asarray(Image.open(png).convert("L")).astype(int)


@pytest.mark.clients
def test_chromium_shades_uncertain_stretches_and_draws_boundaries(tmp_path: Path):
    """Three windows over 10 s (the last uncertain), every dimension at 0.9: below the dimension lines the
    lower panel is white but for the uncertain stretch's stripes and the dashed window boundaries."""
    windows = [_window(0, 4, uncertain=False), _window(4, 7, uncertain=False), _window(7, 10, uncertain=True)]
    data = {"duration_s": 10.0, "windows": windows, "segments": [], "summary": windows[0], "warnings": [], "random_weights": False}
    grey = drawn_flat(data, tmp_path, "stretches")
    x = lambda t: round(38 + t / 10 * 712)  # noqa: E731 (the view's time axis: LEFT 38, plot 712 wide)
    rows = slice(235, 305)  # the lower panel (206..316) below the dimension lines at 0.9 (y 217)

    def dark(t0: float, t1: float) -> int:
        return int((grey[rows, x(t0) : x(t1)] < 190).sum())

    # Uncertain stretch: stripes; a certain stretch of the same size: none (the grid line there is light).
    assert dark(7.5, 9.5) > 300, f"the uncertain stretch is not shaded ({dark(7.5, 9.5)} dark pixels)"
    assert dark(1.0, 3.0) == 0 and dark(4.5, 6.5) == 0, (dark(1.0, 3.0), dark(4.5, 6.5))
    # The window boundary at 4 s: a dashed line, about every other pixel down the column; none at 2 s.
    def dark_rows(t: float) -> int:
        return int((grey[rows, x(t) - 1 : x(t) + 2] < 190).any(axis=1).sum())

    boundary, control = dark_rows(4), dark_rows(2)
    assert boundary > 20 and control == 0, f"boundary column: {boundary} dark rows, control column: {control}"
