"""Lives in the report: citizens picked by stated rules, checked here against the run's own tables,
and their scores replayed by the engine from their events."""

import html
import re

import polars as pl
import pytest

from socialcredit.analysis import write_report
from socialcredit.analysis._lives import ROLES, choose_lives, replay_life
from socialcredit.simulation import simulate
from tests.analysis.conftest import BUSY

TITLES = {role.id: role.title for role in ROLES}


@pytest.fixture(scope="module")
def lived(tmp_path_factory):
    """4,000 citizens for 160 days with every event kept: long enough for a newspaper bot to reach
    taz-2018's AAA (1,300 points), with false matches and court defaults to fill the other lives."""
    run = simulate(population=4000, days=160, seed=3, out=tmp_path_factory.mktemp("lives") / "run", events="all",
                   overrides={**BUSY, "behaviour.rates.court.judgment_default": 0.003})
    return run, write_report(run.path)


def _lives_text(report) -> str:
    page = report.read_text(encoding="utf-8")
    section = page[page.index('<section id="lives">'):page.index('<section id="inequality">')]
    section = re.sub(r"<script.*?</script>", " ", section, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", section)).split())


def _picked_here(run) -> dict[str, str | None]:
    """Each rule worked out with polars on citizens.parquet and events.parquet (one town under taz-2018:
    top class AAA, bottom class D); ties to the smallest id, nobody twice."""
    events = run.events.group_by("citizen_id").agg(
        events=pl.len(), lost=pl.col("state_points").filter(pl.col("state_points") < 0).sum(),
        camera=pl.col("state_points").filter(pl.col("wrongful") & (pl.col("source") == "camera")).sum())
    people = (run.citizens.filter(pl.col("class").is_not_null()).join(events, on="citizen_id", how="left")
              .with_columns(pl.col("events", "lost", "camera").fill_null(0)))
    common = people["class"].value_counts().sort("count", "class", descending=[True, False])["class"][0]
    ordered = {
        "wronged": people.filter(pl.col("camera") < 0).sort("camera", "citizen_id"),
        "bot": people.filter(pl.col("bot") & (pl.col("class") == "AAA")).sort("events", "citizen_id",
                                                                               descending=[True, False]),
        "fallen": people.filter(pl.col("class") == "D").sort("lost", "citizen_id"),
        "typical": people.filter(pl.col("class") == common).sort(
            (pl.col("score") - people["score"].median()).abs(), (pl.col("events") - people["events"].median()).abs(),
            "citizen_id"),
    }
    picked: dict[str, str | None] = {}
    for role, frame in ordered.items():
        left = frame.filter(~pl.col("citizen_id").is_in([c for c in picked.values() if c]))
        picked[role] = left["citizen_id"][0] if left.height else None
    return picked


def test_each_life_is_the_citizen_its_rule_picks(lived):
    run, report = lived
    picked = _picked_here(run)
    assert all(picked.values()), picked  # this run fills every life
    text = _lives_text(report)
    for role in ROLES:
        assert f"{role.title}: {picked[role.id]} Chosen as {role.rule}." in text


def test_a_life_is_told_in_dates_and_ends_where_the_run_left_the_citizen(lived):
    run, report = lived
    text = _lives_text(report)
    last = run.manifest.calendar.iso(run.manifest.days - 1)
    for role_id, citizen_id in _picked_here(run).items():
        me = run.citizens.filter(pl.col("citizen_id") == citizen_id).row(0, named=True)
        mine = run.events.filter(pl.col("citizen_id") == citizen_id)
        assert (f"Scored from 2018-01-01 at 1,000 (A); on {last}, at the end of the run, {me['score']:,} "
                f"({me['class']}), after {mine.height:,} events") in text, role_id
    # The citizen a camera wronged: the false matches pinned on them, and what they cost, from events.parquet.
    wronged = run.events.filter((pl.col("citizen_id") == _picked_here(run)["wronged"]) & pl.col("wrongful"))
    assert (f"{wronged.height:,} of these events were done by someone else and pinned on them by a camera's "
            "false match") in text
    assert f"they moved the score by {wronged['state_points'].sum():+,} points" in text


def test_the_replayed_score_is_the_simulators_day_by_day(lived):
    """The engine's replay of a life from that citizen's events ends at the simulator's final score and
    class, and the day it entered the bottom class is the day its events' points first sum below C's floor."""
    run, _ = lived
    policy = run.policies["taz-2018"]
    chosen = dict((role.id, (role, c)) for role, c in choose_lives(run.citizens, run.events, {"town": policy}))
    for role, citizen_id in chosen.values():
        me = run.citizens.filter(pl.col("citizen_id") == citizen_id).row(0, named=True)
        life = replay_life(role, me, policy, run.events.filter(pl.col("citizen_id") == citizen_id),
                           days=run.manifest.days)
        assert life.scores.row(-1)[1:] == (me["score"], me["class"]), role.id
    role, fallen = chosen["fallen"]
    mine = run.events.filter(pl.col("citizen_id") == fallen).group_by("day").agg(pl.col("state_points").sum())
    running = mine.sort("day").with_columns(score=1000 + pl.col("state_points").cum_sum())
    into_d = running.filter(pl.col("score") < 600)["day"][0]  # taz-2018's D is under 600; its deductions never expire
    life = replay_life(role, run.citizens.filter(pl.col("citizen_id") == fallen).row(0, named=True), policy,
                       run.events.filter(pl.col("citizen_id") == fallen), days=run.manifest.days)
    assert life.scores.filter(pl.col("class") == "D")["day"][0] == into_d


def test_the_bot_life_gives_the_policy_reason_for_its_rise(lived):
    run, report = lived
    text = _lives_text(report)
    bot = _picked_here(run)["bot"]
    part = text[text.index(f"{TITLES['bot']}: {bot} "):text.index(f"{TITLES['fallen']}: ")]
    rule = next(r for r in run.policies["taz-2018"].rules if r.id == "party-newspaper")
    # Visits beyond the rule's daily cap earn nothing: the simulator's points say which counted.
    visits = run.events.filter((pl.col("citizen_id") == bot) & (pl.col("kind") == rule.kind))["state_points"]
    counted = visits.filter(visits != 0)
    assert f"party-newspaper {rule.reason} raised +{counted.sum():,} {counted.len()}" in part
    assert "runs a bot that visits the party newspaper's site" in part


def test_without_events_the_report_says_why_it_shows_no_life(runs, tmp_path):
    _, accountable = runs  # simulated with --events none
    text = _lives_text(write_report(accountable, out=tmp_path / "r.html"))
    assert "This run kept no table of events (simulated with --events none)" in text
    assert "Chosen as" not in text
