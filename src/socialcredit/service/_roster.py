"""The roster: the citizens behind a dashboard number (a class, region, group or consequence),
paged and sorted, each row showing what the caller's grant allows and logged for its citizen."""

from __future__ import annotations

from dataclasses import dataclass

from socialcredit.engine import CompiledConsequence
from socialcredit.service._access import DISCLOSURES, log_row
from socialcredit.service._errors import Forbidden, Invalid
from socialcredit.service._keys import ApiKey
from socialcredit.service._lookups import NOT_SCORED, _since

ROSTER_ROLES = ("analyst", "agency")  # the roles that read the statistics the roster drills into
MAX_PER_PAGE = 200
# Sort keys, and the grant field each needs (a list sorted by score discloses the order of scores).
SORTS = {"citizen": None, "region": None, "group": None, "class": "class", "score": "score"}
_ORDER = {"citizen": "citizen_id", "region": "region", "group": "grp", "class": "class_idx", "score": "score"}


@dataclass(frozen=True)
class RosterQuery:
    """Which citizens (every filter given must match), in what order, which page."""

    klass: str | None = None
    region: str | None = None
    group: str | None = None
    consequence: str | None = None
    sort: str = "citizen"
    descending: bool = False
    page: int = 1
    per_page: int = 50


class Roster:
    """The Service's roster (a mixin: it reads the Service's database, policy, grants and log)."""

    def roster(self, key: ApiKey, query: RosterQuery, purpose: str | None = None) -> dict:
        """Citizens matching `query`, a page of them, with the grant's fields; each row logged."""
        if key.role not in ROSTER_ROLES:
            raise Forbidden(f"only {' and '.join(ROSTER_ROLES)} keys may list citizens")
        disclosure = DISCLOSURES["roster"]
        fields = disclosure.shown(self.access.permit(key, "", purpose, disclosure))
        consequence = None
        if query.consequence is not None:
            consequence = next((c for c in self.consequence_rules.items if c.name == query.consequence), None)
            if consequence is None:
                raise Invalid(f"policy '{self.policy.name}' has no consequence '{query.consequence}'",
                              field="consequence")
            _needs(fields, "benefits" if consequence.benefit else "sanctions", "list citizens by consequence")
        if query.klass is not None:
            _needs(fields, "class", "list citizens by class")
            if query.klass not in self.policy.class_names:
                raise Invalid(f"policy '{self.policy.name}' has no class '{query.klass}'", field="class")
        if query.sort not in SORTS:
            raise Invalid(f"sort by one of {', '.join(SORTS)}, not '{query.sort}'", field="sort")
        if SORTS[query.sort]:
            _needs(fields, SORTS[query.sort], f"sort by {query.sort}")
        if not 1 <= query.per_page <= MAX_PER_PAGE or query.page < 1:
            raise Invalid(f"pages hold 1 to {MAX_PER_PAGE} citizens and are numbered from 1", field="page")

        where, params = [], []
        for column, value in (("region", query.region), ("grp", query.group)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.klass is not None:
            where.append("class_idx = ?")
            params.append(self.policy.class_names.index(query.klass))
        if consequence is not None:
            classes = [i for i in range(len(self.policy.class_names)) if consequence.covers(i)]
            where.append(f"class_idx IN ({', '.join('?' * len(classes))})")
            params += classes
        selected = (f"SELECT * FROM (SELECT c.citizen_id, {self._attribute('region')} AS region, "
                    f"{self._attribute('group')} AS grp, s.score, s.class_idx FROM citizens c "
                    "LEFT JOIN scores s ON s.citizen_id = c.citizen_id) AS roster")
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        direction = "DESC" if query.descending else "ASC"
        order = f" ORDER BY {_ORDER[query.sort]} {direction}, citizen_id {direction}"
        offset = (query.page - 1) * query.per_page
        if consequence is not None and consequence.held_days:
            # In force only once the band has been held long enough: worked out per citizen.
            rows = [r for r in self.db.execute(selected + condition + order, params)
                    if self._in_force(r[0], int(r[4]), consequence)]
            total, rows = len(rows), rows[offset:offset + query.per_page]
        else:
            total = int(self.db.execute(f"SELECT COUNT(*) FROM ({selected}{condition}) AS matching", params)[0][0])
            rows = self.db.execute(f"{selected}{condition}{order} LIMIT ? OFFSET ?",
                                   [*params, query.per_page, offset])
        citizens = [self._roster_row(fields, *row) for row in rows]
        self._log.write([log_row(key, row["citizen_id"], purpose, fields, "roster", self.day) for row in citizens])
        return {"day": self.day, "date": self.date, "fields": fields, "total": total, "page": query.page,
                "per_page": query.per_page, "pages": max(1, -(-total // query.per_page)), "sort": query.sort,
                "descending": query.descending, "citizens": citizens}

    def _attribute(self, name: str) -> str:
        """SQL for one attribute of the citizens table's JSON `attributes`, as text."""
        if self.db.dialect == "postgresql":
            return f"(c.attributes::json ->> '{name}')"
        return f"json_extract(c.attributes, '$.{name}')"

    def _in_force(self, citizen_id: str, class_idx: int, consequence: CompiledConsequence) -> bool:
        rules = self.consequence_rules
        history = self.db.execute("SELECT day, class_idx FROM class_history WHERE citizen_id = ? ORDER BY day, id",
                                  (citizen_id,))
        band = rules.band(class_idx)
        since = _since(history, class_idx, self.ledger.start_class, lambda i: rules.band(i) == band)
        return since is not None and consequence in rules.in_force(class_idx, since, self.day)

    def _roster_row(self, fields: list[str], citizen_id: str, region, group, score, class_idx) -> dict:
        idx = NOT_SCORED if class_idx is None else int(class_idx)
        row: dict = {"citizen_id": citizen_id, "region": region, "group": group}
        if "score" in fields:
            row["score"] = None if score is None else int(score)
        if "class" in fields:
            row["class"] = None if idx == NOT_SCORED else self.policy.class_names[idx]
        if "benefits" in fields or "sanctions" in fields:
            benefits, sanctions = self.consequences(citizen_id, idx, benefits="benefits" in fields,
                                                    sanctions="sanctions" in fields)
            if "benefits" in fields:
                row["benefits"] = [b["name"] for b in benefits]
            if "sanctions" in fields:
                row["sanctions"] = [s["name"] for s in sanctions]
        return row


def _needs(fields: list[str], field: str, what: str) -> None:
    if field not in fields:
        raise Forbidden(f"the grant does not show '{field}', so it cannot {what}")


