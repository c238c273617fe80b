"""JSON-RPC frames as they arrive (a stdio line, an HTTP body): parsed, or the error the specification answers.

The SDK drops a frame it cannot parse; over stdio the request behind it then waits for an answer
that never comes. Here every frame is either a message or a `FrameError` whose `response()` is the
JSON-RPC error to send back: -32700 for bytes that are not JSON text (invalid UTF-8, not JSON,
nested too deeply), -32600 for JSON that is not one JSON-RPC 2.0 message (a batch array, no method,
`"jsonrpc": "1.0"`, an object as id), and -32602 for a request whose params hold a string that is
not Unicode (a lone surrogate escape such as `\\udc80`, which JSON's grammar allows). The error carries
the request's id whenever one can be read from the frame, so the caller's request is answered.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from mcp.types import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, JSONRPCMessage, JSONRPCNotification, jsonrpc_message_adapter

__all__ = ["FrameError", "parse_frame", "check_frame"]

_SHOWN_CHARS = 80  # of a bad value, in an error message


class FrameError(ValueError):
    """A frame that is not one valid JSON-RPC message; `response()` is the error to answer with."""

    def __init__(self, code: int, message: str, request_id: str | int | None = None):
        super().__init__(message)
        self.code = code
        self.request_id = request_id

    def response(self) -> JSONRPCError:
        return JSONRPCError(jsonrpc="2.0", id=self.request_id, error=ErrorData(code=self.code, message=str(self)))


def parse_frame(data: bytes) -> JSONRPCMessage:
    """The JSON-RPC message in `data` (one stdio line or one HTTP body, without its newline).

    Raises:
        FrameError: not one valid message; its code and message say why.
    """
    try:
        message = jsonrpc_message_adapter.validate_json(data, by_name=False)
    except ValueError as e:  # pydantic's ValidationError; the diagnosis below names what is wrong
        raise diagnose(data, reason=e) from e
    if isinstance(message, JSONRPCNotification) and b'"id"' in data:
        # The SDK reads a request whose id is not a string or an integer (an object, a float, true) as a
        # notification, and a notification gets no answer: the caller would wait forever.
        parsed = json.loads(data)
        if parsed.get("id") is not None:
            raise FrameError(INVALID_REQUEST, f'"id" must be a string or an integer, got {_shown(parsed["id"])}')
    return message


def check_frame(data: bytes) -> None:
    """Raises the `FrameError` of a frame whose text is not Unicode (invalid UTF-8, lone surrogates).

    For transports whose SDK parser answers other malformed frames itself (HTTP): those two it
    would answer with a bare "Parse error" and no id.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise diagnose(data) from None
    if "\\u" in text or "\\U" in text:  # a surrogate can only arrive as an escape: valid UTF-8 cannot hold one
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            return  # the SDK answers what is not JSON
        _check_unicode(parsed, _request_id(parsed))


def diagnose(data: bytes, *, reason: Exception | None = None) -> FrameError:
    """Why `data` is not a valid JSON-RPC message, as the error to answer it with."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        at = e.start
        return FrameError(
            PARSE_ERROR,
            f"the message is not valid UTF-8 (byte 0x{data[at]:02x} at offset {at}); send JSON text encoded as UTF-8",
            _request_id(_lenient_json(data)),
        )
    try:
        parsed = json.loads(text)
    except RecursionError:
        return FrameError(PARSE_ERROR, "the message is nested too deeply to read; send one flat JSON-RPC object")
    except ValueError as e:
        return FrameError(PARSE_ERROR, f"the message is not JSON ({e}); send one JSON-RPC object per message")
    if isinstance(parsed, list):
        return FrameError(
            INVALID_REQUEST,
            "the message is a JSON array (a JSON-RPC batch); MCP takes no batches: send each message as an object of its own",
        )
    if not isinstance(parsed, dict):
        return FrameError(INVALID_REQUEST, f"the message is a JSON {type(parsed).__name__}, not a JSON-RPC object")
    request_id = _request_id(parsed)
    if parsed.get("jsonrpc") != "2.0":
        return FrameError(INVALID_REQUEST, f'"jsonrpc" must be "2.0", got {_shown(parsed.get("jsonrpc"))}', request_id)
    if "id" in parsed and parsed["id"] is not None and request_id is None:
        return FrameError(INVALID_REQUEST, f'"id" must be a string or an integer, got {_shown(parsed["id"])}')
    try:
        _check_unicode(parsed, request_id)
    except FrameError as e:
        return e
    if "method" not in parsed and not ("result" in parsed or "error" in parsed):
        return FrameError(INVALID_REQUEST, 'the message has no "method": a request names the method it calls', request_id)
    if "method" in parsed and not isinstance(parsed["method"], str):
        return FrameError(INVALID_REQUEST, f'"method" must be a string, got {_shown(parsed["method"])}', request_id)
    detail = _first_error(reason) if reason is not None else "it is not a JSON-RPC 2.0 request, notification or response"
    return FrameError(INVALID_REQUEST, f"the message is not a valid JSON-RPC message: {detail}", request_id)


def _check_unicode(value: Any, request_id: str | int | None) -> None:
    """Raises a FrameError naming the first string (key or value) of `value` that is not Unicode."""
    for where, text in _strings(value):
        if not _is_unicode(text):
            code = INVALID_PARAMS if where.startswith("params") and request_id is not None else INVALID_REQUEST
            raise FrameError(
                code,
                f"{where or 'the message'} holds a string that is not valid Unicode (a lone surrogate escape, "
                f"{_escape(text)}); send text as valid UTF-8 (a name that is not Unicode cannot be sent over JSON)",
                request_id,
            )


def _strings(value: Any) -> Iterator[tuple[str, str]]:
    """Every string in `value`, keys included, with where it sits (e.g. ``params.arguments.audio_path``)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, inner in item.items():
                inside = f"{where}.{key if _is_unicode(key) else ascii(key)}".lstrip(".")
                yield inside, key
                stack.append((inner, inside))
        elif isinstance(item, list):
            stack.extend((inner, f"{where}[{i}]") for i, inner in enumerate(item))


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escape(text: str) -> str:
    """The first lone surrogate of `text`, as the escape that carried it."""
    bad = next(c for c in text if 0xD800 <= ord(c) <= 0xDFFF)
    return f"\\u{ord(bad):04x}"


def _request_id(parsed: Any) -> str | int | None:
    """The frame's id if it is one JSON-RPC allows (a string or an integer), else None."""
    if not isinstance(parsed, dict):
        return None
    value = parsed.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    if isinstance(value, str) and not _is_unicode(value):
        return None  # cannot be written back
    return value


def _lenient_json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None


def _first_error(reason: Exception) -> str:
    errors = getattr(reason, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()) if not str(p).startswith("JSONRPC"))
            return f"{where}: {first['msg']}" if where else str(first["msg"])
        except (IndexError, KeyError, TypeError):
            pass
    return str(reason).splitlines()[0]


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
