"""API keys: created by ``tagsmith keys create`` (or ``POST /v1/keys``), stored hashed in the
database (``keys.db`` in the data directory, or ``database.url``).

A key reads ``tsk_<id>_<secret>``: ``id`` is public (it names the key in listings, logs
and revocations), ``secret`` is 256 random bits. Only ``sha256(key)`` is stored: a key is
high-entropy, so a slow password hash would add nothing but latency on every request.
The presented key's hash is compared with ``hmac.compare_digest`` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    RowMapping,
    String,
    Table,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError

from serve.database import is_unavailable, open_engine, ping
from serve.sqlite import utc
from taxonomy.migrations import StoreSchema, ensure_schema

#: what a key may do; ``admin`` implies every other scope
SCOPES: tuple[str, ...] = ("tags", "feedback", "taxonomy:write", "admin")
KEY_PREFIX = "tsk_"
_KEY = re.compile(r"^tsk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
#: values an operator might leave in a config file: refused as the admin key
PLACEHOLDERS = frozenset({"changeme", "change-me", "secret", "password", "admin", "test", "dev"})
MIN_ADMIN_KEY_CHARS = 32
#: the PostgreSQL advisory lock serialising key revocations (any constant: "tkey")
REVOKE_LOCK = 0x746B6579
#: keys remembered for database outages (:meth:`KeyStore.verify`): ~200 bytes each
OUTAGE_CACHE_KEYS = 10_000
#: after the database was found unreachable, checks of remembered keys do not try it again for
#: this long (an unreachable host costs a connect timeout per try, not a refused connection's
#: milliseconds)
OUTAGE_RECHECK_S = 1.0

log = logging.getLogger("tagsmith.keys")

metadata = MetaData()
keys_table = Table(
    "api_keys",
    metadata,
    Column("id", String(12), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("scopes", String(200), nullable=False),  # comma-separated
    Column("key_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

#: the store's schema: its history in taxonomy/migrations/versions/keys/
SCHEMA = StoreSchema("keys", metadata)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def parse_scopes(text: str | list[str]) -> frozenset[str]:
    """``"tags,feedback"`` → scopes; raises ValueError naming an unknown scope."""
    items = text.split(",") if isinstance(text, str) else text
    scopes = frozenset(s.strip() for s in items if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}: use {', '.join(SCOPES)}")
    if not scopes:
        raise ValueError(f"give at least one scope: {', '.join(SCOPES)}")
    return scopes


class LastAdminKey(Exception):
    """Revoking this key would leave no active admin key."""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def admin_key_problem(key: str) -> str | None:
    """Why a configured admin key is unacceptable (None when it is fine)."""
    if key.strip().lower() in PLACEHOLDERS or len(key) < MIN_ADMIN_KEY_CHARS:
        return (
            f"TAGSMITH_AUTH__ADMIN_KEY must be a random secret of at least {MIN_ADMIN_KEY_CHARS} "
            "characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return None


def key_store_path(data_dir: Path) -> Path:
    return data_dir / "keys.db"


class KeyStore:
    def __init__(self, location: Path | str, *, outage_ttl_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``location``: the SQLite file (a Path) or a database URL (:func:`serve.database.open_engine`).
        ``outage_ttl_s``: while the database is unreachable, :meth:`verify` accepts a key it
        verified in the database within that many seconds (0: never; ``auth.outage_key_ttl_s``)."""
        self._engine = open_engine(location)
        ensure_schema(self._engine, SCHEMA)  # created or upgraded (taxonomy/migrations)
        self.outage_ttl_s = outage_ttl_s
        self._clock = clock
        # sha256 of the presented key -> (its record, when the database last said it is active)
        self._verified: OrderedDict[str, tuple[ApiKey, float]] = OrderedDict()
        self._verified_lock = threading.Lock()
        self._down_until = -float("inf")  # until when the database counts as down (monotonic)

    def create(self, scopes: frozenset[str], name: str = "") -> tuple[ApiKey, str]:
        """A new key: its record and the key itself (shown once, never stored)."""
        key_id = secrets.token_hex(6)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id, name or key_id, frozenset(scopes), datetime.now(UTC))
        with self._engine.begin() as conn:
            conn.execute(insert(keys_table).values(
                id=key_id, name=record.name, scopes=",".join(sorted(scopes)),
                key_sha256=_digest(key), created_at=record.created_at,
            ))
        return record, key

    def all(self) -> list[ApiKey]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(keys_table).order_by(keys_table.c.created_at)).mappings().all()
        return [_record(r) for r in rows]

    def get(self, key_id: str) -> ApiKey | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(keys_table).where(keys_table.c.id == key_id)).mappings().first()
        return None if row is None else _record(row)

    def revoke(self, key_id: str, *, keep_an_admin: bool = True) -> ApiKey:
        """Revoke a key (idempotent); KeyError when there is no such key, LastAdminKey when
        ``keep_an_admin`` and it is the last active admin key."""
        # the count and the update under one lock, so two concurrent revocations of the last
        # two admin keys cannot both pass the check: SQLite's write lock (BEGIN IMMEDIATE);
        # on PostgreSQL a transaction-scoped advisory lock (revocations are rare: one at a
        # time; row locks taken key by key would deadlock two revocations of two keys)
        with self._engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": REVOKE_LOCK})
            row = conn.execute(select(keys_table).where(keys_table.c.id == key_id)).mappings().first()
            if row is None:
                raise KeyError(key_id)
            target = _record(row)
            if keep_an_admin and target.active and "admin" in target.scopes:
                active = conn.execute(
                    select(keys_table.c.scopes).where(keys_table.c.revoked_at.is_(None))
                ).scalars().all()
                if sum("admin" in s.split(",") for s in active) <= 1:
                    raise LastAdminKey(key_id)
            conn.execute(
                update(keys_table)
                .where(keys_table.c.id == key_id, keys_table.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        with self._verified_lock:  # revoked through this store: not remembered for an outage
            self._verified = OrderedDict((d, e) for d, e in self._verified.items() if e[0].id != key_id)
        record = self.get(key_id)
        assert record is not None  # keys are never deleted
        return record

    def has_active_keys(self) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(
                select(keys_table.c.id).where(keys_table.c.revoked_at.is_(None)).limit(1)
            ).first() is not None

    def verify(self, presented: str) -> ApiKey | None:
        """The active key ``presented`` is, or None (unknown, malformed, revoked).

        Asks the database every time, so a revocation through any replica counts at once. When
        the database is unreachable (:func:`serve.database.is_unavailable`) a key that this
        store found active in it within the last ``outage_ttl_s`` seconds is still accepted
        (tagging needs no database: an outage should not stop it); any other key re-raises
        the error (the caller answers 503). The bound on a revocation is therefore: at once
        while the database is up; during an outage, ``outage_ttl_s`` after this replica last
        saw the key active (a revocation itself cannot be written while the database is down)."""
        match = _KEY.match(presented)
        if match is None:
            return None
        digest = _digest(presented)
        if self._clock() < self._down_until:  # found down a moment ago
            remembered = self._remembered(digest)
            if remembered is not None:
                return remembered  # (a key not remembered asks the database: nothing to lose)
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(keys_table).where(keys_table.c.id == match.group(1))
                ).mappings().first()
        except OperationalError as exc:
            if not is_unavailable(exc):
                raise
            if self._down_until == -float("inf"):  # once per outage, not per request
                log.warning("database unavailable (%s): accepting keys verified in the last %g s",
                            type(exc.orig).__name__, self.outage_ttl_s)
            self._down_until = self._clock() + OUTAGE_RECHECK_S
            remembered = self._remembered(digest)
            if remembered is None:
                raise
            return remembered
        self._down_until = -float("inf")
        stored = row["key_sha256"] if row is not None else "0" * 64
        # compare even for an unknown id, so both paths cost the same
        if not hmac.compare_digest(stored, digest) or row is None:
            self._forget(digest)
            return None
        record = _record(row)
        if not record.active:
            self._forget(digest)
            return None
        self._remember(digest, record)
        return record

    def _remember(self, digest: str, record: ApiKey) -> None:
        if self.outage_ttl_s <= 0:
            return
        with self._verified_lock:
            self._verified[digest] = (record, self._clock())
            self._verified.move_to_end(digest)
            while len(self._verified) > OUTAGE_CACHE_KEYS:
                self._verified.popitem(last=False)

    def _forget(self, digest: str) -> None:
        with self._verified_lock:
            self._verified.pop(digest, None)

    def _remembered(self, digest: str) -> ApiKey | None:
        with self._verified_lock:
            entry = self._verified.get(digest)
        if entry is None or self._clock() - entry[1] > self.outage_ttl_s:
            return None
        return entry[0]

    def ping(self) -> str | None:
        """None when the keys' database answers, else why not (``/readyz``)."""
        return ping(self._engine)

    def close(self) -> None:
        self._engine.dispose()


def _record(r: RowMapping) -> ApiKey:
    return ApiKey(
        id=r["id"], name=r["name"], scopes=frozenset(s for s in r["scopes"].split(",") if s),
        created_at=utc(r["created_at"]), revoked_at=utc(r["revoked_at"]),
    )
