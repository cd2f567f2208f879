"""Feedback changes rates by the configured effect sizes (fixed seeds, tolerances of 4 standard errors).

The kernel's rate of a kind for a citizen (`kernel._acts.rate`) is the base rate times the citizen's
traits, times (1 - deterrence) once the citizen has been scored for a penalised kind, times
(1 + conformity) once scored for a rewarded kind; complaints where they are penalised are also
multiplied by (1 - self_censorship) * max(0, 1 - peer_censorship * share of the block's region
penalised for complaining). Each test measures one factor as directly as the tables allow.
"""

import math

import numpy as np
import polars as pl
import pytest

from socialcredit.simulation import load_scenario, simulate

# Red lights penalised, littering rewarded (a policy may reward anything): both are seen by cameras,
# so a false camera match can score an innocent for them. The match-score model is set so that a
# citizen learns from false matches almost only (`learners`): a camera finds half the mates
# (fnmr 0.5 at the threshold 0.8), whose confidence then stays below 0.9 (true_tail 1), while 99.5%
# of false matches reach 0.999 (false_tail 0.001). When a citizen first learns then does not
# depend on how often they themselves run red lights or litter.
LEARNING = """
name = "feedback-test"
title = "Feedback"
start = 1000
min = 0
max = 100000
[[class]]
name = "A"
min = 500
[[class]]
name = "D"
[[rule]]
id = "red-light"
kind = "traffic.red_light"
points = -5
reason = "red light"
sources = ["camera"]
min_confidence = 0.999
[[rule]]
id = "litter"
kind = "public.littering"
points = 2
reason = "litter, rewarded"
sources = ["camera"]
min_confidence = 0.999
"""
DETERRENCE, CONFORMITY = 0.6, 1.0
DAYS = 40


@pytest.fixture(scope="module")
def learning_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learning")
    policy = folder / "learning.toml"
    policy.write_text(LEARNING, encoding="utf-8")
    return simulate(population=50000, days=DAYS, seed=9, out=folder / "run", events="all",
                    policy=str(policy), overrides={
                        "behaviour.rates.traffic.red_light": 0.05,
                        "behaviour.rates.public.littering": 0.05,
                        "behaviour.deterrence": DETERRENCE, "behaviour.conformity": CONFORMITY,
                        # Every act is in view, half of them recognised (events.parquet then holds
                        # a random half of the acts, by their actor) ...
                        "region.0.coverage": {"street": 1.0, "mall": 1.0, "subway": 1.0},
                        "sensors.rural_coverage": 1.0, "sensors.fnmr": 0.5, "sensors.threshold": 0.8,
                        "sensors.true_tail": 1.0, "sensors.false_tail": 0.001,
                        # ... and one in five is pinned on a look-alike, whatever the group.
                        "sensors.fmr": 0.02, "sensors.gallery_exponent": 0.0,
                        **{f"population.groups.{g}.fmr_multiplier": 10.0 for g in range(3)},
                    })


def _rate_ratio(run, kind, ages):
    """Acts per citizen-day after the day a citizen was first scored for `kind`, over acts per
    citizen-day before it (or in a run without it), with the standard error of its logarithm.

    The day of learning itself is left out. The SE is the cluster-robust (sandwich) one with the
    citizen as the unit, from the linearisation of log(A_L / E_L) - log(A_U / E_U):
    z_i = (a_Li - r_L e_Li) / A_L - (a_Ui - r_U e_Ui) / A_U, var = sum z_i^2; it covers both the
    Poisson noise (about 1/A_L + 1/A_U) and the spread of citizens' own rates.
    """
    events = run.events.filter(pl.col("kind") == kind)
    learned = (events.filter(pl.col("state_points") != 0).group_by("citizen_id")
               .agg(learned=pl.col("day").min()))
    citizens = (run.citizens.filter(pl.col("age").is_between(*ages)).select("citizen_id")
                .join(learned, on="citizen_id", how="left"))
    acts = events.group_by(citizen_id="actor_id", day="day").len()
    assert acts["len"].max() == 1  # one act a day at most: a citizen-day acts or does not
    after = pl.col("learned").is_not_null() & (pl.col("day") > pl.col("learned"))
    before = pl.col("learned").is_null() | (pl.col("day") < pl.col("learned"))
    per_citizen = (acts.join(citizens, on="citizen_id").group_by("citizen_id")
                   .agg(a_l=after.sum(), a_u=before.sum()))
    table = (citizens.join(per_citizen, on="citizen_id", how="left")
             .with_columns(pl.col("a_l", "a_u").fill_null(0))
             .with_columns(e_l=pl.when(pl.col("learned").is_null()).then(0)
                           .otherwise(DAYS - 1 - pl.col("learned")),
                           e_u=pl.col("learned").fill_null(DAYS)))
    a_l, a_u, e_l, e_u = (table[c].cast(pl.Float64).to_numpy() for c in ("a_l", "a_u", "e_l", "e_u"))
    big_a_l, big_a_u, big_e_l, big_e_u = a_l.sum(), a_u.sum(), e_l.sum(), e_u.sum()
    z = (a_l - big_a_l / big_e_l * e_l) / big_a_l - (a_u - big_a_u / big_e_u * e_u) / big_a_u
    ratio = (big_a_l / big_e_l) / (big_a_u / big_e_u)
    return ratio, math.sqrt((z ** 2).sum()), big_a_l, learned


def test_a_random_half_of_the_acts_is_recorded_with_its_actor(learning_run):
    """What the rate ratios rest on: events.parquet holds the acts the cameras recognised, each with
    chance 1 - fnmr = 0.5 whoever did it, or the agency that is the kind's next observer caught
    (traffic police 2%, city management 1%): 0.5 + 0.5 p (4 binomial SE); a fifth of the camera's
    pinned on a look-alike."""
    for kind, agency in (("traffic.red_light", 0.02), ("public.littering", 0.01)):
        recorded = learning_run.events.filter(pl.col("kind") == kind)
        acts = learning_run.daily[f"{kind}.true"].sum()
        share = 0.5 + 0.5 * agency
        assert acts > 30000 and abs(recorded.height / acts - share) < 4 * math.sqrt(share * (1 - share) / acts)
        assert 0.17 < recorded["wrongful"].mean() < 0.23  # fmr 0.02 x 10


def test_deterrence_multiplies_the_penalised_rate_by_one_minus_deterrence(learning_run):
    """Expected ratio 1 - 0.6 = 0.4; measured SE of its log about 0.023 (a 4-SE band of about
    +-9%); deterrence at half strength (ratio 0.7) lies about 24 SE away."""
    ratio, se, acts_after, learned = _rate_ratio(learning_run, "traffic.red_light", (12, 90))
    assert learned.height > 5000 and acts_after > 1000
    expected = 1.0 - DETERRENCE
    assert abs(math.log(ratio) - math.log(expected)) < 4 * se, (ratio, expected, se)


def test_conformity_multiplies_the_rewarded_rate_by_one_plus_conformity(learning_run):
    """Expected ratio 1 + 1.0 = 2; measured SE of its log about 0.012; conformity at half
    strength (1.5) lies about 24 SE away."""
    ratio, se, acts_after, learned = _rate_ratio(learning_run, "public.littering", (6, 90))
    assert learned.height > 5000 and acts_after > 5000
    expected = 1.0 + CONFORMITY
    assert abs(math.log(ratio) - math.log(expected)) < 4 * se, (ratio, expected, se)


def test_full_deterrence_stops_a_penalised_citizen_for_good(tmp_path):
    """Deterrence 1: once scored for red lights, a citizen never runs one again."""
    run = simulate(population=8000, days=30, seed=9, out=tmp_path / "full", events="all",
                   overrides={"behaviour.rates.traffic.red_light": 0.05, "behaviour.deterrence": 1.0,
                              "region.0.coverage.street": 1.0, "sensors.fnmr": 0.0})
    events = run.events.filter(pl.col("kind") == "traffic.red_light")
    learned = (events.filter(pl.col("state_points") != 0).group_by("citizen_id")
               .agg(learned=pl.col("day").min()))
    assert learned.height > 1000
    later = events.join(learned.rename({"citizen_id": "actor_id"}), on="actor_id").filter(
        pl.col("day") > pl.col("learned"))
    assert later.height == 0, later.head()


def test_self_and_peer_censorship_scale_complaints_as_configured(tmp_path):
    """Two runs of one population (same seed): without censorship, and with the configured one.

    With deterrence 0 the complaints of day t in the censored run have expectation
    censor_t * L, where L is the population's uncensored daily rate (the other run's mean) and
    censor_t = (1 - s) * max(0, 1 - p * P_t / N), P_t the citizens penalised for complaining before
    day t (their first counted complaint, from events.parquet) among the block's N. Both counts are
    sums of independent Bernoulli draws given the population, so var(log ratio) <= 1/B + 1/A.
    """
    behaviour = load_scenario("one-town").behaviour
    s, p = behaviour.self_censorship, behaviour.peer_censorship
    assert s > 0 and p > 0
    args = {"population": 20000, "days": 30, "seed": 9, "events": "all"}
    base = {"behaviour.rates.social.complaint": 0.05, "behaviour.deterrence": 0.0}
    free = simulate(out=tmp_path / "free", **args, overrides={
        **base, "behaviour.self_censorship": 0.0, "behaviour.peer_censorship": 0.0})
    afraid = simulate(out=tmp_path / "afraid", **args, overrides=base)
    assert afraid.manifest.blocks == 1  # peers are counted per block: here, everyone
    same = ["citizen_id", "age", "urban", "group", "income_decile"]
    assert free.citizens.select(same).equals(afraid.citizens.select(same))  # one population
    uncensored = free.daily["social.complaint.true"].to_numpy()
    censored = afraid.daily.sort("day")["social.complaint.true"].to_numpy()
    complaints = afraid.events.filter((pl.col("kind") == "social.complaint") & (pl.col("state_points") < 0))
    first = complaints.group_by("citizen_id").agg(pl.col("day").min())["day"].to_numpy()
    penalised_before = np.array([(first < t).sum() for t in range(30)])
    censor = (1 - s) * np.maximum(0.0, 1 - p * penalised_before / 20000)
    assert censor[0] == 1 - s and censor[-1] < 0.5 * censor[0]  # the peer term mattered
    expected = censor.sum() * uncensored.mean()
    se = math.sqrt(1 / censored.sum() + 1 / uncensored.sum())
    assert abs(math.log(censored.sum() / expected)) < 4 * se, (censored.sum(), expected, se)
    # Day by day too (each day's count within 4 SE of its own expectation).
    daily_expected = censor * uncensored.mean()
    assert (np.abs(censored - daily_expected) < 4 * np.sqrt(daily_expected) + 1).all()


def test_bots_visit_the_party_newspaper_every_day(tmp_path):
    """A bot, once deployed, visits every day: the day's visits are the humans' (constant with
    conformity 0) plus every bot deployed before the day."""
    run = simulate(population=8000, days=60, seed=9, out=tmp_path / "bots", overrides={
        "behaviour.gaming": 1.0, "behaviour.savvy_share": 0.3, "behaviour.conformity": 0.0})
    daily = run.daily.sort("day")
    bots = run.citizens.filter(pl.col("bot"))
    assert daily["bots_deployed"].sum() == bots.height > 50
    assert bots["age"].is_between(18, 59).all()  # savvy 15-59, and the newspaper counts from 18
    active = np.concatenate([[0], np.cumsum(daily["bots_deployed"].to_numpy())[:-1]])
    visits = daily["online.party_newspaper_visit.true"].to_numpy()
    humans = visits - active
    assert (humans >= 0).all()
    early, late = humans[:30].sum(), humans[30:].sum()
    assert active[30:].sum() > 4 * math.sqrt(early + late)  # bots' visits are far above the noise
    assert abs(late - early) < 4 * math.sqrt(early + late), (early, late)
    humans_adult = run.citizens.filter(~pl.col("bot") & (pl.col("age") >= 18))
    assert bots["score"].mean() > humans_adult["score"].mean()


def test_no_reward_no_bots(tmp_path):
    run = simulate(population=8000, days=60, seed=9, out=tmp_path / "acc", policy="accountable",
                   overrides={"behaviour.gaming": 1.0, "behaviour.savvy_share": 0.3})
    assert run.daily["online.party_newspaper_visit.counted"].sum() == 0
    assert run.citizens["bot"].sum() == 0
