"""Page sessions: a signed-in page holds a random session id, the database only its hash.

Signing in on a page exchanges the API key for a session, so the browser never keeps the key. A
session stands for its key until it expires, is ended (sign-out), or the key is revoked. Forms of
a signed-in page carry a CSRF token derived from the session id, which only that browser holds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from socialcredit.service._db import Database
from socialcredit.service._errors import Unauthorized
from socialcredit.service._keys import ApiKey

SESSION_MAX_AGE_S = 8 * 3600


def _digest(session_id: str) -> str:
    # Session ids are 256 random bits: a plain SHA-256 is enough, as for API keys.
    return hashlib.sha256(session_id.encode()).hexdigest()


def _iso(t: datetime) -> str:
    # Fixed width and UTC: the text sorts as the time does, so SQL compares it directly.
    return t.isoformat(timespec="milliseconds")


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session's forms: an HMAC keyed with the session id, so no other page can make it."""
    return hmac.new(session_id.encode(), b"csrf", hashlib.sha256).hexdigest()


def csrf_valid(session_id: str, token: str) -> bool:
    """Whether `token` is the CSRF token of the session `session_id`."""
    # As bytes: compare_digest refuses a str that is not ASCII (a forged token may hold anything).
    return hmac.compare_digest(csrf_token(session_id).encode(), token.encode())


class Sessions:
    """The sessions of the pages, in the `sessions` table of `db`."""

    def __init__(self, db: Database, *, max_age_s: int = SESSION_MAX_AGE_S):
        self.db = db
        self.max_age_s = max_age_s

    def start(self, key: ApiKey) -> str:
        """A new session for `key`; returns its id, which is stored only as a hash."""
        session_id = secrets.token_urlsafe(32)
        created = datetime.now(UTC)
        with self.db.transaction() as cur:
            self.db.execute("DELETE FROM sessions WHERE expires <= ?", (_iso(created),), cur)
            self.db.execute("INSERT INTO sessions (hash, key_name, created, expires) VALUES (?, ?, ?, ?)",
                            (_digest(session_id), key.name, _iso(created),
                             _iso(created + timedelta(seconds=self.max_age_s))), cur)
        return session_id

    def key_for(self, session_id: str) -> ApiKey:
        """The key a session stands for; Unauthorized when it has ended or expired, or its key was revoked."""
        digest = _digest(session_id)
        rows = self.db.execute(
            "SELECT s.expires, k.name, k.role, k.citizen_id, k.sources, k.revoked FROM sessions s "
            "JOIN api_keys k ON k.name = s.key_name WHERE s.hash = ?", (digest,))
        if not rows:
            raise Unauthorized("your session has ended: sign in again")
        expires, name, role, citizen, sources, revoked = rows[0]
        if revoked is not None or expires <= _iso(datetime.now(UTC)):
            self._delete(digest)
            if revoked is not None:
                raise Unauthorized(f"API key '{name}' was revoked on {revoked}")
            raise Unauthorized("your session expired: sign in again")
        return ApiKey(name, role, citizen, tuple(s for s in sources.split(",") if s))

    def end(self, session_id: str) -> None:
        """End a session (sign-out): its id is refused from then on."""
        self._delete(_digest(session_id))

    def _delete(self, digest: str) -> None:
        with self.db.transaction() as cur:
            self.db.execute("DELETE FROM sessions WHERE hash = ?", (digest,), cur)
