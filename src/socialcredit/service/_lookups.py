"""Look-ups: what a citizen's score, class, history and camera profile disclose, under the grants."""

from __future__ import annotations

import json

import polars as pl

from socialcredit.engine import BENEFITS, BETWEEN, CompiledConsequence, Explanation, explain
from socialcredit.events import EVENT_SCHEMA, EventError, check_text
from socialcredit.offers import is_profile_kind, is_profile_kind_text
from socialcredit.service._access import DISCLOSURES
from socialcredit.service._errors import Forbidden, Invalid, NotFound
from socialcredit.service._keys import ApiKey

# Camera events have source "camera". Their source_ref names the place type: the simulator writes
# the bare place type ("street", "mall", "subway"); a live feed may name its camera
# "cam-<region>-<placetype>-<n>" (e.g. cam-rc-subway-17). Anything else is place type "unknown".
CAMERA_SOURCE = "camera"
PLACE_TYPES = ("street", "mall", "subway")  # the simulator's place types (simulation/_kinds.py PLACES)
NOT_SCORED = -1  # the class index of a citizen the policy does not score (under its min_age)
SEARCH_PAGE = 20  # citizens a search lists at a time


class Lookups:
    """The Service's look-ups (a mixin: it reads the Service's database, ledger, policy and grants)."""

    def _status(self, citizen_id: str) -> tuple[int | None, str | None, int]:
        """Score, class and class index; (None, None, NOT_SCORED) for a citizen under the policy's
        min_age."""
        rows = self.db.execute("SELECT score, class, class_idx FROM scores WHERE citizen_id = ?",
                               (citizen_id,))
        if rows:
            return int(rows[0][0]), rows[0][1], int(rows[0][2])
        if self.db.execute("SELECT 1 FROM citizens WHERE citizen_id = ?", (citizen_id,)):
            first = self.ledger.scored_from(citizen_id)
            if first is not None and first > self.day:
                return None, None, NOT_SCORED
            start = self.ledger.start_class
            return self.policy.start, self.policy.class_names[start], start
        raise NotFound(f"no citizen '{citizen_id}'")

    def consequences(self, citizen_id: str, class_idx: int, *, benefits: bool = True,
                     sanctions: bool = True) -> tuple[list[dict], list[dict]]:
        """Benefits and sanctions in force (engine.CompiledConsequences): the class brings them and
        the citizen has held its band long enough (either list is left empty when not asked for)."""
        out: tuple[list[dict], list[dict]] = ([], [])
        if class_idx == NOT_SCORED:  # no class, so no consequence of one
            return out
        rules = self.consequence_rules
        band = rules.band(class_idx)
        if band == BETWEEN or not (benefits if band == BENEFITS else sanctions):
            return out  # nothing this class can bring (or nothing asked for): no history is read
        history = self.db.execute("SELECT day, class_idx FROM class_history WHERE citizen_id = ? "
                                  "ORDER BY day, id", (citizen_id,))
        since = _since(history, class_idx, self.ledger.start_class, lambda i: rules.band(i) == band)
        for c in rules.in_force(class_idx, since, self.day):
            out[0 if c.benefit else 1].append(_consequence(c, since, self.calendar.iso(since)))
        return out

    def lookup(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> dict:
        """Score, class, benefits, sanctions, reasons and blacklist, as the grant allows; logged."""
        fields = self._permit(key, citizen_id, purpose, "lookup")
        score, klass, idx = self._status(citizen_id)
        out: dict = {"citizen_id": citizen_id, "day": self.day, "date": self.date}
        full = {"score": score, "class": klass}
        if not _PLAIN_FIELDS.issuperset(fields):
            # Only what the grant shows: a bank that sees sanctions needs no benefits worked out.
            benefits, sanctions = self.consequences(
                citizen_id, idx, benefits="benefits" in fields,
                sanctions="sanctions" in fields or "blacklist" in fields)
            full |= {"benefits": benefits, "sanctions": sanctions, "blacklist": _blacklist(sanctions)}
        if "reasons" in fields:
            explained = self._explanation(citizen_id)
            full["reasons"] = [] if explained is None else explained.factors.to_dicts()
        out |= {f: full[f] for f in fields}
        self._record(key, citizen_id, purpose, fields, "lookup")
        return out

    def lookup_json(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> bytes:
        """`lookup` as the JSON bytes of the response (the hot path of the API); logged."""
        return _json(self.lookup(key, citizen_id, purpose))

    def search(self, key: ApiKey, prefix: str, purpose: str | None = None, *, page: int = 1) -> dict:
        """Citizens whose id starts with `prefix`, SEARCH_PAGE a page (from 1), with score and class
        as the grant shows them; logged for each citizen listed (a refusal for each it would list)."""
        if key.role == "citizen":  # before any query: whether other ids exist is not a citizen's to learn
            raise Forbidden("a citizen key reads only its own citizen: searching is for organisations")
        prefix = prefix.strip()
        try:  # the start of an id: what no citizen id can hold is refused
            check_text(prefix, "citizen_id")
        except EventError as exc:
            raise Invalid(str(exc), field="citizen_id") from None
        if not prefix:
            raise Invalid("enter the start of a citizen id", field="citizen_id")
        page = max(1, page)
        match = "substr(citizen_id, 1, ?) = ?"  # not LIKE: SQLite's ignores case, and _ and % are wildcards
        total = int(self.db.execute(f"SELECT COUNT(*) FROM citizens WHERE {match}", (len(prefix), prefix))[0][0])
        ids = [row[0] for row in self.db.execute(
            f"SELECT citizen_id FROM citizens WHERE {match} ORDER BY citizen_id LIMIT ? OFFSET ?",
            (len(prefix), prefix, SEARCH_PAGE, (page - 1) * SEARCH_PAGE))]
        if not ids:  # nobody to log for; the grant and purpose are checked all the same
            fields = DISCLOSURES["search"].shown(
                self.access.permit(key, key.citizen_id or "", purpose, DISCLOSURES["search"]))
        refusal = None
        for citizen_id in ids:
            try:
                fields = self._permit(key, citizen_id, purpose, "search")
            except Forbidden as exc:  # logged for this citizen; the others it would list are logged too
                refusal = exc
        if refusal is not None:
            raise refusal
        citizens = []
        for citizen_id in ids:
            score, klass, _ = self._status(citizen_id)
            citizens.append({"citizen_id": citizen_id,
                             **{f: v for f, v in (("score", score), ("class", klass)) if f in fields}})
            self._record(key, citizen_id, purpose, fields, "search")
        return {"prefix": prefix, "page": page, "pages": max(1, -(-total // SEARCH_PAGE)), "total": total,
                "fields": fields, "citizens": citizens}

    def _ledger_of(self, citizen_id: str, *, voided: bool = False) -> pl.DataFrame:
        cols = ", ".join(EVENT_SCHEMA)
        return self.db.frame(f"SELECT {cols} FROM events WHERE citizen_id = ? AND voided = ?",
                             (citizen_id, int(voided)), {**EVENT_SCHEMA, "day": pl.Int32})

    def _explanation(self, citizen_id: str) -> Explanation | None:
        """The engine's explanation of the citizen's score (None: no event in the ledger)."""
        ledger = self._ledger_of(citizen_id)
        if ledger.height == 0:
            return None
        return explain(self.compiled, ledger, citizen_id, as_of=self.day, births=self.ledger.births_of(citizen_id))

    def _dated(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` with the date of its `day` column (ISO text) beside it."""
        after = frame.columns.index("day") + 1
        return frame.with_columns(date=self.calendar.dates(pl.col("day")).dt.to_string("%Y-%m-%d")).select(
            *frame.columns[:after], "date", *frame.columns[after:])

    def history(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> dict:
        """Reason codes and every event with its points and provenance, as the grant allows; logged."""
        fields = self._permit(key, citizen_id, purpose, "history")
        self._status(citizen_id)
        explained = self._explanation(citizen_id)
        out: dict = {"citizen_id": citizen_id, "day": self.day, "date": self.date}
        if "reasons" in fields:
            out["reasons"] = [] if explained is None else explained.factors.to_dicts()
        if "history" in fields:
            events = [] if explained is None else self._dated(explained.events.with_columns(
                pl.col("status").cast(pl.String), voided=False)).to_dicts()
            voided = self._ledger_of(citizen_id, voided=True).with_columns(
                rule=None, points=0, status=pl.lit("voided"), reason=pl.lit("voided on appeal"), voided=True)
            out["events"] = events + self._dated(voided.select(
                "event_id", "day", "kind", "rule", "points", "status", "reason", "source", "source_ref",
                "confidence", "voided")).to_dicts()
            grant = self.access.grant_of(key.role)
            if "offers" not in grant.fields:  # the commercial profile's records are for grants with 'offers'
                out["events"] = [e for e in out["events"] if not is_profile_kind_text(e["kind"])]
        self._record(key, citizen_id, purpose, fields, "history")
        return out

    def lookups(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> dict:
        """Who looked this citizen up, and who tried and was refused (GDPR Art. 15), for the roles
        whose grant has 'lookups'; another role's reading is logged too (the citizen's own is not:
        it would add a row each time they read the log)."""
        self._permit(key, citizen_id, purpose, "lookups")
        self._log.flush()  # the look-ups answered so far, including those still in the queue
        rows = self.db.log.frame(
            "SELECT at, day, key_name, role, purpose, fields, endpoint FROM lookups "
            "WHERE citizen_id = ? ORDER BY id DESC LIMIT 1000", (citizen_id,),
            {"at": pl.String, "day": pl.Int32, "who": pl.String, "role": pl.String,
             "purpose": pl.String, "fields": pl.String, "endpoint": pl.String})
        rows = self._dated(rows.with_columns(pl.col("fields").str.split(",")))
        refused = self.db.log.frame(
            "SELECT at, day, key_name, role, purpose, endpoint, reason FROM refusals "
            "WHERE citizen_id = ? ORDER BY id DESC LIMIT 1000", (citizen_id,),
            {"at": pl.String, "day": pl.Int32, "who": pl.String, "role": pl.String,
             "purpose": pl.String, "endpoint": pl.String, "reason": pl.String})
        if key.role != "citizen":
            self._record(key, citizen_id, purpose, ["lookups"], "lookups")
        return {"citizen_id": citizen_id, "lookups": rows.to_dicts(), "refused": self._dated(refused).to_dicts()}

    def profile(self, key: ApiKey, citizen_id: str, purpose: str | None = None) -> dict:
        """The camera profile from the data centre, for roles whose grant has 'profile'; logged.

        A citizen loaded from a simulation run starts from the run's camera profile (the age
        estimate, its uncertainty, sightings by place type: see `Ledger.load_run`); the camera
        events sent since (not loaded with the run) add to the sightings, and a voided run event
        takes its sighting out again. Without a loaded profile, the camera events are the sightings
        and there is no age estimate.
        """
        fields = self._permit(key, citizen_id, purpose, "profile")
        _, _, idx = self._status(citizen_id)
        cams = self.db.frame("SELECT day, source_ref, confidence, batch, voided, kind FROM events "
                             "WHERE citizen_id = ? AND source = ? ORDER BY day, event_id",
                             (citizen_id, CAMERA_SOURCE),
                             {"day": pl.Int32, "camera": pl.String, "confidence": pl.Float64,
                              "batch": pl.Int64, "voided": pl.Int32, "kind": pl.String})
        # A record of the shop's commercial profile is no sighting of the state's cameras.
        cams = cams.filter(~is_profile_kind(pl.col("kind"))).with_columns(place_type=place_type(pl.col("camera")))
        stored = self.db.execute("SELECT age_estimate, age_uncertainty, sightings, by_place FROM camera_profiles "
                                 "WHERE citizen_id = ?", (citizen_id,))
        by_place: dict[str, int] = {}
        if stored:
            estimate, uncertainty, sightings, places = stored[0]
            by_place = {p: int(n) for p, n in json.loads(places).items()}
            # The run's camera events are in its profile already: only those sent since count on
            # top; a voided run event is a sighting taken out.
            added = cams.filter((pl.col("batch") > 0) & (pl.col("voided") == 0))
            removed = cams.filter((pl.col("batch") == 0) & (pl.col("voided") != 0))
            sightings = max(0, int(sightings) + added.height - removed.height)
        else:
            estimate = uncertainty = None
            added = cams.filter(pl.col("voided") == 0)
            removed = cams.clear()
            sightings = added.height
        for frame, sign in ((added, 1), (removed, -1)):
            for place, n in frame.group_by("place_type").len().iter_rows():
                by_place[place] = max(0, by_place.get(place, 0) + sign * n)
        counted = cams.filter(pl.col("voided") == 0)
        flags = {}
        if "sanctions" in fields:  # the sanctions behind the flags, where the grant shows them
            _, sanctions = self.consequences(citizen_id, idx, benefits=False)
            flags["flags"] = [f"sanction:{s['name']}" for s in sanctions]
            if any(s["effect"] == "gate_stop" for s in sanctions):
                flags["flags"].append("stop-at-subway-gate")
        last = (self._dated(counted.select("day", "camera", "confidence")).row(-1, named=True)
                if counted.height else None)
        self._record(key, citizen_id, purpose, fields, "profile")
        return {
            "citizen_id": citizen_id, "day": self.day, "date": self.date,
            "age_estimate": estimate,
            "age_uncertainty": uncertainty,
            "sightings": sightings,
            "sightings_by_place_type": {p: n for p, n in sorted(by_place.items()) if n},
            "last_seen": last,
            **flags,
        }


_PLAIN_FIELDS = frozenset(("score", "class", "reasons"))
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _json(body: dict) -> bytes:
    """JSON bytes as Starlette's JSONResponse writes them."""
    return _encode(body).encode()


def _since(history: list[tuple], current: int, start: int, qualifies) -> int | None:
    """First day of the current unbroken stretch in qualifying classes, None if not in one now."""
    if not qualifies(current):
        return None
    since = 0 if qualifies(start) else None
    for day, idx in history:
        if not qualifies(idx):
            since = None
        elif since is None:
            since = int(day)
    return since


def _consequence(c: CompiledConsequence, since: int, since_date: str) -> dict:
    item = c.consequence
    return {"name": c.name, "class": item.class_, "effect": c.effect, "context": item.context,
            "since_day": since, "since_date": since_date, "held_days": c.held_days, "description": item.description,
            "parameters": c.params.model_dump()}


def _blacklist(sanctions: list[dict]) -> dict:
    bans = [s["name"] for s in sanctions if s["effect"] in ("flight_ban", "train_ban")]
    return {"listed": bool(bans), "bans": bans}


def place_type(ref: pl.Expr) -> pl.Expr:
    """The place type of camera references (see CAMERA_SOURCE): a bare place type as the simulator
    writes it, or the last but one part of cam-<region>-<placetype>-<n> (a region may hold dashes)."""
    parts = ref.fill_null("").str.split("-")
    return (pl.when(ref.is_in(PLACE_TYPES)).then(ref)
            .when((parts.list.len() >= 4) & (parts.list.first() == "cam")).then(parts.list.get(-2, null_on_oob=True))
            .otherwise(pl.lit("unknown")))
