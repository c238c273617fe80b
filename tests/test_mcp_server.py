"""The MCP server through the SDK's in-memory client: tools, errors, sessions, resources, prompt, limits."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import anyio
import numpy as np
import pytest
import soundfile as sf
import soxr
from mcp import Client
from mcp.shared.exceptions import MCPError

from helpers import ManualClock
from emotion_tool import LABELS, EmotionAnalysis, EmotionReading, ModelInfo
from emotion_tool.engine.results import UtteranceReading
from mcp_server import ServerOptions, create_server
from mcp_server.prompts import empathetic_reply_text
from emotion_tool.live.streaming import summarize_utterances as summarize
from mcp_server.sessions import SessionStarted, SessionSummary, SessionTrace

TOOLS = {"analyze_emotion", "start_emotion_session", "push_audio", "get_emotion_trace", "end_emotion_session"}
CHUNK_S = 0.1  # live-speech chunks of 100 ms


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def options(tiny_checkpoint: Path, speech_wav: Path) -> ServerOptions:
    return ServerOptions(model=str(tiny_checkpoint), device="cpu", allow_dirs=(speech_wav.parent,))


@pytest.fixture(scope="module")
async def client(options: ServerOptions):
    """One server and client for the read-only checks of this module (the model loads once)."""
    async with Client(create_server(options)) as c:
        yield c


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def error_text(result) -> str:
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    return result.content[0].text


async def analyze(client: Client, **arguments) -> EmotionAnalysis:
    result = await client.call_tool("analyze_emotion", arguments)
    assert not result.is_error, result.content[0].text
    return EmotionAnalysis.model_validate(result.structured_content)


# --- tools and their schemas -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tools_are_typed_and_described(client: Client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and tool.output_schema, tool.name
        for name, prop in tool.input_schema["properties"].items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"
    analyze_schema = tools["analyze_emotion"]
    assert {"audio_path", "audio_base64", "audio_format", "trace", "window_s", "hop_s"} <= set(analyze_schema.input_schema["properties"])
    assert {"summary", "windows", "segments", "random_weights"} <= set(analyze_schema.output_schema["properties"])
    assert set(tools["start_emotion_session"].input_schema["properties"]["encoding"]["enum"]) == {"pcm_s16le", "pcm_f32le"}
    assert {"overall", "latest", "utterances"} <= set(tools["end_emotion_session"].output_schema["properties"])


@pytest.mark.anyio
async def test_analyze_a_file_in_an_allowed_dir(client: Client, speech_wav: Path, recognizer):
    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total))

    result = await client.call_tool("analyze_emotion", {"audio_path": str(speech_wav), "trace": True}, progress_callback=on_progress)
    assert not result.is_error, result.content[0].text
    analysis = EmotionAnalysis.model_validate(result.structured_content)
    expected = recognizer.analyze(speech_wav, trace=True)  # the engine, called directly
    assert analysis.summary.label == expected.summary.label
    assert analysis.summary.probabilities == pytest.approx(expected.summary.probabilities, abs=1e-5)
    assert analysis.duration_s == pytest.approx(sf.info(str(speech_wav)).duration, abs=0.01)
    assert len(analysis.segments) == len(expected.segments) > 1
    assert analysis.source == "speech.wav" and analysis.random_weights and analysis.warnings
    assert json.loads(result.content[0].text)["summary"]["label"] == analysis.summary.label  # text for text-only clients
    total = len(expected.windows) + sum(s.is_speech for s in expected.segments)
    assert progress and progress[-1] == (total, total)


@pytest.mark.anyio
async def test_analyze_base64_file_and_raw_pcm_agree(client: Client, speech_wav: Path):
    by_path = await analyze(client, audio_path="speech.wav")  # relative: inside the allowed dir
    by_file = await analyze(client, audio_base64=b64(speech_wav.read_bytes()))
    pcm, rate = sf.read(speech_wav, dtype="int16")
    by_pcm = await analyze(client, audio_base64=b64(pcm.astype("<i2").tobytes()), audio_format="pcm_s16le", sample_rate=rate)
    for other in (by_file, by_pcm):
        assert other.summary.label == by_path.summary.label
        assert other.summary.probabilities == pytest.approx(by_path.summary.probabilities, abs=1e-5)
    assert by_file.source == "audio_base64"


@pytest.mark.anyio
async def test_a_recording_without_speech_is_no_confident_reading(client: Client):
    silence = np.zeros(16000 * 3, dtype="<i2").tobytes()
    analysis = await analyze(client, audio_base64=b64(silence), audio_format="pcm_s16le", sample_rate=16000)
    assert analysis.speech_s == 0 and analysis.summary.uncertain and all(w.uncertain for w in analysis.windows)
    assert any("No speech" in w for w in analysis.warnings)


@pytest.mark.anyio
async def test_trace_window_and_hop_are_honoured(client: Client, speech_wav: Path):
    a = await analyze(client, audio_path=str(speech_wav), trace=True, window_s=1.0, hop_s=0.5)
    assert a.trace_window_s == 1.0 and a.trace_hop_s == 0.5
    starts = [s.start_s for s in a.segments]
    assert np.allclose(np.diff(starts), 0.5)


# --- bad inputs: a clear tool error, and the next good call works -------------------------------------


@pytest.mark.anyio
async def test_bad_inputs_are_tool_errors_and_the_server_keeps_serving(client: Client, speech_wav: Path, tmp_path: Path):
    outside = tmp_path / "outside.wav"
    outside.write_bytes(speech_wav.read_bytes())
    cases = [
        ({"audio_base64": "this is not base64 at all!"}, "not valid base64"),
        ({"audio_base64": b64(b"plain text, not audio " * 20)}, "cannot decode audio"),
        ({"audio_path": str(outside)}, "outside the directories"),
        ({"audio_path": str(speech_wav.parent / ".." / outside.parent.name / outside.name)}, "outside the directories"),
        ({"audio_path": str(speech_wav.parent / "missing.wav")}, "no such file"),
        ({}, "exactly one of audio_path"),
        ({"audio_path": str(speech_wav), "audio_base64": "AAAA"}, "exactly one of audio_path"),
        ({"audio_base64": b64(speech_wav.read_bytes()), "audio_format": "flac"}, "says flac but the bytes are wav"),
        ({"audio_base64": b64(b"\x00\x01" * 100), "audio_format": "pcm_s16le"}, "sample_rate"),
        ({"audio_base64": b64(b"\x00\x01\x02"), "audio_format": "pcm_s16le", "sample_rate": 16000}, "whole number"),
        ({"audio_base64": b64(np.zeros(800, "<i2").tobytes()), "audio_format": "pcm_s16le", "sample_rate": 16000}, "too short"),
        ({"audio_path": str(speech_wav), "window_s": 1.0, "hop_s": 0.0}, "greater than or equal to 0.1"),
        ({"audio_path": str(speech_wav), "trace": True, "window_s": 40}, "less than or equal to 30"),
    ]
    for arguments, expected in cases:
        result = await client.call_tool("analyze_emotion", arguments)
        assert expected in error_text(result), (arguments, error_text(result))
        good = await analyze(client, audio_path=str(speech_wav))  # the next good call works
        assert good.summary.label in LABELS


@pytest.mark.anyio
async def test_nothing_is_read_without_allow_dir(options: ServerOptions, speech_wav: Path):
    async with Client(create_server(replace(options, allow_dirs=()))) as c:
        message = error_text(await c.call_tool("analyze_emotion", {"audio_path": str(speech_wav)}))
        assert "--allow-dir" in message and "audio_base64" in message
        await analyze(c, audio_base64=b64(speech_wav.read_bytes()))


@pytest.mark.anyio
async def test_limits_on_length_and_request_size(options: ServerOptions, speech_wav: Path):
    data = speech_wav.read_bytes()
    limits = replace(options, max_duration_s=1.0, max_request_mb=len(data) * 1.5 / 1024 / 1024)
    async with Client(create_server(limits)) as c:
        assert "over the limit of 1 s" in error_text(await c.call_tool("analyze_emotion", {"audio_path": str(speech_wav)}))
        too_big = b64(data + data)  # more base64 characters than the limit
        assert "--max-request-mb" in error_text(await c.call_tool("analyze_emotion", {"audio_base64": too_big}))
        short = sf.read(speech_wav, dtype="float32")[0][:12000]  # 0.75 s: within both limits
        await analyze(c, audio_base64=b64(short.astype("<f4").tobytes()), audio_format="pcm_f32le", sample_rate=16000)


# --- resources and the prompt --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_model_resource(client: Client, tiny_checkpoint: Path):
    assert "emotion://model" in {str(r.uri) for r in (await client.list_resources()).resources}
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert "emotion://sessions/{session_id}/trace" in templates
    contents = (await client.read_resource("emotion://model")).contents[0]
    assert contents.mime_type == "application/json"
    info = ModelInfo.model_validate_json(contents.text)
    assert info.model_id == str(tiny_checkpoint) and info.random_weights and info.labels == list(LABELS)
    assert set(info.dimensions) == {"valence", "arousal", "dominance"} and info.operating_point == "published"
    assert info.languages and info.limitations


@pytest.mark.anyio
async def test_empathetic_reply_prompt(client: Client, speech_wav: Path):
    prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert {a.name for a in prompts["empathetic_reply"].arguments} == {"user_words", "analysis_json", "note_format"}
    analysis = await analyze(client, audio_path=str(speech_wav))
    result = await client.get_prompt(
        "empathetic_reply", {"user_words": "Where is my parcel?", "analysis_json": analysis.model_dump_json()}
    )
    text = result.messages[0].content.text
    assert "Where is my parcel?" in text and "random weights" in text  # a random model is not passed off as real
    with pytest.raises(MCPError, match="analysis_json"):
        await client.get_prompt("empathetic_reply", {"user_words": "hi", "analysis_json": "{not json"})
    # The perception in the Real-time Context Standard's style, as the voice plugins write it with note_format="rcs".
    rcs = await client.get_prompt(
        "empathetic_reply", {"user_words": "Where is my parcel?", "analysis_json": analysis.model_dump_json(), "note_format": "rcs"}
    )
    text = rcs.messages[0].content.text
    assert "Where is my parcel?" in text and "Real-time Context Standard 0.1" in text
    assert f"([voice_emotion {analysis.summary.label}=" in text and "point=published" in text and "random_weights=true" in text
    assert "How to reply:" in text
    with pytest.raises(MCPError, match="note_format 'xml': use one of prose, rcs"):
        await client.get_prompt("empathetic_reply", {"user_words": "hi", "analysis_json": analysis.model_dump_json(), "note_format": "xml"})


def _reading(label: str, confidence: float, *, valence: float = 0.5, arousal: float = 0.5) -> EmotionReading:
    rest = (1 - confidence) / (len(LABELS) - 1)
    probs = [confidence if x == label else rest for x in LABELS]
    return EmotionReading.from_outputs(probs, [valence, arousal, 0.5], labels=LABELS, start_s=0, end_s=3, min_confidence=0.5)


def test_prompt_states_uncertainty_honestly():
    sure = empathetic_reply_text("This is the third time I call!", _reading("angry", 0.8, valence=0.2, arousal=0.85).model_dump_json())
    assert "angry (probability 0.80" in sure and "cue, not a fact" in sure and "do not argue" in sure
    assert "uncertain" not in sure
    torn = _reading("sad", 0.3).model_copy(update={"probabilities": {**{x: 0.1 for x in LABELS}, "sad": 0.3, "neutral": 0.28}})
    torn = torn.model_copy(update={"margin": 0.02})
    unsure = empathetic_reply_text("ok", torn.model_dump_json())
    assert "uncertain" in unsure and "neutral (0.28)" in unsure and "Keep your tone neutral" in unsure
    utterance = UtteranceReading(index=0, start_s=0, end_s=3, reading=_reading("happy", 0.9), latency_s=0.1)
    assert "their latest utterance" in empathetic_reply_text("yay", utterance.model_dump_json())
    calm = UtteranceReading(index=1, start_s=4, end_s=9, reading=_reading("neutral", 0.7), latency_s=0.1)
    overall, counts = summarize([utterance, calm], labels=LABELS, min_confidence=0.5)
    summary = SessionSummary(
        session_id="ses_x", sample_rate=16000, encoding="pcm_s16le", ended=True, received_s=10, utterances=[utterance, calm],
        model_id="m", random_weights=False, overall=overall, latest=calm.reading, label_counts=counts, speech_s=8,
    )  # fmt: skip
    text = empathetic_reply_text("fine", summary.model_dump_json())
    assert "reads the voice as neutral" in text and "Over all 2 utterances" in text  # the latest leads, the whole follows
    running = SessionTrace.model_validate(summary.model_dump(include=set(SessionTrace.model_fields)) | {"ended": False})
    assert "reads the voice as neutral" in empathetic_reply_text("fine", running.model_dump_json())


def test_prompt_judges_a_narrow_band_reading_against_the_model_priors():
    # The published model's valence sits at about 0.12-0.41: 0.30 is a typical reading, 0.12 a clearly low one.
    typical = empathetic_reply_text("It's about my order.", _reading("neutral", 0.7, valence=0.30, arousal=0.80).model_dump_json())
    assert "valence is +0.5 sd from its usual 0.27 (within the usual range)" in typical
    assert "clearly high: the voice sounds agitated" in typical
    assert "negative" not in typical.split("How to reply:")[1] and "sounds low" not in typical
    low = empathetic_reply_text("It's about my order.", _reading("neutral", 0.7, valence=0.12, arousal=0.80).model_dump_json())
    assert "valence is -2.0 sd from its usual 0.27 (clearly low: the voice sounds negative)" in low
    assert "voice sounds low" in low and "agitated and negative" in low
    quiet = empathetic_reply_text("ok", _reading("neutral", 0.7, valence=0.12, arousal=0.50).model_dump_json())
    assert "voice sounds low" in quiet and "agitated and negative" not in quiet


# --- streaming sessions --------------------------------------------------------------------------------


async def stream(client: Client, wav: np.ndarray, rate: int, encoding: str = "pcm_s16le") -> tuple[str, list[tuple[float, UtteranceReading]]]:
    """Pushes `wav` in 100-ms chunks; returns the session and each reading with the stream time it came back at."""
    started = await client.call_tool("start_emotion_session", {"sample_rate": rate, "encoding": encoding})
    assert not started.is_error, started.content[0].text
    session = SessionStarted.model_validate(started.structured_content)
    step = int(rate * CHUNK_S)
    dtype = "<i2" if encoding == "pcm_s16le" else "<f4"
    samples = (np.clip(wav, -1, 1 - 1 / 32768) * 32768).astype(dtype) if encoding == "pcm_s16le" else wav.astype(dtype)
    readings = []
    for i in range(0, len(samples), step):
        pushed = await client.call_tool("push_audio", {"session_id": session.session_id, "chunk_base64": b64(samples[i : i + step].tobytes())})
        assert not pushed.is_error, pushed.content[0].text
        sent_s = min(i + step, len(samples)) / rate
        assert pushed.structured_content["received_s"] == pytest.approx(sent_s)
        readings += [(sent_s, UtteranceReading.model_validate(u)) for u in pushed.structured_content["readings"]]
    return session.session_id, readings


def assert_one_reading_per_sentence(readings, bounds):
    assert len(readings) == len(bounds), [(r.start_s, r.end_s) for _, r in readings]
    for (returned_at, u), (start, end) in zip(readings, bounds):
        assert start - 0.3 <= u.start_s <= start + 0.1, (u.start_s, start)
        assert end - 0.2 <= u.end_s <= end + 0.3, (u.end_s, end)
        assert u.reading.start_s == u.start_s and u.reading.end_s == u.end_s
        assert end < returned_at <= end + 1.0  # returned with the chunk that completed the pause after it
        assert not u.interim


@pytest.mark.anyio
async def test_streamed_sentences_give_one_reading_each(client: Client, sentences_wav, recognizer):
    path, bounds = sentences_wav
    wav, rate = sf.read(path, dtype="float32")
    session_id, readings = await stream(client, wav, rate)
    assert_one_reading_per_sentence(readings, bounds)
    assert [u.index for _, u in readings] == list(range(len(bounds)))

    trace = SessionTrace.model_validate((await client.call_tool("get_emotion_trace", {"session_id": session_id})).structured_content)
    assert [u for u in trace.utterances] == [u for _, u in readings] and not trace.ended
    resource = json.loads((await client.read_resource(f"emotion://sessions/{session_id}/trace")).contents[0].text)
    assert SessionTrace.model_validate(resource) == trace

    ended = await client.call_tool("end_emotion_session", {"session_id": session_id})
    summary = SessionSummary.model_validate(ended.structured_content)
    assert summary.ended and summary.utterances == trace.utterances and summary.random_weights
    assert summary.latest == readings[-1][1].reading
    assert sum(summary.label_counts.values()) == len(bounds)
    weights = np.array([u.end_s - u.start_s for u in summary.utterances])
    expected_valence = float(np.sum(weights * [u.reading.valence for u in summary.utterances]) / weights.sum())
    assert summary.overall.valence == pytest.approx(expected_valence)
    assert summary.overall.start_s == readings[0][1].start_s and summary.overall.end_s == readings[-1][1].end_s
    assert summary.speech_s == pytest.approx(float(weights.sum()))
    # The same reading as the engine gives for the utterance's audio.
    first = readings[0][1]
    direct = recognizer.classify_batch([wav[int(first.start_s * rate) : int(first.end_s * rate)]])[0]
    assert first.reading.probabilities == pytest.approx(direct.probabilities, abs=2e-3)

    again = await client.call_tool("end_emotion_session", {"session_id": session_id})  # idempotent
    assert SessionSummary.model_validate(again.structured_content) == summary
    assert "has ended" in error_text(await client.call_tool("push_audio", {"session_id": session_id, "chunk_base64": b64(b"\0\0")}))
    assert (await client.call_tool("get_emotion_trace", {"session_id": session_id})).structured_content["ended"]


@pytest.mark.anyio
async def test_float_stream_at_48k(client: Client, sentences_wav):
    path, bounds = sentences_wav
    wav, rate = sf.read(path, dtype="float32")
    wav48 = soxr.resample(wav, rate, 48000).astype(np.float32)
    session_id, readings = await stream(client, wav48, 48000, encoding="pcm_f32le")
    assert_one_reading_per_sentence(readings, bounds)
    summary = await client.call_tool("end_emotion_session", {"session_id": session_id})
    assert len(summary.structured_content["utterances"]) == len(bounds)


@pytest.mark.anyio
async def test_open_utterance_is_read_at_the_end(client: Client, speech_wav: Path):
    wav, rate = sf.read(speech_wav, dtype="float32")
    session_id, readings = await stream(client, wav, rate)  # espeak leaves little silence at the end
    summary = SessionSummary.model_validate((await client.call_tool("end_emotion_session", {"session_id": session_id})).structured_content)
    assert len(summary.utterances) == 1 and summary.overall is not None


@pytest.mark.anyio
async def test_session_errors(client: Client):
    assert "unknown session" in error_text(await client.call_tool("push_audio", {"session_id": "ses_nope", "chunk_base64": "AAAA"}))
    assert "unknown session" in error_text(await client.call_tool("get_emotion_trace", {"session_id": "ses_nope"}))
    assert "unknown session" in error_text(await client.call_tool("end_emotion_session", {"session_id": "ses_nope"}))
    with pytest.raises(MCPError, match="unknown session"):
        await client.read_resource("emotion://sessions/ses_nope/trace")
    started = await client.call_tool("start_emotion_session", {"sample_rate": 16000})
    sid = started.structured_content["session_id"]
    for chunk, expected in [
        ("@@@", "not valid base64"),
        (b64(b"\x01\x02\x03"), "whole number of pcm_s16le samples"),
        (b64(np.zeros(16000 * 11, "<i2").tobytes()), "over the limit of 10 s per chunk"),
    ]:
        assert expected in error_text(await client.call_tool("push_audio", {"session_id": sid, "chunk_base64": chunk}))
        ok = await client.call_tool("push_audio", {"session_id": sid, "chunk_base64": b64(np.zeros(1600, "<i2").tobytes())})
        assert not ok.is_error and ok.structured_content["readings"] == []
    assert "sample_rate" in error_text(await client.call_tool("start_emotion_session", {"sample_rate": 10}))
    summary = await client.call_tool("end_emotion_session", {"session_id": sid})
    assert summary.structured_content["overall"] is None and "No utterance" in summary.structured_content["warnings"][-1]


@pytest.mark.anyio
async def test_sessions_are_bounded_and_expire(options: ServerOptions):
    clock = ManualClock()
    async with Client(create_server(replace(options, max_sessions=2, session_idle_s=60.0), clock=clock)) as c:
        first, second = [(await c.call_tool("start_emotion_session", {})).structured_content["session_id"] for _ in range(2)]
        assert "2 streaming sessions are open" in error_text(await c.call_tool("start_emotion_session", {}))
        await c.call_tool("end_emotion_session", {"session_id": first})  # an ended session makes room
        third = (await c.call_tool("start_emotion_session", {})).structured_content["session_id"]
        assert len({first, second, third}) == 3
        clock.advance(61.0)
        assert "expired" in error_text(await c.call_tool("get_emotion_trace", {"session_id": second}))
        fresh = await c.call_tool("start_emotion_session", {})
        assert not fresh.is_error


@pytest.mark.anyio
async def test_busy_instead_of_piling_up(options: ServerOptions, speech_wav: Path):
    async with Client(create_server(replace(options, max_pending=1))) as c:
        outcomes: list = []

        async def call():
            outcomes.append(await c.call_tool("analyze_emotion", {"audio_path": str(speech_wav)}))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(call)
        busy = [r for r in outcomes if r.is_error]
        assert len(outcomes) == 4 and busy and len(busy) < 4
        assert all("busy" in error_text(r) and "retry" in error_text(r) for r in busy)
        await analyze(c, audio_path=str(speech_wav))  # and it serves again
