"""API tokens, stored only as sha256 hashes."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from common.clock import utcnow
from common.schemas import Role, TokenCreated, TokenInfo
from control_plane.store.db import Database, Rows, write_transaction
from control_plane.store.environments import POLL_STATE_COLUMNS, PollState, poll_state_from
from control_plane.store.errors import StateConflict
from control_plane.store.rows import dict_rows, from_time, to_time


def hash_token(secret: str) -> str:
    """Hash a token; tokens carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(role: Role) -> str:
    """Make a random token whose prefix tells its role, to help people and secret scanners."""
    return f"tether_{role.value}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, role and scope."""

    token_id: str
    role: Role
    environment: str | None = None
    agent_id: str | None = None

    @property
    def actor(self) -> str:
        """Name the caller in audit records."""
        return f"{self.role.value}:{self.agent_id or self.token_id}"


# Tokens that were not revoked (expired ones included: listing shows their expiry).
LIVE_TOKENS = (
    "SELECT id, role, environment, agent_id, expires_at, uses_left, description, created_at "
    "FROM tokens WHERE revoked = 0"
)


TOKEN_COLUMNS = (
    "t.id, t.hash, t.role, t.environment, t.agent_id, t.expires_at, t.uses_left, t.revoked"
)
TOKEN_WIDTH = TOKEN_COLUMNS.count(",") + 1


def _principal(row: Sequence[Any] | None, digest: str, now: datetime | None) -> Principal | None:
    """Check a row of TOKEN_COLUMNS found by `digest`: the principal, if the token is valid now."""
    if row is None:
        # Compare anyway so a miss costs what a hit costs.
        hmac.compare_digest(digest, "0" * 64)
        return None
    token_id, stored, role, environment, agent_id, expires_at, uses_left, revoked = row[
        :TOKEN_WIDTH
    ]
    if not hmac.compare_digest(stored, digest) or revoked:
        return None
    if expires_at is not None and from_time(expires_at) <= (now or utcnow()):
        return None
    if uses_left is not None and uses_left <= 0:
        return None
    return Principal(token_id, Role(role), environment, agent_id)


class TokenStore:
    """Create, look up and consume tokens."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        role: Role,
        *,
        environment: str | None = None,
        agent_id: str | None = None,
        expires_in: int | None = None,
        max_uses: int | None = None,
        description: str = "",
    ) -> TokenCreated:
        """Create a token and return it with its secret, which is never stored."""
        with write_transaction(self.db):
            return self.insert(
                role,
                environment=environment,
                agent_id=agent_id,
                expires_in=expires_in,
                max_uses=max_uses,
                description=description,
            )

    def insert(
        self,
        role: Role,
        *,
        environment: str | None = None,
        agent_id: str | None = None,
        expires_in: int | None = None,
        max_uses: int | None = None,
        description: str = "",
    ) -> TokenCreated:
        """Insert a token inside the caller's transaction."""
        secret = new_secret(role)
        now = utcnow()
        info = TokenCreated(
            id=f"tok_{secrets.token_hex(8)}",
            role=role,
            environment=environment,
            agent_id=agent_id,
            expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
            uses_left=max_uses,
            description=description,
            created_at=now,
            token=secret,
        )
        self.db.execute(
            """INSERT INTO tokens (id, hash, role, environment, agent_id, expires_at, uses_left,
               description, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                info.id,
                hash_token(secret),
                role.value,
                environment,
                agent_id,
                to_time(info.expires_at),
                max_uses,
                description,
                to_time(now),
            ],
        )
        return info

    def authenticate(self, secret: str, now: datetime | None = None) -> Principal | None:
        """Return the principal for a token, or None if it is unknown, expired or revoked."""
        digest = hash_token(secret)
        row = self.db.execute(f"SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.hash = ?", [digest])
        return _principal(row.fetchone(), digest, now)

    def authenticate_polling(
        self, secret: str, now: datetime | None = None
    ) -> tuple[Principal, PollState | None] | None:
        """Authenticate a token and read its environment's poll state, in one statement.

        The conditional poll's whole read: one round trip to the database where authenticate()
        and EnvironmentStore.poll_state() take two. The state is None when the token names no
        environment, or one that does not exist.
        """
        digest = hash_token(secret)
        row = self.db.execute(
            f"SELECT {TOKEN_COLUMNS}, {POLL_STATE_COLUMNS} "
            "FROM tokens t LEFT JOIN environments e ON e.name = t.environment WHERE t.hash = ?",
            [digest],
        ).fetchone()
        principal = _principal(row, digest, now)
        if principal is None:
            return None
        state = None if row[TOKEN_WIDTH] is None else poll_state_from(row[TOKEN_WIDTH:])
        return principal, state

    def consume_use(self, token_id: str) -> None:
        """Spend one use of a limited token, inside the caller's transaction."""
        cursor = self.db.execute(
            "UPDATE tokens SET uses_left = uses_left - 1 "
            "WHERE id = ? AND (uses_left IS NULL OR uses_left > 0)",
            [token_id],
        )
        if cursor.rowcount != 1:
            raise StateConflict("the enrollment token has no uses left")

    def list(self) -> list[TokenInfo]:
        return self._infos(self.db.execute(f"{LIVE_TOKENS} ORDER BY created_at"))

    @staticmethod
    def _infos(cursor: Rows) -> builtins.list[TokenInfo]:
        return [
            TokenInfo(
                **{
                    **row,
                    "expires_at": from_time(row["expires_at"]),
                    "created_at": from_time(row["created_at"]),
                }
            )
            for row in dict_rows(cursor)
        ]

    def revoke(self, token_id: str) -> TokenInfo | None:
        """Revoke a live token at once; None when there is no such live token.

        The last admin token that still works is refused: revoking it would lock every
        operator out, with no way back but editing the database.
        """
        with write_transaction(self.db):
            found = self._live(token_id)
            if found is None:
                return None
            if found.role is Role.admin and self._working_admins(besides=token_id) == 0:
                raise StateConflict(
                    f"{token_id} is the last working admin token: create another admin token "
                    "before revoking this one"
                )
            self.db.execute("UPDATE tokens SET revoked = 1 WHERE id = ?", [token_id])
            return found

    def _live(self, token_id: str) -> TokenInfo | None:
        """Return one token that is not revoked, by id (one row, not the whole listing)."""
        cursor = self.db.execute(f"{LIVE_TOKENS} AND id = ?", [token_id])
        return next(iter(self._infos(cursor)), None)

    def _working_admins(self, besides: str) -> int:
        """Count the admin tokens other than `besides` that authenticate now."""
        return self.db.execute(
            "SELECT COUNT(*) FROM tokens WHERE role = 'admin' AND revoked = 0 AND id != ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            [besides, to_time(utcnow())],
        ).fetchone()[0]

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM tokens").fetchone()[0]
