"""Console accounts: argon2 password hashes, lock-out after repeated failures, and a personal
API token per account (stored as its SHA-256: a token is 32 random bytes, so a fast hash is
enough, and a lookup by hash needs no scan)."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, func, insert, select, update

from services.review.db import accounts, login_failures
from services.review.queue import Actor
from services.review.settings import AccountConfig


class LockedOut(RuntimeError):
    """Too many failed logins for this account lately; the message says for how long."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Accounts in the service's database, seeded from settings at start-up."""

    def __init__(
        self,
        engine: Engine,
        *,
        lockout_failures: int,
        lockout_window_s: float,
        clock: Callable[[], float] = time.time,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.engine = engine
        self.lockout_failures = lockout_failures
        self.lockout_window_s = lockout_window_s
        self.clock = clock
        # argon2id with the library's (RFC 9106 low-memory) parameters; tests pass cheaper ones
        self.hasher = hasher or PasswordHasher()
        # verified against when the account does not exist, so both cases cost the same
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))

    def seed(self, configured: Sequence[AccountConfig]) -> None:
        """Create or update the configured accounts (a changed password or token replaces the
        stored hash; an unchanged one is left as it is)."""
        for account in configured:
            password = account.password.get_secret_value()
            token = account.token.get_secret_value() if account.token else None
            with self.engine.begin() as conn:
                row = conn.execute(
                    select(accounts).where(accounts.c.username == account.username)
                ).first()
                if row is None:
                    conn.execute(
                        insert(accounts).values(
                            username=account.username,
                            role=account.role,
                            password_hash=self.hasher.hash(password),
                            token_hash=token_hash(token) if token else None,
                        )
                    )
                    continue
                values: dict[str, str | None] = {"role": account.role}
                if not self._matches(row.password_hash, password):
                    values["password_hash"] = self.hasher.hash(password)
                if token:
                    values["token_hash"] = token_hash(token)
                conn.execute(
                    update(accounts).where(accounts.c.username == account.username).values(**values)
                )

    def _matches(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def _recent_failures(self, username: str, now: float) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        login_failures.c.username == username,
                        login_failures.c.failed_at > now - self.lockout_window_s,
                    )
                ).scalar_one()
            )

    def login(self, username: str, password: str) -> Actor | None:
        """The account if the password is right; None if not (the failure is counted);
        LockedOut after LOCKOUT_FAILURES failures within the window, right password or not."""
        now = self.clock()
        username = username.strip().lower()[:64]
        if self._recent_failures(username, now) >= self.lockout_failures:
            minutes = round(self.lockout_window_s / 60)
            raise LockedOut(
                f"too many failed logins: this account is locked for up to {minutes} minutes"
            )
        with self.engine.connect() as conn:
            row = conn.execute(select(accounts).where(accounts.c.username == username)).first()
        ok = self._matches(row.password_hash if row else self._decoy, password)
        with self.engine.begin() as conn:
            if row is not None and ok:
                conn.execute(delete(login_failures).where(login_failures.c.username == username))
                return Actor(row.username, row.role)
            conn.execute(insert(login_failures).values(username=username, failed_at=now))
        return None

    def by_token(self, token: str) -> Actor | None:
        """The account whose personal API token this is."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(accounts).where(accounts.c.token_hash == token_hash(token))
            ).first()
        return Actor(row.username, row.role) if row else None

    def by_name(self, username: str) -> Actor | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(accounts).where(accounts.c.username == username)).first()
        return Actor(row.username, row.role) if row else None

    def new_token(self, username: str) -> str:
        """Replace the account's personal token with a new random one; returns it (shown once)."""
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                update(accounts)
                .where(accounts.c.username == username)
                .values(token_hash=token_hash(token))
            )
        return token
