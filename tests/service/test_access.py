"""Authorisation: every role against every endpoint, and no field outside the grant, over the
suite's taz-2018 run loaded by `socialcredit db load` (the citizen: the run's class-D citizen with
the most camera events)."""

import polars as pl
import pytest

from socialcredit.policy import ROLES, load_policy
from socialcredit.service import revoke_key

from .conftest import auth, close_world, handmade_event, open_world

SENDERS = {"agency": ("traffic.red_light", "camera"), "security": ("traffic.red_light", "camera"),
           "platform": ("online.party_newspaper_visit", "browsing")}
# Roles allowed per endpoint under taz-2018; every other role gets 403.
ALLOWED = {
    "events": {"agency", "security", "platform"},
    "citizen": set(ROLES),
    "history": {"citizen", "agency", "security", "analyst"},
    "lookups": {"citizen", "agency", "security"},  # the grants with "lookups"
    "profile": {"agency", "security"},
    "appeal": set(),  # taz-2018 has no appeals
    "decision": {"agency"},  # allowed, then 404: there is no appeal 1
    "gate": {"security"},
    "flight": {"airline"},
    "loan": {"bank"},
    "stats": {"analyst", "agency"},
}
TAZ = load_policy("taz-2018")


def call(world, endpoint, role, n):
    client, citizen = world.client, world.citizen
    h = auth(world.keys[role], "audit 1")
    if endpoint == "events":
        kind, source = SENDERS.get(role, ("traffic.red_light", "camera"))
        e = handmade_event(f"{role}-{n}", citizen=citizen, kind=kind, source=source, day=world.service.day)
        return client.post("/api/events", json=[e], headers=h)
    path = f"/api/citizens/{citizen}"
    event_id = world.loaded.events_of(citizen)["event_id"][0]
    gets = {"citizen": path, "history": path + "/history", "lookups": path + "/lookups",
            "profile": path + "/profile", "stats": "/api/stats"}
    if endpoint in gets:
        return client.get(gets[endpoint], headers=h)
    posts = {"appeal": ("/api/appeals", {"event_id": event_id, "reason": "not me"}),
             "decision": ("/api/appeals/1/decision", {"upheld": True}),
             "gate": ("/api/gates/subway", {"citizen_id": citizen}),
             "flight": ("/api/flights/check", {"citizen_id": citizen}),
             "loan": ("/api/loans/quote", {"citizen_id": citizen, "amount": 100})}
    url, body = posts[endpoint]
    return client.post(url, json=body, headers=h)


@pytest.fixture(scope="module")
def world(loaded_runs, tmp_path_factory):
    w = open_world(loaded_runs("taz-2018"), tmp_path_factory.mktemp("access"))
    yield w
    close_world(w)


@pytest.mark.parametrize("endpoint", sorted(ALLOWED))
@pytest.mark.parametrize("role", ROLES)
def test_role_against_endpoint(world, role, endpoint):
    r = call(world, endpoint, role, f"{endpoint}")
    if role not in ALLOWED[endpoint]:
        assert r.status_code == 403, (r.status_code, r.text)
        assert r.json()["error"]
        return
    expected = 404 if endpoint == "decision" else 200
    assert r.status_code == expected, r.text
    fields = set(TAZ.grant_for(role).fields)
    body = r.json()
    if endpoint == "citizen":
        assert set(body) - {"citizen_id", "day", "date"} == fields & {"score", "class", "benefits", "sanctions",
                                                               "reasons", "blacklist"}
    if endpoint == "history":
        shown = ({"reasons"} & fields) | ({"events"} if "history" in fields else set())
        assert set(body) - {"citizen_id", "day", "date"} == shown
    if endpoint in ("gate", "flight", "loan"):
        assert ("because" in body or "sanctions" in body) == ("sanctions" in fields)
    if endpoint in ("flight", "loan"):
        assert ("discount" in body or "benefits" in body) == ("benefits" in fields)


def test_a_citizen_reads_only_themself(world):
    other = world.loaded.citizen(**{"class": "A"})["citizen_id"]
    for path in ("", "/history", "/lookups", "/profile"):
        r = world.client.get(f"/api/citizens/{other}{path}", headers=auth(world.keys["citizen"]))
        assert r.status_code == 403 and "only its own citizen" in r.json()["error"]


def test_missing_unknown_and_revoked_keys_get_401(world):
    client, service = world.client, world.service
    url = f"/api/citizens/{world.citizen}"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get(url, headers=auth("sc_not-a-key")).status_code == 401
    from socialcredit.service import create_key

    secret = create_key(service.db, role="bank", name="to-revoke")
    assert client.get(url, headers=auth(secret, "mortgage")).status_code == 200
    revoke_key(service.db, "to-revoke")
    r = client.get(url, headers=auth(secret, "mortgage"))
    assert r.status_code == 401 and "revoked" in r.json()["error"]


def test_senders_only_send_their_bound_sources(world):
    rows = [handmade_event(n, citizen=world.citizen, source=source)
            for n, source in (("x1", "camera"), ("x2", "courts"))]
    r = world.client.post("/api/events", json=rows, headers=auth(world.keys["security"]))
    assert r.status_code == 403
    assert r.json() == {"error": r.json()["error"], "row": 2, "field": "source"}


def test_unknown_citizen_is_404_for_a_granted_role(world):
    assert world.loaded.citizens.filter(pl.col("citizen_id") == "nobody").height == 0
    r = world.client.get("/api/citizens/nobody", headers=auth(world.keys["bank"], "mortgage"))
    assert r.status_code == 404 and "no citizen 'nobody'" in r.json()["error"]


def test_accountable_grants_class_only_with_a_purpose(run_world):
    world = run_world("accountable")
    url = f"/api/citizens/{world.citizen}"
    r = world.call("GET", url, "bank")
    assert r.status_code == 403 and "purpose" in r.json()["error"]
    body = world.call("GET", url, "bank", "mortgage").json()
    citizen = world.loaded.citizens.filter(pl.col("citizen_id") == world.citizen).row(0, named=True)
    assert body == {"citizen_id": world.citizen, "day": world.service.day, "date": world.service.date,
                    "class": citizen["class"]}
    r = world.call("GET", url, "employer", "hiring")
    assert r.status_code == 403 and "no look-ups" in r.json()["error"]
    r = world.call("GET", url + "/profile", "agency", "case")
    assert r.status_code == 403 and "'profile'" in r.json()["error"]
    flight = world.call("POST", "/api/flights/check", "airline", "booking", json={"citizen_id": world.citizen}).json()
    assert set(flight) == {"citizen_id", "flight", "may_board", "decision"}
    own = world.call("GET", url + "/profile", "citizen")  # accountable grants the citizen their own profile
    assert own.status_code == 200 and own.json()["sightings"] == citizen["sightings"]


def test_the_grant_rules_in_process_a_citizen_needs_no_purpose_and_reads_only_themself():
    """Access.permit directly: a citizen's own look-up needs no purpose even where the grant asks
    one of others; another citizen is refused with the reason; a bank must state a purpose that says
    something; a decision is its role's alone."""
    from socialcredit.policy import load_policy
    from socialcredit.service._access import DISCLOSURES, Access
    from socialcredit.service._errors import Forbidden
    from socialcredit.service._keys import ApiKey

    policy = load_policy("taz-2018")
    citizen_grant = next(g for g in policy.grants if g.role == "citizen")
    policy = policy.model_copy(update={"grants": [citizen_grant.model_copy(update={"purpose_required": True}),
                                                  *[g for g in policy.grants if g.role != "citizen"]]})
    access = Access(policy)
    lookup, loan = DISCLOSURES["lookup"], DISCLOSURES["loan"]
    me = ApiKey("me", "citizen", "c-1", ())
    assert access.permit(me, "c-1", None, lookup).role == "citizen"
    with pytest.raises(Forbidden) as caught:
        access.permit(me, "c-2", None, lookup)
    assert str(caught.value) == "a citizen key may read only its own citizen"
    bank = ApiKey("bank", "bank", None, ())
    for purpose in (None, "", "  ", " .", "ok", "a b", "___"):  # taz-2018 asks banks for a purpose
        with pytest.raises(Forbidden, match="role 'bank' must state a purpose"):
            access.permit(bank, "c-1", purpose, lookup)
    assert access.permit(bank, "c-1", "mortgage", lookup).role == "bank"
    assert access.permit(bank, "c-1", "a-b-c", loan).role == "bank"
    with pytest.raises(Forbidden, match="the loan quote is for bank keys, not 'citizen'"):
        access.permit(me, "c-1", None, loan)
