"""The cache of verified tokens: what it saves, and everything that makes it verify again.

The verifier runs against a real JWKS endpoint; the cache reads an injected clock, and signature
checks are counted where PyJWT makes them (the algorithms' `verify`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from tests.forged_tokens import Keys
from tests.jwks_server import (
    OAUTH_ISSUER,
    ORIGIN,
    RESOURCE,
    JWKSServer,
    access_token_claims,
    jwt_plugin_claims,
)
from todo_mcp.auth.errors import AuthError
from todo_mcp.auth.jwks import JWKSCache
from todo_mcp.auth.token_cache import DEFAULT_MAX_AGE, DEFAULT_MAX_ENTRIES, TokenCache, token_key
from todo_mcp.auth.verifier import TokenVerifier
from todo_mcp.config import load_settings
from todo_mcp.errors import ConfigError
from todo_mcp.identity import ALL_SCOPES, READ, Principal

pytestmark = pytest.mark.anyio

USER = "Vn3ZpdEC6Kc7tFPUArbPLdWPyXlqVXST"
SSE_RESOURCE = RESOURCE.removesuffix("/mcp") + "/sse"


class Clock:
    """A wall clock that moves only when a test says so (starts at the real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class SignatureChecks:
    """How many signatures PyJWT has checked since the test began."""

    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> SignatureChecks:
    counter = SignatureChecks()
    for algorithm in (OKPAlgorithm, ECAlgorithm):
        original = algorithm.verify

        def counted(self: Any, msg: bytes, key: Any, sig: bytes, _original: Any = original) -> bool:
            counter.count += 1
            return bool(_original(self, msg, key, sig))

        monkeypatch.setattr(algorithm, "verify", counted)
    return counter


@pytest.fixture
def clock() -> Clock:
    return Clock()


@asynccontextmanager
async def verifier_for(
    jwks: JWKSCache | JWKSServer,
    cache: TokenCache,
    *,
    audiences: tuple[str, ...] = (RESOURCE, ORIGIN),
) -> AsyncIterator[TokenVerifier]:
    keys = jwks if isinstance(jwks, JWKSCache) else JWKSCache(jwks.url, refresh_cooldown=0)
    verifier = TokenVerifier(
        jwks=keys,
        issuers=[ORIGIN, OAUTH_ISSUER],
        audiences=audiences,
        algorithms=["EdDSA", "ES256"],
        cache=cache,
    )
    try:
        yield verifier
    finally:
        await verifier.aclose()


async def test_a_repeated_token_skips_the_signature_check(
    keys: Keys, jwks: JWKSServer, clock: Clock, checks: SignatureChecks
) -> None:
    token = keys.ed.sign(jwt_plugin_claims())
    async with verifier_for(jwks, TokenCache(clock=clock)) as verifier:
        first = await verifier.verify(token)
        assert checks.count == 1
        for _ in range(5):
            assert await verifier.verify(token) == first
        assert await verifier.verify(f"  {token} ") == first  # the gate strips it the same way
    assert first == Principal(USER, ALL_SCOPES)
    assert checks.count == 1


async def test_an_entry_is_never_used_at_or_after_exp(
    keys: Keys, jwks: JWKSServer, clock: Clock, checks: SignatureChecks
) -> None:
    exp = int(clock.now) + 60
    token = keys.ed.sign(jwt_plugin_claims(exp=exp))
    async with verifier_for(jwks, TokenCache(clock=clock)) as verifier:
        await verifier.verify(token)
        clock.now = exp - 0.001
        await verifier.verify(token)
        assert checks.count == 1
        # From exp on the verifier decides each time (here it still accepts: its clock is the real one).
        clock.now = exp
        await verifier.verify(token)
        await verifier.verify(token)
        assert checks.count == 3


async def test_a_token_in_the_leeway_after_exp_is_verified_every_time(
    keys: Keys, jwks: JWKSServer, checks: SignatureChecks
) -> None:
    token = keys.ed.sign(jwt_plugin_claims(exp=int(time.time()) - 5))
    cache = TokenCache()
    async with verifier_for(jwks, cache) as verifier:
        for _ in range(3):
            assert (await verifier.verify(token)).user_id == USER
    assert checks.count == 3
    assert len(cache) == 0


async def test_an_entry_is_used_for_at_most_max_age(
    keys: Keys, jwks: JWKSServer, clock: Clock, checks: SignatureChecks
) -> None:
    token = keys.ed.sign(jwt_plugin_claims(exp=int(clock.now) + 3600))
    start = clock.now
    async with verifier_for(jwks, TokenCache(max_age=300, clock=clock)) as verifier:
        await verifier.verify(token)
        clock.now = start + 299.9
        await verifier.verify(token)
        assert checks.count == 1
        clock.now = start + 300
        await verifier.verify(token)  # verified again, and remembered from now
        clock.now = start + 599.9
        await verifier.verify(token)
        assert checks.count == 2


async def test_the_cache_is_bounded_and_forgets_the_least_recently_used(
    keys: Keys, jwks: JWKSServer, checks: SignatureChecks
) -> None:
    alice, bob, carol = (keys.ed.sign(jwt_plugin_claims(user)) for user in ("alice", "bob", "carol"))
    cache = TokenCache(max_entries=2)
    async with verifier_for(jwks, cache) as verifier:
        await verifier.verify(alice)
        await verifier.verify(bob)
        await verifier.verify(alice)  # alice is now the most recently used
        assert checks.count == 2
        assert (await verifier.verify(carol)).user_id == "carol"  # bob is forgotten
        assert len(cache) == 2
        await verifier.verify(alice)
        assert checks.count == 3
        assert (await verifier.verify(bob)).user_id == "bob"
        assert checks.count == 4
        assert len(cache) == 2


async def test_a_token_accepted_for_one_resource_is_not_answered_from_the_cache_for_another(
    keys: Keys, jwks: JWKSServer, checks: SignatureChecks
) -> None:
    """Verifiers checking different audiences may share a key set and a cache: each decides for itself."""
    shared_keys, shared_cache = JWKSCache(jwks.url), TokenCache()
    for_mcp = keys.ed.sign(access_token_claims(aud=RESOURCE, scope="todo:read"), typ="at+jwt")
    async with (
        verifier_for(shared_keys, shared_cache, audiences=(RESOURCE,)) as mcp,
        verifier_for(shared_keys, shared_cache, audiences=(SSE_RESOURCE,)) as sse,
    ):
        assert await mcp.verify(for_mcp) == Principal(USER, frozenset({READ}), client="claude-desktop")
        assert await mcp.verify(for_mcp) == Principal(USER, frozenset({READ}), client="claude-desktop")
        assert checks.count == 1
        for _ in range(2):
            with pytest.raises(AuthError, match="token audience"):
                await sse.verify(for_mcp)
        assert checks.count == 3
        assert len(shared_cache) == 1


async def test_a_different_token_with_the_same_claims_is_verified(
    keys: Keys, jwks: JWKSServer, checks: SignatureChecks
) -> None:
    claims = jwt_plugin_claims()
    genuine = keys.ed.sign(claims)
    # The same header and payload as the genuine token (rogue claims ed's kid), another signature.
    forged = keys.rogue.sign(claims)
    assert forged.rsplit(".", 1)[0] == genuine.rsplit(".", 1)[0]
    async with verifier_for(jwks, TokenCache()) as verifier:
        principal = await verifier.verify(genuine)
        with pytest.raises(AuthError, match="signature is invalid"):
            await verifier.verify(forged)
        assert checks.count == 2
        # Another valid signature over the same claims (another published key): verified, then remembered.
        other = keys.es.sign(claims)
        assert await verifier.verify(other) == principal
        assert await verifier.verify(other) == principal
        assert checks.count == 3


async def test_refusals_are_not_remembered_and_do_not_touch_a_valid_token(
    keys: Keys, jwks: JWKSServer, checks: SignatureChecks
) -> None:
    refused = keys.ed.sign(jwt_plugin_claims(aud="https://elsewhere.example"))
    valid = keys.ed.sign(jwt_plugin_claims())
    cache = TokenCache()
    async with verifier_for(jwks, cache) as verifier:
        await verifier.verify(valid)
        for _ in range(3):
            with pytest.raises(AuthError, match="token audience"):
                await verifier.verify(refused)
        assert checks.count == 4
        assert len(cache) == 1
        assert (await verifier.verify(valid)).user_id == USER
        assert checks.count == 4


async def test_a_key_withdrawn_at_the_next_refetch_stops_its_cached_tokens_at_once(
    keys: Keys, jwks: JWKSServer, checks: SignatureChecks
) -> None:
    es_token, ed_token = keys.es.sign(jwt_plugin_claims()), keys.ed.sign(jwt_plugin_claims())
    async with verifier_for(jwks, TokenCache()) as verifier:
        await verifier.verify(es_token)
        await verifier.verify(ed_token)
        # A refetch (here for an unknown kid) that brings the same keys keeps what was verified.
        with pytest.raises(AuthError, match="not in the auth server's key set"):
            await verifier.verify(keys.rogue.sign(jwt_plugin_claims(), kid="unknown-1"))
        await verifier.verify(es_token)
        assert (checks.count, jwks.requests) == (2, 2)

        jwks.withdraw(keys.es)
        with pytest.raises(AuthError, match="not in the auth server's key set"):
            await verifier.verify(keys.rogue.sign(jwt_plugin_claims(), kid="unknown-2"))
        assert jwks.requests == 3
        with pytest.raises(AuthError, match="not in the auth server's key set"):
            await verifier.verify(es_token)
        # The other keys' tokens are verified once again under the new key set.
        assert (await verifier.verify(ed_token)).user_id == USER
        assert (await verifier.verify(ed_token)).user_id == USER
        assert checks.count == 3


async def test_nothing_is_answered_from_the_cache_while_the_keys_are_due_for_a_refetch(
    keys: Keys, jwks: JWKSServer, checks: SignatureChecks
) -> None:
    token = keys.ed.sign(jwt_plugin_claims())
    cache = TokenCache()
    async with verifier_for(JWKSCache(jwks.url, max_age=0, refresh_cooldown=0), cache) as verifier:
        for _ in range(3):
            await verifier.verify(token)
    assert checks.count == 3
    assert jwks.requests == 3


async def test_concurrent_requests_with_one_token_share_one_entry(
    keys: Keys, jwks: JWKSServer, checks: SignatureChecks
) -> None:
    token = keys.ed.sign(jwt_plugin_claims())
    principals: list[Principal] = []
    cache = TokenCache()

    async def verify_one(verifier: TokenVerifier) -> None:
        principals.append(await verifier.verify(token))

    async with verifier_for(jwks, cache) as verifier:
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(verify_one, verifier)
        # The first requests waited for the keys together and each verified; later ones hit the cache.
        verified = checks.count
        await verifier.verify(token)
    assert principals == [Principal(USER, ALL_SCOPES)] * 20
    assert len(cache) == 1
    assert 1 <= verified <= 20
    assert checks.count == verified


# --- the cache on its own -------------------------------------------------------------------------


def test_an_entry_is_not_used_before_nbf_allows_or_before_it_was_stored(clock: Clock) -> None:
    cache = TokenCache(clock=clock)
    mark = object()
    start = int(clock.now)
    key = token_key(b"checks", "token")
    clock.now = start + 10
    # nbf - leeway is still ahead of this clock: the entry waits for it, as the verifier would.
    cache.put(key, Principal(USER), {"exp": start + 600, "nbf": start + 45}, leeway=30, key_set=mark)
    clock.now = start + 14.9
    assert cache.get(key, mark) is None
    clock.now = start + 10
    cache.put(key, Principal(USER), {"exp": start + 600, "iat": start + 45}, leeway=30, key_set=mark)
    clock.now = start + 15
    assert cache.get(key, mark) == Principal(USER)
    clock.now = start + 5  # the wall clock stepped back before the entry was stored
    assert cache.get(key, mark) is None
    assert len(cache) == 0


def test_a_token_without_a_usable_exp_is_not_remembered(clock: Clock) -> None:
    cache = TokenCache(clock=clock)
    mark = object()
    for claims in ({}, {"exp": None}, {"exp": "soon"}, {"exp": int(clock.now)}, {"exp": int(clock.now) - 1}):
        cache.put(token_key(b"", repr(claims)), Principal(USER), claims, leeway=30, key_set=mark)
    assert len(cache) == 0
    # PyJWT reads exp with int(), and so does the cache.
    cache.put(b"k", Principal(USER), {"exp": str(int(clock.now) + 60)}, leeway=30, key_set=mark)
    assert cache.get(b"k", mark) == Principal(USER)


def test_an_entry_is_tied_to_its_key_set(clock: Clock) -> None:
    cache = TokenCache(clock=clock)
    before, after = object(), object()
    cache.put(b"k", Principal(USER), {"exp": int(clock.now) + 60}, leeway=0, key_set=before)
    assert cache.get(b"k", None) is None  # keys due for a refetch: not used, but kept
    assert cache.get(b"k", before) == Principal(USER)
    assert cache.get(b"k", after) is None
    assert cache.get(b"k", before) is None  # dropped once the key set changed


def test_keys_depend_on_the_token_and_on_the_checks() -> None:
    assert token_key(b"a", "t") == token_key(b"a", "t")
    assert len({token_key(b"a", "t"), token_key(b"b", "t"), token_key(b"a", "u")}) == 3
    assert len(token_key(b"a", "t" * 4000)) == 32  # a digest, whatever the token's size


@pytest.mark.parametrize("options", [{"max_entries": 0}, {"max_age": 0}])
def test_a_cache_of_size_or_age_zero_keeps_nothing(options: dict[str, Any], clock: Clock) -> None:
    cache = TokenCache(clock=clock, **options)
    cache.put(b"k", Principal(USER), {"exp": int(clock.now) + 60}, leeway=0, key_set=object())
    assert not cache.enabled
    assert len(cache) == 0


# --- settings ------------------------------------------------------------------------------------


def test_settings_defaults_and_limits() -> None:
    settings = load_settings()
    assert (settings.auth_token_cache_size, settings.auth_token_cache_max_age) == (
        DEFAULT_MAX_ENTRIES,
        DEFAULT_MAX_AGE,
    )
    assert load_settings(TODO_MCP_AUTH_TOKEN_CACHE_SIZE="10").auth_token_cache_size == 10
    for name, value in (
        ("TODO_MCP_AUTH_TOKEN_CACHE_SIZE", "-1"),
        ("TODO_MCP_AUTH_TOKEN_CACHE_MAX_AGE", "7200"),
    ):
        with pytest.raises(ConfigError, match="invalid settings"):
            load_settings(**{name: value})


@pytest.mark.parametrize(("size", "expected_checks"), [("0", 3), ("1", 1)])
async def test_from_settings_uses_the_cache_settings(
    size: str, expected_checks: int, keys: Keys, jwks: JWKSServer, checks: SignatureChecks
) -> None:
    settings = load_settings(
        auth_jwks_url=jwks.url,
        auth_issuer=[ORIGIN],
        auth_audience=[ORIGIN],
        public_url="http://127.0.0.1:8000/mcp",
        TODO_MCP_AUTH_TOKEN_CACHE_SIZE=size,
    )
    verifier = TokenVerifier.from_settings(settings)
    token = keys.ed.sign(jwt_plugin_claims())
    try:
        for _ in range(3):
            assert (await verifier.verify(token)).user_id == USER
    finally:
        await verifier.aclose()
    assert checks.count == expected_checks
