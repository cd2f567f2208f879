"""Appeals: a citizen contests an event, an agency decides, the ledger is corrected and re-scored."""

from __future__ import annotations

from socialcredit.service._errors import Conflict, Forbidden, Invalid, NotFound
from socialcredit.service._keys import ApiKey, now

APPEAL_STATUSES = ("open", "upheld", "rejected")


class Appeals:
    """The Service's appeals (a mixin over its database and ledger)."""

    def file_appeal(self, key: ApiKey, event_id: str, reason: str) -> dict:
        """A citizen contests one of their events."""
        if key.role != "citizen":
            raise Forbidden("only citizen keys may file appeals")
        if not self.policy.appeals:
            raise Forbidden(f"policy '{self.policy.name}' allows no appeals")
        if not reason.strip():
            raise Invalid("an appeal needs a reason", field="reason")
        with self.ledger.write() as cur:
            rows = self.db.execute("SELECT citizen_id FROM events WHERE event_id = ?", (event_id,), cur)
            if not rows or rows[0][0] != key.citizen_id:
                raise NotFound(f"no event '{event_id}' of citizen '{key.citizen_id}'", field="event_id")
            if self.db.execute("SELECT 1 FROM appeals WHERE event_id = ? AND status = 'open'",
                               (event_id,), cur):
                raise Conflict(f"event '{event_id}' has an open appeal already", field="event_id")
            appeal = self.db.execute(
                "INSERT INTO appeals (event_id, citizen_id, reason, status, filed_at) "
                "VALUES (?, ?, ?, 'open', ?) RETURNING id", (event_id, key.citizen_id, reason, now()), cur)
        return {"id": int(appeal[0][0]), "event_id": event_id, "status": "open"}

    def decide_appeal(self, key: ApiKey, appeal_id: int, upheld: bool, note: str | None) -> dict:
        """An agency decides an appeal; upheld voids the event and re-scores from the ledger."""
        if key.role != "agency":
            raise Forbidden("only agency keys may decide appeals")
        with self.ledger.write() as cur:
            rows = self.db.execute("SELECT event_id, citizen_id, status FROM appeals WHERE id = ?",
                                   (appeal_id,), cur)
            if not rows:
                raise NotFound(f"no appeal {appeal_id}")
            event_id, citizen_id, status = rows[0]
            if status != "open":
                raise Conflict(f"appeal {appeal_id} was decided already ({status})")
            status = "upheld" if upheld else "rejected"
            self.db.execute("UPDATE appeals SET status = ?, decided_at = ?, decided_by = ?, note = ? "
                            "WHERE id = ?", (status, now(), key.name, note, appeal_id), cur)
            if upheld:
                self.ledger.void(cur, event_id, citizen_id)
        score, klass, _ = self._status(citizen_id)
        return {"id": appeal_id, "event_id": event_id, "status": status, "citizen_id": citizen_id,
                "score": score, "class": klass}

    def list_appeals(self, key: ApiKey, *, status: str | None = None, citizen_id: str | None = None,
                     limit: int = 100, newest_first: bool = False) -> list[dict]:
        """Appeals with the contested event, oldest (or newest) first: an agency sees every
        citizen's, a citizen only their own (`citizen_id` must then be theirs or left out);
        `status` filters."""
        if key.role == "citizen":
            if citizen_id is not None and citizen_id != key.citizen_id:
                raise Forbidden("a citizen key may read only its own citizen's appeals")
            citizen_id = key.citizen_id
        elif key.role != "agency":
            raise Forbidden("only agency keys and the citizen concerned may read appeals")
        if status is not None and status not in APPEAL_STATUSES:
            raise Invalid(f"unknown appeal status {status!r} (one of {', '.join(APPEAL_STATUSES)})",
                          field="status")
        where, params = [], []
        if status is not None:
            where.append("a.status = ?")
            params.append(status)
        if citizen_id is not None:
            where.append("a.citizen_id = ?")
            params.append(citizen_id)
        rows = self.db.execute(
            "SELECT a.id, a.event_id, a.citizen_id, a.reason, a.status, a.filed_at, a.decided_at, a.note, "
            "e.kind, e.day, e.source, e.source_ref, e.confidence FROM appeals a "
            "LEFT JOIN events e ON e.event_id = a.event_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + (" ORDER BY a.id DESC LIMIT ?" if newest_first else " ORDER BY a.id LIMIT ?"),
            (*params, max(0, int(limit))))
        cols = ("id", "event_id", "citizen_id", "reason", "status", "filed_at", "decided_at", "note",
                "kind", "day", "source", "source_ref", "confidence")
        return [{**dict(zip(cols, row, strict=True)), "date": self.calendar.iso(row[9])} for row in rows]
