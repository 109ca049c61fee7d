"""Tokens that passed verification, remembered for a short while so a repeated token skips the signature.

An entry is looked up by a SHA-256 digest of the token and of everything the verifier checked it
against (issuers, audiences, algorithms, leeway, default scopes, key set URL), never by the token
itself, and answers with the `Principal` the verification produced. It is used only:

- before the token's `exp`, with no leeway: from `exp` on, the verifier decides again (and applies
  its leeway itself), so the cache never accepts a token the verifier would refuse;
- from max(`nbf`, `iat`) - leeway on, as the verifier requires, even if the clock steps back;
- for at most `max_age` seconds after it was stored, so nothing outlives that bound;
- while the key set it was verified with is still the one in use: a refetch that brings
  different keys, or a key set due for a refetch, sends every token back to the verifier.

Only successes are stored; a refusal is never remembered, so one client's bad token cannot affect
another's. The cache holds at most `max_entries` entries and forgets the least recently used one
first. It is used from one event loop and never awaits, so it needs no lock.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from todo_mcp.identity import Principal

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_MAX_AGE = 300.0


def token_key(checks: bytes, token: str) -> bytes:
    """The cache key of `token` verified under `checks` (a digest of what the verifier checks)."""
    digest = hashlib.sha256(checks)
    digest.update(b"\x00")
    digest.update(token.encode())
    return digest.digest()


def _instant(claims: Mapping[str, Any], name: str) -> int | None:
    """A time claim read the way PyJWT reads it (int()), or None when absent or unreadable."""
    value = claims.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    since: float  # not used before this instant (the verifier's nbf/iat rule)
    until: float  # not used at or after this instant: min(exp, stored + max_age)
    key_set: object  # the key set the signature was checked with


class TokenCache:
    """A bounded, least-recently-used map from verified tokens to their principals."""

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep up to `max_entries` tokens for up to `max_age` seconds each; 0 for either turns it off.

        `clock` must be the clock the verifier checks `exp` with: PyJWT reads the wall clock.
        """
        if max_entries < 0 or max_age < 0:
            raise ValueError("max_entries and max_age must not be negative")
        self.max_entries = max_entries
        self.max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether anything is ever stored."""
        return self.max_entries > 0 and self.max_age > 0

    def __len__(self) -> int:
        """How many entries are held (some may be past use and not yet dropped)."""
        return len(self._entries)

    def get(self, key: bytes, key_set: object | None) -> Principal | None:
        """The principal stored under `key` if the entry may still be used with `key_set`, else None.

        Args:
            key: the token's `token_key`.
            key_set: the mark of the key set in use now (`JWKSCache.current_key_set`); None, when
                the keys are due for a refetch, finds nothing.
        """
        entry = self._entries.get(key)
        if entry is None or key_set is None:
            return None
        now = self._clock()
        if entry.key_set is not key_set or not entry.since <= now < entry.until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.principal

    def put(
        self, key: bytes, principal: Principal, claims: Mapping[str, Any], *, leeway: float, key_set: object
    ) -> None:
        """Remember a token the verifier has just accepted, unless it has no usable `exp`.

        Args:
            key: the token's `token_key`.
            principal: what the verification produced.
            claims: the verified claims, for `exp`, `nbf` and `iat`.
            leeway: the verifier's leeway, applied to `nbf` and `iat` as the verifier does.
            key_set: the mark of the key set the signature was checked with.
        """
        if not self.enabled:
            return
        now = self._clock()
        exp = _instant(claims, "exp")
        if exp is None or exp <= now:
            return
        starts = [value for name in ("nbf", "iat") if (value := _instant(claims, name)) is not None]
        since = max([now, *(start - leeway for start in starts)])
        until = min(float(exp), now + self.max_age)
        if since >= until:
            return
        self._entries[key] = _Entry(principal, since, until, key_set)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
