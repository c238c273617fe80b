"""`emotion-mcp` (or `python -m mcp_server`): serve speech emotion perception over MCP.

    emotion-mcp --allow-dir ~/recordings                        # stdio, for Claude Desktop / Claude Code
    EMOTION_MCP_TOKEN=... emotion-mcp --transport streamable-http --port 8765
    emotion-mcp --transport streamable-http --host 0.0.0.0 --port 8765 \
        --oauth-issuer https://id.example.org --oauth-resource https://gpu.example.org:8765/mcp
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from emotion_tool.cli.arguments import add_calibration_arg, add_model_args, operating_point_arg, options_from_args
from emotion_tool.errors import CheckpointError

from .options import ServerOptions

if TYPE_CHECKING:
    from .auth import OAuthOptions

PROG = "emotion-mcp"
_STARTUP_ERRORS = (CheckpointError, ValueError, OSError)  # bad model, device or address: one line, no traceback


def _parser() -> argparse.ArgumentParser:
    d = ServerOptions()
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Serve speech emotion perception (MERaLiON-SER-v1: 7 emotions and valence/arousal/dominance) "
        "to MCP clients such as Claude Desktop, Claude Code, Cursor or VS Code.",
    )
    add_model_args(
        p, d, offline=False, quantize=False,
        operating_point_help="published (default: reproduces the model), live (recommended for streaming sessions on a CPU: "
        "trimmed context in bf16, answers within about a second but moves readings), or e.g. bf16, int8; "
        "shown in emotion://model and named in every result",
    )  # fmt: skip
    p.add_argument(
        "--refine-with",
        metavar="NAME",
        type=operating_point_arg,
        default=None,
        help="streaming sessions: read each utterance at --operating-point first (e.g. live), then again at this "
        "faithful point (e.g. published or openvino+bf16), whose reading replaces the first in the trace (default: one reading)",
    )
    p.add_argument("--transport", choices=("stdio", "streamable-http"), default="stdio", help="default: stdio")
    p.add_argument("--host", default="127.0.0.1", help="streamable-http: address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="streamable-http: port, 0 for any free one (default: 8000)")
    p.add_argument(
        "--allow-origin",
        dest="allow_origins",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="streamable-http: a browser origin (scheme://host[:port]) besides this machine's that may call the server (repeatable)",
    )
    p.add_argument(
        "--allow-dir",
        dest="allow_dirs",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory whose audio files analyze_emotion may read (repeatable); without it, no file is read",
    )
    p.add_argument(
        "--max-duration", dest="max_duration_s", type=float, default=d.max_duration_s, metavar="S", help="longest recording, seconds; inf for no limit (default: %(default)g)"
    )
    p.add_argument(
        "--max-request-mb",
        type=float,
        default=d.max_request_mb,
        metavar="MB",
        help="largest base64 payload or file, MiB (default: %(default)g)",
    )
    p.add_argument(
        "--max-sessions", type=int, default=d.max_sessions, help="streaming sessions held at once (default: %(default)d)"
    )
    p.add_argument(
        "--session-idle",
        dest="session_idle_s",
        type=float,
        default=d.session_idle_s,
        metavar="S",
        help="seconds without a call after which a streaming session expires (default: %(default)g)",
    )
    p.add_argument(
        "--max-pending",
        type=int,
        default=d.max_pending,
        help="model jobs queued at once before callers are told the server is busy (default: %(default)d)",
    )
    oauth = p.add_argument_group("OAuth resource server (instead of a static token, for servers others reach)")
    oauth.add_argument("--oauth-issuer", metavar="URL", help="authorization server whose JWTs are accepted (their iss)")
    oauth.add_argument("--oauth-resource", metavar="URL", help="this server's public MCP URL, e.g. https://gpu.example.org:8765/mcp")
    oauth.add_argument("--oauth-audience", metavar="AUD", help="the aud tokens must carry (default: --oauth-resource)")
    oauth.add_argument("--oauth-jwks-url", metavar="URL", help="the issuer's JWKS (default: from the issuer's metadata)")
    oauth.add_argument("--oauth-scope", dest="oauth_scopes", action="append", default=[], metavar="SCOPE", help="a scope every token must hold (repeatable)")
    add_calibration_arg(p, help="a calibration.json from `emotion-tool calibrate`: calibrated probabilities, its uncertain threshold, named in every result")
    p.add_argument(
        "--session-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="append each streaming session's readings to DIR/<session_id>.jsonl as they are read; "
        "get_emotion_trace reads them back after a restart (default: kept in memory only)",
    )
    p.add_argument(
        "--header-timeout",
        dest="header_timeout_s",
        type=float,
        default=d.header_timeout_s,
        metavar="S",
        help="streamable-http: close a connection whose request headers take longer (default: %(default)g)",
    )
    p.add_argument(
        "--body-timeout",
        dest="body_timeout_s",
        type=float,
        default=d.body_timeout_s,
        metavar="S",
        help="streamable-http: answer 408 to a request whose body takes longer (default: %(default)g)",
    )
    p.add_argument(
        "--time-budget",
        dest="time_budget_s",
        type=float,
        default=d.time_budget_s,
        metavar="S",
        help="stop a model call that runs longer than this, at its next window (default: no budget)",
    )
    p.add_argument(
        "--log-level",
        default=d.log_level,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="log on stderr (default: %(default)s)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    # The SDK, the server and the model load only once the arguments are known to be good.
    import anyio

    from .http import serve_http
    from .security import TOKEN_ENV_VAR, check_http_binding, check_origin
    from .server import create_server
    from .stdio import serve_stdio

    token = os.environ.get(TOKEN_ENV_VAR) or None
    _log_to_stderr(args.log_level)
    try:
        point = None if args.operating_point is None else str(args.operating_point)
        refine = None if args.refine_with is None else str(args.refine_with)
        options = options_from_args(
            ServerOptions, args, allow_dirs=tuple(Path(d) for d in args.allow_dirs), operating_point=point, refine_with=refine
        )
        oauth = _oauth_options(args, token)
        if args.transport == "streamable-http":
            if oauth is None:  # with OAuth every request needs an issuer's token, on any bind
                check_http_binding(args.host, token)
            for origin in args.allow_origins:
                check_origin(origin)
        server = create_server(options, auth=oauth.server_kwargs() if oauth else None)
    except ValueError as e:
        parser.error(str(e))
    try:
        if args.transport == "stdio":
            anyio.run(partial(serve_stdio, server, max_message_bytes=options.max_message_bytes))
        else:
            serve = partial(serve_http, server, options, args.host, args.port, token, prog=PROG, allowed_origins=args.allow_origins, oauth=oauth)
            anyio.run(serve)
    except KeyboardInterrupt:
        return
    except BaseException as e:
        found = _startup_error(e)
        if found is None or args.log_level == "DEBUG":
            raise
        print(f"{PROG}: {found}", file=sys.stderr)
        sys.exit(1)


def _log_to_stderr(level: str) -> None:
    """One line per log record on stderr (stdout carries the protocol over stdio), whatever the terminal's width.

    Set before the server is built: the SDK's own Rich handler then stays out, as it would wrap a
    record at the terminal's width and a log read line by line would see half-records.
    """
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def _oauth_options(args: argparse.Namespace, token: str | None) -> "OAuthOptions | None":
    from .auth import OAuthOptions
    from .security import TOKEN_ENV_VAR

    given = [f"--oauth-{n}" for n in ("issuer", "resource", "audience", "jwks-url") if getattr(args, "oauth_" + n.replace("-", "_"))]
    if args.oauth_scopes:
        given.append("--oauth-scope")
    if not given:
        return None
    if args.transport != "streamable-http":
        raise ValueError(f"{given[0]} needs --transport streamable-http (stdio has one local client and no tokens)")
    if not (args.oauth_issuer and args.oauth_resource):
        raise ValueError("OAuth needs both --oauth-issuer URL and --oauth-resource URL (this server's public MCP URL)")
    if token:
        raise ValueError(f"choose one: {TOKEN_ENV_VAR} (a static token) or --oauth-issuer (tokens from an issuer); unset {TOKEN_ENV_VAR}")
    return OAuthOptions(
        issuer_url=args.oauth_issuer,
        resource_url=args.oauth_resource,
        audience=args.oauth_audience,
        jwks_url=args.oauth_jwks_url,
        required_scopes=tuple(args.oauth_scopes),
    )


def _startup_error(e: BaseException) -> BaseException | None:
    """The configuration error inside `e` (task groups wrap errors in exception groups), if any."""
    if isinstance(e, _STARTUP_ERRORS):
        return e
    for inner in getattr(e, "exceptions", ()):
        found = _startup_error(inner)
        if found is not None:
            return found
    return None


if __name__ == "__main__":
    main()
