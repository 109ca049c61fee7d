"""Token verification against a real JWKS endpoint on a loopback port, with Better Auth-shaped tokens."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import jwt
import pytest

from tests.forged_tokens import ATTACKS, Keys
from tests.jwks_server import (
    OAUTH_ISSUER,
    ORIGIN,
    RESOURCE,
    JWKSServer,
    SigningKey,
    access_token_claims,
    jwt_plugin_claims,
    make_key,
)
from todo_mcp.auth.errors import AuthError
from todo_mcp.auth.jwks import JWKSCache
from todo_mcp.auth.verifier import TokenVerifier
from todo_mcp.config import load_settings
from todo_mcp.errors import ConfigError
from todo_mcp.identity import ALL_SCOPES, READ, WRITE, Principal

pytestmark = pytest.mark.anyio

USER = "Vn3ZpdEC6Kc7tFPUArbPLdWPyXlqVXST"
ALGORITHMS = ("EdDSA", "ES256", "RS256")


@asynccontextmanager
async def verifier_for(
    server: JWKSServer,
    *,
    cooldown: float = 30.0,
    retry_cooldown: float = 1.0,
    max_age: float = 3600.0,
    fetch_timeout: float = 5.0,
    **options: Any,
) -> AsyncIterator[TokenVerifier]:
    cache = JWKSCache(
        server.url,
        refresh_cooldown=cooldown,
        retry_cooldown=retry_cooldown,
        max_age=max_age,
        timeout=fetch_timeout,
    )
    verifier = TokenVerifier(
        jwks=cache,
        issuers=[ORIGIN, OAUTH_ISSUER],
        audiences=[RESOURCE, ORIGIN],
        algorithms=ALGORITHMS,
        **options,
    )
    try:
        yield verifier
    finally:
        await verifier.aclose()


@pytest.fixture
async def verifier(jwks: JWKSServer) -> AsyncIterator[TokenVerifier]:
    async with verifier_for(jwks) as v:
        yield v


@pytest.mark.parametrize("case", list(ATTACKS), ids=list(ATTACKS))
async def test_attack_corpus_is_refused(case: str, keys: Keys, verifier: TokenVerifier) -> None:
    make_token, expected = ATTACKS[case]
    token = make_token(keys, USER)

    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)

    error = caught.value
    assert expected in error.description
    assert (error.error, error.status) == ("invalid_token", 401)
    assert '"' not in error.description
    assert "\\" not in error.description
    assert keys.ed.public_jwk["x"] not in error.description


async def test_oversized_token_is_refused_before_any_key_fetch(keys: Keys, jwks: JWKSServer) -> None:
    async with verifier_for(jwks, max_token_bytes=1024) as verifier:
        with pytest.raises(AuthError, match="larger than 1024 bytes"):
            await verifier.verify(keys.ed.sign(jwt_plugin_claims(padding="x" * 1000)))
    assert jwks.requests == 0


async def test_opaque_token_guidance_says_how_to_get_a_jwt(verifier: TokenVerifier) -> None:
    with pytest.raises(AuthError) as caught:
        await verifier.verify("q0VmVh5tQ2rN8xYbZc3kLp9aWd7eFg4H")
    description = caught.value.description
    assert f"'resource' parameter set to {RESOURCE}" in description
    assert "GET /api/auth/token" in description


async def test_jwt_plugin_token_is_accepted_with_default_scopes(keys: Keys, verifier: TokenVerifier) -> None:
    token = keys.ed.sign(jwt_plugin_claims())
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": keys.ed.kid}

    principal = await verifier.verify(token)

    assert principal == Principal(user_id=USER, scopes=ALL_SCOPES)


@pytest.mark.parametrize("which", ["ed", "es", "rs"])
async def test_access_token_gets_only_the_todo_scopes_it_names(
    which: str, keys: Keys, verifier: TokenVerifier
) -> None:
    key: SigningKey = getattr(keys, which)
    token = key.sign(access_token_claims(scope="openid todo:read"), typ="at+jwt")

    principal = await verifier.verify(token)

    # The OAuth client the token was issued to is kept, for the ledger.
    assert principal == Principal(user_id=USER, scopes=frozenset({READ}), client="claude-desktop")


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("todo:write offline_access", {WRITE}),
        ("todo:read todo:write", {READ, WRITE}),
        ("openid profile", set()),
        ("", set()),
        ("todo:admin todo:*", set()),
    ],
)
async def test_a_scope_claim_replaces_the_defaults(
    scope: str, expected: set[str], keys: Keys, verifier: TokenVerifier
) -> None:
    token = keys.ed.sign(access_token_claims(scope=scope), typ="at+jwt")
    assert (await verifier.verify(token)).scopes == expected


async def test_default_scopes_are_configurable(keys: Keys, jwks: JWKSServer) -> None:
    async with verifier_for(jwks, default_scopes=[READ]) as verifier:
        principal = await verifier.verify(keys.ed.sign(jwt_plugin_claims()))
    assert principal.scopes == {READ}


async def test_token_within_leeway_is_accepted(keys: Keys, verifier: TokenVerifier) -> None:
    now = int(time.time())
    token = keys.ed.sign(jwt_plugin_claims(iat=now + 20, nbf=now + 20, exp=now - 20))
    assert (await verifier.verify(token)).user_id == USER


async def test_leeway_is_the_configured_one(keys: Keys, jwks: JWKSServer) -> None:
    now = int(time.time())
    token = keys.ed.sign(jwt_plugin_claims(exp=now - 20))
    async with verifier_for(jwks, leeway=0) as verifier:
        with pytest.raises(AuthError, match="token expired"):
            await verifier.verify(token)


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "application/at+jwt", "AT+JWT"])
async def test_accepted_typ_values(typ: str, keys: Keys, verifier: TokenVerifier) -> None:
    token = keys.ed.sign(access_token_claims(), typ=typ)
    assert (await verifier.verify(token)).user_id == USER


async def test_an_access_token_names_its_user_and_only_its_todo_scopes(
    keys: Keys, verifier: TokenVerifier
) -> None:
    token = keys.es.sign(access_token_claims(scope="openid todo:read todo:write"), typ="at+jwt")
    principal = await verifier.verify(token)
    assert principal.user_id == USER
    assert principal.scopes == {READ, WRITE}


async def test_a_jwt_plugin_token_has_every_scope(keys: Keys, verifier: TokenVerifier) -> None:
    principal = await verifier.verify(keys.ed.sign(jwt_plugin_claims()))
    assert principal.user_id == USER
    assert principal.scopes == ALL_SCOPES


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [["HS256"], ["EdDSA", "none"], ["none"], ["HS512"], []])
async def test_symmetric_none_or_no_algorithms_are_refused_in_configuration(
    algorithms: list[str], jwks: JWKSServer
) -> None:
    cache = JWKSCache(jwks.url)
    try:
        with pytest.raises(ConfigError, match="TODO_MCP_AUTH_ALGORITHMS"):
            TokenVerifier(jwks=cache, issuers=[ORIGIN], audiences=[ORIGIN], algorithms=algorithms)
    finally:
        await cache.aclose()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"issuers": []}, "TODO_MCP_AUTH_ISSUER"),
        ({"audiences": []}, "TODO_MCP_PUBLIC_URL"),
        ({"default_scopes": ["todo:read", "admin"]}, "unknown scope"),
    ],
)
async def test_incomplete_configuration_is_refused(
    options: dict[str, Any], expected: str, jwks: JWKSServer
) -> None:
    arguments: dict[str, Any] = {"issuers": [ORIGIN], "audiences": [ORIGIN], "algorithms": ["EdDSA"]}
    arguments.update(options)
    cache = JWKSCache(jwks.url)
    try:
        with pytest.raises(ConfigError, match=expected):
            TokenVerifier(jwks=cache, **arguments)
    finally:
        await cache.aclose()


async def test_from_settings_accepts_both_better_auth_token_kinds(keys: Keys, jwks: JWKSServer) -> None:
    settings = load_settings(
        auth_jwks_url=jwks.url,
        auth_issuer=[ORIGIN, OAUTH_ISSUER],
        auth_audience=[ORIGIN],
        public_url="http://127.0.0.1:8000",
        auth_algorithms=["EdDSA", "ES256"],
        auth_default_scopes=[READ],
    )
    verifier = TokenVerifier.from_settings(settings)
    try:
        jwt_token = keys.ed.sign(jwt_plugin_claims())
        assert await verifier.verify(jwt_token) == Principal(USER, frozenset({READ}))
        # Clients may name the server by its /mcp endpoint (RESOURCE) or by the bare public URL.
        for aud in (RESOURCE, "http://127.0.0.1:8000", "http://127.0.0.1:8000/"):
            access = keys.es.sign(access_token_claims(aud=aud, scope="todo:write"), typ="at+jwt")
            assert await verifier.verify(access) == Principal(
                USER, frozenset({WRITE}), client="claude-desktop"
            )
        with pytest.raises(AuthError, match="algorithm 'RS256' is not accepted"):
            await verifier.verify(keys.rs.sign(jwt_plugin_claims()))
    finally:
        await verifier.aclose()


async def test_from_settings_derives_better_auth_issuers_from_the_jwks_url(
    keys: Keys, jwks: JWKSServer
) -> None:
    settings = load_settings(auth_jwks_url=jwks.url, public_url="http://127.0.0.1:8000/mcp")
    verifier = TokenVerifier.from_settings(settings)
    host = jwks.url.removesuffix("/api/auth/jwks")
    try:
        for iss in (host, host + "/api/auth"):
            token = keys.ed.sign(access_token_claims(iss=iss, aud=RESOURCE), typ="at+jwt")
            assert (await verifier.verify(token)).user_id == USER
        with pytest.raises(AuthError, match="issuer"):
            await verifier.verify(keys.ed.sign(access_token_claims(aud=RESOURCE), typ="at+jwt"))
    finally:
        await verifier.aclose()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"public_url": "http://127.0.0.1:8000"}, "TODO_MCP_AUTH_JWKS_URL"),
        ({"auth_jwks_url": "http://127.0.0.1:9/api/auth/jwks"}, "TODO_MCP_PUBLIC_URL"),
        (
            {
                "auth_jwks_url": "http://127.0.0.1:9/api/auth/jwks",
                "public_url": "http://127.0.0.1:8000",
                "auth_algorithms": ["HS256"],
            },
            "not allowed",
        ),
        (
            {"auth_jwks_url": "file:///etc/jwks.json", "public_url": "http://127.0.0.1:8000"},
            "must be an http",
        ),
    ],
)
def test_from_settings_refuses_incomplete_settings(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        TokenVerifier.from_settings(load_settings(**overrides))


async def test_from_settings_warns_about_a_plain_http_jwks_url_off_loopback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    common = {"public_url": "https://todo.example.com/mcp"}
    with caplog.at_level(logging.WARNING, logger="todo_mcp.auth"):
        for url in ("http://127.0.0.1:4100/api/auth/jwks", "https://app.example.com/api/auth/jwks"):
            await TokenVerifier.from_settings(load_settings(auth_jwks_url=url, **common)).aclose()
        assert caplog.records == []
        await TokenVerifier.from_settings(
            load_settings(auth_jwks_url="http://auth.internal/api/auth/jwks", **common)
        ).aclose()
    assert [r.getMessage() for r in caplog.records] == [
        "TODO_MCP_AUTH_JWKS_URL http://auth.internal/api/auth/jwks is plain http: whoever can alter that "
        "traffic can sign tokens; use https outside a trusted network"
    ]


def test_auth_error_description_is_safe_for_a_www_authenticate_header() -> None:
    error = AuthError('bad "value"\r\nX-Injected: 1 \\ done', error="insufficient_scope", status=403)
    assert error.description == "bad 'value'??X-Injected: 1 / done"
    assert (error.error, error.status, str(error)) == ("insufficient_scope", 403, error.description)


# --- the JWKS cache ------------------------------------------------------------------------------


async def test_keys_are_fetched_once_for_many_verifications(
    keys: Keys, jwks: JWKSServer, verifier: TokenVerifier
) -> None:
    for key in (keys.ed, keys.es, keys.rs) * 5:
        await verifier.verify(key.sign(jwt_plugin_claims()))
    assert jwks.requests == 1


async def test_concurrent_first_requests_share_one_fetch(keys: Keys, jwks: JWKSServer) -> None:
    token = keys.ed.sign(jwt_plugin_claims())
    principals: list[Principal] = []

    async def verify_one(verifier: TokenVerifier) -> None:
        principals.append(await verifier.verify(token))

    # cooldown 0: only coalescing (not the cooldown) can keep this to one fetch.
    async with verifier_for(jwks, cooldown=0) as verifier, anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(verify_one, verifier)

    assert len(principals) == 20
    assert jwks.requests == 1


async def test_a_flood_of_unknown_kids_is_bounded_by_the_cooldown(
    keys: Keys, jwks: JWKSServer, verifier: TokenVerifier
) -> None:
    await verifier.verify(keys.ed.sign(jwt_plugin_claims()))
    for n in range(50):
        with pytest.raises(AuthError, match="not in the auth server's key set"):
            await verifier.verify(keys.rogue.sign(jwt_plugin_claims(), kid=f"invented-{n}"))
    assert jwks.requests == 1


async def test_a_concurrent_flood_of_unknown_kids_shares_one_refetch(keys: Keys, jwks: JWKSServer) -> None:
    refused: list[str] = []

    async def attack(verifier: TokenVerifier, n: int) -> None:
        try:
            await verifier.verify(keys.rogue.sign(jwt_plugin_claims(), kid=f"invented-{n}"))
        except AuthError as error:
            refused.append(error.description)

    async with verifier_for(jwks, cooldown=0) as verifier:
        await verifier.verify(keys.ed.sign(jwt_plugin_claims()))
        async with anyio.create_task_group() as tg:
            for n in range(30):
                tg.start_soon(attack, verifier, n)

    assert len(refused) == 30
    assert jwks.requests == 2


async def test_a_rotated_in_key_works_without_restart(keys: Keys, jwks: JWKSServer) -> None:
    new_key = make_key("EdDSA")
    async with verifier_for(jwks, cooldown=0) as verifier:
        await verifier.verify(keys.ed.sign(jwt_plugin_claims()))
        with pytest.raises(AuthError, match="not in the auth server's key set"):
            await verifier.verify(new_key.sign(jwt_plugin_claims()))

        jwks.publish(new_key)

        assert (await verifier.verify(new_key.sign(jwt_plugin_claims()))).user_id == USER
        assert (await verifier.verify(keys.ed.sign(jwt_plugin_claims()))).user_id == USER
    assert jwks.requests == 3


async def test_a_withdrawn_key_stops_working_once_the_cache_is_old(keys: Keys, jwks: JWKSServer) -> None:
    async with verifier_for(jwks, cooldown=0, retry_cooldown=0, max_age=0) as verifier:
        assert (await verifier.verify(keys.es.sign(jwt_plugin_claims()))).user_id == USER
        jwks.withdraw(keys.es)
        with pytest.raises(AuthError, match="not in the auth server's key set"):
            await verifier.verify(keys.es.sign(jwt_plugin_claims()))
        assert (await verifier.verify(keys.ed.sign(jwt_plugin_claims()))).user_id == USER


async def test_known_keys_keep_working_while_the_jwks_endpoint_is_down(keys: Keys, jwks: JWKSServer) -> None:
    token = keys.ed.sign(jwt_plugin_claims())
    # max_age 0 and cooldowns 0: every verification tries to refetch, so each outage is exercised.
    async with verifier_for(jwks, cooldown=0, retry_cooldown=0, max_age=0) as verifier:
        await verifier.verify(token)

        jwks.status = 500
        assert (await verifier.verify(token)).user_id == USER
        # A key it cannot look up now is not called invalid: the client keeps its token and retries.
        with pytest.raises(AuthError, match="cannot be checked now") as unknown:
            await verifier.verify(keys.rogue.sign(jwt_plugin_claims(), kid="invented"))
        assert (unknown.value.status, unknown.value.error) == (503, "temporarily_unavailable")

        jwks.status, jwks.body = 200, b"<html>maintenance</html>"
        assert (await verifier.verify(token)).user_id == USER

        jwks.body = json.dumps({"keys": []}).encode()
        assert (await verifier.verify(token)).user_id == USER

        fetched = jwks.requests
        assert fetched == 5
        jwks.stop()  # connection refused from now on
        assert (await verifier.verify(token)).user_id == USER
        assert (await verifier.verify(keys.es.sign(jwt_plugin_claims()))).user_id == USER
    assert jwks.requests == fetched


async def test_no_key_was_ever_fetched_means_try_again_not_invalid(keys: Keys, jwks: JWKSServer) -> None:
    jwks.status = 503
    async with verifier_for(jwks) as verifier:
        with pytest.raises(
            AuthError, match=re.escape(f"signing keys could not be fetched from {jwks.url},")
        ) as raised:
            await verifier.verify(keys.ed.sign(jwt_plugin_claims()))
    assert (raised.value.status, raised.value.error) == (503, "temporarily_unavailable")


async def test_keys_work_again_as_soon_as_the_auth_server_is_back(keys: Keys, jwks: JWKSServer) -> None:
    """The long cooldown paces refetches after a success; after a failure the next try comes soon."""
    jwks.status = 500
    async with verifier_for(jwks, cooldown=30, retry_cooldown=0) as verifier:
        with pytest.raises(AuthError, match="cannot be checked now"):
            await verifier.verify(keys.ed.sign(jwt_plugin_claims()))
        jwks.status = 200
        assert (await verifier.verify(keys.ed.sign(jwt_plugin_claims()))).user_id == USER


async def test_a_hung_jwks_endpoint_times_out(keys: Keys, jwks: JWKSServer) -> None:
    jwks.hold = threading.Event()  # released only when the server stops
    async with verifier_for(jwks, fetch_timeout=0.3) as verifier:
        with pytest.raises(AuthError, match="could not be fetched") as raised:
            await verifier.verify(keys.ed.sign(jwt_plugin_claims()))
    assert raised.value.status == 503


async def test_fetching_keys_does_not_block_the_event_loop(keys: Keys, jwks: JWKSServer) -> None:
    hold = jwks.hold = threading.Event()
    principals: list[Principal] = []

    async def verify_one(verifier: TokenVerifier) -> None:
        principals.append(await verifier.verify(keys.ed.sign(jwt_plugin_claims())))

    async with verifier_for(jwks) as verifier, anyio.create_task_group() as tg:
        tg.start_soon(verify_one, verifier)
        assert await anyio.to_thread.run_sync(jwks.request_seen.wait, 10)
        # This task ran while the fetch was in flight: the loop was free.
        assert principals == []
        hold.set()

    assert [p.user_id for p in principals] == [USER]


async def test_a_token_without_kid_uses_the_only_key_of_its_algorithm(keys: Keys, jwks: JWKSServer) -> None:
    async with verifier_for(jwks) as verifier:
        assert (await verifier.verify(keys.ed.sign(jwt_plugin_claims(), kid=None))).user_id == USER
        assert (await verifier.verify(keys.rs.sign(jwt_plugin_claims(), kid=None))).user_id == USER

    jwks.publish(make_key("EdDSA"))
    async with verifier_for(jwks) as verifier:
        with pytest.raises(AuthError, match="several EdDSA keys"):
            await verifier.verify(keys.ed.sign(jwt_plugin_claims(), kid=None))
        assert (await verifier.verify(keys.es.sign(jwt_plugin_claims(), kid=None))).user_id == USER
