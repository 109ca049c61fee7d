"""A real JWKS endpoint on a loopback port, shaped like Better Auth's `/api/auth/jwks`, and signing keys.

The server runs in a thread; tests change what it serves (keys, status, a body that is not
JSON), count its requests, and can hold a response until they release it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

JWKS_PATH = "/api/auth/jwks"
ORIGIN = "http://127.0.0.1:4100"
RESOURCE = "http://127.0.0.1:8000/mcp"
OAUTH_ISSUER = ORIGIN + "/api/auth"

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class SigningKey:
    """A private key and the public JWK Better Auth would publish for it (no `use`)."""

    alg: str
    kid: str
    private: PrivateKey

    @property
    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "alg": self.alg, "kid": self.kid}

    def sign(self, payload: dict[str, Any], *, typ: str | None = None, kid: str | None = "self") -> str:
        """A compact JWS; `kid="self"` names this key, None leaves the header without kid."""
        headers: dict[str, Any] = {"typ": typ}
        chosen = self.kid if kid == "self" else kid
        if chosen is not None:
            headers["kid"] = chosen
        return jwt.encode(payload, self.private, algorithm=self.alg, headers=headers)


def make_key(alg: str = "EdDSA", kid: str | None = None) -> SigningKey:
    private: PrivateKey
    if alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(f"no test key for {alg}")
    return SigningKey(alg=alg, kid=kid or uuid.uuid4().hex, private=private)


def jwt_plugin_claims(user_id: str = "Vn3ZpdEC6Kc7tFPUArbPLdWPyXlqVXST", **changes: Any) -> dict[str, Any]:
    """The payload of a Better Auth jwt() token (GET /api/auth/token), as in notes/better-auth.md."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iat": now,
        "name": "alice",
        "email": "alice@example.com",
        "emailVerified": False,
        "createdAt": "2026-11-20T10:07:41.000Z",
        "updatedAt": "2026-11-20T10:07:41.000Z",
        "id": user_id,
        "sub": user_id,
        "exp": now + 15 * 60,
        "iss": ORIGIN,
        "aud": ORIGIN,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def access_token_claims(user_id: str = "Vn3ZpdEC6Kc7tFPUArbPLdWPyXlqVXST", **changes: Any) -> dict[str, Any]:
    """The payload of a Better Auth OAuth-provider access token requested with `resource`."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": OAUTH_ISSUER,
        "sub": user_id,
        "aud": [RESOURCE, OAUTH_ISSUER + "/oauth2/userinfo"],
        "azp": "claude-desktop",
        "client_id": "claude-desktop",
        "scope": "openid todo:read",
        "sid": "s" * 32,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


class JWKSServer:
    """State shared with the handler thread; guarded by a lock."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self._lock = threading.Lock()
        self._keys = list(keys)
        self.status = 200
        self.body: bytes | None = None
        self.extra_entries: list[dict[str, Any]] = []
        self.hold: threading.Event | None = None
        self.request_seen = threading.Event()
        self._requests = 0
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._http is not None
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}{JWKS_PATH}"

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    def publish(self, *keys: SigningKey) -> None:
        with self._lock:
            self._keys.extend(keys)

    def withdraw(self, key: SigningKey) -> None:
        with self._lock:
            self._keys = [k for k in self._keys if k.kid != key.kid]

    def _respond(self) -> tuple[int, bytes]:
        with self._lock:
            self._requests += 1
            status, body = self.status, self.body
            keys = [k.public_jwk for k in self._keys] + list(self.extra_entries)
            hold = self.hold
        self.request_seen.set()
        if hold is not None:
            hold.wait(timeout=10)
        if body is None:
            body = json.dumps({"keys": keys}).encode()
        return status, body

    def start(self) -> None:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != JWKS_PATH:
                    self.send_error(404)
                    return
                status, body = state._respond()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        # A short poll interval only makes shutdown() return quickly.
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering: later connections to the port are refused."""
        if self._http is None or self._thread is None:
            return
        if self.hold is not None:
            self.hold.set()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()
        self._thread = None


@contextmanager
def running_jwks(keys: list[SigningKey]) -> Iterator[JWKSServer]:
    server = JWKSServer(keys)
    server.start()
    try:
        yield server
    finally:
        server.stop()
