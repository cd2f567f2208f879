"""API keys: created once and shown once, stored as a hash, bound to a role and what it may touch."""

from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from socialcredit.policy import ROLES
from socialcredit.service._db import Database
from socialcredit.service._errors import Conflict, Invalid, NotFound, Unauthorized

SENDING_ROLES = ("agency", "security", "platform")
PREFIX = "sc_"


@dataclass(frozen=True)
class ApiKey:
    """Who is calling: the key's name, role, and the citizen or sources it is bound to."""

    name: str
    role: str
    citizen_id: str | None = None
    sources: tuple[str, ...] = ()


def _digest(secret: str) -> str:
    # Keys are 256 random bits, so a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(secret.encode()).hexdigest()


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def now() -> str:
    """The current UTC time as ISO 8601 text, to the millisecond (as datetime.isoformat writes it)."""
    global _second
    t = time.time()
    second = int(t)
    cached = _second  # one read of a tuple: consistent across threads
    if cached[0] != second:  # formatting the date costs more than the rest: once a second
        cached = _second = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{int((t - second) * 1000):03d}+00:00"


def create_key(db: Database, *, role: str, name: str, citizen: str | None = None,
               sources: tuple[str, ...] | list[str] = (), known_citizen: bool = False) -> str:
    """Store a new key and return its secret (shown once; only the hash is kept).

    `known_citizen`: refuse to bind the key to a citizen the database has no record or event of.
    """
    if role not in ROLES:
        raise Invalid(f"unknown role '{role}' (roles: {', '.join(ROLES)})", field="role")
    if not name:
        raise Invalid("a key needs a name", field="name")
    if role == "citizen" and not citizen:
        raise Invalid("a citizen key must be bound to one citizen (--citizen)", field="citizen")
    if role != "citizen" and citizen:
        raise Invalid(f"only citizen keys are bound to a citizen, not {role} keys", field="citizen")
    if role in SENDING_ROLES and not sources:
        raise Invalid(f"a {role} key sends events and must be bound to its sources (--source)",
                      field="source")
    if role not in SENDING_ROLES and sources:
        raise Invalid(f"{role} keys send no events and take no --source "
                      f"(senders: {', '.join(SENDING_ROLES)})", field="source")
    if known_citizen and citizen and not citizen_known(db, citizen):
        raise NotFound(f"no citizen '{citizen}' in the database (no record, score or event)", field="citizen")
    secret = PREFIX + secrets.token_urlsafe(32)
    with db.transaction() as cur:
        if db.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,), cur):
            raise Conflict(f"a key named '{name}' exists already", field="name")
        db.execute("INSERT INTO api_keys (name, hash, role, citizen_id, sources, created) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (name, _digest(secret), role, citizen, ",".join(sorted(set(sources))), now()), cur)
        _bump_keys(db, cur)
    return secret


def citizen_known(db: Database, citizen: str) -> bool:
    """Whether the database has a record, a score or an event of `citizen`."""
    return bool(db.execute("SELECT 1 FROM citizens WHERE citizen_id = ? UNION ALL "
                           "SELECT 1 FROM scores WHERE citizen_id = ? UNION ALL "
                           "SELECT 1 FROM events WHERE citizen_id = ? LIMIT 1", (citizen,) * 3))


def revoke_key(db: Database, name: str) -> None:
    """Revoke the key called `name`; it is refused from then on."""
    with db.transaction() as cur:
        rows = db.execute("SELECT revoked FROM api_keys WHERE name = ?", (name,), cur)
        if not rows:
            raise NotFound(f"no key named '{name}'")
        if rows[0][0] is None:
            db.execute("UPDATE api_keys SET revoked = ? WHERE name = ?", (now(), name), cur)
            _bump_keys(db, cur)


def authenticate(db: Database, secret: str | None) -> ApiKey:
    """The key behind a bearer secret; Unauthorized when missing, unknown or revoked.

    Keys are cached by the hash of their secret (see `KeyCache`): a look-up costs a dict access,
    and a key created or revoked by any process is seen by the next request.
    """
    if not secret:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    cache = db.key_cache
    if cache is None:
        cache = db.key_cache = KeyCache(db)
    return cache.get(secret)


# Bumped by every create and revoke of this process: a connection does not see its own commits in
# SQLite's data_version.
_changes = itertools.count(1)
_changed = [0]


def _bump_keys(db: Database, cur) -> None:
    """Record a change to the keys (in the transaction `cur`) for every process's cache."""
    gen = int(db.get_meta("keys_gen", "0", cur)) + 1
    db.set_meta(cur, "keys_gen", str(gen))
    _changed[0] = next(_changes)


class KeyCache:
    """API keys by the hash of their secret, dropped when the keys change in the database.

    Every create and revoke bumps `keys_gen` in the meta table in its own transaction. Before a
    cached key is used, the cache checks that the generation it holds is still current: on SQLite
    by `PRAGMA data_version` (it changes only when another connection committed something; then
    `keys_gen` is read again), and by this process's own counter of changes; on PostgreSQL by
    reading `keys_gen` (one indexed read). Unknown secrets are not cached.
    """

    def __init__(self, db: Database):
        self.db = db
        self._keys: dict[str, tuple[ApiKey, str | None]] = {}
        self._gen: str | None = None
        self._seen = threading.local()  # per thread (connection): (connection, data_version, change)

    def _current(self) -> None:
        db = self.db
        if db.dialect == "sqlite":
            conn = db.connection()
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            seen = getattr(self._seen, "state", None)
            state = (conn, version, _changed[0])
            if seen == state and self._gen is not None:
                return
            self._seen.state = state
        gen = db.get_meta("keys_gen", "0")
        if gen != self._gen:
            self._keys = {}
            self._gen = gen

    def get(self, secret: str) -> ApiKey:
        """The key behind `secret`; Unauthorized when unknown or revoked."""
        digest = _digest(secret)
        self._current()
        keys = self._keys
        hit = keys.get(digest)
        if hit is None:
            rows = self.db.execute("SELECT name, role, citizen_id, sources, revoked FROM api_keys "
                                   "WHERE hash = ?", (digest,))
            if not rows:
                raise Unauthorized("unknown API key")
            name, role, citizen, sources, revoked = rows[0]
            hit = keys[digest] = (ApiKey(name, role, citizen, tuple(s for s in sources.split(",") if s)),
                                  revoked)
        key, revoked = hit
        if revoked is not None:
            raise Unauthorized(f"API key '{key.name}' was revoked on {revoked}")
        return key
