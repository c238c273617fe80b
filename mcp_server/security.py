"""What the server lets in: readable directories, payload sizes, and bearer tokens over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

TOKEN_ENV_VAR = "EMOTION_MCP_TOKEN"  # the bearer token clients must send over HTTP
MIN_TOKEN_CHARS = 16  # shorter tokens are refused: they can be guessed
_MIB = 1024 * 1024


class RequestError(ValueError):
    """A request the server refuses; the message tells the caller (often an LLM) what to change."""


# --- files ------------------------------------------------------------------------------------------


class PathPolicy:
    """Decides which files may be read: only those inside the allowed directories.

    Paths are resolved (symlinks and `..` followed) before the check, and the resolved file is the
    one read, so a link inside an allowed directory cannot lead outside it.
    """

    def __init__(self, allowed_dirs: Sequence[str | os.PathLike]):
        self.allowed: tuple[Path, ...] = tuple(self._check_dir(d) for d in allowed_dirs)

    @staticmethod
    def _check_dir(directory: str | os.PathLike) -> Path:
        path = Path(directory).expanduser()
        if not path.is_dir():
            raise ValueError(f"--allow-dir {directory}: no such directory; give an existing directory of audio files")
        return Path(os.path.realpath(path))

    def resolve(self, path: str) -> Path:
        """The real path of `path` if it lies inside an allowed directory.

        Relative paths are taken relative to the first allowed directory.

        Raises:
            RequestError: nothing may be read, or the path leads outside the allowed directories.
        """
        if not self.allowed:
            raise RequestError(
                "this server reads no files: it was started without --allow-dir. Send the audio as "
                "audio_base64 instead, or restart the server with --allow-dir DIR for the directory holding it"
            )
        if "\x00" in path:
            raise RequestError("audio_path contains a NUL character; give a plain file path")
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = self.allowed[0] / candidate
        real = Path(os.path.realpath(candidate))
        if not any(real == d or real.is_relative_to(d) for d in self.allowed):
            dirs = ", ".join(str(d) for d in self.allowed)
            raise RequestError(
                f"{path} is outside the directories this server may read ({dirs}); move the file into one of "
                "them, send it as audio_base64, or restart the server with another --allow-dir"
            )
        return real


def read_file_bytes(real: Path, *, max_bytes: int, shown_as: str) -> bytes:
    """Reads a file checked by `PathPolicy.resolve`, refusing links swapped in since and oversized files."""
    # Non-blocking: a FIFO without a writer would otherwise hang the open, and every caller queued behind it.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)
    except FileNotFoundError as e:
        raise RequestError(f"{shown_as}: no such file; check the path") from e
    except OSError as e:
        raise RequestError(f"{shown_as}: cannot open ({e.strerror}); check the path and its permissions") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RequestError(f"{shown_as} is not a regular file (a FIFO, device, socket or directory); give an audio file")
        os.set_blocking(fd, True)
        if info.st_size > max_bytes:
            raise RequestError(
                f"{shown_as} is {info.st_size / _MIB:.1f} MiB, over the limit of {max_bytes / _MIB:.1f} MiB; "
                "send a shorter recording, or restart the server with a higher --max-request-mb"
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read()


# --- HTTP -------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: localhost, 127.0.0.0/8, ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_http_binding(host: str, token: str | None) -> None:
    """Refuses unsafe HTTP set-ups before anything is started.

    Raises:
        ValueError: a non-loopback host without a token, or a token too short to be secret.
    """
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ValueError(
            f"{TOKEN_ENV_VAR} is {len(token)} characters; use at least {MIN_TOKEN_CHARS} random characters, "
            "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if token is None and not is_loopback(host):
        raise ValueError(
            f"refusing to serve on {host} without a bearer token: anyone who can reach it could use it. "
            f"Set {TOKEN_ENV_VAR} (e.g. `export {TOKEN_ENV_VAR}=$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')`), or serve on 127.0.0.1"
        )


def check_origin(origin: str) -> None:
    """Refuses an --allow-origin value that a browser would never send.

    Raises:
        ValueError: not scheme://host[:port] with scheme http or https.
    """
    if origin_host(origin) is None:
        raise ValueError(
            f"--allow-origin {origin}: give an origin as a browser sends it, scheme://host[:port] "
            "(e.g. http://localhost:5173), without a path"
        )


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BearerTokenMiddleware:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`, else 401.

    Tokens are compared as SHA-256 digests with `hmac.compare_digest`, so the comparison takes the
    same time whatever the token sent, its length included.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str):
        self.app = app
        self._digest = hashlib.sha256(token.encode()).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan events carry no request
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                header = value
                break
        scheme, _, credentials = header.partition(b" ")
        presented = hashlib.sha256(credentials.strip()).digest()
        valid = hmac.compare_digest(presented, self._digest)
        if scheme.lower() != b"bearer" or not valid:
            await _unauthorized(send, missing=not header)
            return
        await self.app(scope, receive, send)


async def _unauthorized(send: Send, *, missing: bool) -> None:
    description = (
        "this server requires a bearer token: send the header `Authorization: Bearer <token>` "
        f"with the value of {TOKEN_ENV_VAR} the server was started with"
        if missing
        else f"the bearer token is not valid; send the value of {TOKEN_ENV_VAR} the server was started with"
    )
    body = json.dumps({"error": "invalid_token", "error_description": description}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="emotion-mcp", error="invalid_token"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- Host and Origin (DNS rebinding) ----------------------------------------------------------------

_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
_REG_NAME = re.compile(r"[a-z0-9._~-]+\Z")  # a DNS name or an IPv4 address, lower-cased (RFC 3986 reg-name, less what no DNS name holds)
_PORT = re.compile(r"[0-9]{1,5}\Z")
# Headers a request may carry once: a second copy is how one part of a stack is made to read another value
# than the next (Host and Origin checked on one copy, used on the other; a body framed two ways).
_SINGLE_HEADERS = (
    b"host", b"origin", b"authorization", b"content-length", b"transfer-encoding", b"content-type",
    b"mcp-session-id", b"mcp-protocol-version",
)  # fmt: skip


def host_of(value: str) -> str | None:
    """The host of `host[:port]` (a Host header, an origin's authority), lower-cased, brackets removed;
    None when `value` is not exactly that (userinfo, a path, a bad port, a bracket that does not close)."""
    value = value.strip().lower()
    if value.startswith("["):  # [v6]:port
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    else:
        host, sep, port = value.partition(":")
        rest = sep + port
        if not _REG_NAME.match(host):
            return None
    if rest and not (rest[0] == ":" and _PORT.match(rest[1:]) and int(rest[1:]) <= 65535):
        return None
    return host


def origin_host(origin: str) -> str | None:
    """The host of an origin as a browser sends it, ``scheme://host[:port]`` with scheme http or https; else None."""
    scheme, sep, authority = origin.strip().lower().partition("://")
    if not sep or scheme not in ("http", "https"):
        return None
    return host_of(authority.removesuffix("/"))


def _is_loopback_name(host: str) -> bool:
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def needs_host_check(host: str, tokened: bool) -> bool:
    """Host and Origin are checked on loopback binds and on every bind without a token.

    A page on another site can make a browser send requests to a loopback server (DNS rebinding,
    or a plain cross-site POST); such requests name the other site in Host or Origin. `tokened`:
    every request must carry a bearer token (a static one, or an OAuth issuer's).
    """
    return not tokened or is_loopback(host)


def header_value(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of header `name` (lower case) among an ASGI scope's headers, or None."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def framing_problem(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """What makes a request's headers ambiguous, or None: a header that may come once came twice, a
    body framed both by Content-Length and by Transfer-Encoding, or a Host that is not host[:port]."""
    seen: dict[bytes, bytes] = {}
    for name, value in headers:
        name = name.lower()
        if name in _SINGLE_HEADERS:
            if name in seen:
                return f"the request carries the {name.decode()} header twice; send it once"
            seen[name] = value
    if b"content-length" in seen and b"transfer-encoding" in seen:
        return "the request carries both Content-Length and Transfer-Encoding; frame the body one way"
    host = seen.get(b"host")
    if host is not None and host_of(host.decode("latin-1")) is None:
        return f"Host {host.decode('latin-1')!r} is not host[:port]"
    return None


class HeaderFramingMiddleware:
    """ASGI middleware: refuses, with 400, a request whose headers can be read two ways (`framing_problem`).

    It stands outermost on every bind, so no later check and no part of the stack reads a header
    another part read differently.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            problem = framing_problem(scope.get("headers", ()))
            if problem is not None:
                await _plain_error(send, 400, problem)
                return
        await self.app(scope, receive, send)


class HostOriginMiddleware:
    """ASGI middleware: refuses requests whose Host is not this machine (421) or whose Origin is foreign (403).

    Host must be exactly ``host[:port]`` and name a loopback address (any of 127.0.0.0/8, ::1,
    localhost), the address the server is bound to, or one of `server_names`, whatever its case
    or port. A request without Origin (not from a browser) passes; one with Origin passes when the
    origin is exactly ``scheme://host[:port]`` and on this machine, names one of `server_names`, or
    is listed in `allowed_origins` (as the browser sends it). Either header sent twice is refused (400).
    """

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        bind_host: str,
        allowed_origins: Sequence[str] = (),
        check_host: bool = True,
        server_names: Sequence[str] = (),
    ):
        self.app = app
        self.bind_host = host_of(_bracketed(bind_host)) or bind_host.strip("[]").lower()
        self.check_host = check_host  # False on a tokened public bind: its names are not known here, the token guards it
        self.server_names = frozenset(filter(None, (host_of(n) for n in server_names)))  # e.g. the public OAuth resource URL's host
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    def _host_allowed(self, host: str | None) -> bool:
        return host is not None and (host == self.bind_host or host in self.server_names or _is_loopback_name(host))

    def _origin_allowed(self, origin: str) -> bool:
        host = origin_host(origin)
        if host is None:  # not scheme://host[:port]: no browser sends that
            return False
        if origin.rstrip("/").lower() in self.allowed_origins:
            return True
        return host in self.server_names or (self.check_host and self._host_allowed(host))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        found: dict[bytes, list[str]] = {b"host": [], b"origin": []}
        for name, value in scope.get("headers", ()):
            if name.lower() in found:
                found[name.lower()].append(value.decode("latin-1"))
        if len(found[b"host"]) > 1 or len(found[b"origin"]) > 1:
            await _plain_error(send, 400, "the request carries Host or Origin twice; send each once")
            return
        host = found[b"host"][0] if found[b"host"] else ""
        origin = found[b"origin"][0] if found[b"origin"] else ""
        if self.check_host and not self._host_allowed(host_of(host)):
            await _plain_error(send, 421, f"Host {host or '(none)'} is not this server; connect to it by a loopback address")
            return
        if origin == "null":  # sandboxed frames and file: pages
            await _plain_error(send, 403, "Origin null may not call this server")
            return
        if origin and not self._origin_allowed(origin):
            await _plain_error(
                send, 403, f"Origin {origin} may not call this server; restart it with --allow-origin {origin} to let it"
            )
            return
        await self.app(scope, receive, send)


def _bracketed(host: str) -> str:
    bare = host.strip("[]")
    return f"[{bare}]" if ":" in bare else bare


class BodyDeadlineMiddleware:
    """ASGI middleware: a request body must arrive whole within `timeout_s` and `max_bytes`, else 408 or 413.

    The body is read before the application sees the request, so a client that trickles its body
    holds a connection for at most `timeout_s`, never a request handler.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, timeout_s: float, max_bytes: int):
        self.app = app
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        import anyio

        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        messages: list[dict[str, Any]] = []
        size = 0
        with anyio.move_on_after(self.timeout_s) as deadline:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                size += len(message.get("body", b""))
                if size > self.max_bytes:
                    await _plain_error(send, 413, f"request body over {self.max_bytes} bytes; send less audio per call")
                    return
                messages.append(message)
                if not message.get("more_body", False):
                    break
        if deadline.cancelled_caught:
            await _plain_error(send, 408, f"request body not received within {self.timeout_s:g} s")
            return
        refused = _unreadable_frame(scope, b"".join(m.get("body", b"") for m in messages))
        if refused is not None:
            await _json_error(send, 400, refused)
            return
        replay = iter(messages)

        async def replayed() -> dict[str, Any]:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)


def _unreadable_frame(scope: Scope, body: bytes) -> bytes | None:
    """The JSON-RPC error for a JSON body whose text is not Unicode (the SDK's parser would answer it
    with a bare "Parse error" and no id), else None."""
    from .wire import FrameError, check_frame

    content_type = next((v for k, v in scope.get("headers", ()) if k.lower() == b"content-type"), b"")
    if not content_type.lower().startswith(b"application/json"):
        return None
    try:
        check_frame(body)
    except FrameError as e:
        return e.response().model_dump_json(by_alias=True, exclude_unset=True).encode()
    return None


async def _json_error(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _plain_error(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def url_authority_host(url: str) -> str:
    """The host of an http(s) URL, lower-cased, without brackets or port."""
    authority = url.partition("://")[2].partition("/")[0].rpartition("@")[2]
    return host_of(authority) or authority.lower()


def url_host(host: str) -> str:
    """`host` as it goes in a URL: IPv6 addresses bracketed once."""
    bare = host.strip("[]")
    return f"[{bare}]" if ":" in bare else bare
