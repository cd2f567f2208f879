"""Grants decide every disclosure: every role against every endpoint about a citizen, under every
preset (the grant matrix). An answered call shows exactly the grant's fields of what the endpoint
can show, and writes one look-up log row with those fields, which the citizen sees in /lookups; a
refused call writes one refusal row with its reason, which the citizen sees too; where the grant
requires a purpose, a missing, blank or meaningless one is refused.

The expected answers are worked out here from the policy's grants with the README's rules, not
with the service's own table (access.DISCLOSURES), which test_the_readme_table_is_the_disclosure_table
checks against the README. Over the suite's simulated runs, loaded by `socialcredit db load`; the
citizen looked up is the one in the run's lowest class with the most camera events.
"""

import re
from pathlib import Path

import pytest

from socialcredit.policy import ROLES, load_policy

from .conftest import close_world, open_world

PRESETS = ("taz-2018", "rongcheng", "accountable", "sesame")
ENDPOINTS = ("lookup", "history", "lookups", "profile", "gate", "flight", "loan")
# What each endpoint can show (README: "discloses"); a decision's role always gets the decision.
CAN_SHOW = {"lookup": ("score", "class", "benefits", "sanctions", "reasons", "blacklist"),
            "history": ("reasons", "history"), "lookups": ("lookups",), "profile": ("profile", "sanctions"),
            "gate": ("sanctions",), "flight": ("sanctions", "benefits"),
            "loan": ("score", "class", "sanctions", "benefits")}
DECIDES = {"gate": "security", "flight": "airline", "loan": "bank"}
BLANK = {"missing": None, "empty": "", "spaces": "   ", "tab": "\t", "a dot": " .", "two letters": "ok"}


def expected(policy, role: str, endpoint: str) -> list[str] | None:
    """The fields the role's grant lets it see through the endpoint (with "decision" for a
    decision's own role), or None when the call is refused."""
    grant = next((g for g in policy.grants if g.role == role), None)
    if grant is None or (endpoint in DECIDES and role != DECIDES[endpoint]):
        return None
    shown = [f for f in CAN_SHOW[endpoint] if f in grant.fields]
    if endpoint in DECIDES:
        return ["decision", *shown]
    if endpoint == "profile" and "profile" not in grant.fields:
        return None
    return shown or None


@pytest.fixture(scope="module")
def worlds(loaded_runs, tmp_path_factory):
    """One started service per preset over a copy of its loaded run (the logs only grow: tests
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
        "profile": [*(["profile"] if {"age_estimate", "sightings", "sightings_by_place_type"} <= set(body) else []),
                    *(["sanctions"] if "flags" in body else [])],
        "lookups": ["lookups"] if "lookups" in body else [],
        "gate": ["decision", *(["sanctions"] if "because" in body else [])],
        "flight": ["decision", *(["sanctions"] if "because" in body else []),
                   *(["benefits"] if "discount" in body else [])],
        "loan": ["decision", *(f for f in ("score", "class") if f in body),
                 *(["sanctions"] if "sanctions" in body else []), *(["benefits"] if "benefits" in body else [])],
    }[endpoint]
    decision = {"gate": "decision", "flight": "may_board", "loan": "approved"}.get(endpoint)
    assert decision is None or decision in body, body
    return shown


def logs(world) -> tuple[list[dict], list[dict]]:
    """The citizen's look-up log and refusals, newest first, as the citizen reads them."""
    r = world.call("GET", f"/api/citizens/{world.citizen}/lookups", "citizen")
    assert r.status_code == 200, r.text
    return r.json()["lookups"], r.json()["refused"]


def added(world, before: tuple[list, list]) -> tuple[list[dict], list[dict]]:
    now = logs(world)
    return now[0][: len(now[0]) - len(before[0])], now[1][: len(now[1]) - len(before[1])]


CELLS = [(p, e, r) for p in PRESETS for e in ENDPOINTS for r in ROLES]


@pytest.mark.parametrize(("preset", "endpoint", "role"), CELLS)
def test_the_grant_decides_what_each_role_gets_from_each_endpoint(worlds, preset, endpoint, role):
    world = worlds(preset)
    fields = expected(world.policy, role, endpoint)
    purpose = f"case {preset}/{endpoint}/{role}"
    before = logs(world)
    r = request(world, endpoint, role, purpose)
    answered, refused = added(world, before)
    if fields is None:
        assert r.status_code == 403, r.text
        assert answered == []
        assert [(x["who"], x["role"], x["purpose"], x["endpoint"], x["reason"]) for x in refused] == [
            (role, role, purpose, endpoint, r.json()["error"])]
        return
    assert r.status_code == 200, r.text
    assert sorted(disclosed(endpoint, r.json())) == sorted(fields)
    assert refused == []
    own_log = endpoint == "lookups" and role == "citizen"  # the citizen reading their own log is not logged
    logged = [] if own_log else [(role, role, purpose, endpoint, sorted(fields), world.service.day)]
    rows = [(x["who"], x["role"], x["purpose"], x["endpoint"], sorted(x["fields"]), x["day"]) for x in answered]
    assert rows == logged


def test_the_matrix_holds_answers_and_refusals_under_every_preset():
    for preset in PRESETS:
        outcomes = {expected(load_policy(preset), r, e) is None for e in ENDPOINTS for r in ROLES}
        assert outcomes == {True, False}, preset
    # Each kind of grant is in the matrix: with and without a required purpose, and the citizen.
    kinds = {(g.purpose_required, g.role == "citizen") for p in PRESETS for g in load_policy(p).grants}
    assert kinds == {(True, False), (False, False), (False, True)}


@pytest.mark.parametrize("blank", list(BLANK))
@pytest.mark.parametrize(("preset", "endpoint", "role"),
                         [(p, e, r) for p, e, r in CELLS if r != "citizen"
                          and expected(load_policy(p), r, e) is not None and e in ("lookup", "loan", "history")])
def test_a_missing_or_meaningless_purpose_is_refused_where_the_grant_requires_one(worlds, preset, endpoint,
                                                                                  role, blank):
    world = worlds(preset)
    grant = world.policy.grant_for(role)
    before = logs(world)
    r = request(world, endpoint, role, BLANK[blank])
    answered, refused = added(world, before)
    if grant.purpose_required:
        assert r.status_code == 403, r.text
        assert f"role '{role}' must state a purpose (X-Purpose header" in r.json()["error"]
        assert answered == [] and len(refused) == 1
    else:
        assert r.status_code == 200, r.text
        assert len(answered) == 1 and refused == []


def test_the_readme_table_is_the_disclosure_table():
    """The README's endpoint table says, per route, the grant fields the service's table discloses."""
    from socialcredit.service._access import DISCLOSURES

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and re.fullmatch(r"(`[^`]*`, )*`[^`]*`|—", cells[2]):
            for route in re.findall(r"`([^`]+)`", cells[0]):
                rows[route] = re.findall(r"`([^`]+)`", cells[2])
    for d in DISCLOSURES.values():
        for route in (r for r in d.routes if r.startswith(("GET ", "POST "))):
            assert rows.get(route) == list(d.fields), route


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
