"""daily.parquet and citizens.parquet are what the engine and the policy give, day by day.

The run's events (all of them) are replayed through the engine (`_replay.daily_classes`), which gives
every citizen's class at the end of every day without the kernel; the consequences in force follow
from those classes and the policy's `held_days` alone (`_replay.holders`). Every daily count must
equal the replay exactly, region by region: classes, benefit and sanction holders (held days
mature neither a day early nor a day late), and the consequences people meet (flights, trains
and loans, which here every adult asks for every day).
"""

import numpy as np
import polars as pl
import pytest

from socialcredit import load_policy
from socialcredit.simulation import simulate
from tests.simulation._replay import consequences, daily_classes, holders


def classes(*bands: tuple[str, int | None]) -> str:
    """[[class]] tables from (name, min) pairs, the last one open below (min None)."""
    return "".join(f'\n[[class]]\nname = "{name}"\n' + ("" if low is None else f"min = {low}\n")
                   for name, low in bands)


CLASSES_NORTH = classes(("AAA", 1012), ("AA", 1004), ("A", 996), ("C", 988), ("D", None))
CLASSES_SOUTH = classes(("AAA", 1010), ("AA", 1003), ("A", 997), ("B", 993), ("C", 988), ("D", None))
RULES = """
[[rule]]
id = "red-light"
kind = "traffic.red_light"
points = {red}
reason = "red light"
max_per_day = 1
expires_after_days = {red_days}
[[rule]]
id = "litter"
kind = "public.littering"
points = -4
reason = "litter"
expires_after_days = {litter_days}
[[rule]]
id = "drunk"
kind = "traffic.drunk_driving"
points = -1
reason = "drunk"
class_at_most = "C"
expires_after_days = 6
[[rule]]
id = "paper"
kind = "online.party_newspaper_visit"
points = {paper}
reason = "paper"
max_per_day = 1
expires_after_days = 5
[[rule]]
id = "volunteer"
kind = "civic.volunteering"
points = 5
reason = "volunteer"
expires_after_days = 4
"""
# held_days only on the loosest benefit class (AA) and the loosest sanction class (C), as the
# simulator requires; two different held days in each band, and held-free ones beside them.
# The names are the scenario's default effect names (cheaper-loans: loan_discount, ...).
CONSEQUENCES = """
[[benefit]]
name = "better-health-insurance"
class = "AA"
effect = "insurance_tier"
parameters = {{ tier = "premium" }}
held_days = {insurance}
[[benefit]]
name = "cheaper-loans"
class = "AA"
effect = "loan_price"
parameters = {{ rate_change = -0.005 }}
held_days = {loans}
[[sanction]]
name = "train-ban"
class = "D"
effect = "train_ban"
[[sanction]]
name = "subway-gate-stop"
class = "D"
effect = "gate_stop"
parameters = {{ stop_probability = 0.5 }}
[[sanction]]
name = "flight-ban"
class = "C"
effect = "flight_ban"
held_days = {flight}
[[sanction]]
name = "loan-restriction"
class = "C"
effect = "loan_refusal"
held_days = {refusal}
"""
NORTH = ('name = "north-test"\ntitle = "North"\nstart = 1000\nmin = 0\nmax = 2000\n' + CLASSES_NORTH
         + RULES.format(red=-6, red_days=3, litter_days=4, paper=3)
         + CONSEQUENCES.format(insurance=5, loans=2, flight=3, refusal=1)
         + '[[benefit]]\nname = "cheaper-flights"\nclass = "AAA"\neffect = "flight_price"\n'
         + 'parameters = { discount = 0.1 }\n')
SOUTH = ('name = "south-test"\ntitle = "South"\nstart = 1000\nmin = 0\nmax = 2000\n' + CLASSES_SOUTH
         + RULES.format(red=-5, red_days=4, litter_days=2, paper=4)
         + CONSEQUENCES.format(insurance=4, loans=1, flight=2, refusal=5))

SCENARIO = """
name = "two-towns"
title = "Two towns and the unscored countryside"
block_size = 4096
commercial_policy = "sesame"
[[region]]
name = "north"
share = 0.45
policy = "{north}"
urban = 0.9
coverage = {{ street = 1.0, mall = 0.6, subway = 0.9 }}
[[region]]
name = "south"
share = 0.35
policy = "{south}"
urban = 0.6
coverage = {{ street = 0.8, mall = 0.5, subway = 0.9 }}
[[region]]
name = "outside"
share = 0.2
urban = 0.3
"""
DAYS = 40
ALMOST_SURELY = 1 - 1e-12  # a daily chance so close to 1 that every adult is drawn every day
OVERRIDES = {
    "behaviour.rates.traffic.red_light": 0.05, "behaviour.rates.traffic.drunk_driving": 0.002,
    "behaviour.rates.public.littering": 0.03, "behaviour.rates.online.party_newspaper_visit": 0.08,
    "behaviour.rates.civic.volunteering": 0.03,
    # Commercial records that move members between sesame's classes within the run.
    "behaviour.rates.finance.payment_overdue": 0.01, "behaviour.rates.identity.verified": 0.01,
    # No blacklist: flight and train bans then come from the policy's classes alone.
    "behaviour.rates.court.judgment_default": 0.0, "consequences.blacklist_bans": False,
    # Everyone travels alike (no income gradient) and every day, and a refusal deters nobody.
    "consequences.flight": ALMOST_SURELY, "consequences.train": ALMOST_SURELY,
    "consequences.travel_income": 0.0, "consequences.retry": 1.0, "consequences.loan": ALMOST_SURELY,
    "sensors.fmr": 0.01, "sensors.gallery_exponent": 0.0,
}
REGIONS = {"north": NORTH, "south": SOUTH}


@pytest.fixture(scope="module")
def towns(tmp_path_factory):
    folder = tmp_path_factory.mktemp("towns")
    paths = {}
    for name, text in REGIONS.items():
        paths[name] = folder / f"{name}.toml"
        paths[name].write_text(text, encoding="utf-8")
    scenario = folder / "two-towns.toml"
    scenario.write_text(SCENARIO.format(north=paths["north"], south=paths["south"]), encoding="utf-8")
    run = simulate(population=10000, days=DAYS, seed=3, out=folder / "run", events="all",
                   scenario=str(scenario), overrides=OVERRIDES)
    replay = {}
    for name, path in paths.items():
        policy = load_policy(str(path))
        citizens = run.citizens.filter(pl.col("region") == name)
        events = run.events.filter(pl.col("region") == name)
        classes = daily_classes(policy, events, citizens["citizen_id"], DAYS)
        replay[name] = (policy, citizens, classes, consequences(policy, classes))
    return run, replay


def _daily(run, region, column):
    day = run.daily.filter(pl.col("region") == region).sort("day")
    assert day["day"].to_list() == list(range(DAYS))
    return day[column].to_numpy()


def test_daily_class_counts_are_the_engines_classes_day_by_day(towns):
    run, replay = towns
    for region, (policy, _, classes, _) in replay.items():
        for c, name in enumerate(policy.class_names):
            expected = (classes == c).sum(axis=1)
            got = _daily(run, region, f"class.{name}")
            assert (got == expected).all(), f"{region}: class {name}: (day, daily, engine) " \
                f"{[(d, got[d], expected[d]) for d in np.flatnonzero(got != expected)[:5]]}"
        # The run is busy: citizens move between classes all the time, in both directions.
        moved = (classes[1:] != classes[:-1]).sum()
        assert moved > 2 * classes.shape[1], (region, moved)
    # A class one policy lacks is null for its regions, and an unscored region has no classes.
    daily = run.daily
    assert daily.filter(pl.col("region") == "north")["class.B"].is_null().all()
    assert daily.filter(pl.col("region") == "south")["class.B"].is_not_null().all()
    assert daily.filter(pl.col("region") == "outside")["class.A"].is_null().all()


def test_last_day_class_counts_equal_the_citizens_table(towns):
    run, replay = towns
    last = run.daily.filter(pl.col("day") == DAYS - 1)
    citizens = run.citizens
    for region, (policy, _, _, _) in replay.items():
        row = last.filter(pl.col("region") == region)
        counts = dict(citizens.filter(pl.col("region") == region).group_by("class").len().iter_rows())
        for name in policy.class_names:
            assert row[f"class.{name}"].item() == counts.get(name, 0), (region, name)
        assert sum(row[f"class.{n}"].item() for n in policy.class_names) == sum(counts.values())
    assert citizens.filter(pl.col("region") == "outside")["class"].is_null().all()
    # The commercial score runs beside, for platform members in every region, scored or not.
    sesame = load_policy("sesame")
    for region in ("north", "south", "outside"):
        row = last.filter(pl.col("region") == region)
        members = citizens.filter((pl.col("region") == region) & pl.col("platform_member"))
        counts = dict(members.group_by("commercial_class").len().iter_rows())
        for name in sesame.class_names:
            assert row[f"commercial.class.{name}"].item() == counts.get(name, 0), (region, name)
        assert members.height > 500 and len(counts) >= 3, (region, counts)


def test_commercial_classes_and_perks_each_day_are_the_engines(towns):
    run, _ = towns
    sesame = load_policy("sesame")
    assert not any(c.held_days for c in [*sesame.benefits, *sesame.sanctions])
    for region in ("north", "south", "outside"):
        members = run.citizens.filter((pl.col("region") == region) & pl.col("platform_member"))
        events = run.events.filter(pl.col("citizen_id").is_in(members["citizen_id"].implode()))
        classes = daily_classes(sesame, events, members["citizen_id"], DAYS)
        for c, name in enumerate(sesame.class_names):
            got = _daily(run, region, f"commercial.class.{name}")
            assert (got == (classes == c).sum(axis=1)).all(), (region, name)
        for name, held in consequences(sesame, classes).items():
            kind = "benefit" if name in {b.name for b in sesame.benefits} else "sanction"
            got = _daily(run, region, f"commercial.{kind}.{name}")
            assert (got == held.sum(axis=1)).all(), (region, name)
        assert (classes[1:] != classes[:-1]).sum() > 100, region


def test_benefits_and_sanctions_each_day_are_those_held_for_their_held_days(towns):
    run, replay = towns
    for region, (policy, _, _, held) in replay.items():
        for items, prefix in ((policy.benefits, "benefit"), (policy.sanctions, "sanction")):
            for item in items:
                expected = held[item.name].sum(axis=1)
                got = _daily(run, region, f"{prefix}.{item.name}")
                assert (got == expected).all(), (
                    region, item.name, item.held_days, list(zip(got, expected, strict=True)))
                if item.held_days:
                    # Nobody can have held it before held_days have passed, many have since.
                    assert (got[: item.held_days] == 0).all() and got.sum() > 20
        # The busy run makes held days matter: many enter a band and leave it before they mature.
        band = policy.class_names.index("C")
        entered = ((replay[region][2][1:] >= band) & (replay[region][2][:-1] < band)).sum()
        assert entered > 2 * held["flight-ban"][-1].sum(), region
    # A consequence one policy lacks is null for its regions.
    daily = run.daily
    assert daily.filter(pl.col("region") == "south")["benefit.cheaper-flights"].is_null().all()
    assert daily.filter(pl.col("region") == "north")["benefit.cheaper-flights"].sum() > 0


def test_flights_trains_and_loans_meet_the_consequences_in_force_that_day(towns):
    """Every adult flies, takes a train and asks for a loan every day (chance 1 - 1e-12)."""
    run, replay = towns
    for region, (_, citizens, _, held) in replay.items():
        adult = (citizens["age"] >= 18).to_numpy()
        expected = {
            "flights": np.full(DAYS, adult.sum()),
            "flights_blocked": (held["flight-ban"] & adult).sum(axis=1),
            "trains_blocked": (held["train-ban"] & adult).sum(axis=1),
            "loans_refused": (held["loan-restriction"] & adult).sum(axis=1),
            "loans_discounted": (held["cheaper-loans"] & ~held["loan-restriction"] & adult).sum(axis=1),
            "flights_discounted": ((held["cheaper-flights"] if "cheaper-flights" in held else False)
                                   & ~held["flight-ban"] & adult).sum(axis=1),
        }
        for column, want in expected.items():
            got = _daily(run, region, column)
            assert (got == want).all(), (region, column, list(zip(got, want, strict=True)))
        assert expected["flights_blocked"].sum() > 0 and expected["loans_discounted"].sum() > 0
    outside = run.citizens.filter(pl.col("region") == "outside")
    assert (_daily(run, "outside", "flights") == (outside["age"] >= 18).sum()).all()
    for column in ("flights_blocked", "trains_blocked", "loans_refused", "loans_discounted"):
        assert (_daily(run, "outside", column) == 0).all(), column


def test_citizens_table_shows_the_consequences_in_force_on_the_last_day(towns):
    run, replay = towns
    in_force = dict.fromkeys(["loan_price refused", "loan_price discounted", "insurance better",
                              "flight_ban", "gate_flagged"], 0)
    for region, (_, citizens, _, held) in replay.items():
        assert citizens["region"].cast(pl.String).eq(region).all()
        last = {name: h[-1] for name, h in held.items()}
        refused, discounted = last["loan-restriction"], last["cheaper-loans"] & ~last["loan-restriction"]
        shown = {
            "loan_price refused": (citizens["loan_price"] == "refused", refused),
            "loan_price discounted": (citizens["loan_price"] == "discounted", discounted),
            "insurance better": (citizens["insurance"] == "better", last["better-health-insurance"]),
            "flight_ban": (citizens["flight_ban"], last["flight-ban"]),
            "gate_flagged": (citizens["gate_flagged"], last["subway-gate-stop"]),
        }
        for column, (got, expected) in shown.items():
            wrong = int((got.to_numpy() != expected).sum())
            assert wrong == 0, f"{region}: {column} differs from the policy for {wrong} citizens " \
                               f"({int(got.sum())} shown, {int(expected.sum())} in force)"
            in_force[column] += int(expected.sum())
    assert min(in_force.values()) > 0, in_force


def test_days_under_benefits_and_sanctions_count_the_days_in_force(towns):
    """benefit_days and sanction_days: the days a citizen was in the benefit (sanction) band once
    the band's shortest held_days had passed, over the whole run (the kernel keeps one clock).

    Where the band's shortest held_days belong to its loosest class (every preset) these are the
    days under at least one benefit (sanction); in these test policies the held-free consequences
    sit at the strictest class, so the columns also count band days before anything was in force.
    """
    run, replay = towns
    for region, (policy, citizens, classes, _) in replay.items():
        for column, items, benefit in (("benefit_days", policy.benefits, True),
                                       ("sanction_days", policy.sanctions, False)):
            loosest = (max if benefit else min)(policy.class_names.index(i.class_) for i in items)
            shortest = min(i.held_days for i in items)
            days = holders(policy, classes, policy.class_names[loosest], benefit, shortest).sum(axis=0)
            assert (citizens[column].to_numpy() == days).all(), (region, column)
            assert days.sum() > 200, (region, column)
