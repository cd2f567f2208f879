"""Appeals: a citizen contests an event, an agency decides, the ledger is corrected and re-scored.

Separation of duties: an appeal is decided by an agency key bound to the contested event's source,
and not by the key that reported the event while another agency key bound to that source exists
(with none, the reporter decides: someone must). An event is appealed once: a decided appeal or a
voided event cannot be appealed again. What a list or a decision shows of the citizen follows the
caller's grant (access.DISCLOSURES: 'appeals', 'appeal-decision') and is logged for the citizen.
"""

from __future__ import annotations

from socialcredit.events import EventError, check_text
from socialcredit.service._errors import Conflict, Forbidden, Invalid, NotFound
from socialcredit.service._keys import ApiKey, now

APPEAL_STATUSES = ("open", "upheld", "rejected")
# The purpose an agency's appeal queue is read for: it is logged with each citizen it shows.
REVIEW_PURPOSE = "deciding appeals"
_APPEAL_COLUMNS = ("id", "event_id", "citizen_id", "reason", "status", "filed_at", "decided_at", "note")
_EVENT_COLUMNS = ("kind", "day", "source", "source_ref", "confidence")  # the contested event: 'history'


class Appeals:
    """The Service's appeals (a mixin over its database, ledger and grants)."""

    def file_appeal(self, key: ApiKey, event_id: str, reason: str) -> dict:
        """A citizen contests one of their events, once."""
        if key.role != "citizen":
            raise Forbidden("only citizen keys may file appeals")
        if not self.policy.appeals:
            raise Forbidden(f"policy '{self.policy.name}' allows no appeals")
        if not reason.strip():
            raise Invalid("an appeal needs a reason", field="reason")
        try:
            check_text(event_id, "event_id")
        except EventError as exc:
            raise Invalid(str(exc), field="event_id") from None
        with self.ledger.write(whole=True) as cur:
            rows = self.db.execute("SELECT citizen_id, voided FROM events WHERE event_id = ?", (event_id,), cur)
            if not rows or rows[0][0] != key.citizen_id:
                raise NotFound(f"no event '{event_id}' of citizen '{key.citizen_id}'", field="event_id")
            if rows[0][1]:
                raise Conflict(f"event '{event_id}' was voided already", field="event_id")
            before = self.db.execute("SELECT status FROM appeals WHERE event_id = ? ORDER BY id DESC LIMIT 1",
                                     (event_id,), cur)
            if before:
                raise Conflict(f"event '{event_id}' has an appeal already ({before[0][0]})", field="event_id")
            appeal = self.db.execute(
                "INSERT INTO appeals (event_id, citizen_id, reason, status, filed_at) "
                "VALUES (?, ?, ?, 'open', ?) RETURNING id", (event_id, key.citizen_id, reason, now()), cur)
        return {"id": int(appeal[0][0]), "event_id": event_id, "status": "open"}

    def decide_appeal(self, key: ApiKey, appeal_id: int, upheld: bool, note: str | None) -> dict:
        """An agency decides an appeal; upheld voids the event and re-scores from the ledger."""
        if key.role != "agency":
            raise Forbidden("only agency keys may decide appeals")
        rows = self.db.execute("SELECT a.event_id, a.citizen_id, e.source, e.batch FROM appeals a "
                               "JOIN events e ON e.event_id = a.event_id WHERE a.id = ?", (appeal_id,))
        if not rows:
            raise NotFound(f"no appeal {appeal_id}")
        event_id, citizen_id, source, batch = rows[0]
        try:
            self._may_decide(key, source, int(batch))
        except Forbidden as exc:  # the citizen sees who tried to decide, as for any refusal
            self._refused(key, citizen_id, REVIEW_PURPOSE, "appeal-decision", exc.message)
            raise
        fields = self._permit(key, citizen_id, REVIEW_PURPOSE, "appeal-decision")
        with self.ledger.write(whole=True) as cur:
            status = self.db.execute("SELECT status FROM appeals WHERE id = ?", (appeal_id,), cur)[0][0]
            if status != "open":
                raise Conflict(f"appeal {appeal_id} was decided already ({status})")
            status = "upheld" if upheld else "rejected"
            self.db.execute("UPDATE appeals SET status = ?, decided_at = ?, decided_by = ?, note = ? "
                            "WHERE id = ?", (status, now(), key.name, note, appeal_id), cur)
            if upheld:
                self.ledger.void(cur, event_id, citizen_id)
        score, klass, _ = self._status(citizen_id)
        shown = {"score": score, "class": klass}
        self._record(key, citizen_id, REVIEW_PURPOSE, fields, "appeal-decision")
        return {"id": appeal_id, "event_id": event_id, "status": status, "citizen_id": citizen_id,
                **{f: shown[f] for f in fields}}

    def _may_decide(self, key: ApiKey, source: str | None, batch: int) -> None:
        """Refuse an agency not bound to the event's source, or the event's reporter while another
        agency bound to the source could decide."""
        if source not in key.sources:
            raise Forbidden(f"key '{key.name}' is not bound to the event's source '{source}': an agency decides "
                            "appeals against its own sources' events only")
        sender = self.db.execute("SELECT key_name FROM batches WHERE seq = ?", (batch,))
        if not sender or sender[0][0] != key.name:
            return
        others = [name for name, sources in self.db.execute(
            "SELECT name, sources FROM api_keys WHERE role = 'agency' AND revoked IS NULL AND name <> ?",
            (key.name,)) if source in sources.split(",")]
        if others:
            raise Forbidden(f"key '{key.name}' reported this event: another agency bound to '{source}' decides "
                            f"({', '.join(sorted(others))})")

    def list_appeals(self, key: ApiKey, *, status: str | None = None, citizen_id: str | None = None,
                     limit: int = 100, newest_first: bool = False) -> list[dict]:
        """Appeals, oldest (or newest) first: an agency sees every citizen's, a citizen only their
        own (`citizen_id` must then be theirs or left out); `status` filters. The contested event's
        details are shown where the caller's grant has 'history'; each citizen shown is logged."""
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
            f"SELECT {', '.join('a.' + c for c in _APPEAL_COLUMNS)}, {', '.join('e.' + c for c in _EVENT_COLUMNS)} "
            "FROM appeals a LEFT JOIN events e ON e.event_id = a.event_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + (" ORDER BY a.id DESC LIMIT ?" if newest_first else " ORDER BY a.id LIMIT ?"),
            (*params, max(0, int(limit))))
        purpose = None if key.role == "citizen" else REVIEW_PURPOSE
        shown_for: dict[str, list[str]] = {}
        out = []
        for row in rows:
            appeal = dict(zip(_APPEAL_COLUMNS, row[:len(_APPEAL_COLUMNS)], strict=True))
            cid = appeal["citizen_id"]
            if cid not in shown_for:
                shown_for[cid] = self._permit(key, cid, purpose, "appeals")
            if "history" in shown_for[cid]:
                appeal |= dict(zip(_EVENT_COLUMNS, row[len(_APPEAL_COLUMNS):], strict=True))
                appeal["date"] = self.calendar.iso(appeal["day"])
            out.append(appeal)
        for cid, fields in shown_for.items():
            self._record(key, cid, purpose, ["appeals", *fields], "appeals")
        return out
