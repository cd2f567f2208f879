"""Decisions a class brings about: the subway gate, the airline's check, the bank's quote."""

from __future__ import annotations

from socialcredit.service._keys import ApiKey
from socialcredit.service._lookups import NOT_SCORED

# Loans (ASSUMPTION, the report gives no rates): 4% for the top class, +0.5 points per class below,
# moved by a `loan_price` benefit's or sanction's rate_change; a `loan_refusal` sanction refuses it.
LOAN_BASE_RATE = 0.04
LOAN_CLASS_SPREAD = 0.005


class Decisions:
    """The Service's decisions (a mixin over its look-ups and compiled consequences)."""

    def _consequence_check(self, key: ApiKey, citizen_id: str, purpose: str | None, endpoint: str, *,
                           benefits: bool = True) -> tuple[list[str], tuple[int | None, str | None, int],
                                                           list[dict], list[dict]]:
        """What the grant shows of the consequences behind a decision (access.DISCLOSURES), the
        score, class and class index, and the benefits (where the decision reads them) and
        sanctions in force."""
        fields = self._permit(key, citizen_id, purpose, endpoint)
        status = self._status(citizen_id)
        benefits, sanctions = self.consequences(citizen_id, status[2], benefits=benefits)
        return fields, status, benefits, sanctions

    # The decision itself is what the role is there for; the sanctions and benefits behind it are
    # shown only where the grant lets the role see them.

    def subway_gate(self, key: ApiKey, citizen_id: str, gate: str | None, purpose: str | None) -> dict:
        """A subway gate's decision: stop a citizen under a gate sanction, else pass; logged."""
        fields, _, _, sanctions = self._consequence_check(key, citizen_id, purpose, "gate", benefits=False)
        stops = [s["name"] for s in sanctions if s["effect"] == "gate_stop"]
        out = {"citizen_id": citizen_id, "gate": gate, "decision": "stop" if stops else "pass"}
        if "sanctions" in fields:
            out["because"] = stops
        self._record(key, citizen_id, purpose, ["decision", *fields], "gate")
        return out

    def flight_check(self, key: ApiKey, citizen_id: str, flight: str | None, purpose: str | None) -> dict:
        """An airline's check: banned under a flight-ban sanction, else may board; logged."""
        fields, _, benefits, sanctions = self._consequence_check(key, citizen_id, purpose, "flight")
        bans = [s["name"] for s in sanctions if s["effect"] == "flight_ban"]
        out = {"citizen_id": citizen_id, "flight": flight, "may_board": not bans,
               "decision": "banned" if bans else "board"}
        if "sanctions" in fields:
            out["because"] = bans
        if "benefits" in fields:
            out["discount"] = sum(b["parameters"]["discount"] for b in benefits if b["effect"] == "flight_price")
        self._record(key, citizen_id, purpose, ["decision", *fields], "flight")
        return out

    def loan_quote(self, key: ApiKey, citizen_id: str, amount: float | None, purpose: str | None) -> dict:
        """A bank's quote: the rate by class, benefits and sanctions, and what moved it; logged.

        `rate_changes` says what moved the rate off `base_rate` (the top class's), each as the grant
        lets the bank see it: the class where it shows 'class', each `loan_price` benefit or
        sanction where it shows 'benefits' or 'sanctions'.
        """
        fields, (score, klass, idx), benefits, sanctions = self._consequence_check(key, citizen_id, purpose, "loan")
        refused = [s["name"] for s in sanctions if s["effect"] == "loan_refusal"]
        # A citizen the policy does not score is quoted as one without a record.
        priced_idx = self.ledger.start_class if idx == NOT_SCORED else idx
        priced_as = f"class {self.policy.class_names[priced_idx]}"
        changes = [("class", priced_as if idx != NOT_SCORED else f"no score yet (priced as {priced_as})",
                    LOAN_CLASS_SPREAD * priced_idx)]
        changes += [("benefits" if c in benefits else "sanctions", c["name"], c["parameters"]["rate_change"])
                    for c in (*benefits, *sanctions) if c["effect"] == "loan_price"]
        rate = LOAN_BASE_RATE + sum(change for _, _, change in changes)
        out = {"citizen_id": citizen_id, "amount": amount, "approved": not refused,
               "rate": None if refused else round(rate, 6), "base_rate": LOAN_BASE_RATE}
        if refused:
            changes = []
        out["rate_changes"] = [{"because": because, "rate_change": round(change, 6)}
                               for field, because, change in changes if field in fields and change]
        out |= {f: v for f, v in (("score", score), ("class", klass)) if f in fields}
        if "sanctions" in fields:
            # Every sanction the citizen is under, as the grant lets the bank see them; `refused_by`
            # names those that stop the loan.
            out["sanctions"] = [s["name"] for s in sanctions]
            out["refused_by"] = refused
        if "benefits" in fields:
            out["benefits"] = [b["name"] for b in benefits if b["effect"] == "loan_price"]
        self._record(key, citizen_id, purpose, ["decision", *fields], "loan")
        return out
