"""Access: what each role may see of a citizen under the policy's grants, and the log row of a disclosure."""

from __future__ import annotations

from socialcredit.policy import Grant, Policy
from socialcredit.service._errors import Forbidden
from socialcredit.service._keys import ApiKey, now

# The fields a look-up (GET /api/citizens/{id}) can show, in the order it shows them.
LOOKUP_FIELDS = ("score", "class", "benefits", "sanctions", "reasons", "blacklist")


class Access:
    """The policy's grants, worked out once per role (looked up on every request)."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self._grants = {g.role: g for g in reversed(policy.grants)}  # the first grant of a role wins
        self.lookup_fields = {role: [f for f in LOOKUP_FIELDS if f in g.fields]
                              for role, g in self._grants.items()}

    def grant(self, key: ApiKey, citizen_id: str, purpose: str | None, what: str) -> Grant:
        """The caller's grant for a look-up of `citizen_id`, or the reason it is refused."""
        grant = self._grants.get(key.role)
        if grant is None:
            raise Forbidden(f"policy '{self.policy.name}' grants role '{key.role}' no look-ups")
        if key.role == "citizen" and key.citizen_id != citizen_id:
            raise Forbidden("a citizen key may read only its own citizen")
        if key.role != "citizen" and grant.purpose_required and not (purpose or "").strip():
            raise Forbidden(f"role '{key.role}' must state a purpose (X-Purpose header) for {what}")
        return grant

    def require(self, grant: Grant, field: str, what: str) -> None:
        """Refuse unless the grant shows `field`."""
        if field not in grant.fields:
            raise Forbidden(f"policy '{self.policy.name}' does not let role '{grant.role}' see "
                            f"'{field}' ({what})")


def log_row(key: ApiKey, citizen_id: str, purpose: str | None, fields: list[str], endpoint: str,
            day: int) -> tuple:
    """The look-up log's row for one disclosure: who, role, purpose, fields, endpoint, when."""
    purpose = (purpose or "").strip() or None  # a blank purpose is no purpose
    return (citizen_id, key.name, key.role, purpose, ",".join(fields), endpoint, now(), day)


def shown(grant: Grant, *fields: str) -> list[str]:
    """Those of `fields` that the grant shows."""
    return [f for f in fields if f in grant.fields]
