"""Policy audit: the rules and consequences a regulator would question, flagged."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from socialcredit.policy import Policy

FLAGS = {
    "unrelated-sanction": "sanction lands in a context unrelated to acts that lead to it (EU AI Act Art. 5(1)(c))",
    "speech-or-lifestyle": "rule scores speech or private lifestyle",
    "gameable": "reward a program can collect without limit (the report's newspaper bot)",
    "camera-no-threshold": "camera matches count without a confidence threshold",
    "never-expires": "points never expire",
    "no-appeal": "the policy offers no appeal against its decisions",
}
# Acts that a program can perform on a citizen's behalf: online and shopping platforms.
_AUTOMATABLE_SOURCE_TYPES = {"platform"}
_AUTOMATABLE_KIND_PREFIXES = ("online.", "shop.")


@dataclass(frozen=True)
class Audit:
    """The flagged items of one policy."""

    policy: str
    items: pl.DataFrame  # item, name, context, detail, flags (list of flag names)

    @property
    def flag_counts(self) -> dict[str, int]:
        """How many items carry each flag."""
        counts = dict.fromkeys(FLAGS, 0)
        for flags in self.items["flags"]:
            for flag in flags:
                counts[flag] += 1
        return counts

    def has(self, flag: str) -> bool:
        """Whether any item carries `flag`."""
        return self.flag_counts[flag] > 0


def audit_policy(policy: Policy) -> Audit:
    """Flag every rule and consequence of `policy` (and the policy itself for appeals)."""
    source_types = {s.id: s.type for s in policy.sources}
    rows = []
    for rule in policy.rules:
        flags = []
        if rule.context in ("speech", "lifestyle"):
            flags.append("speech-or-lifestyle")
        if rule.points > 0 and rule.expires_after_days is None and _automatable(rule, source_types):
            flags.append("gameable")
        if rule.min_confidence == 0 and _accepts_camera(rule, source_types):
            flags.append("camera-no-threshold")
        if rule.expires_after_days is None and rule.points < 0:
            flags.append("never-expires")
        rows.append(("rule", rule.id, rule.context, f"{rule.kind} {rule.points:+d}", flags))
    names = policy.class_names
    for sanction in policy.sanctions:
        # The acts that can bring a citizen under the sanction: its trigger rules, or else every
        # deduction and class cap that reaches its class.
        reach = names.index(sanction.class_)
        triggers = set(sanction.triggered_by or [])
        causes = sorted({r.context for r in policy.rules if _leads_to(r, triggers, names, reach)})
        unrelated = [c for c in causes if c != sanction.context]
        flags = ["unrelated-sanction"] if unrelated else []
        detail = f"class {sanction.class_} and below"
        if triggers:
            detail += f", only after {', '.join(sorted(triggers))}"
        if unrelated:
            detail += f"; reached through {', '.join(unrelated)}"
        rows.append(("sanction", sanction.name, sanction.context, detail, flags))
    for benefit in policy.benefits:
        rows.append(("benefit", benefit.name, benefit.context, f"class {benefit.class_} and above", []))
    if not policy.appeals:
        rows.append(("policy", policy.name, "general", "appeals = false", ["no-appeal"]))
    items = pl.DataFrame(rows, schema={"item": pl.String, "name": pl.String, "context": pl.String,
                                       "detail": pl.String, "flags": pl.List(pl.String)}, orient="row")
    return Audit(policy=policy.name, items=items)


def _leads_to(rule, triggers: set[str], names: list[str], reach: int) -> bool:
    if triggers:
        return rule.id in triggers
    return rule.points < 0 or (rule.class_at_most is not None and names.index(rule.class_at_most) >= reach)


def _automatable(rule, source_types: dict[str, str]) -> bool:
    if rule.kind.startswith(_AUTOMATABLE_KIND_PREFIXES):
        return True
    return bool(rule.sources) and all(source_types.get(s) in _AUTOMATABLE_SOURCE_TYPES for s in rule.sources)


def _accepts_camera(rule, source_types: dict[str, str]) -> bool:
    if rule.sources is None:
        return True
    return any(s == "camera" or source_types.get(s) == "camera" for s in rule.sources)
