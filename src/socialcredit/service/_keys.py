"""API keys: created once and shown once, stored as a hash, bound to a role and what it may touch."""

from __future__ import annotations

import hashlib
import secrets
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


def now() -> str:
    """The current UTC time as ISO 8601 text."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def create_key(db: Database, *, role: str, name: str, citizen: str | None = None,
               sources: tuple[str, ...] | list[str] = ()) -> str:
    """Store a new key and return its secret (shown once; only the hash is kept)."""
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
    secret = PREFIX + secrets.token_urlsafe(32)
    with db.transaction() as cur:
        if db.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,), cur):
            raise Conflict(f"a key named '{name}' exists already", field="name")
        db.execute("INSERT INTO api_keys (name, hash, role, citizen_id, sources, created) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (name, _digest(secret), role, citizen, ",".join(sorted(set(sources))), now()), cur)
    return secret


def revoke_key(db: Database, name: str) -> None:
    """Revoke the key called `name`; it is refused from then on."""
    with db.transaction() as cur:
        rows = db.execute("SELECT revoked FROM api_keys WHERE name = ?", (name,), cur)
        if not rows:
            raise NotFound(f"no key named '{name}'")
        if rows[0][0] is None:
            db.execute("UPDATE api_keys SET revoked = ? WHERE name = ?", (now(), name), cur)


def authenticate(db: Database, secret: str | None) -> ApiKey:
    """The key behind a bearer secret; Unauthorized when missing, unknown or revoked."""
    if not secret:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    rows = db.execute("SELECT name, role, citizen_id, sources, revoked FROM api_keys WHERE hash = ?",
                      (_digest(secret),))
    if not rows:
        raise Unauthorized("unknown API key")
    name, role, citizen, sources, revoked = rows[0]
    if revoked is not None:
        raise Unauthorized(f"API key '{name}' was revoked on {revoked}")
    return ApiKey(name, role, citizen, tuple(s for s in sources.split(",") if s))
