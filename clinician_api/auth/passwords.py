"""Passwords: argon2id hashes (argon2-cffi), a length policy, and a bound on concurrent hashing.

Each hash takes ``memory_kib`` of memory; a flood of sign-ins would otherwise multiply that by the
thread pool's size, so at most ``concurrency`` hashes run at once per process. An unknown account
is verified against a dummy hash, so a wrong email costs the same time as a wrong password.
"""

from __future__ import annotations

import threading

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from clinician_api.errors import Invalid

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "Passwords", "check_policy"]

MIN_LENGTH = 12
MAX_LENGTH = 256


def check_policy(password: str, *, email: str) -> None:
    """NIST SP 800-63B style: long enough, not absurdly long, not the email; no composition rules."""
    if len(password) < MIN_LENGTH:
        raise Invalid(f"a password has at least {MIN_LENGTH} characters", field="password", code="weak_password")
    if len(password) > MAX_LENGTH:
        raise Invalid(f"a password has at most {MAX_LENGTH} characters", field="password", code="weak_password")
    if password.strip().lower() in {email.lower(), email.split("@")[0].lower()}:
        raise Invalid("a password must not be the email address", field="password", code="weak_password")


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, concurrency: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._slots = threading.BoundedSemaphore(concurrency)
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        with self._slots:
            return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored`` (None: no account or no password; still costs a hash)."""
        if len(password) > MAX_LENGTH:
            return False
        with self._slots:
            if stored is None:
                if self._dummy is None:
                    self._dummy = self._hasher.hash("vigil-dummy-password")
                target = self._dummy
            else:
                target = stored
            try:
                ok = self._hasher.verify(target, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
        return ok and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
