"""The roster: the citizens behind a dashboard number, filtered, sorted and paged, each row
showing what the grant allows and logged for its citizen; roles without the roster are refused."""

import json

import polars as pl
import pytest

from socialcredit.service import Forbidden, Invalid, authenticate
from socialcredit.service._roster import RosterQuery


@pytest.fixture(scope="module")
def world(loaded_runs, tmp_path_factory):
    from .conftest import close_world, open_world

    w = open_world(loaded_runs("taz-2018"), tmp_path_factory.mktemp("roster"))
    yield w
    close_world(w)


def key(world, role):
    return authenticate(world.service.db, world.keys[role])


def expected_scores(world) -> pl.DataFrame:
    """Every scored citizen with class and attributes, from the tables the service reads."""
    rows = world.service.db.execute("SELECT c.citizen_id, c.attributes, s.score, s.class FROM citizens c "
                                    "JOIN scores s ON s.citizen_id = c.citizen_id")
    return pl.DataFrame([{"citizen_id": cid, "group": json.loads(a).get("group"), "region": json.loads(a).get("region"),
                          "score": int(score), "class": klass} for cid, a, score, klass in rows])


def test_a_class_lists_its_citizens_sorted_and_paged(world):
    analyst = key(world, "analyst")
    everyone = expected_scores(world)
    worst = max(everyone["class"].unique().to_list(), key=world.policy.class_names.index)
    members = everyone.filter(pl.col("class") == worst).sort(["score", "citizen_id"], descending=True)
    per_page = max(1, members.height // 2)
    pages = [world.service.roster(analyst, RosterQuery(klass=worst, sort="score", descending=True, page=p,
                                                       per_page=per_page))
             for p in range(1, -(-members.height // per_page) + 1)]
    assert {p["total"] for p in pages} == {members.height}
    listed = [c for p in pages for c in p["citizens"]]
    assert [c["citizen_id"] for c in listed] == members["citizen_id"].to_list()
    assert [c["score"] for c in listed] == members["score"].to_list()
    assert pages[0]["fields"] == ["score", "class", "benefits", "sanctions"]  # taz-2018's analyst grant
    assert all(c["class"] == worst for c in listed)
    sanctioned = {c.name for c in world.service.consequence_rules.possible(world.policy.class_names.index(worst))
                  if not c.benefit and c.held_days == 0}
    assert all(sanctioned <= set(c["sanctions"]) for c in listed)


def test_a_region_a_group_and_a_consequence_list_their_citizens(world):
    analyst = key(world, "analyst")
    everyone = expected_scores(world)
    group = everyone.filter(pl.col("group") == "hundred-fold")
    result = world.service.roster(analyst, RosterQuery(group="hundred-fold", per_page=200))
    assert result["total"] == group.height > 0
    assert {c["group"] for c in result["citizens"]} == {"hundred-fold"}
    region = everyone["region"].drop_nulls().mode().sort()[0]
    result = world.service.roster(analyst, RosterQuery(region=region, per_page=1))
    assert result["total"] == everyone.filter(pl.col("region") == region).height
    sanction = next(c for c in world.service.consequence_rules.items if not c.benefit and c.held_days == 0)
    covered = everyone.filter(pl.col("class").is_in(
        [n for i, n in enumerate(world.policy.class_names) if sanction.covers(i)]))
    result = world.service.roster(analyst, RosterQuery(consequence=sanction.name, per_page=200))
    assert result["total"] == covered.height
    assert all(sanction.name in c["sanctions"] for c in result["citizens"])


def test_each_listed_citizen_is_logged_for_that_citizen(world):
    analyst = key(world, "analyst")
    result = world.service.roster(analyst, RosterQuery(sort="citizen", per_page=3, page=2))
    assert len(result["citizens"]) == 3
    for row in result["citizens"]:
        log = world.service.lookups(key(world, "agency"), row["citizen_id"], "auditing the roster")["lookups"]
        mine = [e for e in log if e["endpoint"] == "roster" and e["who"] == "analyst"]
        assert mine and mine[0]["fields"] == result["fields"]


def test_roles_without_the_roster_are_refused(world):
    for role in ("citizen", "bank", "employer", "security"):
        with pytest.raises(Forbidden, match="only analyst and agency keys may list citizens"):
            world.service.roster(key(world, role), RosterQuery())
    with pytest.raises(Forbidden, match="must state a purpose"):  # taz-2018: the agency states one
        world.service.roster(key(world, "agency"), RosterQuery())
    assert world.service.roster(key(world, "agency"), RosterQuery(per_page=1), "case 17")["total"] > 0


def test_bad_queries_are_refused_with_their_reason(world):
    analyst = key(world, "analyst")
    with pytest.raises(Invalid, match="no class 'Z'"):
        world.service.roster(analyst, RosterQuery(klass="Z"))
    with pytest.raises(Invalid, match="no consequence 'pony'"):
        world.service.roster(analyst, RosterQuery(consequence="pony"))
    with pytest.raises(Invalid, match="sort by one of"):
        world.service.roster(analyst, RosterQuery(sort="attributes"))
    with pytest.raises(Invalid, match="pages hold 1 to 200"):
        world.service.roster(analyst, RosterQuery(per_page=10_000))
