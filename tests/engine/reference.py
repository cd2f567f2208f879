"""A slow, obviously correct reading of the scoring semantics, used as the tests' oracle."""

from collections import defaultdict


def reference_scores(policy, rows: list[dict], as_of: int,
                     births: dict[str, int] | None = None) -> dict[str, tuple[int, str]]:
    """Score and class per citizen; `births` (citizen -> birth day) for a policy's min_age: a
    citizen is scored from the day they are min_age years (of 365 days) old, unlisted ones always."""
    births = births or {}

    def of_age(citizen, day):
        return citizen not in births or day >= births[citizen] + 365 * policy.min_age

    rules = {r.kind: r for r in policy.rules}
    passing = defaultdict(list)
    for e in rows:
        rule = rules.get(e["kind"])
        if rule is None or not of_age(e["citizen_id"], e["day"]):
            continue
        if rule.sources is not None and e.get("source") not in rule.sources:
            continue
        conf = 1.0 if e.get("confidence") is None else e["confidence"]
        if conf < rule.min_confidence:
            continue
        passing[(rule.id, e["citizen_id"], e["day"])].append(e)
    counted = []
    for (rule_id, _, _), group in passing.items():
        rule = next(r for r in policy.rules if r.id == rule_id)
        group = sorted(group, key=lambda e: e["event_id"])
        counted += [(rule, e) for e in group[: rule.max_per_day or len(group)]]
    names = policy.class_names
    totals = {e["citizen_id"]: 0 for e in rows}
    worst = {e["citizen_id"]: 0 for e in rows}
    for rule, e in counted:
        alive = e["day"] <= as_of and (rule.expires_after_days is None
                                      or as_of < e["day"] + rule.expires_after_days)
        if alive:
            totals[e["citizen_id"]] += rule.points
            if rule.class_at_most:
                worst[e["citizen_id"]] = max(worst[e["citizen_id"]], names.index(rule.class_at_most))
    out = {}
    for citizen, total in totals.items():
        if not of_age(citizen, as_of):
            continue
        score = min(max(policy.start + total, policy.min), policy.max)
        idx = next(i for i, c in enumerate(policy.classes) if c.min is None or c.min <= score)
        out[citizen] = (score, names[max(idx, worst[citizen])])
    return out
