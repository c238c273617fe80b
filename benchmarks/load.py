"""Load test: N concurrent MCP clients over streamable HTTP against a running `emotion-mcp`, for a bounded time.

    python benchmarks/load.py --url http://127.0.0.1:8765/mcp --clients 8 --duration 30   # a server you started
    python benchmarks/load.py --spawn --clients 8 --duration 30                           # starts one (tiny random model)
    python benchmarks/load.py --spawn --model DIR --max-pending 4 ...                      # ... or on your checkpoint

Each client calls analyze_emotion on a short clip (sent as base64) over and over until the time is
up, then waits for its last call. After one uncounted warm-up call, one client runs alone (the baseline), then N side by side.
Printed and written to benchmarks/results/load-<host>.json: calls, p50/p95 latency of the answered
calls, the share answered "busy" (refused at once, nothing done), errors, and whether every
admitted call returned (a call that never answers counts as lost). With --spawn and no --model the
network has RANDOM weights: latency is that of a tiny model, and the readings mean nothing.

With --hostile, the load is run a second time with a hostile client beside the N good ones: over raw
sockets it sends, one after another, frames that are not JSON, batches, odd ids, strings that are not
Unicode, Host and Origin tricks, doubled headers, bodies framed two ways and a body cut short. Reported: how many of its requests got the answer the
protocol names (a 4xx status or a JSON-RPC error; for the body cut short, the connection closed) and
how many got none, beside the good clients'
figures with and without it.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CLIP_S = 3.0  # the clip every call sends
CALL_TIMEOUT_S = 300.0  # a call that has not answered by then is counted as lost
START_TIMEOUT_S = 300.0
PROBE_GAP_S = 0.02  # between the hostile client's requests: about 50 a second, each on a new connection


def _clip_base64() -> str:
    """A 3-s 16-kHz WAV of a voiced-like signal (a pitch glide with noise), as base64."""
    import soundfile as sf

    t = np.arange(int(CLIP_S * 16000)) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.5 * t)
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / 16000) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t) ** 2)
    x += 0.01 * np.random.default_rng(0).standard_normal(t.shape)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


@contextmanager
def _spawned(model: str | None, extra: list[str]) -> Iterator[tuple[str, bool]]:
    """emotion-mcp on a free loopback port; yields (url, random_weights)."""
    with tempfile.TemporaryDirectory() as tmp:
        random_weights = model is None
        if model is None:
            from emotion_tool.engine.testing import save_random_checkpoint

            model = str(save_random_checkpoint(Path(tmp) / "tiny"))
        log = Path(tmp) / "server.log"
        cmd = [sys.executable, "-m", "mcp_server", "--transport", "streamable-http", "--host", "127.0.0.1", "--port", "0",
               "--model", model, "--device", "cpu", *extra]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "EMOTION_MCP_TOKEN"}
        env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
        with open(log, "w") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while (found := re.search(r"serving on (\S+) \(", log.read_text())) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"emotion-mcp did not start:\n{log.read_text()}")
                time.sleep(0.1)
            yield found.group(1), random_weights
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _client(url: str, token: str | None, clip: str, until: float, out: dict) -> None:
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=CALL_TIMEOUT_S) as http:
        async with Client(streamable_http_client(url, http_client=http)) as c:
            while time.monotonic() < until:
                out["sent"] += 1
                started = time.monotonic()
                with anyio.move_on_after(CALL_TIMEOUT_S) as waited:
                    result = await c.call_tool("analyze_emotion", {"audio_base64": clip})
                if waited.cancelled_caught:
                    out["lost"] += 1
                    continue
                text = result.content[0].text if result.is_error and result.content else ""
                if result.is_error and "busy: " in text:
                    out["busy"] += 1
                    await anyio.sleep(0.05)  # as a client told to retry would
                elif result.is_error:
                    out["errors"].append(text[:200])
                else:
                    out["latencies_s"].append(time.monotonic() - started)


_INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "hostile", "version": "0"}}}


def _hostile_requests(host: str, port: int, path: str, token: str | None) -> list[tuple[str, bytes]]:
    """(what it is, the raw HTTP request) for each probe the hostile client sends."""
    auth = [f"Authorization: Bearer {token}"] if token else []

    def request(body: bytes, *headers: str, host_header: str | None = None, length: int | None = None) -> bytes:
        head = [f"POST {path} HTTP/1.1", f"Host: {host_header or f'{host}:{port}'}", "Accept: application/json, text/event-stream",
                "Content-Type: application/json", "Connection: close", *auth, *headers]  # fmt: skip
        if length is not None:
            head.append(f"Content-Length: {length}")
        return "\r\n".join([*head, "", ""]).encode("latin-1") + body

    def framed(body: bytes, *headers: str, **kw) -> bytes:
        return request(body, *headers, length=len(body), **kw)

    init = json.dumps(_INIT).encode()
    return [
        ("not JSON", framed(b"this is not json")),
        ("a batch", framed(b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]')),
        ("an object as id", framed(b'{"jsonrpc":"2.0","id":{"a":1},"method":"initialize","params":{}}')),
        ("JSON-RPC 1.0", framed(b'{"jsonrpc":"1.0","id":2,"method":"initialize","params":{}}')),
        ("deep nesting", framed(b"[" * 50000 + b"]" * 50000)),
        ("a lone surrogate", framed(b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"analyze_emotion","arguments":{"audio_path":"\\udc80.wav"}}}')),
        ("invalid UTF-8", framed(b'{"jsonrpc":"2.0","id":4,"method":"initialize","params":{"x":"\xff"}}')),
        ("Host with userinfo", framed(init, host_header=f"localhost:{port}@evil.example")),
        ("two Origins, foreign first", framed(init, "Origin: https://evil.example", f"Origin: http://{host}:{port}")),
        ("two Hosts", framed(init, "Host: evil.example")),
        ("Content-Length and chunked", framed(init, "Transfer-Encoding: chunked")),
        ("a body cut short", request(init[:20], length=len(init))),
    ]


def _hostile_client(url: str, token: str | None, until: float, out: dict) -> None:
    """Sends `_hostile_requests` in turn until `until`, each on its own socket; counts the answers."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    probes = _hostile_requests(parts.hostname or "127.0.0.1", parts.port or 80, parts.path, token)
    while time.monotonic() < until:
        for name, raw in probes:
            out["sent"] += 1
            try:
                with socket.create_connection((parts.hostname, parts.port), timeout=90) as s:
                    s.sendall(raw)
                    if name == "a body cut short":
                        s.shutdown(socket.SHUT_WR)  # the rest never comes
                    first = s.recv(65536)
            except OSError as e:
                out["unanswered"].append(f"{name}: {e}")
                continue
            status = int(first.split(b" ", 2)[1]) if first.startswith(b"HTTP/1.1 ") else 0
            if 400 <= status < 500 or (status == 200 and b'"error"' in first):
                out["answered"] += 1
            elif not first and name == "a body cut short":
                out["answered"] += 1  # it stopped sending mid-body: closing is the answer
            elif not first:
                out["unanswered"].append(f"{name}: the connection closed without an answer")
            else:
                out["unanswered"].append(f"{name}: HTTP {status}")
            if time.monotonic() >= until:
                break
            time.sleep(PROBE_GAP_S)


def run_phase(url: str, token: str | None, clients: int, duration_s: float, *, hostile: bool = False) -> dict:
    import anyio
    import anyio.to_thread

    clip = _clip_base64()
    out: dict = {"sent": 0, "busy": 0, "lost": 0, "errors": [], "latencies_s": []}
    bad: dict = {"sent": 0, "answered": 0, "unanswered": []}

    async def main() -> None:
        until = time.monotonic() + duration_s
        async with anyio.create_task_group() as tg:
            for _ in range(clients):
                tg.start_soon(_client, url, token, clip, until, out)
            if hostile:
                tg.start_soon(anyio.to_thread.run_sync, _hostile_client, url, token, until, bad)

    started = time.monotonic()
    anyio.run(main)
    lat = sorted(out["latencies_s"])
    admitted = out["sent"] - out["busy"]
    return {
        "clients": clients,
        "duration_s": duration_s,
        "wall_s": round(time.monotonic() - started, 2),
        "calls": out["sent"],
        "answered": len(lat),
        "busy_share": round(out["busy"] / out["sent"], 3) if out["sent"] else 0.0,
        "errors": len(out["errors"]),
        "error_examples": out["errors"][:3],
        "lost": out["lost"],
        "every_admitted_call_returned": out["lost"] == 0 and admitted == len(lat) + len(out["errors"]),
        "p50_s": round(statistics.median(lat), 4) if lat else None,
        "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 4) if lat else None,
        "calls_per_s": round(len(lat) / duration_s, 2),
        **({"hostile": {"sent": bad["sent"], "answered": bad["answered"], "unanswered": len(bad["unanswered"]), "unanswered_examples": bad["unanswered"][:3]}} if hostile else {}),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="the server's /mcp URL (as its banner prints it)")
    p.add_argument("--spawn", action="store_true", help="start emotion-mcp on a free loopback port for the test")
    p.add_argument("--model", help="with --spawn: checkpoint to serve (default: a tiny random one)")
    p.add_argument("--max-pending", type=int, default=None, help="with --spawn: the server's --max-pending")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default: %(default)d)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load, per phase (default: %(default)g)")
    p.add_argument("--hostile", action="store_true", help="run the load again with a hostile client beside it")
    p.add_argument("--out", type=Path, default=HERE / "results", help="directory for the JSON (default: benchmarks/results)")
    args = p.parse_args(argv)
    if (args.url is None) == (not args.spawn):
        p.error("give --url of a running server, or --spawn")
    if args.clients < 1 or not 0 < args.duration <= 3600:
        p.error("--clients must be at least 1 and --duration in (0, 3600] seconds")
    token = os.environ.get("EMOTION_MCP_TOKEN") or None

    def measure(url: str, random_weights: bool) -> dict:
        run_phase(url, token, 1, 0.01)  # one call to warm the server up, not counted
        baseline = run_phase(url, token, 1, max(1.0, args.duration / 3))
        loaded = run_phase(url, token, args.clients, args.duration)
        report = {"url": url, "random_weights": random_weights, "baseline_one_client": baseline, "load": loaded}
        if args.hostile:
            report["load_with_hostile_client"] = run_phase(url, token, args.clients, args.duration, hostile=True)
        return report

    if args.spawn:
        extra = ["--max-pending", str(args.max_pending)] if args.max_pending else []
        with _spawned(args.model, extra) as (url, random_weights):
            report = measure(url, random_weights)
    else:
        report = measure(args.url, False)
    from emotion_tool.engine.operating_point import cpu_features, cpu_model

    report.update(machine=platform.machine(), cpus=os.cpu_count(), cpu=f"{cpu_model()} ({cpu_features().describe()})", python=platform.python_version())
    phases = [n for n in ("baseline_one_client", "load", "load_with_hostile_client") if n in report]
    for name in phases:
        r = report[name]
        print(
            f"{name:20s} clients {r['clients']:3d}  calls {r['calls']:5d}  p50 {r['p50_s']} s  p95 {r['p95_s']} s  "
            f"busy {100 * r['busy_share']:.1f}%  errors {r['errors']}  lost {r['lost']}  "
            f"every admitted call returned: {r['every_admitted_call_returned']}"
        )
        if "hostile" in r:
            h = r["hostile"]
            print(f"{'':20s} hostile client: {h['sent']} requests, {h['answered']} answered as the protocol says, {h['unanswered']} without an answer")
    if report["random_weights"]:
        print("(tiny model with RANDOM weights: latency of a tiny network, not of the published one)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"load-{platform.node() or 'host'}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    print(f"CPU: {report['cpu']}, {report['cpus']} cores")
    ok = all(report[n]["every_admitted_call_returned"] for n in phases)
    ok = ok and all(report[n].get("hostile", {}).get("unanswered", 0) == 0 for n in phases)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
