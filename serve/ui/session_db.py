"""UI sessions in the database (``database.url`` set): every replica knows every session, so
a load balancer may send a reviewer's requests anywhere, and a restart logs nobody out.

The same contract as the in-memory :class:`serve.ui.sessions.SessionStore`: a 256-bit random
id (the cookie), the key's id, name and scopes (never the key), a CSRF token, an idle
timeout, a bound on how many are kept. The table holds the sha256 of the id, not the id: a
copy of the database does not hand out live cookies. The idle clock is wall time (replicas
share it); ``last_seen`` is written at most every :data:`TOUCH_S` seconds, not on every
request. Expired sessions are deleted when found and, in bulk, at each login.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

from sqlalchemy import (
    Column,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from serve.api.auth import Principal
from serve.ui.sessions import Session
from taxonomy.migrations import StoreSchema, ensure_schema

metadata = MetaData()
sessions_table = Table(
    "ui_sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False, index=True),
    Column("key_name", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created", Float, nullable=False),
    Column("last_seen", Float, nullable=False, index=True),
)
#: the store's schema: its history in taxonomy/migrations/versions/ui_sessions/
SCHEMA = StoreSchema("ui_sessions", metadata)

#: ``last_seen`` is refreshed in the database at most this often (an idle timeout of hours
#: does not need a write per page view)
TOUCH_S = 60.0


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class DatabaseSessionStore:
    def __init__(
        self, engine: Engine, idle_timeout_s: float = 8 * 3600.0, max_sessions: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._idle = idle_timeout_s
        self._max = max_sessions
        self._clock = clock
        ensure_schema(engine, SCHEMA)  # created or upgraded (taxonomy/migrations)

    def create(self, principal: Principal) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), principal, secrets.token_urlsafe(32), now, now)
        t = sessions_table
        with self._engine.begin() as conn:
            conn.execute(delete(t).where(t.c.last_seen < now - self._idle))
            conn.execute(insert(t).values(
                id_sha256=_digest(session.id), key_id=principal.key_id, key_name=principal.name,
                scopes=",".join(sorted(principal.scopes)), csrf=session.csrf, created=now, last_seen=now,
            ))
            excess = int(conn.execute(select(func.count()).select_from(t)).scalar_one()) - self._max
            if excess > 0:  # the least recently seen go first
                oldest = select(t.c.id_sha256).order_by(t.c.last_seen).limit(excess).scalar_subquery()
                conn.execute(delete(t).where(t.c.id_sha256.in_(oldest)))
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now, digest, t = self._clock(), _digest(session_id), sessions_table
        with self._engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id_sha256 == digest)).mappings().first()
        if row is None:
            return None
        if now - row["last_seen"] > self._idle:
            self._delete(t.c.id_sha256 == digest)
            return None
        if now - row["last_seen"] >= TOUCH_S:
            with self._engine.begin() as conn:
                conn.execute(update(t).where(t.c.id_sha256 == digest).values(last_seen=now))
        principal = Principal(row["key_id"], row["key_name"], frozenset(s for s in row["scopes"].split(",") if s))
        return Session(session_id, principal, row["csrf"], row["created"], now)

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._delete(sessions_table.c.id_sha256 == _digest(session_id))

    def drop_key(self, key_id: str) -> None:
        """End every session of a key (it was revoked)."""
        self._delete(sessions_table.c.key_id == key_id)

    def _delete(self, where: object) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(sessions_table).where(where))  # type: ignore[arg-type]

    def __len__(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(sessions_table)).scalar_one())

    def close(self) -> None:
        self._engine.dispose()
