"""Identity: roles and permissions, passwords, TOTP, sign-in throttling, sessions and tokens."""
