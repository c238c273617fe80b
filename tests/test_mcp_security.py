"""The server's gatekeeping without a model: paths, payloads, tokens, the queue, the session store."""

from __future__ import annotations

import base64
import threading

import anyio
import numpy as np
import pytest

from helpers import ManualClock
from mcp_server.inference import InferenceQueue, ServerBusy
from mcp_server.payloads import check_container, decode_base64, decode_pcm, sniff_container
from mcp_server.security import BearerTokenMiddleware, PathPolicy, RequestError, check_http_binding, is_loopback, read_file_bytes
from emotion_tool.live.streaming import summarize_utterances as summarize
from mcp_server.sessions import Session, SessionStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- paths -------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    """allowed/ with a file, a link escaping to outside/, and a link staying inside."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "a.wav").write_bytes(b"RIFF....WAVE")
    (allowed / "sub").mkdir()
    (allowed / "sub" / "b.wav").write_bytes(b"RIFF....WAVE")
    (outside / "secret.wav").write_bytes(b"secret")
    (allowed / "escape.wav").symlink_to(outside / "secret.wav")
    (allowed / "escape_dir").symlink_to(outside)
    (allowed / "inner.wav").symlink_to(allowed / "sub" / "b.wav")
    return allowed, outside


def test_no_allowed_dirs_reads_nothing_and_says_how(tree):
    allowed, _ = tree
    with pytest.raises(RequestError, match="--allow-dir"):
        PathPolicy([]).resolve(str(allowed / "a.wav"))


def test_paths_inside_are_resolved(tree):
    allowed, _ = tree
    policy = PathPolicy([allowed])
    assert policy.resolve(str(allowed / "a.wav")) == (allowed / "a.wav").resolve()
    assert policy.resolve("sub/b.wav") == (allowed / "sub" / "b.wav").resolve()  # relative: first allowed dir
    assert policy.resolve(str(allowed / "inner.wav")) == (allowed / "sub" / "b.wav").resolve()


@pytest.mark.parametrize("escape", ["escape.wav", "escape_dir/secret.wav", "../outside/secret.wav", "sub/../../outside/secret.wav"])
def test_links_and_dotdot_cannot_escape(tree, escape):
    allowed, _ = tree
    policy = PathPolicy([allowed])
    with pytest.raises(RequestError, match="outside the directories"):
        policy.resolve(escape)
    with pytest.raises(RequestError, match="outside the directories"):
        policy.resolve(str(allowed / escape))


def test_prefix_sibling_is_not_inside(tmp_path):
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec-private").mkdir()
    (tmp_path / "rec-private" / "x.wav").write_bytes(b"x")
    with pytest.raises(RequestError, match="outside"):
        PathPolicy([tmp_path / "rec"]).resolve(str(tmp_path / "rec-private" / "x.wav"))


def test_missing_allowed_dir_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="no such directory"):
        PathPolicy([tmp_path / "nope"])


def test_read_file_bytes_limits_and_kinds(tree):
    allowed, _ = tree
    assert read_file_bytes(allowed / "a.wav", max_bytes=100, shown_as="a.wav") == b"RIFF....WAVE"
    with pytest.raises(RequestError, match="over the limit"):
        read_file_bytes(allowed / "a.wav", max_bytes=4, shown_as="a.wav")
    with pytest.raises(RequestError, match="not a regular file"):
        read_file_bytes(allowed / "sub", max_bytes=100, shown_as="sub")
    with pytest.raises(RequestError, match="no such file"):
        read_file_bytes(allowed / "gone.wav", max_bytes=100, shown_as="gone.wav")
    with pytest.raises(RequestError, match="cannot open"):  # a link swapped in after the check is not followed
        read_file_bytes(allowed / "escape.wav", max_bytes=100, shown_as="escape.wav")


# --- payloads ----------------------------------------------------------------------------------------


def test_base64_variants_decode():
    data = bytes(range(256))
    std = base64.b64encode(data).decode()
    assert decode_base64(std, max_chars=10_000, field="x") == data
    assert decode_base64(base64.urlsafe_b64encode(data).decode(), max_chars=10_000, field="x") == data
    assert decode_base64("data:audio/wav;base64," + std, max_chars=10_000, field="x") == data
    assert decode_base64("\n".join(std[i : i + 76] for i in range(0, len(std), 76)), max_chars=10_000, field="x") == data
    assert decode_base64(std.rstrip("="), max_chars=10_000, field="x") == data


@pytest.mark.parametrize("bad", ["!!!!", "abc$", "   "])
def test_garbage_base64_is_refused(bad):
    with pytest.raises(RequestError, match="audio_base64"):
        decode_base64(bad, max_chars=100, field="audio_base64")


def test_oversized_base64_is_refused_before_decoding():
    with pytest.raises(RequestError, match="over the limit.*--max-request-mb"):
        decode_base64("A" * 2000, max_chars=1000, field="audio_base64")


def test_sniffing_and_format_hints():
    assert sniff_container(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert sniff_container(b"fLaC....") == "flac"
    assert sniff_container(b"OggS....") == "ogg"
    assert sniff_container(b"ID3\x04....") == "mp3"
    assert sniff_container(b"hello") is None
    check_container(b"fLaC....", "flac", field="a")
    check_container(b"hello", "wav", field="a")  # unknown bytes: left to the decoder, which names the problem
    with pytest.raises(RequestError, match="says wav but the bytes are flac"):
        check_container(b"fLaC....", "wav", field="a")


def test_pcm_decoding():
    s16 = np.array([0, 16384, -32768], dtype="<i2").tobytes()
    np.testing.assert_allclose(decode_pcm(s16, "pcm_s16le", field="c"), [0.0, 0.5, -1.0])
    f32 = np.array([0.25, -0.5], dtype="<f4").tobytes()
    np.testing.assert_allclose(decode_pcm(f32, "pcm_f32le", field="c"), [0.25, -0.5])
    with pytest.raises(RequestError, match="whole number of pcm_s16le samples"):
        decode_pcm(b"\x00\x01\x02", "pcm_s16le", field="c")
    with pytest.raises(RequestError, match="NaN or infinite"):
        decode_pcm(np.array([np.nan], dtype="<f4").tobytes(), "pcm_f32le", field="c")


# --- HTTP --------------------------------------------------------------------------------------------


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")


def test_binding_rules():
    check_http_binding("127.0.0.1", None)
    check_http_binding("0.0.0.0", "x" * 32)
    with pytest.raises(ValueError, match="refusing to serve on 0.0.0.0 without a bearer token"):
        check_http_binding("0.0.0.0", None)
    with pytest.raises(ValueError, match="at least 16"):
        check_http_binding("127.0.0.1", "short")


@pytest.mark.anyio
async def test_bearer_middleware():
    token = "t0ken-" + "x" * 20
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = BearerTokenMiddleware(app, token)

    async def call(headers):
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b""}

        await mw({"type": "http", "path": "/mcp", "headers": headers}, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"])

    assert (await call([(b"authorization", f"Bearer {token}".encode())]))[0] == 200
    assert (await call([(b"authorization", f"bearer {token}".encode())]))[0] == 200
    for headers in ([], [(b"authorization", b"Bearer wrong")], [(b"authorization", f"Basic {token}".encode())],
                    [(b"authorization", f"Bearer {token}x".encode())]):  # fmt: skip
        status, sent_headers = await call(headers)
        assert status == 401 and sent_headers[b"www-authenticate"].startswith(b"Bearer")
    assert seen == ["/mcp", "/mcp"]


# --- the inference queue -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_queue_runs_one_at_a_time_and_refuses_beyond_its_bound():
    queue = InferenceQueue(max_pending=2)
    release = threading.Event()
    running, peak, order = [0], [0], []
    lock = threading.Lock()

    def job(_job, i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(10)
        order.append(i)
        with lock:
            running[0] -= 1
        return i

    results, refused = {}, []

    async def submit(i):
        try:
            results[i] = await queue.run(lambda j: job(j, i))
        except ServerBusy as e:
            refused.append((i, str(e)))

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(submit, i)
            await anyio.sleep(0.05)
        assert queue.pending == 2
        release.set()
    assert results == {0: 0, 1: 1} and order == [0, 1] and peak[0] == 1
    assert [i for i, _ in refused] == [2, 3] and "busy" in refused[0][1] and "retry" in refused[0][1]
    assert queue.pending == 0
    assert await queue.run(lambda _job: "again") == "again"  # the queue recovers


# --- the session store -------------------------------------------------------------------------------


_SEGMENTER = None  # the store never touches a session's segmenter


def _session(store: SessionStore, owner: str = "a") -> Session:
    return Session(id=store.new_id(), owner=owner, sample_rate=16000, encoding="pcm_s16le", segmenter=_SEGMENTER, last_used=0)


def test_store_owner_expiry_and_bound():
    now = [0.0]
    store = SessionStore(max_sessions=2, idle_timeout_s=10, clock=lambda: now[0])
    s1, s2 = _session(store, "alice"), _session(store, "bob")
    assert s1.id != s2.id and len(s1.id) > 20
    store.add(s1)
    store.add(s2)
    assert store.get(s1.id, "alice") is s1
    with pytest.raises(RequestError, match="unknown session") as other:
        store.get(s1.id, "bob")
    with pytest.raises(RequestError, match="unknown session") as missing:
        store.get("ses_nope", "bob")
    assert str(other.value).replace(s1.id, "X") == str(missing.value).replace("ses_nope", "X")  # nothing leaks
    with pytest.raises(RequestError, match="2 streaming sessions are open"):
        store.add(_session(store))
    s1.ended = True  # an ended session makes room for a new one
    store.add(s3 := _session(store))
    with pytest.raises(RequestError):
        store.get(s1.id, "alice")
    now[0] = 5.0
    store.get(s3.id, "a")
    now[0] = 12.0
    s2.in_flight = 1  # never expires under a running call
    assert store.expire() == []
    s2.in_flight = 0
    assert store.expire() == [s2]
    now[0] = 16.0
    assert store.expire() == [s3] and len(store) == 0


def test_summary_weights_utterances_by_duration():
    from emotion_tool import LABELS
    from emotion_tool.engine.results import EmotionReading, UtteranceReading

    def utt(i, start, end, label_index, valence):
        probs = [0.05] * 7
        probs[label_index] = 0.7
        r = EmotionReading.from_outputs(probs, [valence, 0.5, 0.5], labels=LABELS, start_s=start, end_s=end, min_confidence=0.5)
        return UtteranceReading(index=i, start_s=start, end_s=end, reading=r, latency_s=0.1)

    trace = [utt(0, 1.0, 4.0, LABELS.index("angry"), 0.2), utt(1, 5.0, 6.0, LABELS.index("happy"), 0.8)]
    overall, counts = summarize(trace, labels=LABELS, min_confidence=0.5)
    assert overall.label == "angry" and overall.start_s == 1.0 and overall.end_s == 6.0
    assert overall.valence == pytest.approx(0.2 * 0.75 + 0.8 * 0.25)
    assert overall.probabilities["angry"] == pytest.approx(0.7 * 0.75 + 0.05 * 0.25)
    assert counts["angry"] == 1 and counts["happy"] == 1 and counts["sad"] == 0
    assert summarize([], labels=LABELS, min_confidence=0.5) == (None, {label: 0 for label in LABELS})


def test_expiry_is_by_inactivity():
    clock = ManualClock()
    store = SessionStore(max_sessions=1, idle_timeout_s=60.0, clock=clock)
    s = _session(store)
    store.add(s)
    clock.advance(59.0)
    assert store.get(s.id, "a") is s and store.expire() == []  # a call resets the idle time
    clock.advance(60.5)
    with pytest.raises(RequestError, match="expired"):
        store.get(s.id, "a")
    assert store.expire() == [s]
