"""Auth: Better Auth bearer tokens verified against the auth server's published keys."""
