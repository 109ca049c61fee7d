"""Bearer-token verification for the HTTP transports: Better Auth JWTs checked against its JWKS.

Two kinds of token are accepted, both signed with the keys Better Auth publishes at
`/api/auth/jwks`: the `jwt()` plugin's tokens (no `typ`, iss = aud = the app origin, no scope)
and OAuth access tokens from the MCP / OAuth-provider plugins (`typ: at+jwt`, aud = this
server's URL, space-separated `scope`). Anything else is refused with an `AuthError` whose
description tells the caller what to do.
"""

from __future__ import annotations

import binascii
import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import jwt
from jwt.exceptions import InvalidSubjectError
from jwt.utils import base64url_decode
from mcp.server.auth.provider import AccessToken

from todo_mcp.config import Settings, is_loopback_host
from todo_mcp.errors import ConfigError
from todo_mcp.identity import ALL_SCOPES, Principal

logger = logging.getLogger(__name__)

# Asymmetric algorithms only: an HMAC algorithm would let anyone holding the public key sign.
SUPPORTED_ALGORITHMS = frozenset(
    {"EdDSA", "ES256", "ES256K", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
_ACCEPTED_TYP = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
_JWS_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_MAX_JWKS_BYTES = 1_000_000
# RFC 6750 error_description: printable ASCII without '"' and '\', so it can go in a header as is.
_UNSAFE_DESCRIPTION = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


def _header_safe(text: str) -> str:
    return _UNSAFE_DESCRIPTION.sub("?", text.replace('"', "'").replace("\\", "/"))


def _shown(value: object, limit: int = 100) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


class AuthError(Exception):
    """A refused credential. `description` is safe to send to the client and says what to do."""

    def __init__(self, description: str, *, error: str = "invalid_token", status: int = 401) -> None:
        self.description = _header_safe(description)
        self.error = error
        self.status = status
        super().__init__(self.description)


def _usable_jwk(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    if not isinstance(entry.get("kty"), str) or entry["kty"] == "oct":
        return False
    if "kid" in entry and not isinstance(entry["kid"], str):
        return False
    return bool(entry.get("use", "sig") == "sig")


class JWKSCache:
    """The auth server's public keys, fetched asynchronously and kept in memory for the process.

    An unknown `kid` triggers a refetch, at most once per `refresh_cooldown` seconds, and
    concurrent refetches share one request. Keys older than `max_age` are refetched on use so a
    key removed from the set stops working; when a refetch fails the keys already known stay
    in use.
    """

    def __init__(
        self,
        url: str,
        *,
        refresh_cooldown: float = 30.0,
        timeout: float = 5.0,
        max_age: float = 3600.0,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self._cooldown = refresh_cooldown
        self._max_age = max_age
        self._timeout = timeout
        self._owns_client = http_client is None
        self._client = http_client
        self._keys: list[dict[str, Any]] = []
        self._built: dict[tuple[int, str], jwt.PyJWK] = {}
        self._lock = anyio.Lock()
        self._generation = 0
        self._last_attempt: float | None = None
        self._fetched_at: float | None = None

    async def get_key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key that verifies a token with this `kid` and (already allowed) `alg`."""
        key = self._find(kid, alg)
        # A stale but known key is not worth waiting for a refetch already in flight.
        if key is None or (self._stale() and not self._lock.locked()):
            await self._refresh()
            key = self._find(kid, alg)
        if key is not None:
            return key
        if self._fetched_at is None:
            raise AuthError(
                f"the auth server's signing keys could not be fetched from {self.url}; try again later"
            )
        if kid is None:
            raise AuthError(
                f"token has no 'kid' header and the auth server publishes no single {alg} key; "
                "use a token issued by the configured auth server"
            )
        raise AuthError(
            f"token key id {_shown(kid)!r} is not in the auth server's key set ({self.url}); "
            "get a new token from the configured auth server"
        )

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _stale(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self._max_age

    def _find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if kid is not None:
            for index, entry in enumerate(self._keys):
                if entry.get("kid") == kid:
                    key = self._build(index, alg)
                    if key is None:
                        raise AuthError(
                            f"token algorithm {alg} does not match the algorithm of key {_shown(kid)!r}"
                        )
                    return key
            return None
        candidates = [key for index in range(len(self._keys)) if (key := self._build(index, alg)) is not None]
        if len(candidates) > 1:
            raise AuthError(
                f"token has no 'kid' header and the auth server publishes several {alg} keys; "
                "use a token that names its key"
            )
        return candidates[0] if candidates else None

    def _build(self, index: int, alg: str) -> jwt.PyJWK | None:
        cached = self._built.get((index, alg))
        if cached is not None:
            return cached
        entry = self._keys[index]
        if entry.get("alg", alg) != alg:
            return None
        try:
            key = jwt.PyJWK(entry, algorithm=alg)
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            return None
        self._built[(index, alg)] = key
        return key

    async def _refresh(self) -> None:
        generation = self._generation
        async with self._lock:
            if self._generation != generation:
                return  # a fetch finished while this caller waited: use its result
            now = time.monotonic()
            if self._last_attempt is not None and now - self._last_attempt < self._cooldown:
                return
            self._last_attempt = now
            try:
                self._install(await self._fetch())
            except (httpx2.HTTPError, ValueError) as error:
                logger.warning("could not fetch the JWKS from %s: %s", self.url, error)
            finally:
                self._generation += 1

    async def _fetch(self) -> list[dict[str, Any]]:
        if self._client is None:
            self._client = httpx2.AsyncClient(timeout=self._timeout, follow_redirects=False)
        response = await self._client.get(self.url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > _MAX_JWKS_BYTES:
            raise ValueError(f"JWKS response is larger than {_MAX_JWKS_BYTES} bytes")
        document = response.json()
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError('JWKS response is not a JSON object with a "keys" list')
        keys = [entry for entry in document["keys"] if _usable_jwk(entry)]
        if not keys:
            raise ValueError("JWKS response holds no usable signing key")
        return keys

    def _install(self, keys: list[dict[str, Any]]) -> None:
        self._keys = keys
        self._built = {}
        self._fetched_at = time.monotonic()
        logger.info("loaded %d signing key(s) from %s", len(keys), self.url)


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    claims: dict[str, Any]
    resource: str | None


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


def _public_url_audiences(public_url: str) -> list[str]:
    """The spellings an MCP client may use as `resource` for this server."""
    base = public_url.strip().rstrip("/")
    spellings = [base, base + "/"]
    if urlsplit(base).path in ("", "/"):
        spellings.append(base + "/mcp")
    return spellings


def oauth_issuer(jwks_url: str) -> str:
    """Better Auth's OAuth issuer for a JWKS at <origin><basePath>/jwks: origin + basePath."""
    parts = urlsplit(jwks_url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/').removesuffix('/jwks')}"


def _default_issuers(jwks_url: str) -> list[str]:
    """Better Auth's two issuers: the origin (jwt() plugin tokens) and the OAuth issuer."""
    parts = urlsplit(jwks_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return list(dict.fromkeys([origin, oauth_issuer(jwks_url)]))


class TokenVerifier:
    """Verifies Better Auth bearer tokens; also the SDK's `TokenVerifier` protocol (`verify_token`)."""

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
            audiences = _public_url_audiences(settings.public_url) + audiences
        issuers = settings.auth_issuer or _default_issuers(settings.auth_jwks_url)
        return cls(
            jwks=JWKSCache(settings.auth_jwks_url),
            issuers=issuers,
            audiences=audiences,
            algorithms=settings.auth_algorithms,
            leeway=settings.auth_leeway,
            default_scopes=settings.auth_default_scopes,
        )

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; otherwise AuthError with a description for the client."""
        return (await self._verify(token)).principal

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            verified = await self._verify(token)
        except AuthError as error:
            logger.debug("bearer token refused: %s", error.description)
            return None
        claims = verified.claims
        client_id = claims.get("client_id") or claims.get("azp") or claims["iss"]
        return AccessToken(
            token=token,
            client_id=str(client_id),
            scopes=sorted(verified.principal.scopes),
            expires_at=int(claims["exp"]),
            resource=verified.resource,
            subject=verified.principal.user_id,
            claims=claims,
        )

    async def aclose(self) -> None:
        await self._jwks.aclose()

    def _not_a_jwt(self) -> AuthError:
        return AuthError(
            "the bearer token is not a JWT (an opaque OAuth token or a Better Auth session token cannot "
            "be checked here); send a signed JWT access token: request it with the RFC 8707 'resource' "
            f"parameter set to {self._audiences[0]}, or get one from GET /api/auth/token "
            "(Better Auth jwt() plugin)"
        )

    async def _verify(self, token: str) -> _Verified:
        # Anything but ASCII fails the JWS pattern below, so characters stand in for bytes here.
        if len(token) > self._max_token_bytes:
            raise AuthError(f"the bearer token is larger than {self._max_token_bytes} bytes")
        token = token.strip()
        if not token:
            raise AuthError("the bearer token is empty; send 'Authorization: Bearer <JWT>'")
        if not _JWS_COMPACT.fullmatch(token):
            raise self._not_a_jwt()
        header = self._header(token)
        alg = header["alg"]
        key = await self._jwks.get_key(header.get("kid"), alg)
        claims = self._decode(token, key)
        return self._principal(claims)

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
                f"token algorithm {_shown(alg)!r} is not accepted; expected {', '.join(self._algorithms)}"
            )
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP):
            raise AuthError(
                f"token type {_shown(typ)!r} is not an access token; send a JWT access token "
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
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired; get a new token") from None
        except jwt.ImmatureSignatureError:
            raise AuthError(
                "token is not valid yet (nbf or iat is in the future); check the clocks or get a new token"
            ) from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthError(f"token has no {error.claim!r} claim") from None
        except jwt.InvalidIssuerError:
            raise AuthError(self._issuer_problem(token)) from None
        except jwt.InvalidAudienceError:
            raise AuthError(self._audience_problem(token)) from None
        except jwt.InvalidSignatureError:
            raise AuthError(
                "token signature is invalid; get a new token from the configured auth server"
            ) from None
        except InvalidSubjectError:
            raise AuthError("token 'sub' claim is not a string; it must name the user") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(
                f"token algorithm is not accepted; expected {', '.join(self._algorithms)}"
            ) from None
        except jwt.PyJWTError:
            raise AuthError("token is malformed (its claims could not be read)") from None
        return claims

    def _unverified_claim(self, token: str, name: str) -> object:
        # Only called after the signature verified, to name the offending value in the message.
        try:
            return jwt.decode(token, options={"verify_signature": False}).get(name)
        except jwt.PyJWTError:
            return None

    def _issuer_problem(self, token: str) -> str:
        iss = self._unverified_claim(token, "iss")
        return f"token issuer {_shown(iss)!r} is not accepted; expected {', '.join(self._issuers)}"

    def _audience_problem(self, token: str) -> str:
        aud = self._unverified_claim(token, "aud")
        return (
            f"token audience {_shown(aud)!r} is not accepted; request a token for {self._audiences[0]} "
            "(RFC 8707 'resource' parameter)"
        )

    def _principal(self, claims: dict[str, Any]) -> _Verified:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise AuthError("token 'sub' claim is empty; it must name the user")
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
        aud = claims["aud"]
        token_audiences = [aud] if isinstance(aud, str) else list(aud)
        resource = next((a for a in self._audiences if a in token_audiences), None)
        return _Verified(Principal(user_id=sub, scopes=scopes), claims, resource)
