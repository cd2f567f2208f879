"""Every disclosure and decision endpoint, under every preset whose grants reach it: an answered call
writes exactly one look-up log row (who, role, purpose, the fields it disclosed, endpoint), which the
citizen sees in /lookups; where the grant requires a purpose, a missing or blank one is refused and
nothing is logged, and where it does not, the call is answered without one.

Over the suite's simulated runs, loaded by `socialcredit db load`; the citizen looked up is the one
in the run's lowest class with the most camera events.
"""

import pytest

from socialcredit.policy import load_policy

from .conftest import close_world, open_world

# (preset, endpoint, role): a role whose grant under the preset lets it call the endpoint. Whether
# a purpose is required comes from the grant; the table holds both kinds (checked below).
REACHABLE = [
    *[(preset, endpoint, role) for preset in ("taz-2018", "rongcheng") for endpoint, role in [
        ("lookup", "citizen"), ("lookup", "bank"), ("lookup", "airline"), ("lookup", "analyst"),
        ("lookup", "agency"), ("history", "citizen"), ("history", "agency"), ("history", "security"),
        ("profile", "agency"), ("profile", "security"), ("lookups", "analyst"), ("gate", "security"),
        ("flight", "airline"), ("loan", "bank")]],
    ("accountable", "lookup", "citizen"), ("accountable", "lookup", "bank"),
    ("accountable", "lookup", "analyst"), ("accountable", "history", "citizen"),
    ("accountable", "profile", "citizen"), ("accountable", "lookups", "analyst"),
    ("accountable", "flight", "airline"), ("accountable", "loan", "bank"),
]
# Grants that do not reach an endpoint: refused, and nothing logged.
UNREACHABLE = [("taz-2018", "profile", "employer"), ("taz-2018", "history", "bank"),
               ("taz-2018", "profile", "citizen"), ("accountable", "gate", "security"),
               ("accountable", "history", "agency"), ("accountable", "profile", "agency"),
               ("accountable", "lookup", "employer")]
BLANK = {"missing": None, "empty": "", "spaces": "   ", "tab": "\t"}


@pytest.fixture(scope="module")
def worlds(loaded_runs, tmp_path_factory):
    """One started service per preset over a copy of its loaded run (the log only grows: tests
    compare what one call adds)."""
    made = {}

    def get(preset):
        if preset not in made:
            made[preset] = open_world(loaded_runs(preset), tmp_path_factory.mktemp(f"disclosure-{preset}"))
        return made[preset]

    yield get
    for world in made.values():
        close_world(world)


def request(world, endpoint, role, purpose):
    c = world.citizen
    base = f"/api/citizens/{c}"
    calls = {"lookup": ("GET", base, None), "history": ("GET", base + "/history", None),
             "profile": ("GET", base + "/profile", None), "lookups": ("GET", base + "/lookups", None),
             "gate": ("POST", "/api/gates/subway", {"citizen_id": c, "gate": "line 2, east"}),
             "flight": ("POST", "/api/flights/check", {"citizen_id": c, "flight": "CA 1234"}),
             "loan": ("POST", "/api/loans/quote", {"citizen_id": c, "amount": 250000})}
    method, path, body = calls[endpoint]
    return world.call(method, path, role, purpose, json=body)


def disclosed(endpoint: str, body: dict) -> list[str]:
    """The grant fields an answer shows, read from the answer itself (not from the grant)."""
    shown = {
        "lookup": [f for f in ("score", "class", "benefits", "sanctions", "reasons", "blacklist") if f in body],
        "history": [f for f, key in (("reasons", "reasons"), ("history", "events")) if key in body],
        "profile": ["profile"] if {"age_estimate", "sightings", "sightings_by_place_type"} <= set(body) else [],
        "lookups": ["lookups"] if "lookups" in body else [],
        "gate": ["decision", *(["sanctions"] if "because" in body else [])],
        "flight": ["decision", *(["sanctions"] if "because" in body else []),
                   *(["benefits"] if "discount" in body else [])],
        "loan": ["decision", *(["sanctions"] if "sanctions" in body else []),
                 *(["benefits"] if "benefits" in body else [])],
    }[endpoint]
    decision = {"gate": "decision", "flight": "may_board", "loan": "approved"}.get(endpoint)
    assert decision is None or decision in body, body
    return shown


def new_rows(world, before: int) -> list[dict]:
    log = world.log()
    return log[: len(log) - before]


def one_row(world, before: int, endpoint: str, role: str) -> dict:
    rows = new_rows(world, before)
    assert len(rows) == 1, f"{endpoint} by {role} wrote {len(rows)} look-up log rows, not 1: {rows}"
    return rows[0]


def test_the_table_reaches_every_endpoint_with_and_without_a_required_purpose():
    for preset in ("taz-2018", "rongcheng", "accountable"):
        reachable = {e for p, e, _ in REACHABLE if p == preset}
        expected = {"lookup", "history", "profile", "lookups", "flight", "loan"} | (
            {"gate"} if preset != "accountable" else set())  # accountable grants security nothing
        assert reachable == expected, preset
    required = {(load_policy(p).grant_for(r).purpose_required, r == "citizen") for p, _, r in REACHABLE}
    assert required == {(True, False), (False, False), (False, True)}


@pytest.mark.parametrize(("preset", "endpoint", "role"), REACHABLE)
def test_an_answered_call_is_logged_once_with_what_it_disclosed(worlds, preset, endpoint, role):
    world = worlds(preset)
    grant = world.policy.grant_for(role)
    purpose = f"case {preset}/{endpoint}/{role}"
    before = len(world.log())
    r = request(world, endpoint, role, purpose)
    assert r.status_code == 200, r.text
    fields = disclosed(endpoint, r.json())
    assert fields, r.json()
    # Never more than the grant; the look-up log is the citizen's and analysts' by role (README),
    # whatever the grant's fields (no preset grants analysts "lookups").
    assert set(fields) - {"decision", "lookups"} <= set(grant.fields)
    row = one_row(world, before, endpoint, role)
    assert (row["who"], row["role"], row["purpose"], row["endpoint"], row["day"]) == (
        role, role, purpose, endpoint, world.service.day)
    assert sorted(row["fields"]) == sorted(fields)
    assert len(row["fields"]) == len(set(row["fields"]))


@pytest.mark.parametrize("blank", list(BLANK))
@pytest.mark.parametrize(("preset", "endpoint", "role"), REACHABLE)
def test_a_missing_or_blank_purpose_is_refused_where_the_grant_requires_one(worlds, preset, endpoint,
                                                                            role, blank):
    world = worlds(preset)
    grant = world.policy.grant_for(role)
    before = len(world.log())
    r = request(world, endpoint, role, BLANK[blank])
    if grant.purpose_required and role != "citizen":
        assert r.status_code == 403, r.text
        assert f"role '{role}' must state a purpose (X-Purpose header)" in r.json()["error"]
        assert new_rows(world, before) == []
    else:
        assert r.status_code == 200, r.text
        row = one_row(world, before, endpoint, role)
        assert (row["who"], row["purpose"]) == (role, None)  # a blank purpose is logged as none
        assert sorted(row["fields"]) == sorted(disclosed(endpoint, r.json()))


@pytest.mark.parametrize(("preset", "endpoint", "role"), UNREACHABLE)
def test_a_call_outside_the_grant_is_refused_and_not_logged(worlds, preset, endpoint, role):
    world = worlds(preset)
    before = len(world.log())
    r = request(world, endpoint, role, "just looking")
    assert r.status_code == 403, r.text
    assert r.json()["error"]
    assert new_rows(world, before) == []


def test_the_service_itself_refuses_blank_purposes(worlds):
    """The same rule without HTTP in between (a server's HTTP parser strips header whitespace)."""
    from socialcredit.service import Forbidden, authenticate

    world = worlds("taz-2018")
    service = world.service
    bank = authenticate(service.db, world.keys["bank"])
    calls = [lambda p: service.lookup(bank, world.citizen, p),
             lambda p: service.loan_quote(bank, world.citizen, 1e4, p)]
    for call in calls:
        for purpose in BLANK.values():
            with pytest.raises(Forbidden, match="must state a purpose"):
                call(purpose)
        assert call(" mortgage ")["citizen_id"] == world.citizen
