"""The attack corpus: forged or unusable bearer tokens a Better Auth resource server must refuse.

Each builder takes the signing keys and the user the token claims to act for (its `sub`, the
victim), and is paired with a fragment of the refusal's description, which names the flaw. Apart
from that flaw every token is valid for a verifier that trusts `ORIGIN` and `OAUTH_ISSUER` as
issuers, `RESOURCE` and `ORIGIN` as audiences, and the published `ed`, `es` and `rs` keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.utils import base64url_encode

from tests.jwks_server import ORIGIN, RESOURCE, SigningKey, access_token_claims, jwt_plugin_claims, make_key


@dataclass(frozen=True)
class Keys:
    ed: SigningKey
    es: SigningKey
    rs: SigningKey
    rogue: SigningKey  # an Ed25519 key that claims `ed`'s kid but is not published

    @property
    def published(self) -> list[SigningKey]:
        return [self.ed, self.es, self.rs]


def make_keys() -> Keys:
    ed = make_key("EdDSA")
    rogue = make_key("EdDSA", kid=ed.kid)
    return Keys(ed=ed, es=make_key("ES256"), rs=make_key("RS256"), rogue=rogue)


def _segment(data: dict[str, Any]) -> str:
    return base64url_encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def _unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return f"{_segment(header)}.{_segment(payload)}.{base64url_encode(signature).decode()}"


def _hs256_with_public_key(keys: Keys, user: str) -> str:
    secret = keys.ed.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signing_input = f"{_segment({'alg': 'HS256', 'kid': keys.ed.kid})}.{_segment(jwt_plugin_claims(user))}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64url_encode(mac).decode()}"


def _spliced(keys: Keys, user: str) -> str:
    """The victim's payload between the header and signature of a genuine token of another user."""
    header, _, signature = keys.ed.sign(jwt_plugin_claims("M" * 32)).split(".")
    victim_payload = keys.ed.sign(jwt_plugin_claims(user)).split(".")[1]
    return f"{header}.{victim_payload}.{signature}"


Forge = Callable[[Keys, str], str]

NOW = int(time.time())
ATTACKS: dict[str, tuple[Forge, str]] = {
    "alg none": (
        lambda k, u: _unsigned({"alg": "none", "kid": k.ed.kid}, jwt_plugin_claims(u)),
        "algorithm 'none' is not accepted",
    ),
    "alg none with a signature": (
        lambda k, u: _unsigned({"alg": "none", "typ": "JWT"}, jwt_plugin_claims(u), b"x" * 64),
        "algorithm 'none' is not accepted",
    ),
    "HS256 signed with the public key": (_hs256_with_public_key, "algorithm 'HS256' is not accepted"),
    "wrong key, same kid": (lambda k, u: k.rogue.sign(jwt_plugin_claims(u)), "signature is invalid"),
    "ES256 header on the Ed25519 kid": (
        lambda k, u: k.es.sign(jwt_plugin_claims(u), kid=k.ed.kid),
        "does not match the algorithm of key",
    ),
    "expired": (
        lambda k, u: k.ed.sign(jwt_plugin_claims(u, iat=NOW - 3600, exp=NOW - 1800)),
        "token expired",
    ),
    "nbf in the future": (lambda k, u: k.ed.sign(jwt_plugin_claims(u, nbf=NOW + 600)), "not valid yet"),
    "iat in the future": (
        lambda k, u: k.ed.sign(jwt_plugin_claims(u, iat=NOW + 600, exp=NOW + 1500)),
        "not valid yet",
    ),
    "wrong issuer": (
        lambda k, u: k.ed.sign(jwt_plugin_claims(u, iss="https://evil.example.com")),
        "issuer 'https://evil.example.com' is not accepted",
    ),
    "issuer with trailing slash": (
        lambda k, u: k.ed.sign(jwt_plugin_claims(u, iss=ORIGIN + "/")),
        "is not accepted; expected",
    ),
    "wrong audience": (
        lambda k, u: k.ed.sign(jwt_plugin_claims(u, aud="https://other.example.com")),
        f"audience 'https://other.example.com' is not accepted; request a token for {RESOURCE}",
    ),
    "ID token (aud = client id)": (
        lambda k, u: k.ed.sign(access_token_claims(u, aud="claude-desktop", scope=None), typ="JWT"),
        "audience 'claude-desktop' is not accepted",
    ),
    "missing aud": (lambda k, u: k.ed.sign(jwt_plugin_claims(u, aud=None)), "no 'aud' claim"),
    "missing sub": (lambda k, u: k.ed.sign(jwt_plugin_claims(u, sub=None)), "no 'sub' claim"),
    "empty sub": (lambda k, u: k.ed.sign(jwt_plugin_claims(u, sub="")), "'sub' claim is empty"),
    "blank sub": (lambda k, u: k.ed.sign(jwt_plugin_claims(u, sub="   ")), "'sub' claim is empty"),
    "numeric sub": (lambda k, u: k.ed.sign(jwt_plugin_claims(u, sub=42)), "'sub' claim is not a string"),
    "missing exp": (lambda k, u: k.ed.sign(jwt_plugin_claims(u, exp=None)), "no 'exp' claim"),
    "unknown kid": (
        lambda k, u: k.rogue.sign(jwt_plugin_claims(u), kid="invented-kid"),
        "key id 'invented-kid' is not in the auth server's key set",
    ),
    "tampered payload": (_spliced, "signature is invalid"),
    "oversized": (
        lambda k, u: k.ed.sign(jwt_plugin_claims(u, padding="x" * 9000)),
        "larger than 8192 bytes",
    ),
    "opaque OAuth token": (lambda k, u: "q0VmVh5tQ2rN8xYbZc3kLp9aWd7eFg4H", "not a JWT"),
    "bearer() plugin session token": (
        lambda k, u: f"{u}.Zm9vYmFyYmF6cXV4+quux/abc=",
        "not a JWT",
    ),
    "bearer() token, url-safe signature": (lambda k, u: f"{u}.Zm9vYmFyYmF6cXV4", "not a JWT"),
    "header that is not JSON": (lambda k, u: "bm90IGpzb24.e30.c2ln", "header is not a JSON object"),
    "header that is a JSON list": (
        lambda k, u: f"{base64url_encode(b'[]').decode()}.e30.c2ln",
        "header is not",
    ),
    "JWE (five parts)": (lambda k, u: "a.b.c.d.e", "not a JWT"),
    "typ of something else": (
        lambda k, u: k.ed.sign(jwt_plugin_claims(u), typ="logout+jwt"),
        "token type 'logout+jwt' is not an access token",
    ),
    "scope claim that is not a string": (
        lambda k, u: k.ed.sign(access_token_claims(u, scope=["todo:read"]), typ="at+jwt"),
        "'scope' claim is not a space-separated string",
    ),
    "DPoP-bound token sent as bearer": (
        lambda k, u: k.ed.sign(
            access_token_claims(u, cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
        ),
        "bound to a proof-of-possession key",
    ),
    "crit header": (
        lambda k, u: jwt.encode(
            jwt_plugin_claims(u),
            k.ed.private,
            algorithm="EdDSA",
            headers={"kid": k.ed.kid, "crit": ["b64"]},
        ),
        "critical header",
    ),
    "empty": (lambda k, u: "   ", "the bearer token is empty"),
}
