"""UI sessions: who logged in with which key, kept server-side.

The login form posts an API key once; the server verifies it (the API's own
:func:`serve.api.auth.authenticate`) and keeps a session: a random id (256 bits) in an
HttpOnly, SameSite=Strict cookie, mapped here to the key's *id*, name and scopes and a
per-session CSRF token. The key itself is never stored, put in a URL, or logged. Every
request re-checks that the key is still active (a revoked key ends its sessions).

Without ``database.url`` sessions live in memory (:class:`SessionStore`): a restart logs
everyone out, which is acceptable for a UI (re-login is one form). With it they live in the
database (:class:`serve.ui.session_db.DatabaseSessionStore`), shared by every replica and
kept across restarts. Bounded either way: idle sessions expire, and beyond ``max_sessions``
the least recently used one is dropped.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from serve.api.auth import Principal

COOKIE = "tagsmith_session"
#: the pre-login double-submit cookie guarding the login form itself (login CSRF)
LOGIN_COOKIE = "tagsmith_login"


@dataclass
class Session:
    id: str
    principal: Principal
    csrf: str
    created: float
    last_seen: float = field(default=0.0)

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf.encode(), str(presented).encode())


class Sessions(Protocol):
    """What the UI needs of a session store (in memory, or in the database)."""

    def create(self, principal: Principal) -> Session: ...

    def get(self, session_id: str | None) -> Session | None: ...

    def drop(self, session_id: str | None) -> None: ...

    def drop_key(self, key_id: str) -> None: ...

    def close(self) -> None: ...


class SessionStore:
    def __init__(
        self, idle_timeout_s: float = 8 * 3600.0, max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle = idle_timeout_s
        self._max = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, principal: Principal) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), principal, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.last_seen > self._idle:
                del self._sessions[session_id]
                return None
            session.last_seen = now
            self._sessions.move_to_end(session_id)
            return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def drop_key(self, key_id: str) -> None:
        """End every session of a key (it was revoked)."""
        with self._lock:
            for sid in [s.id for s in self._sessions.values() if s.principal.key_id == key_id]:
                del self._sessions[sid]

    def __len__(self) -> int:
        return len(self._sessions)

    def close(self) -> None:
        pass
