"""OAuth resource-server mode: bearer JWTs from a configured issuer, checked for this server.

For a server that others reach (a GPU box serving a team) the static `EMOTION_MCP_TOKEN` is one
shared secret; the specification's authorization instead has clients fetch tokens from an
authorization server. Here the server only verifies them (it issues nothing):

- the token is a JWT signed by a key in the issuer's JWKS (RS256/ES256/EdDSA), fetched from
  `jwks_url` or from the issuer's RFC 8414 / OpenID metadata;
- `iss` equals the issuer, `aud` names this server (`audience`, by default `resource_url`),
  `exp` has not passed, and the `scope` claim holds every required scope;
- the SDK serves the RFC 9728 protected-resource metadata at
  `/.well-known/oauth-protected-resource/<path>` and answers 401 with a `WWW-Authenticate` header
  pointing there.

Streaming sessions then belong to the token's principal (issuer, subject, client), so one user's
session id is useless to another also where no `Mcp-Session-Id` exists (the stateless protocol).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

__all__ = ["OAuthOptions", "JwtTokenVerifier", "principal"]

_log = logging.getLogger(__name__)
_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]  # asymmetric only: no shared-secret HS*
_METADATA_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")
_FETCH_TIMEOUT_S = 10.0  # one metadata or JWKS request


@dataclass(frozen=True)
class OAuthOptions:
    """Where tokens come from and what they must say."""

    issuer_url: str  # the authorization server; tokens' `iss` must equal it
    resource_url: str  # this server's public MCP URL (e.g. https://gpu.example.org/mcp): the resource identifier
    audience: str | None = None  # the `aud` tokens must carry; None: resource_url
    jwks_url: str | None = None  # the issuer's signing keys; None: found in the issuer's metadata
    required_scopes: tuple[str, ...] = ()  # scopes every token must hold (403 otherwise)
    leeway_s: float = 30.0  # clock skew tolerated on exp/nbf/iat, seconds

    def __post_init__(self) -> None:
        for name in ("issuer_url", "resource_url"):
            value = getattr(self, name)
            if not value.startswith(("https://", "http://")):
                raise ValueError(f"{name} must be an http(s) URL, got {value!r}")
        if self.jwks_url is not None and not self.jwks_url.startswith(("https://", "http://")):
            raise ValueError(f"jwks_url must be an http(s) URL, got {self.jwks_url!r}")

    def server_kwargs(self) -> dict[str, Any]:
        """`token_verifier` and `auth` for `MCPServer(...)` (through `create_server(auth=...)`)."""
        from mcp.server.auth.settings import AuthSettings

        settings = AuthSettings(
            issuer_url=self.issuer_url,  # type: ignore[arg-type]
            resource_server_url=self.resource_url,  # type: ignore[arg-type]
            required_scopes=list(self.required_scopes) or None,
            validate_token_resource=False,  # the verifier checks `aud` itself
        )
        return {"auth": settings, "token_verifier": JwtTokenVerifier(self)}


class JwtTokenVerifier:
    """Verifies bearer JWTs against the issuer's JWKS (the SDK's `TokenVerifier` protocol)."""

    def __init__(self, options: OAuthOptions):
        self.options = options
        self._jwks: Any = None  # jwt.PyJWKClient, made on first use (it caches keys and refetches unknown kids)

    async def verify_token(self, token: str) -> Any:
        """The token's `AccessToken`, or None when it is not valid here (the SDK then answers 401)."""
        return await anyio.to_thread.run_sync(self._verify, token)

    def _verify(self, token: str) -> Any:
        import jwt
        from mcp.server.auth.provider import AccessToken

        o = self.options
        try:
            key = self._keys().get_signing_key_from_jwt(token).key
            claims = jwt.decode(
                token,
                key,
                algorithms=_ALGORITHMS,
                audience=o.audience or o.resource_url,
                issuer=o.issuer_url,
                leeway=o.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, OSError, ValueError) as e:
            _log.info("bearer token refused: %s", e)
            return None
        scope = claims.get("scope", "")
        scopes = scope.split() if isinstance(scope, str) else [str(s) for s in scope]
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or claims.get("sub") or ""),
            scopes=scopes,
            expires_at=int(claims["exp"]),
            resource=o.audience or o.resource_url,
            subject=claims.get("sub"),
            claims={"iss": claims["iss"]},
        )

    def _keys(self) -> Any:
        if self._jwks is None:
            import jwt

            self._jwks = jwt.PyJWKClient(self.options.jwks_url or _discover_jwks_url(self.options.issuer_url), timeout=_FETCH_TIMEOUT_S)
        return self._jwks


def _discover_jwks_url(issuer_url: str) -> str:
    """`jwks_uri` from the issuer's RFC 8414 (or OpenID Connect) metadata."""
    base = issuer_url.rstrip("/")
    failures = []
    for path in _METADATA_PATHS:
        try:
            with urllib.request.urlopen(base + path, timeout=_FETCH_TIMEOUT_S) as response:
                found = json.load(response).get("jwks_uri")
            if found:
                return str(found)
            failures.append(f"{base + path}: no jwks_uri")
        except (OSError, ValueError) as e:
            failures.append(f"{base + path}: {e}")
    raise OSError(f"cannot find the issuer's signing keys ({'; '.join(failures)}); pass --oauth-jwks-url")


def principal() -> str | None:
    """Who the current request's OAuth token stands for, or None without one.

    Issuer, subject and client together: a subject is unique only per issuer, and one user's
    different clients are different callers.
    """
    from mcp.server.auth.middleware.auth_context import get_access_token
    from mcp.server.auth.provider import principal_components

    token = get_access_token()
    if token is None:
        return None
    client_id, issuer, subject = principal_components(token)
    return f"oauth:{issuer}|{subject}|{client_id}"
