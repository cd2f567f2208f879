"""Lives: a few citizens of a run, each chosen by a stated rule, with their scores replayed by the engine.

Pure functions of a run's tables (citizens, events, the regions' policies): nothing here reads files
or plots. A life is replayed from that citizen's events only, so it is cheap at any run size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from socialcredit.engine import BIRTHS_SCHEMA, CompiledConsequences, CompiledPolicy, explain, score_ledger
from socialcredit.events import validate_events
from socialcredit.policy import Policy

Frame = pl.DataFrame | pl.LazyFrame


@dataclass(frozen=True)
class Role:
    """A kind of life the report tells, and the rule that picks its citizen from a run."""

    id: str
    title: str
    rule: str
    nobody: str  # what the report says when no citizen of the run fits the rule


ROLES = (
    Role("wronged", "Wrongly penalised by a camera",
         "the scored citizen whose camera false matches (someone else's acts pinned on them) cost the most points",
         "No camera false match cost anyone points in this run."),
    Role("bot", "Lifted to the top by a bot",
         "the bot user in their policy's top class at the end with the most events",
         "No bot user reached their policy's top class in this run."),
    Role("fallen", "Fell into the bottom class",
         "the citizen in their policy's bottom class at the end who lost the most points",
         "Nobody was in the bottom class at the end of this run."),
    Role("typical", "A typical citizen",
         "the citizen of the most common class at the end whose score is closest to the median score, then whose "
         "number of events is closest to the median number",
         "No citizen was scored in this run."),
)


@dataclass(frozen=True)
class Life:
    """One citizen's year: who they are, their events as the policy decided them, their score by day."""

    role: Role
    citizen: dict  # their row of citizens.parquet
    policy: Policy
    events: pl.DataFrame  # event_id, day, kind, source, confidence, wrongful, actor_id, rule, points, status, reason
    scores: pl.DataFrame  # day, score, class: the start (day 0, or the day they came of age), then each change
    factors: pl.DataFrame  # the engine's key factors (reason codes): rule, reason, effect, points, events
    consequences: pl.DataFrame  # consequence, kind, effect, first_day, last_day: what their classes brought


def choose_lives(citizens: Frame, events: Frame, policies: Mapping[str, Policy]) -> list[tuple[Role, str | None]]:
    """Each role with the citizen its rule picks (None where nobody fits); ties go to the smallest
    citizen id, and no citizen is picked twice."""
    bounds = pl.DataFrame({"region": list(policies), "top": [p.class_names[0] for p in policies.values()],
                           "bottom": [p.class_names[-1] for p in policies.values()]})
    scored = (_lazy(citizens).filter(pl.col("class").is_not_null())
              .with_columns(pl.col("region").cast(pl.String))
              .join(bounds.lazy(), on="region")
              .select("citizen_id", "class", "score", "bot", "top", "bottom"))
    per_citizen = (_lazy(events).group_by("citizen_id").agg(
        events=pl.len(),
        lost=pl.col("state_points").clip(upper_bound=0).sum(),
        camera_wrongful=pl.col("state_points").filter(pl.col("wrongful") & (pl.col("source") == "camera")).sum()))
    people = (scored.join(per_citizen, on="citizen_id", how="left")
              .with_columns(pl.col("events", "lost", "camera_wrongful").fill_null(0)).collect())
    common = people["class"].value_counts().sort("count", "class", descending=[True, False])
    candidates = {
        "wronged": people.filter(pl.col("camera_wrongful") < 0).sort("camera_wrongful", "citizen_id"),
        "bot": people.filter(pl.col("bot") & (pl.col("class") == pl.col("top")))
        .sort("events", "citizen_id", descending=[True, False]),
        "fallen": people.filter(pl.col("class") == pl.col("bottom")).sort("lost", "citizen_id"),
        "typical": people.filter(pl.col("class") == (common["class"][0] if common.height else None)).sort(
            (pl.col("score") - people["score"].median()).abs(),
            (pl.col("events") - people["events"].median()).abs(), "citizen_id"),
    }
    chosen: list[tuple[Role, str | None]] = []
    for role in ROLES:
        taken = [c for _, c in chosen if c is not None]
        left = candidates[role.id].filter(~pl.col("citizen_id").is_in(taken))
        chosen.append((role, left["citizen_id"][0] if left.height else None))
    return chosen


def replay_life(role: Role, citizen: dict, policy: Policy, events: pl.DataFrame, *, days: int) -> Life:
    """`citizen`'s score and class over the run's `days`, replayed by the engine from their `events`
    (the run's rows of that citizen, with `wrongful` and `actor_id`)."""
    compiled = CompiledPolicy.of(policy)
    mine = events.sort("day", "event_id")
    ledger = validate_events(mine, origin=f"events of {citizen['citizen_id']}")
    births = pl.DataFrame({"citizen_id": [citizen["citizen_id"]], "birth_day": [citizen["birth_day"]]},
                          schema=BIRTHS_SCHEMA)
    last = days - 1
    decided = score_ledger(compiled, ledger, as_of=last, births=births).decisions
    expiry = {r.id: r.expires_after_days for r in policy.rules if r.expires_after_days}
    counted = decided.filter(pl.col("status").is_in(["counted", "expired"]))
    leaving = [d + expiry[r] for d, r in zip(counted["day"], counted["rule"], strict=True) if r in expiry]
    first = compiled.scored_from(pl.Series([citizen["citizen_id"]]), births)
    entry = max(int(first[0]), 0) if first is not None else 0
    # The score can change only on the day of an event and on the day its points leave.
    turns = sorted({int(d) for d in ledger["day"]}.union(leaving) & set(range(entry, days)))
    start_class = policy.class_names[int(compiled.classify(np.array([policy.start]))[0])]
    rows = [(entry, policy.start, start_class)]
    for day in turns if ledger.height else []:
        now = score_ledger(compiled, ledger, as_of=day, births=births).scores
        score, klass = now.row(0)[1:]
        if (rows[-1][1], rows[-1][2]) != (score, klass):
            rows.append((day, score, str(klass)))
    scores = pl.DataFrame(rows, schema={"day": pl.Int64, "score": pl.Int64, "class": pl.String}, orient="row")
    decisions = mine.select("event_id", "wrongful", "actor_id").join(
        decided.select("event_id", "day", "kind", "source", "confidence", "rule", "points", "status", "reason"),
        on="event_id").sort("day", "event_id")
    factors = explain(compiled, ledger, citizen["citizen_id"], as_of=last, births=births).factors \
        if ledger.height else pl.DataFrame(schema={"rule": pl.String, "reason": pl.String, "effect": pl.String,
                                                   "points": pl.Int64, "events": pl.UInt32})
    return Life(role=role, citizen=citizen, policy=policy, events=decisions, scores=scores, factors=factors,
                consequences=_consequences(policy, scores, last))


def _consequences(policy: Policy, scores: pl.DataFrame, last: int) -> pl.DataFrame:
    """The benefits and sanctions the classes in `scores` brought, each from the day its classes had
    been held for its held days to the day the citizen left them (one row per stretch)."""
    rank = {name: i for i, name in enumerate(policy.class_names)}
    ends = [*(d - 1 for d in scores["day"][1:]), last]
    stretches = [(int(d), int(e), rank[k]) for d, e, k in zip(scores["day"], ends, scores["class"], strict=True)]
    rows = []
    for item in CompiledConsequences.of(policy).items:
        start = None
        for i, (first, end, level) in enumerate(stretches):
            if not item.covers(level):
                continue
            start = first if start is None else start
            if i + 1 < len(stretches) and item.covers(stretches[i + 1][2]):
                continue
            if start + item.held_days <= end:
                rows.append((item.name, "benefit" if item.benefit else "sanction", item.effect,
                             start + item.held_days, end))
            start = None
    return pl.DataFrame(rows, schema={"consequence": pl.String, "kind": pl.String, "effect": pl.String,
                                      "first_day": pl.Int64, "last_day": pl.Int64},
                        orient="row").sort("first_day", "consequence")


def _lazy(frame: Frame) -> pl.LazyFrame:
    return frame.lazy() if isinstance(frame, pl.DataFrame) else frame
