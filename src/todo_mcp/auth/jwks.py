"""The auth server's public keys (JWKS), fetched asynchronously and cached for the process."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import httpx2
import jwt

from todo_mcp.auth.errors import AuthError, shown

logger = logging.getLogger(__name__)

_MAX_JWKS_BYTES = 1_000_000


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
    in use. After a failed fetch the next may come `retry_cooldown` seconds later, so that the
    keys work again as soon as the auth server is back; until then a token whose key is not
    known cannot be judged, and is answered 503 rather than called invalid.
    """

    def __init__(
        self,
        url: str,
        *,
        refresh_cooldown: float = 30.0,
        retry_cooldown: float = 1.0,
        timeout: float = 5.0,
        max_age: float = 3600.0,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self._cooldown = refresh_cooldown
        self._retry_cooldown = retry_cooldown
        self._last_failed = False
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
        self._key_set_mark = object()

    async def get_key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key that verifies a token with this `kid` and (already allowed) `alg`."""
        key = self._find(kid, alg)
        # A stale but known key is not worth waiting for a refetch already in flight.
        if key is None or (self._stale() and not self._lock.locked()):
            await self._refresh()
            key = self._find(kid, alg)
        if key is not None:
            return key
        if self._fetched_at is None or self._last_failed:
            raise AuthError(
                f"the auth server's signing keys could not be fetched from {self.url}, so this token cannot "
                "be checked now; keep it and retry in a few seconds",
                error="temporarily_unavailable",
                status=503,
            )
        if kid is None:
            raise AuthError(
                f"token has no 'kid' header and the auth server publishes no single {alg} key; "
                "use a token issued by the configured auth server"
            )
        raise AuthError(
            f"token key id {shown(kid)!r} is not in the auth server's key set ({self.url}); "
            "get a new token from the configured auth server"
        )

    def current_key_set(self) -> object | None:
        """A mark of the key set in use, or None when the set is due for a refetch.

        The mark is a new object whenever a fetch brings keys that differ from the ones before, so
        a conclusion drawn under one mark (a token verified with one of its keys) can be dropped
        as soon as the mark changes. None means the next `get_key` refetches first.
        """
        return None if self._stale() else self._key_set_mark

    async def aclose(self) -> None:
        """Close the HTTP client, if this cache made it."""
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
                            f"token algorithm {alg} does not match the algorithm of key {shown(kid)!r}"
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
            cooldown = self._retry_cooldown if self._last_failed else self._cooldown
            if self._last_attempt is not None and now - self._last_attempt < cooldown:
                return
            self._last_attempt = now
            try:
                self._install(await self._fetch())
                self._last_failed = False
            except (httpx2.HTTPError, ValueError) as error:
                self._last_failed = True
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
        if keys != self._keys:
            self._key_set_mark = object()
        self._keys = keys
        self._built = {}
        self._fetched_at = time.monotonic()
        logger.info("loaded %d signing key(s) from %s", len(keys), self.url)
