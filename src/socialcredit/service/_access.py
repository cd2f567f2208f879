"""Access: what each endpoint and page discloses of a citizen, and what each role may see of it.

`DISCLOSURES` is the one table of what every answer about a citizen can disclose (grant fields);
the policy's grants decide which of them a caller gets. Every disclosure goes through
`Access.permit`: the caller's grant, the purpose where the grant requires one, the fields it may
see; the Service logs each answer for the citizen with the fields it showed, and each refusal
with its reason (the citizen sees who tried).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from socialcredit.policy import Grant, Policy
from socialcredit.service._errors import Forbidden
from socialcredit.service._keys import ApiKey, now


@dataclass(frozen=True)
class Disclosure:
    """One endpoint or page that answers about a citizen.

    `fields`: the grant fields it can disclose, each shown only where the caller's grant has it;
    a caller whose grant has none of `needs` (default: `fields`) is refused. `roles`: the roles
    whose business the answer is (a decision at the gate is security's), None for any role with a
    grant; those roles get the decision itself whatever their grant shows.
    """

    name: str  # as the look-up log names it
    routes: tuple[str, ...]
    fields: tuple[str, ...]
    roles: tuple[str, ...] | None = None
    needs: tuple[str, ...] | None = None
    what: str = ""  # in words, for a refusal

    def shown(self, grant: Grant) -> list[str]:
        """The fields of this disclosure that `grant` shows, in this disclosure's order."""
        return [f for f in self.fields if f in grant.fields]


DISCLOSURES: dict[str, Disclosure] = {d.name: d for d in (
    Disclosure("lookup", ("GET /api/citizens/{id}", "/app", "/portal look-up"),
               ("score", "class", "benefits", "sanctions", "reasons", "blacklist"), what="a look-up"),
    Disclosure("history", ("GET /api/citizens/{id}/history", "/app"), ("reasons", "history"), what="a history"),
    Disclosure("lookups", ("GET /api/citizens/{id}/lookups", "/app"), ("lookups",), what="the look-up log"),
    Disclosure("profile", ("GET /api/citizens/{id}/profile", "/portal look-up"), ("profile", "sanctions"),
               needs=("profile",), what="a camera profile"),
    # The platform's commercial profile (in-store records, purchases) and the offers built from it.
    Disclosure("offers", ("GET /api/citizens/{id}/offers", "/portal offers", "/app"), ("offers",),
               what="the commercial profile and its offers"),
    Disclosure("gate", ("POST /api/gates/subway", "/portal gate"), ("sanctions",), roles=("security",),
               what="the subway gate"),
    Disclosure("flight", ("POST /api/flights/check", "/portal flight"), ("sanctions", "benefits"),
               roles=("airline",), what="the flight check"),
    Disclosure("loan", ("POST /api/loans/quote", "/portal loan"), ("score", "class", "sanctions", "benefits"),
               roles=("bank",), what="the loan quote"),
    Disclosure("appeals", ("/portal appeals", "/app"), ("history",), roles=("agency", "citizen"),
               what="the appeals"),
    Disclosure("appeal-decision", ("POST /api/appeals/{id}/decision", "/portal appeals"), ("score", "class"),
               roles=("agency",), what="an appeal decision"),
    # A search lists citizens by id prefix with their score and class as the grant shows them: an
    # id alone would say nothing a look-up does not, so a grant with neither cannot search.
    Disclosure("search", ("/portal search",), ("score", "class"), what="a citizen search"),
    # The citizens behind a dashboard number (a class, region, group or consequence): each row
    # shows its region and group (the filters themselves) and these fields as the grant allows.
    Disclosure("roster", ("/dashboard/citizens",), ("score", "class", "benefits", "sanctions"),
               what="a list of citizens"),
)}
# A purpose says something: at least three letters or digits ("." or " x " is no purpose).
_MEANINGFUL = re.compile(r"([^\W_][\W_]*){3}")


class Access:
    """The policy's grants, worked out once per role (looked up on every request)."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self._grants = {g.role: g for g in reversed(policy.grants)}  # the first grant of a role wins

    def grant_of(self, role: str) -> Grant | None:
        """The role's grant (None: the policy grants it nothing)."""
        return self._grants.get(role)

    def permit(self, key: ApiKey, citizen_id: str, purpose: str | None, disclosure: Disclosure) -> Grant:
        """The caller's grant for `disclosure` about `citizen_id`, or Forbidden saying why."""
        what = disclosure.what or disclosure.name
        if disclosure.roles is not None and key.role not in disclosure.roles:
            raise Forbidden(f"{what} is for {' and '.join(disclosure.roles)} keys, not '{key.role}'")
        grant = self._grants.get(key.role)
        if grant is None:
            raise Forbidden(f"policy '{self.policy.name}' grants role '{key.role}' no look-ups")
        if key.role == "citizen" and key.citizen_id != citizen_id:
            raise Forbidden("a citizen key may read only its own citizen")
        needs = disclosure.needs or disclosure.fields
        if disclosure.roles is None and not any(f in grant.fields for f in needs):
            raise Forbidden(f"policy '{self.policy.name}' does not let role '{key.role}' see "
                            f"{' or '.join(repr(f) for f in needs)} ({what})")
        if key.role != "citizen" and grant.purpose_required and not _MEANINGFUL.search(purpose or ""):
            raise Forbidden(f"role '{key.role}' must state a purpose (X-Purpose header, at least three letters "
                            f"or digits) for {what}")
        return grant


def log_row(key: ApiKey, citizen_id: str, purpose: str | None, fields: list[str], endpoint: str,
            day: int) -> tuple:
    """The look-up log's row for one disclosure: who, role, purpose, fields, endpoint, when."""
    return (citizen_id, key.name, key.role, _stated(purpose), ",".join(fields), endpoint, now(), day)


def refusal_row(key: ApiKey, citizen_id: str, purpose: str | None, endpoint: str, reason: str,
                day: int) -> tuple:
    """The refusals table's row for one refused disclosure: who, role, purpose, endpoint, why, when."""
    return (citizen_id, key.name, key.role, _stated(purpose), endpoint, reason, now(), day)


def _stated(purpose: str | None) -> str | None:
    return (purpose or "").strip() or None  # a blank purpose is no purpose
