"""The simulator's scores and classes are the engine's, on the events it attributed."""

import numpy as np
import polars as pl
import pytest

from socialcredit import load_policy, score_ledger
from socialcredit.events import validate_events
from socialcredit.simulation import simulate
from tests.simulation._replay import consequences, daily_classes

ENGINE_COLUMNS = ["event_id", "citizen_id", "kind", "day", "source", "source_ref", "confidence"]

# Short expiry, daily caps, a confidence threshold and a class cap, all exercised in 40 days.
STRICT = """
name = "strict-test"
title = "Test policy"
start = 1000
min = 0
max = 2000
[[class]]
name = "AAA"
min = 1015
[[class]]
name = "A"
min = 995
[[class]]
name = "C"
min = 985
[[class]]
name = "D"
[[rule]]
id = "red-light"
kind = "traffic.red_light"
points = -7
reason = "red light"
sources = ["camera", "traffic-police"]
min_confidence = 0.99
max_per_day = 1
expires_after_days = 5
[[rule]]
id = "litter"
kind = "public.littering"
points = -4
reason = "litter"
sources = ["camera"]
expires_after_days = 3
[[rule]]
id = "drunk"
kind = "traffic.drunk_driving"
points = -1
reason = "drunk"
class_at_most = "C"
expires_after_days = 9
[[rule]]
id = "paper"
kind = "online.party_newspaper_visit"
points = 3
reason = "paper"
max_per_day = 1
expires_after_days = 7
[[benefit]]
name = "cheaper-loans"
class = "AAA"
effect = "loan_price"
parameters = { rate_change = -0.005 }
held_days = 4
[[sanction]]
name = "flight-ban"
class = "D"
effect = "flight_ban"
"""


def _compare(run, policy_name, members_only=False, commercial=False):
    events = run.events
    citizens = run.citizens
    if members_only:
        members = citizens.filter(pl.col("platform_member"))["citizen_id"]
        events = events.filter(pl.col("citizen_id").is_in(members.implode()))
    ledger = validate_events(events.select(ENGINE_COLUMNS))
    result = score_ledger(load_policy(policy_name), ledger, as_of=run.manifest.days - 1,
                          births=citizens.select("citizen_id", "birth_day"))
    score, klass = ("commercial_score", "commercial_class") if commercial else ("score", "class")
    # The simulator's columns are renamed first: a join would otherwise suffix the clashing ones.
    sim = citizens.select("citizen_id", sim_score=score, sim_class=klass)
    joined = result.scores.join(sim, on="citizen_id")
    assert joined.height == result.scores.height > 1000
    differ = joined.filter((pl.col("score") != pl.col("sim_score"))
                           | (pl.col("class").cast(pl.String) != pl.col("sim_class")))
    assert differ.height == 0, f"{differ.height} citizens differ from the engine:\n{differ.head(5)}"
    # Citizens without events keep the start score.
    start = load_policy(policy_name).start
    quiet = citizens.join(result.scores, on="citizen_id", how="anti").filter(pl.col(score).is_not_null())
    if members_only:
        quiet = quiet.filter(pl.col("platform_member"))
    assert (quiet[score] == start).all()
    unscored = citizens.filter(pl.col(score).is_null() & (not members_only or pl.col("platform_member")))
    assert unscored.join(result.scores, on="citizen_id").height == 0  # the engine does not score them either
    return result


def test_state_scores_equal_the_engine(busy_run):
    _compare(busy_run, "taz-2018")


def test_commercial_scores_equal_the_engine(busy_run):
    _compare(busy_run, "sesame", members_only=True, commercial=True)


@pytest.fixture(scope="module")
def strict_run(tmp_path_factory, busy):
    folder = tmp_path_factory.mktemp("strict")
    policy = folder / "strict.toml"
    policy.write_text(STRICT, encoding="utf-8")
    return simulate(population=5000, days=40, seed=3, out=folder / "run", events="all",
                    policy=str(policy), overrides=busy), str(policy)


def test_caps_expiry_confidence_and_class_caps_equal_the_engine(strict_run):
    run, policy = strict_run
    result = _compare(run, policy)
    # Each clause bound in this run, so the equality above covers it: max_per_day held back events
    # (a bot's daily visit beside its owner's own visit), ...
    decisions = result.decisions
    capped = decisions.filter(pl.col("status") == "cap")
    assert capped.height > 50 and set(capped["kind"]) == {"online.party_newspaper_visit"}
    assert (decisions["status"] == "confidence").sum() > 100
    assert (decisions["status"] == "expired").sum() > 1000
    # ... and class_at_most holds citizens whose score would rank them higher down at C.
    held_down = result.scores.filter((pl.col("class") == "C") & (pl.col("score") >= 995))
    assert held_down.height > 5
    assert set(run.citizens["class"]) >= {"AAA", "A", "C"}
    daily = run.daily
    assert daily["class.D"].sum() > 0
    assert daily["benefit.cheaper-loans"].sum() > 0  # held 4 days at AAA, then granted
    assert daily["sanction.flight-ban"].sum() == daily["class.D"].sum()
    # The class cap and the low-confidence camera matches both happened.
    events = run.events
    assert ((events["kind"] == "traffic.drunk_driving") & (events["state_points"] != 0)).any()
    camera = events.filter(pl.col("source") == "camera")
    assert (camera["confidence"] < 0.99).any() and (camera["confidence"] >= 0.99).any()


def test_strict_daily_class_counts_equal_the_engines_day_by_day(strict_run):
    """The kernel's own class counts (daily.parquet), not only the final table, follow the engine:
    every day, the citizens in each class are those the engine puts there as of that day."""
    run, policy = strict_run
    loaded = load_policy(policy)
    days = run.manifest.days
    classes = daily_classes(loaded, run.events, run.citizens["citizen_id"], days)
    daily = run.daily.sort("day")
    for c, name in enumerate(loaded.class_names):
        expected = (classes == c).sum(axis=1)
        got = daily[f"class.{name}"].to_numpy()
        assert (got == expected).all(), f"class {name}: (day, daily, engine) " \
            f"{[(d, got[d], expected[d]) for d in np.flatnonzero(got != expected)[:5]]}"
    # Benefits (held 4 days at AAA) and sanctions (class D) as the policy's held days give them.
    for name, held in consequences(loaded, classes).items():
        prefix = "benefit" if name == "cheaper-loans" else "sanction"
        got, expected = daily[f"{prefix}.{name}"].to_numpy(), held.sum(axis=1)
        assert (got == expected).all(), f"{name}: (day, daily, policy) " \
            f"{[(d, got[d], expected[d]) for d in np.flatnonzero(got != expected)[:5]]}"
        assert held.sum() > 0, name


@pytest.fixture(scope="module")
def aged_run(tmp_path_factory, busy):
    """The strict policy scoring only citizens of 18 and over, for 400 days: those 17 at the
    start come of age on day 365."""
    folder = tmp_path_factory.mktemp("aged")
    policy = folder / "aged.toml"
    policy.write_text(STRICT.replace('title = "Test policy"\n', 'title = "Test policy"\nmin_age = 18\n'),
                      encoding="utf-8")
    return simulate(population=4000, days=400, seed=5, out=folder / "run", events="all",
                    policy=str(policy), overrides=busy), str(policy)


def test_min_age_leaves_minors_unscored_as_the_engine_does(aged_run):
    run, policy = aged_run
    assert load_policy(policy).min_age == 18
    result = _compare(run, policy)
    citizens = run.citizens
    minors = citizens.filter(pl.col("age") < 18)
    assert minors.height > 500 and minors["score"].is_null().all() and minors["class"].is_null().all()
    adults = citizens.filter(pl.col("age") >= 18)
    assert adults["score"].is_not_null().all()
    # Minors' events were recorded but did not count; nor did those of the 17-year-olds before day 365.
    status = (result.decisions.filter(pl.col("status") != "unknown_kind")  # kinds the policy has no rule for
              .join(citizens.select("citizen_id", "age"), on="citizen_id"))
    assert status.filter(pl.col("age") < 18)["status"].unique().to_list() == ["underage"]
    came = status.filter(pl.col("age") == 18)
    assert (came.filter(pl.col("day") < 365)["status"] == "underage").all()
    assert came.filter(pl.col("day") < 365).height > 20
    assert (came.filter(pl.col("day") >= 365)["status"] == "counted").any()
    assert (status.filter(pl.col("age") > 18)["status"] != "underage").all()
    assert (run.events.filter(pl.col("citizen_id").is_in(minors["citizen_id"].implode()))["state_points"] == 0).all()


def test_min_age_daily_class_counts_follow_the_engine_and_grow_on_the_birthday(aged_run):
    run, policy = aged_run
    loaded = load_policy(policy)
    days = run.manifest.days
    births = run.citizens.select("citizen_id", "birth_day")
    classes = daily_classes(loaded, run.events, run.citizens["citizen_id"], days, births)
    daily = run.daily.sort("day")
    scored = np.zeros(days, np.int64)
    for c, name in enumerate(loaded.class_names):
        expected = (classes == c).sum(axis=1)
        got = daily[f"class.{name}"].to_numpy()
        assert (got == expected).all(), f"class {name}: (day, daily, engine) " \
            f"{[(d, got[d], expected[d]) for d in np.flatnonzero(got != expected)[:5]]}"
        scored += got
    coming = (run.citizens["age"] == 18).sum()
    assert coming > 20 and scored[365] - scored[364] == coming and (np.diff(scored)[:364] == 0).all()
    for name, held in consequences(loaded, classes).items():
        prefix = "benefit" if name == "cheaper-loans" else "sanction"
        got, expected = daily[f"{prefix}.{name}"].to_numpy(), held.sum(axis=1)
        assert (got == expected).all(), f"{name}: (day, daily, policy) " \
            f"{[(d, got[d], expected[d]) for d in np.flatnonzero(got != expected)[:5]]}"


def test_event_ids_sort_in_the_order_the_simulator_counted_them(busy_run):
    events = busy_run.events
    assert events["event_id"].is_unique().all()
    # Events are written block by block in the order they were counted.
    for part in events.with_columns(block=pl.col("event_id").str.slice(7, 6)).partition_by("block"):
        ids = part["event_id"].to_list()
        assert ids == sorted(ids)
