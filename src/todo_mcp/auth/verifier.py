"""Bearer-token verification for the HTTP transports: Better Auth JWTs checked against its JWKS.

Two kinds of token are accepted, both signed with the keys Better Auth publishes at
`/api/auth/jwks`: the `jwt()` plugin's tokens (no `typ`, iss = aud = the app origin, no scope)
and OAuth access tokens from the MCP / OAuth-provider plugins (`typ: at+jwt`, aud = this
server's URL, space-separated `scope`). Anything else is refused with an `AuthError` whose
description tells the caller what to do.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt.exceptions import InvalidSubjectError
from jwt.utils import base64url_decode

from todo_mcp.auth.better_auth import default_issuers
from todo_mcp.auth.errors import AuthError, shown
from todo_mcp.auth.jwks import JWKSCache
from todo_mcp.auth.resources import ProtectedResources
from todo_mcp.auth.token_cache import TokenCache, token_key
from todo_mcp.config import Settings, is_loopback_host
from todo_mcp.errors import ConfigError
from todo_mcp.identity import ALL_SCOPES, Principal

logger = logging.getLogger(__name__)

# Asymmetric algorithms only: an HMAC algorithm would let anyone holding the public key sign.
SUPPORTED_ALGORITHMS = frozenset(
    {"EdDSA", "ES256", "ES256K", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
_ACCEPTED_TYP = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
SUBJECT_MAX = 255  # the owner_id column
_JWS_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_DECODE_PROBLEMS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired; get a new token"),
    (
        jwt.ImmatureSignatureError,
        "token is not valid yet (nbf or iat is in the future); check the clocks or get a new token",
    ),
    (
        jwt.InvalidSignatureError,
        "token signature is invalid; get a new token from the configured auth server",
    ),
    (InvalidSubjectError, "token 'sub' claim is not a string; it must name the user"),
)


def _check_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(algorithms)
    if not chosen:
        raise ConfigError("TODO_MCP_AUTH_ALGORITHMS is empty; use EdDSA (Better Auth's default)")
    for alg in chosen:
        if alg not in SUPPORTED_ALGORITHMS:
            raise ConfigError(
                f"TODO_MCP_AUTH_ALGORITHMS: {alg!r} is not allowed; use asymmetric algorithms only "
                f"({', '.join(sorted(SUPPORTED_ALGORITHMS))})"
            )
    return chosen


class TokenVerifier:
    """Verifies Better Auth bearer tokens and names the principal they stand for."""

    def __init__(
        self,
        *,
        jwks: JWKSCache,
        issuers: Sequence[str],
        audiences: Sequence[str],
        algorithms: Sequence[str],
        leeway: int = 30,
        default_scopes: Sequence[str] = tuple(sorted(ALL_SCOPES)),
        max_token_bytes: int = 8192,
        cache: TokenCache | None = None,
    ) -> None:
        self._jwks = jwks
        self._issuers = tuple(issuers)
        self._audiences = tuple(dict.fromkeys(audiences))
        self._algorithms = _check_algorithms(algorithms)
        self._leeway = leeway
        self._max_token_bytes = max_token_bytes
        if not self._issuers:
            raise ConfigError("TODO_MCP_AUTH_ISSUER is empty; set it to the auth server's issuer")
        if not self._audiences:
            raise ConfigError(
                "no accepted token audience; set TODO_MCP_PUBLIC_URL and/or TODO_MCP_AUTH_AUDIENCE"
            )
        unknown = set(default_scopes) - ALL_SCOPES
        if unknown:
            raise ConfigError(
                f"TODO_MCP_AUTH_DEFAULT_SCOPES: unknown scope(s) {', '.join(sorted(unknown))}; "
                f"use {', '.join(sorted(ALL_SCOPES))}"
            )
        self._default_scopes = frozenset(default_scopes)
        self._cache = cache if cache is not None else TokenCache()
        self._checks = self._fingerprint()

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """Issuers default to Better Auth's two (origin, origin + basePath) derived from the JWKS URL."""
        if not settings.auth_jwks_url:
            raise ConfigError(
                "TODO_MCP_AUTH_JWKS_URL is required over HTTP, e.g. https://app.example.com/api/auth/jwks"
            )
        jwks_url = urlsplit(settings.auth_jwks_url)
        if jwks_url.scheme not in ("http", "https") or not jwks_url.hostname:
            raise ConfigError(
                f"TODO_MCP_AUTH_JWKS_URL must be an http(s) URL such as "
                f"https://app.example.com/api/auth/jwks, not {settings.auth_jwks_url!r}"
            )
        if jwks_url.scheme == "http" and not is_loopback_host(jwks_url.hostname):
            logger.warning(
                "TODO_MCP_AUTH_JWKS_URL %s is plain http: whoever can alter that traffic can sign tokens; "
                "use https outside a trusted network",
                settings.auth_jwks_url,
            )
        audiences = list(settings.auth_audience)
        if settings.public_url:
            audiences = ProtectedResources.from_public_url(settings.public_url).audiences() + audiences
        issuers = settings.auth_issuer or default_issuers(settings.auth_jwks_url)
        return cls(
            jwks=JWKSCache(settings.auth_jwks_url),
            issuers=issuers,
            audiences=audiences,
            algorithms=settings.auth_algorithms,
            leeway=settings.auth_leeway,
            default_scopes=settings.auth_default_scopes,
            cache=TokenCache(
                max_entries=settings.auth_token_cache_size, max_age=settings.auth_token_cache_max_age
            ),
        )

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; otherwise AuthError with a description for the client.

        A token verified a moment ago is answered from the token cache (see `token_cache`) without
        checking its signature again.
        """
        # Anything but ASCII fails the JWS pattern below, so characters stand in for bytes here.
        if len(token) > self._max_token_bytes:
            raise AuthError(f"the bearer token is larger than {self._max_token_bytes} bytes")
        token = token.strip()
        if not token:
            raise AuthError("the bearer token is empty; send 'Authorization: Bearer <JWT>'")
        cache_key = token_key(self._checks, token)
        known = self._cache.get(cache_key, self._jwks.current_key_set())
        if known is not None:
            return known
        if not _JWS_COMPACT.fullmatch(token):
            raise self._not_a_jwt()
        header = self._header(token)
        key = await self._jwks.get_key(header.get("kid"), header["alg"])
        claims = self._decode(token, key)
        principal = self._principal(claims)
        # Nothing was awaited since get_key returned: this is the key set the signature was checked with.
        key_set = self._jwks.current_key_set()
        if key_set is not None:
            self._cache.put(cache_key, principal, claims, leeway=self._leeway, key_set=key_set)
        return principal

    async def aclose(self) -> None:
        """Release the key cache's HTTP client."""
        await self._jwks.aclose()

    def _fingerprint(self) -> bytes:
        """A digest of everything a verification depends on besides the token and the key set.

        Part of every cache key, so a cache shared by verifiers that check differently never
        answers one with what another concluded.
        """
        checks = (
            self._jwks.url,
            self._issuers,
            self._audiences,
            self._algorithms,
            self._leeway,
            sorted(self._default_scopes),
            self._max_token_bytes,
        )
        return hashlib.sha256(repr(checks).encode()).digest()

    def _not_a_jwt(self) -> AuthError:
        return AuthError(
            "the bearer token is not a JWT (an opaque OAuth token or a Better Auth session token cannot "
            "be checked here); send a signed JWT access token: request it with the RFC 8707 'resource' "
            f"parameter set to {self._audiences[0]}, or get one from GET /api/auth/token "
            "(Better Auth jwt() plugin)"
        )

    def _header(self, token: str) -> dict[str, Any]:
        try:
            header = json.loads(base64url_decode(token.split(".", 1)[0]))
        except (ValueError, binascii.Error):
            header = None
        if not isinstance(header, dict):
            raise AuthError("token header is not a JSON object; send a JWT access token")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError(
                f"token algorithm {shown(alg)!r} is not accepted; expected {', '.join(self._algorithms)}"
            )
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP):
            raise AuthError(
                f"token type {shown(typ)!r} is not an access token; send a JWT access token "
                "(typ at+jwt or a Better Auth jwt() token)"
            )
        if "crit" in header:
            raise AuthError("token uses critical header extensions, which are not supported")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("token 'kid' header is not a string")
        return header

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=list(self._algorithms),
                audience=list(self._audiences),
                issuer=self._issuers,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise AuthError(self._decode_problem(token, error)) from None
        return claims

    def _decode_problem(self, token: str, error: jwt.PyJWTError) -> str:
        """What is wrong with a token PyJWT refused, and what to do about it."""
        if isinstance(error, jwt.MissingRequiredClaimError):
            return f"token has no {error.claim!r} claim"
        if isinstance(error, jwt.InvalidIssuerError):
            return self._issuer_problem(token)
        if isinstance(error, jwt.InvalidAudienceError):
            return self._audience_problem(token)
        if isinstance(error, jwt.InvalidAlgorithmError):
            return f"token algorithm is not accepted; expected {', '.join(self._algorithms)}"
        for kind, problem in _DECODE_PROBLEMS:
            if isinstance(error, kind):
                return problem
        return "token is malformed (its claims could not be read)"

    def _unverified_claim(self, token: str, name: str) -> object:
        # Only called after the signature verified, to name the offending value in the message.
        try:
            return jwt.decode(token, options={"verify_signature": False}).get(name)
        except jwt.PyJWTError:
            return None

    def _issuer_problem(self, token: str) -> str:
        iss = self._unverified_claim(token, "iss")
        return f"token issuer {shown(iss)!r} is not accepted; expected {', '.join(self._issuers)}"

    def _audience_problem(self, token: str) -> str:
        aud = self._unverified_claim(token, "aud")
        return (
            f"token audience {shown(aud)!r} is not accepted; request a token for {self._audiences[0]} "
            "(RFC 8707 'resource' parameter)"
        )

    def _principal(self, claims: dict[str, Any]) -> Principal:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise AuthError("token 'sub' claim is empty; it must name the user")
        if len(sub) > SUBJECT_MAX or not sub.isprintable():
            raise AuthError(
                "token 'sub' claim cannot name a user here: it must be printable text of at most "
                f"{SUBJECT_MAX} characters; use a token of the configured auth server"
            )
        if "cnf" in claims:
            # A sender-constrained (DPoP / mTLS) token replayed as a plain bearer token must not pass.
            raise AuthError(
                "token is bound to a proof-of-possession key ('cnf' claim, DPoP or mTLS), which this "
                "server does not check; request a token without DPoP"
            )
        scope = claims.get("scope")
        if scope is None:
            scopes = self._default_scopes
        elif isinstance(scope, str):
            scopes = frozenset(scope.split()) & ALL_SCOPES
        else:
            raise AuthError("token 'scope' claim is not a space-separated string")
        return Principal(user_id=sub, scopes=scopes, client=_client_of(claims))


def _client_of(claims: dict[str, Any]) -> str | None:
    """The OAuth client a token was issued to (client_id, else azp), for the ledger; None if unnamed."""
    for name in ("client_id", "azp"):
        value = claims.get(name)
        if isinstance(value, str) and value.strip() and value.isprintable():
            return value.strip()[:255]
    return None
