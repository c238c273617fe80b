"""A local stand-in for the OpenAI Realtime API: the WebSocket subset that voice frameworks use, on loopback.

The realtime plugins of Pipecat (`OpenAIRealtimeLLMService`) and LiveKit Agents
(`livekit.plugins.openai.realtime.RealtimeModel`) connect to it when pointed at `server.url` as their
base URL, so a voice agent with a realtime speech-to-speech model runs offline: in the tests, the
`--realtime` demos and `benchmarks/realtime.py`. It is a protocol stand-in, not a model: it hears
nothing but loudness, and says the same short tone every time.

What it speaks (GA event names): `session.update` / `session.created` / `session.updated`;
`input_audio_buffer.append`, `.commit` and `.clear`, with server turn detection (`server_vad` or
`semantic_vad`, both an energy detector here) sending `input_audio_buffer.speech_started` /
`.speech_stopped` / `.committed` and, unless `create_response` is false, a response;
`conversation.item.create` / `.delete` / `.added` / `.done` / `.deleted`; `response.create` /
`.cancel` / `.created` / `.output_item.*` / `.content_part.*` / `.output_audio.delta` / `.done`, and
the transcript or text deltas; `error` for what the real service refuses (a second active response,
an empty commit, an unknown item).

Everything is recorded with monotonic times (`FakeRealtimeSession.items`, `.responses`, `.turns`), so a
test can ask what the model held when each response was created, and a benchmark how long after the
end of speech a note arrived.

    async with FakeRealtimeServer() as server:
        llm = OpenAIRealtimeLLMService(api_key="sk-local", base_url=server.url)   # Pipecat
        model = RealtimeModel(api_key="sk-local", base_url=server.url)           # LiveKit
        ...
    server.sessions[0].responses[0].items_before   # the conversation the first response answered

Or on its own, for a bot of your own: `python -m emotion_tool.integrations.fake_realtime --port 8765`.

Layer 5, the voice-framework integrations (`emotion_tool.integrations`): a test and demo helper that imports
nothing of this package's other layers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

try:
    from aiohttp import WSMsgType, web
except ImportError as e:  # pragma: no cover - depends on the environment
    raise RuntimeError(
        "emotion_tool.integrations.fake_realtime requires aiohttp (Pipecat and LiveKit Agents both install it); "
        "pip install 'emotion-tool[pipecat]' or 'emotion-tool[livekit]'"
    ) from e

__all__ = ["FakeRealtimeServer", "FakeRealtimeSession", "FakeResponse", "FakeTurn", "item_text"]

SAMPLE_RATE = 24000  # Hz: the Realtime API's pcm16 input and output
_FRAME = SAMPLE_RATE // 50  # 20-ms frames of the energy detector (480 samples)
_SPEECH_RMS = 0.02  # RMS (of full scale) above which a frame counts as speech: about -34 dBFS
_MIN_SPEECH_MS = 100  # shorter bursts of loudness are not speech
_MIN_COMMIT_MS = 100  # the real service refuses to commit less audio than this
_REPLY_S = 0.5  # length of every reply's audio (a quiet 440 Hz tone)
_REPLY_CHUNKS = 5  # deltas a reply's audio is streamed in


def item_text(item: dict) -> str:
    """The text of a conversation item's content (input_text, text, output_text), joined; "" for audio."""
    return "".join(str(c.get("text") or "") for c in item.get("content") or [] if isinstance(c, dict))


@dataclass
class FakeResponse:
    """One response the fake model created, and what it held when it did."""

    id: str
    created_at: float  # time.monotonic() when it was created
    trigger: str  # "client" (a response.create) or "turn_detection" (the server answered a turn itself)
    items_before: list[dict]  # the conversation, in order, when it was created
    done_at: float | None = None
    status: str = "in_progress"  # then "completed" or "cancelled"


@dataclass
class FakeTurn:
    """One user turn the server's turn detection found in the input audio."""

    item_id: str  # the user audio item it was committed as
    audio_start_ms: int  # stream time of its start (with the prefix padding) ...
    audio_end_ms: int  # ... and of the end of its speech
    speech_ended_at: float  # time.monotonic() when the audio holding its last speech frame arrived
    stopped_at: float  # time.monotonic() when speech_stopped was sent (after silence_duration_ms)


@dataclass
class FakeRealtimeSession:
    """One WebSocket connection's state: the session config, the conversation and the input audio."""

    id: str
    model: str
    config: dict = field(default_factory=dict)  # the session as the client set it (session.update, merged)
    items: list[dict] = field(default_factory=list)  # the conversation, in order
    item_times: dict[str, float] = field(default_factory=dict)  # item id -> time.monotonic() it was added
    responses: list[FakeResponse] = field(default_factory=list)
    turns: list[FakeTurn] = field(default_factory=list)
    speech: list[tuple[int, float]] = field(default_factory=list)  # (audio_end_ms, time.monotonic() its last speech frame arrived) of each stretch of speech, turn detection on or off
    received: list[tuple[float, str]] = field(default_factory=list)  # (time, event type) of every client event
    audio_s: float = 0.0  # seconds of input audio appended so far
    errors: list[dict] = field(default_factory=list)  # the error events sent

    @property
    def turn_detection(self) -> dict | None:
        """The turn detection in force: the client's, or the service's default (server_vad that answers)."""
        audio_input = (self.config.get("audio") or {}).get("input") or {}
        if "turn_detection" in audio_input:
            td = audio_input["turn_detection"]
            return dict(td) if isinstance(td, dict) else None  # null or false: off
        return {"type": "server_vad", "create_response": True, "interrupt_response": True, "silence_duration_ms": 500}

    def items_between(self, after_id: str | None, before: FakeResponse) -> list[dict]:
        """The items a response held that came after the item `after_id` (all of them for None)."""
        ids = [i["id"] for i in before.items_before]
        start = ids.index(after_id) + 1 if after_id in ids else 0
        return before.items_before[start:]


class FakeRealtimeServer:
    """A WebSocket server on 127.0.0.1 that answers as the OpenAI Realtime API does, for the subset above.

    Args:
        port: the port to listen on; 0 picks a free one (`url` names it).
        speech_rms: loudness (RMS, full scale 1.0) above which input counts as speech.
        on_event: called with (session, event) for every client event, audio included, once it is handled.
    """

    def __init__(self, *, port: int = 0, speech_rms: float = _SPEECH_RMS, on_event: Callable[[FakeRealtimeSession, dict], None] | None = None):
        self.port = port
        self.speech_rms = speech_rms
        self.on_event = on_event
        self.sessions: list[FakeRealtimeSession] = []
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        """The WebSocket URL to give a framework's realtime plugin as its base URL."""
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    async def start(self) -> "FakeRealtimeServer":
        app = web.Application()
        app.router.add_get("/v1/realtime", self._handle)
        app.router.add_get("/realtime", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def aclose(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> "FakeRealtimeServer":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}{uuid.uuid4().hex[:8]}"

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        session = FakeRealtimeSession(id=self._new_id("sess"), model=request.query.get("model", "gpt-realtime"))
        self.sessions.append(session)
        conn = _Connection(self, session, ws)
        await conn.send({"type": "session.created", "session": conn.session_object()})
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    event = json.loads(msg.data)
                except json.JSONDecodeError:
                    await conn.error("invalid_request_error", "invalid_json", "the message is not JSON")
                    continue
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    await conn.error("invalid_request_error", "invalid_event", "an event is a JSON object with a type")
                    continue
                session.received.append((time.monotonic(), event["type"]))
                await conn.handle(event)
                if self.on_event is not None:
                    self.on_event(session, event)
        finally:
            await conn.close()
        return ws


class _Connection:
    """What one connection does with the client's events."""

    def __init__(self, server: FakeRealtimeServer, session: FakeRealtimeSession, ws: web.WebSocketResponse):
        self.server = server
        self.session = session
        self.ws = ws
        self.buffer = bytearray()  # input audio not committed yet
        self.buffer_start_ms = 0  # stream time of the buffer's first sample
        self.stream_samples = 0  # samples appended over the connection's life
        self.tail = np.zeros(0, np.int16)  # samples not yet judged by the detector (less than a frame)
        self.speaking = False
        self.speech_start = 0  # stream sample where the current speech began
        self.last_speech_end = 0  # stream sample after the latest speech frame
        self.last_speech_at = 0.0  # when that frame arrived
        self.quiet = 0  # samples of silence since the latest speech frame
        self.loud = 0  # samples of speech in a row before speech is declared
        self.item_id: str | None = None  # the user item the current speech will be committed as
        self.response_task: asyncio.Task | None = None
        self.active: FakeResponse | None = None

    # --- sending --------------------------------------------------------------------------------------

    async def send(self, event: dict) -> None:
        event.setdefault("event_id", self.server._new_id("event"))
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(json.dumps(event))

    async def error(self, kind: str, code: str, message: str, *, event_id: str | None = None, param: str | None = None) -> None:
        err = {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id}
        self.session.errors.append(err)
        await self.send({"type": "error", "error": err})

    def session_object(self) -> dict:
        s = self.session
        cfg = s.config
        audio = cfg.get("audio") or {}
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": s.id,
            "model": s.model,
            "output_modalities": cfg.get("output_modalities") or ["audio"],
            "instructions": cfg.get("instructions") or "",
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": SAMPLE_RATE}, "turn_detection": s.turn_detection},
                "output": {"format": {"type": "audio/pcm", "rate": SAMPLE_RATE}, "voice": (audio.get("output") or {}).get("voice") or "marin"},
            },
        }

    # --- the client's events ------------------------------------------------------------------------------

    async def handle(self, event: dict) -> None:
        kind = event["type"]
        eid = event.get("event_id")
        if kind == "session.update":
            self._merge_session(event.get("session") or {})
            await self.send({"type": "session.updated", "session": self.session_object()})
        elif kind == "input_audio_buffer.append":
            try:
                pcm = base64.b64decode(event.get("audio") or "", validate=True)
            except ValueError:
                await self.error("invalid_request_error", "invalid_audio", "audio is not base64", event_id=eid)
                return
            await self._append(pcm[: len(pcm) // 2 * 2])
        elif kind == "input_audio_buffer.commit":
            if len(self.buffer) < _MIN_COMMIT_MS * SAMPLE_RATE // 1000 * 2:
                await self.error(
                    "invalid_request_error", "input_audio_buffer_commit_empty",
                    f"buffer too small: expected at least {_MIN_COMMIT_MS}ms of audio", event_id=eid,
                )  # fmt: skip
                return
            await self._commit(self.item_id or self.server._new_id("item"))
        elif kind == "input_audio_buffer.clear":
            self.buffer.clear()
            self.buffer_start_ms = self.stream_samples * 1000 // SAMPLE_RATE
            await self.send({"type": "input_audio_buffer.cleared"})
        elif kind == "conversation.item.create":
            await self._create_item(event, eid)
        elif kind == "conversation.item.delete":
            item_id = event.get("item_id")
            index = next((k for k, i in enumerate(self.session.items) if i["id"] == item_id), None)
            if index is None:
                await self.error("invalid_request_error", "item_delete_invalid_item_id", f"no item {item_id!r}", event_id=eid)
                return
            del self.session.items[index]
            await self.send({"type": "conversation.item.deleted", "item_id": item_id})
        elif kind == "conversation.item.truncate":
            await self.send(
                {"type": "conversation.item.truncated", "item_id": event.get("item_id"),
                 "content_index": event.get("content_index", 0), "audio_end_ms": event.get("audio_end_ms", 0)}
            )  # fmt: skip
        elif kind == "response.create":
            if self.active is not None:
                await self.error(
                    "invalid_request_error", "conversation_already_has_active_response",
                    f"Conversation already has an active response in progress: {self.active.id}", event_id=eid,
                )  # fmt: skip
                return
            self._respond("client", event.get("response") or {})
        elif kind == "response.cancel":
            if self.active is None:
                await self.error("invalid_request_error", "response_cancel_not_active", "no active response", event_id=eid)
                return
            await self._cancel()
        elif kind == "conversation.item.retrieve":
            item = next((i for i in self.session.items if i["id"] == event.get("item_id")), None)
            if item is None:
                await self.error("invalid_request_error", "item_retrieve_invalid_item_id", "no such item", event_id=eid)
            else:
                await self.send({"type": "conversation.item.retrieved", "item": item})
        else:
            await self.error("invalid_request_error", "unknown_event", f"this stand-in does not take {kind!r} events", event_id=eid)

    def _merge_session(self, update: dict) -> None:
        cfg = self.session.config
        for key, value in update.items():
            if key == "audio" and isinstance(value, dict):
                audio = cfg.setdefault("audio", {})
                for side in ("input", "output"):
                    if isinstance(value.get(side), dict):
                        audio.setdefault(side, {}).update(value[side])
            else:
                cfg[key] = value

    async def _create_item(self, event: dict, eid: str | None) -> None:
        item = dict(event.get("item") or {})
        if item.get("type") not in ("message", "function_call", "function_call_output"):
            await self.error("invalid_request_error", "invalid_item", "item.type must be message, function_call or function_call_output", event_id=eid)
            return
        item.setdefault("id", self.server._new_id("item"))
        item["object"] = "realtime.item"
        item["status"] = "completed"
        items = self.session.items
        previous = event.get("previous_item_id")
        if previous == "root":
            index = 0
        elif previous is None:
            index = len(items)
        else:
            found = next((k for k, i in enumerate(items) if i["id"] == previous), None)
            if found is None:
                await self.error("invalid_request_error", "item_create_invalid_previous_item_id", f"no item {previous!r}", event_id=eid)
                return
            index = found + 1
        await self._add_item(item, index)

    async def _add_item(self, item: dict, index: int | None = None) -> None:
        items = self.session.items
        index = len(items) if index is None else index
        items.insert(index, item)
        self.session.item_times[item["id"]] = time.monotonic()
        previous = items[index - 1]["id"] if index > 0 else None
        await self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        await self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    # --- input audio and turn detection --------------------------------------------------------------------

    async def _append(self, pcm: bytes) -> None:
        now = time.monotonic()
        if not self.buffer:
            self.buffer_start_ms = self.stream_samples * 1000 // SAMPLE_RATE
        self.buffer += pcm
        samples = np.frombuffer(pcm, "<i2")
        self.stream_samples += samples.shape[0]
        self.session.audio_s += samples.shape[0] / SAMPLE_RATE
        td = self.session.turn_detection  # off: speech is still timed (`speech`), but nothing is sent
        x = np.concatenate([self.tail, samples])
        n = x.shape[0] // _FRAME * _FRAME
        self.tail = x[n:].copy()
        start = self.stream_samples - self.tail.shape[0] - n  # stream sample of x[0]
        silence = int((td or {}).get("silence_duration_ms") or 500) * SAMPLE_RATE // 1000
        prefix = int((td or {}).get("prefix_padding_ms") or 300) * SAMPLE_RATE // 1000
        for k in range(0, n, _FRAME):
            frame = x[k : k + _FRAME].astype(np.float32) / 32768.0
            loud = float(np.sqrt(np.mean(frame * frame))) > self.server.speech_rms
            at = start + k
            if loud:
                self.loud += _FRAME
                self.quiet = 0
                self.last_speech_end, self.last_speech_at = at + _FRAME, now
                if not self.speaking and self.loud >= _MIN_SPEECH_MS * SAMPLE_RATE // 1000:
                    self.speaking = True
                    self.speech_start = max(0, at + _FRAME - self.loud - prefix)
                    if td is None:
                        continue
                    self.item_id = self.server._new_id("item")
                    if self.active is not None and td.get("interrupt_response", True):
                        await self._cancel()
                    await self.send(
                        {"type": "input_audio_buffer.speech_started", "audio_start_ms": self.speech_start * 1000 // SAMPLE_RATE, "item_id": self.item_id}
                    )
            else:
                self.loud = 0
                if self.speaking:
                    self.quiet += _FRAME
                    if self.quiet >= silence:
                        self.speaking = False
                        self.session.speech.append((self.last_speech_end * 1000 // SAMPLE_RATE, self.last_speech_at))
                        if td is not None:
                            await self._speech_stopped(td)

    async def _speech_stopped(self, td: dict) -> None:
        item_id = self.item_id or self.server._new_id("item")
        self.item_id = None
        end_ms = self.last_speech_end * 1000 // SAMPLE_RATE
        await self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": end_ms, "item_id": item_id})
        self.session.turns.append(
            FakeTurn(item_id=item_id, audio_start_ms=self.speech_start * 1000 // SAMPLE_RATE, audio_end_ms=end_ms,
                     speech_ended_at=self.last_speech_at, stopped_at=time.monotonic())
        )  # fmt: skip
        await self._commit(item_id)
        if td.get("create_response", True):
            self._respond("turn_detection", {})

    async def _commit(self, item_id: str) -> None:
        previous = self.session.items[-1]["id"] if self.session.items else None
        self.buffer.clear()
        await self.send({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        item = {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": None}]}  # fmt: skip
        await self._add_item(item)

    # --- responses ------------------------------------------------------------------------------------------

    def _respond(self, trigger: str, params: dict) -> None:
        response = FakeResponse(
            id=self.server._new_id("resp"), created_at=time.monotonic(), trigger=trigger,
            items_before=[json.loads(json.dumps(i)) for i in self.session.items],
        )  # fmt: skip
        self.session.responses.append(response)
        self.active = response
        self.response_task = asyncio.create_task(self._stream(response, params))

    def _response_object(self, response: FakeResponse, params: dict, output: list[dict]) -> dict:
        modalities = params.get("output_modalities") or self.session.config.get("output_modalities") or ["audio"]
        return {
            "id": response.id, "object": "realtime.response", "status": response.status, "output": output,
            "output_modalities": ["audio"] if "audio" in modalities else ["text"],
            "metadata": params.get("metadata"),
            "usage": {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0},
        }  # fmt: skip

    async def _stream(self, response: FakeResponse, params: dict) -> None:
        """Sends one reply: a half-second tone (or a line of text), in the order the real service uses."""
        audio = "audio" in self._response_object(response, params, [])["output_modalities"]
        await self.send({"type": "response.created", "response": self._response_object(response, params, [])})
        item_id = self.server._new_id("item")
        text = f"Reply {len(self.session.responses)}."
        part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        item = {"id": item_id, "object": "realtime.item", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        base = {"response_id": response.id, "item_id": item_id, "output_index": 0, "content_index": 0}
        try:
            await self.send({"type": "response.output_item.added", "response_id": response.id, "output_index": 0, "item": item})
            await self._add_item(dict(item))
            await self.send({"type": "response.content_part.added", **base, "part": part})
            if audio:
                await self.send({"type": "response.output_audio_transcript.delta", **base, "delta": text})
                tone = (0.05 * np.sin(2 * np.pi * 440 * np.arange(int(_REPLY_S * SAMPLE_RATE)) / SAMPLE_RATE) * 32767).astype("<i2")
                for chunk in np.array_split(tone, _REPLY_CHUNKS):
                    await self.send({"type": "response.output_audio.delta", **base, "delta": base64.b64encode(chunk.tobytes()).decode()})
                    await asyncio.sleep(_REPLY_S / _REPLY_CHUNKS / 4)  # faster than real time, as the service streams
                await self.send({"type": "response.output_audio.done", **base})
                await self.send({"type": "response.output_audio_transcript.done", **base, "transcript": text})
                done_part = {"type": "audio", "transcript": text}
            else:
                await self.send({"type": "response.output_text.delta", **base, "delta": text})
                await self.send({"type": "response.output_text.done", **base, "text": text})
                done_part = {"type": "text", "text": text}
            await self.send({"type": "response.content_part.done", **base, "part": done_part})
            final = {**item, "status": "completed", "content": [{**done_part, "type": "output_audio" if audio else "output_text"}]}
            for k, i in enumerate(self.session.items):
                if i["id"] == item_id:
                    self.session.items[k] = final
            await self.send({"type": "response.output_item.done", "response_id": response.id, "output_index": 0, "item": final})
            response.status = "completed"
            await self.send({"type": "response.done", "response": self._response_object(response, params, [final])})
        except asyncio.CancelledError:
            response.status = "cancelled"
            await self.send({"type": "response.done", "response": self._response_object(response, params, [])})
        finally:
            response.done_at = time.monotonic()
            if self.active is response:
                self.active = None

    async def _cancel(self) -> None:
        task, self.response_task = self.response_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        await self._cancel()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emotion_tool.integrations.fake_realtime", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0 picks a free one)")
    args = p.parse_args(argv)

    async def serve() -> None:
        async with FakeRealtimeServer(port=args.port) as server:
            print(f"fake OpenAI Realtime API listening on {server.url}", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
