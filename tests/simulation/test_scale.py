"""Regions, consequences and the pilot-regions preset on a small population."""

import math
from importlib import resources

import polars as pl

from socialcredit.simulation import load_scenario, simulate


def test_pilot_regions_keep_their_shares_and_policies(tmp_path):
    run = simulate(population=20000, days=3, seed=4, out=tmp_path / "pilots",
                   scenario="pilot-regions-2018", overrides={"block_size": 4096})
    counts = run.citizens.group_by("region").len()
    rest = counts.filter(pl.col("region") == "rest-of-china")["len"].item()
    assert abs(rest / 20000 - 0.9329) <= 1 / 20000  # regions get their shares, rounded
    unscored = run.citizens.filter(pl.col("region") == "rest-of-china")
    assert unscored["score"].is_null().all() and unscored["class"].is_null().all()
    rongcheng = run.citizens.filter(pl.col("region") == "rongcheng")
    assert (rongcheng["score"].is_not_null() == (rongcheng["age"] >= 18)).all()  # its measures: 18 and over
    assert rongcheng["score"].is_null().any()
    daily = run.daily.filter(pl.col("region") == "rest-of-china")
    assert daily["class.A"].is_null().all()


def test_class_d_brings_job_loss_travel_bans_and_hurts_children(tmp_path):
    # Frequent offences push many into D; admission day falls inside the run. The job-loss risk is
    # the policy's (its job_loss sanction), here 25 times taz-2018's.
    harsh = tmp_path / "harsh.toml"
    text = resources.files("socialcredit.policy.presets").joinpath("taz-2018.toml").read_text(encoding="utf-8")
    assert "risk_per_day = 0.002 " in text
    harsh.write_text(text.replace("risk_per_day = 0.002 ", "risk_per_day = 0.05 "), encoding="utf-8")
    run = simulate(population=20000, days=170, seed=8, out=tmp_path / "harsh", policy=str(harsh), overrides={
        "behaviour.rates.online.pornography": 0.2, "behaviour.deterrence": 0.0, "consequences.flight": 0.05})
    daily = run.daily
    assert daily["class.D"].max() > 1000
    assert daily["jobs_lost"].sum() > 100
    assert daily["flights_blocked"].sum() > 100
    assert daily["gate_stops"].sum() > 0
    assert daily["admissions_applied"].sum() > 0 and daily["admissions_hurt"].sum() > 0
    d = run.citizens.filter(pl.col("class") == "D")
    assert (d["sanction_days"] > 0).all()
    assert d["flight_ban"].all() and d["gate_flagged"].all()
    a = run.citizens.filter(pl.col("class") == "A")
    assert (a["loan_price"] == "standard").all() and (a["insurance"] == "standard").all()
    assert d["employed"].mean() < run.citizens.filter(pl.col("class") == "A")["employed"].mean()


def test_the_pilot_regions_stand_for_their_census_populations_once():
    """Rongcheng is a city within Weihai: Weihai's share leaves it out, so nobody counts twice."""
    scenario = load_scenario("pilot-regions-2018")
    people = {r.name: r.share * scenario.represents for r in scenario.regions}
    assert scenario.represents == 1_410_000_000
    assert abs(people["rongcheng"] - 738_600) < 1_000
    assert abs(people["weihai"] + people["rongcheng"] - 0.0021 * 1.41e9) < 1_000


def _wrongful_share(tmp_path, population):
    """Camera events pinned on an innocent, over all camera events (default gallery growth)."""
    run = simulate(population=population, days=20, seed=12, out=tmp_path / f"n{population}",
                   events="all", overrides={"behaviour.rates.traffic.red_light": 0.3,
                                            "behaviour.deterrence": 0.0,
                                            "region.0.coverage.street": 1.0, "sensors.fmr": 0.05})
    camera = run.events.filter(pl.col("source") == "camera")
    return camera.height, camera["wrongful"].sum(), run.manifest


def test_a_sample_of_any_size_has_the_same_false_match_rate(tmp_path):
    """The camera's gallery is the people the town stands for (738,600), not the citizens simulated,
    so the share of camera events pinned on an innocent does not depend on the sample size.

    The share p is about 0.011 here; with n1 ~ 48,000 and n2 ~ 190,000 camera events the SE of the
    difference of the two shares is sqrt(p (1 - p) (1/n1 + 1/n2)) ~ 0.0005, and 4 SE ~ 19% of p.
    A gallery taken from the simulated head count would make the rate 4 times as high in the larger
    sample: about 60 SE away.
    """
    small, large = _wrongful_share(tmp_path, 10_000), _wrongful_share(tmp_path, 40_000)
    (n1, w1, man1), (n2, w2, man2) = small, large
    p1, p2 = w1 / n1, w2 / n2
    p = (w1 + w2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    assert w1 > 200 and abs(p1 - p2) < 4 * se, (p1, p2, se)
    assert man1.represents == man2.represents == 738_600
    assert man1.people_per_citizen == 73.86 and man2.people_per_citizen == 18.465


def _per_head(tmp_path, population):
    """Counts per head of a year, as (successes, trials): scores and false matches in one-town
    (everyone scored), the defaulter list and its bans in the pilot scenario."""
    town = simulate(population=population, days=365, seed=31, out=tmp_path / f"town{population}")
    pilot = simulate(population=population, days=365, seed=31, out=tmp_path / f"pilot{population}",
                     scenario="pilot-regions-2018")
    scored = town.citizens
    adults = pilot.citizens.filter(pl.col("age") >= 18)
    daily = pilot.daily
    listed_days = daily["listed"].sum()
    return {
        "class D": ((scored["class"] == "D").sum(), scored.height),
        "class AAA": ((scored["class"] == "AAA").sum(), scored.height),
        "lost points to a false match": ((scored["wrongful_points"] < 0).sum(), scored.height),
        "adults listed": (adults["blacklisted"].sum(), adults.height),
        # Blocked purchases per listed person-day: a Poisson count over an exposure.
        "flights blocked per listed day": (daily["flights_blocked"].sum(), listed_days),
        "trains blocked per listed day": (daily["trains_blocked"].sum(), listed_days),
    }


def test_results_per_head_do_not_depend_on_the_sample_size(tmp_path):
    """50,000, 200,000 and 1,000,000 citizens of the same scenario and seed give the same per-head
    results within sampling error: each smaller sample's share (or rate) against the million's,
    within 4 standard errors of their difference (binomial for shares, Poisson for rates)."""
    reference = _per_head(tmp_path, 1_000_000)
    for population in (50_000, 200_000):
        sample = _per_head(tmp_path, population)
        for name, (k1, n1) in sample.items():
            k2, n2 = reference[name]
            # At least 10: enough to see the 8x difference a head-count gallery made (issue #11).
            assert k1 >= 10, f"{name}: too few in {population:,} to test ({k1})"
            p1, p2 = k1 / n1, k2 / n2
            if name.endswith("per listed day"):
                se = math.sqrt(k1 / n1**2 + k2 / n2**2)
            else:
                p = (k1 + k2) / (n1 + n2)
                se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
            assert abs(p1 - p2) < 4 * se, (name, population, p1, p2, se)


def test_each_policy_brings_its_own_job_loss_risk(tmp_path):
    """The job-loss stream meets adults at the largest risk of the run's policies and thins each to
    its own policy's: a region whose sanction risks 1/20 of the other's loses about 1/20 as many
    jobs per day in class D (the harsh region loses a tenth of its D workers in 50 days at most, so
    the ratio stays near the risks'; 6 standard errors of the low count allowed), and a region
    without the sanction loses none."""
    text = resources.files("socialcredit.policy.presets").joinpath("taz-2018.toml").read_text(encoding="utf-8")
    files = {}
    for name, risk in (("harsh", "0.002"), ("mild", "0.0001")):
        files[name] = tmp_path / f"{name}.toml"
        files[name].write_text(text.replace('name = "taz-2018"', f'name = "{name}"', 1)
                               .replace("risk_per_day = 0.002 ", f"risk_per_day = {risk} "), encoding="utf-8")
    files["none"] = tmp_path / "none.toml"
    start, end = text.index('name = "job-loss-risk"'), text.index("[[sanction]]", text.index('name = "job-loss-risk"'))
    files["none"].write_text(text[:start].rsplit("[[sanction]]", 1)[0] + text[end:], encoding="utf-8")
    regions = "".join(f'[[region]]\nname = "{n}"\nshare = {share}\npolicy = "{f}"\nurban = 0.7\n'
                      f'coverage = {{ street = 0.3, mall = 0.6, subway = 0.9 }}\n'
                      for (n, f), share in zip(files.items(), (0.4, 0.4, 0.2), strict=True))
    scenario = tmp_path / "three.toml"
    scenario.write_text('name = "three"\ntitle = "Three towns"\nblock_size = 4096\n' + regions, encoding="utf-8")
    # A judgment default (-450) drops a citizen from the start straight into D.
    run = simulate(population=60_000, days=50, seed=9, out=tmp_path / "run", scenario=str(scenario),
                   overrides={"behaviour.rates.court.judgment_default": 0.02})
    per = run.daily.group_by("region").agg(pl.col("jobs_lost").sum(), pl.col("sanction.job-loss-risk").sum())
    lost = {r: (j, d) for r, j, d in per.iter_rows()}
    assert lost["none"][0] == 0
    harsh, mild = lost["harsh"][0] / lost["harsh"][1], lost["mild"][0] / lost["mild"][1]
    assert lost["harsh"][0] > 300
    expected = harsh / 20 * lost["mild"][1]
    assert abs(lost["mild"][0] - expected) < 6 * math.sqrt(expected) + 1, (lost, mild, harsh)
