"""A refused credential, with a description that is safe to put in a WWW-Authenticate header."""

from __future__ import annotations

import re

# RFC 6750 error_description: printable ASCII without '"' and '\\', so it can go in a header as is.
_UNSAFE_DESCRIPTION = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


def _header_safe(text: str) -> str:
    return _UNSAFE_DESCRIPTION.sub("?", text.replace('"', "'").replace("\\", "/"))


def shown(value: object, limit: int = 100) -> str:
    """A value from a token, cut short enough to quote in a message (then quoted with !r)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


class AuthError(Exception):
    """A refused credential. `description` is safe to send to the client and says what to do."""

    def __init__(self, description: str, *, error: str = "invalid_token", status: int = 401) -> None:
        """Keep the OAuth error code, the HTTP status and a header-safe description."""
        self.description = _header_safe(description)
        self.error = error
        self.status = status
        super().__init__(self.description)
