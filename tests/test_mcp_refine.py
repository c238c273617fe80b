"""A server that refines (`--refine-with`): session utterances read fast at once, faithfully after."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import ManualClock
from mcp import Client

from mcp_server import ServerOptions, create_server
from mcp_server import tools_sessions
from mcp_server.__main__ import _parser
from tests.test_mcp_session_files import pcm_chunks


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


async def run_session(client: Client, wav: Path) -> tuple[list[dict], list[dict], dict, str]:
    """(readings the pushes returned, refined readings they handed out, the summary, the session id)."""
    rate, chunks = pcm_chunks(wav, chunk_s=0.25)
    started = await client.call_tool("start_emotion_session", {"sample_rate": rate})
    session_id = started.structured_content["session_id"]
    readings, refined = [], []
    for chunk in chunks:
        pushed = await client.call_tool("push_audio", {"session_id": session_id, "chunk_base64": chunk})
        assert not pushed.is_error, pushed.content[0].text
        readings += pushed.structured_content["readings"]
        refined += pushed.structured_content.get("refined", [])
    ended = await client.call_tool("end_emotion_session", {"session_id": session_id})
    assert not ended.is_error, ended.content[0].text
    return readings, refined, ended.structured_content, session_id


def probabilities(u: dict) -> list[float]:
    return list(u["reading"]["probabilities"].values())


@pytest.mark.anyio
async def test_session_utterances_are_read_fast_then_replaced_by_the_faithful_reading(tiny_checkpoint, sentences_wav, tmp_path):
    wav, bounds = sentences_wav
    clock = ManualClock()
    options = ServerOptions(
        model=str(tiny_checkpoint), device="cpu", operating_point="trimmed", refine_with="published",
        session_dir=tmp_path / "sessions", session_idle_s=60.0,
    )  # fmt: skip
    async with Client(create_server(options, clock=clock)) as c:
        model = json.loads((await c.read_resource("emotion://model")).contents[0].text)
        assert model["operating_point"] == "trimmed" and model["sessions_refined_at"] == "published"
        readings, refined, summary, session_id = await run_session(c, wav)
        final = [r for r in readings if not r["interim"]]
        assert len(final) == len(bounds)
        assert {(r["operating_point"], r["refined"]) for r in final} == {("trimmed", False)}  # the pushes answer fast
        assert {(r["operating_point"], r["refined"]) for r in refined} <= {("published", True)}
        # The summary waited for every faithful reading; the trace holds them in the fast ones' places.
        kept = summary["utterances"]
        assert [u["index"] for u in kept] == [r["index"] for r in final]
        assert {(u["operating_point"], u["refined"]) for u in kept} == {("published", True)}
        assert summary["refining"] == 0
        assert [(u["start_s"], u["end_s"]) for u in kept] == [(r["start_s"], r["end_s"]) for r in final]
        clock.advance(61.0)  # expired from memory: the session file has the faithful readings too
        read = await c.call_tool("get_emotion_trace", {"session_id": session_id})
        assert not read.is_error, read.content[0].text
        assert [probabilities(u) for u in read.structured_content["utterances"]] == [probabilities(u) for u in kept]

    # The faithful readings are what a server reading at the published point alone gives, the fast ones
    # what one at the fast point gives.
    for point, expected in (("published", kept), ("trimmed", final)):
        async with Client(create_server(ServerOptions(model=str(tiny_checkpoint), device="cpu", operating_point=point))) as c:
            _, _, alone, _ = await run_session(c, wav)
        assert len(alone["utterances"]) == len(expected)
        for got, ref in zip(expected, alone["utterances"]):
            assert np.allclose(probabilities(got), probabilities(ref), atol=1e-5)
        assert "refining" not in alone and all("refined" not in u for u in alone["utterances"])  # one reading: as before


@pytest.mark.anyio
async def test_a_failing_refinement_keeps_the_fast_reading_and_says_so(tiny_checkpoint, speech_wav, monkeypatch):
    def failing(recognizer, *args, **kwargs):  # the faithful reading of every utterance fails
        raise RuntimeError("the faithful model ran out of memory")

    monkeypatch.setattr(tools_sessions, "read_again", failing)
    options = ServerOptions(model=str(tiny_checkpoint), device="cpu", operating_point="trimmed", refine_with="published")
    async with Client(create_server(options)) as c:
        _, refined, summary, _ = await run_session(c, speech_wav)
        assert refined == []
        assert summary["utterances"] and all(u["refined"] is False and u["operating_point"] == "trimmed" for u in summary["utterances"])
        assert any("kept the fast reading" in w for w in summary["warnings"])
        assert not (await c.call_tool("start_emotion_session", {})).is_error  # the server goes on


def test_a_refinement_at_the_point_read_already_or_an_unknown_point_is_refused(capsys):
    with pytest.raises(ValueError, match="the point sessions are read at already"):
        ServerOptions(operating_point="published", refine_with="published")
    with pytest.raises(ValueError, match="the point sessions are read at already"):
        ServerOptions(refine_with="published")
    with pytest.raises(SystemExit):
        _parser().parse_args(["--operating-point", "live", "--refine-with", "fastest"])
    assert "fastest" in capsys.readouterr().err
    args = _parser().parse_args(["--operating-point", "live", "--refine-with", "openvino+bf16"])
    assert str(args.refine_with) == "openvino+bf16"


def test_the_refined_record_of_a_session_file_must_follow_its_utterance(tmp_path):
    from mcp_server.journal import JournalError, SessionJournal

    directory = tmp_path / "sessions"
    directory.mkdir()
    session_id = "ses_" + "R" * 22
    head = {"kind": "session", "session_id": session_id, "sample_rate": 16000, "encoding": "pcm_s16le", "model_id": "m", "random_weights": True, "owner": "anonymous", "principal": None}
    from emotion_tool.engine.results import EmotionReading, UtteranceReading

    emotion = EmotionReading.from_outputs([0.7, 0.3], [0.5, 0.5, 0.5], labels=["happy", "sad"], start_s=0.0, end_s=1.0, min_confidence=0.5)
    reading = UtteranceReading(index=3, start_s=0.0, end_s=1.0, reading=emotion, latency_s=0.5, refined=True).model_dump(mode="json")
    lines = [head, {"kind": "refined", "received_s": 1.0, "reading": reading}]
    (directory / f"{session_id}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(JournalError, match="refined reading of utterance 3"):
        SessionJournal(directory).read(session_id, owner="anonymous")
