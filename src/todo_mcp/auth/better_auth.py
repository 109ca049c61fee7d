"""Better Auth's conventions: its issuers, derived from the URL of its key set."""

from __future__ import annotations

from urllib.parse import urlsplit


def oauth_issuer(jwks_url: str) -> str:
    """Better Auth's OAuth issuer for a JWKS at <origin><basePath>/jwks: origin + basePath."""
    parts = urlsplit(jwks_url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/').removesuffix('/jwks')}"


def default_issuers(jwks_url: str) -> list[str]:
    """Better Auth's two issuers: the origin (jwt() plugin tokens) and the OAuth issuer."""
    parts = urlsplit(jwks_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return list(dict.fromkeys([origin, oauth_issuer(jwks_url)]))
