"""Authorisation: every role against every endpoint, and no field outside the grant."""

import pytest
from fastapi.testclient import TestClient

from socialcredit.policy import ROLES, load_policy
from socialcredit.service import create_app, revoke_key

from .conftest import CITIZEN, auth, event, make_keys

SENDERS = {"agency": ("traffic.red_light", "camera"), "security": ("traffic.red_light", "camera"),
           "platform": ("online.party_newspaper_visit", "browsing")}
# Roles allowed per endpoint under taz-2018; every other role gets 403.
ALLOWED = {
    "events": {"agency", "security", "platform"},
    "citizen": set(ROLES),
    "history": {"citizen", "agency", "security", "analyst"},
    "lookups": {"citizen", "analyst"},
    "profile": {"agency", "security"},
    "appeal": set(),  # taz-2018 has no appeals
    "decision": {"agency"},  # allowed, then 404: there is no appeal 1
    "gate": {"security"},
    "flight": {"airline"},
    "loan": {"bank"},
    "stats": {"analyst", "agency"},
}
TAZ = load_policy("taz-2018")


def call(client, endpoint, role, secret, n):
    h = auth(secret, "audit 1")
    if endpoint == "events":
        kind, source = SENDERS.get(role, ("traffic.red_light", "camera"))
        return client.post("/api/events", json=[event(f"{role}-{n}", kind=kind, source=source)], headers=h)
    path = f"/api/citizens/{CITIZEN}"
    gets = {"citizen": path, "history": path + "/history", "lookups": path + "/lookups",
            "profile": path + "/profile", "stats": "/api/stats"}
    if endpoint in gets:
        return client.get(gets[endpoint], headers=h)
    posts = {"appeal": ("/api/appeals", {"event_id": "e-0", "reason": "not me"}),
             "decision": ("/api/appeals/1/decision", {"upheld": True}),
             "gate": ("/api/gates/subway", {"citizen_id": CITIZEN}),
             "flight": ("/api/flights/check", {"citizen_id": CITIZEN}),
             "loan": ("/api/loans/quote", {"citizen_id": CITIZEN, "amount": 100})}
    url, body = posts[endpoint]
    return client.post(url, json=body, headers=h)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from socialcredit.service import Service

    service = Service.open(f"sqlite:///{tmp_path_factory.mktemp('access')}/sc.db", "taz-2018")
    service.ledger.set_day(100)
    keys = make_keys(service.db)
    with TestClient(create_app(service)) as client:
        client.post("/api/events", json=[event(0, source_ref="cam-x-subway-1")], headers=auth(keys["agency"]))
        yield client, keys, service
    service.close()


@pytest.mark.parametrize("endpoint", sorted(ALLOWED))
@pytest.mark.parametrize("role", ROLES)
def test_role_against_endpoint(world, role, endpoint):
    client, keys, _ = world
    r = call(client, endpoint, role, keys[role], f"{endpoint}")
    if role not in ALLOWED[endpoint]:
        assert r.status_code == 403, (r.status_code, r.text)
        assert r.json()["error"]
        return
    expected = 404 if endpoint == "decision" else 200
    assert r.status_code == expected, r.text
    fields = set(TAZ.grant_for(role).fields)
    body = r.json()
    if endpoint == "citizen":
        assert set(body) - {"citizen_id", "day"} == fields & {"score", "class", "benefits", "sanctions",
                                                               "reasons", "blacklist"}
    if endpoint == "history":
        shown = ({"reasons"} & fields) | ({"events"} if "history" in fields else set())
        assert set(body) - {"citizen_id", "day"} == shown
    if endpoint in ("gate", "flight", "loan"):
        assert ("because" in body or "sanctions" in body) == ("sanctions" in fields)
    if endpoint in ("flight", "loan"):
        assert ("discount" in body or "benefits" in body) == ("benefits" in fields)


def test_a_citizen_reads_only_themself(world):
    client, keys, _ = world
    for path in ("", "/history", "/lookups"):
        r = client.get(f"/api/citizens/someone-else{path}", headers=auth(keys["citizen"]))
        assert r.status_code == 403 and "only its own citizen" in r.json()["error"]


def test_missing_unknown_and_revoked_keys_get_401(world):
    client, keys, service = world
    url = f"/api/citizens/{CITIZEN}"
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
    client, keys, _ = world
    r = client.post("/api/events", json=[event("x1", source="camera"), event("x2", source="courts")],
                    headers=auth(keys["security"]))
    assert r.status_code == 403
    assert r.json() == {"error": r.json()["error"], "row": 2, "field": "source"}


def test_unknown_citizen_is_404_for_a_granted_role(world):
    client, keys, _ = world
    assert client.get("/api/citizens/nobody", headers=auth(keys["bank"], "mortgage")).status_code == 404


def test_accountable_grants_class_only_with_a_purpose(make_service):
    service = make_service("accountable")
    keys = make_keys(service.db)
    with TestClient(create_app(service)) as client:
        client.post("/api/events", json=[event(1, confidence=0.99)], headers=auth(keys["agency"]))
        url = f"/api/citizens/{CITIZEN}"
        r = client.get(url, headers=auth(keys["bank"]))
        assert r.status_code == 403 and "purpose" in r.json()["error"]
        assert set(client.get(url, headers=auth(keys["bank"], "mortgage")).json()) == {"citizen_id", "day", "class"}
        r = client.get(url, headers=auth(keys["employer"], "hiring"))
        assert r.status_code == 403 and "no look-ups" in r.json()["error"]
        r = client.get(url + "/profile", headers=auth(keys["agency"], "case"))
        assert r.status_code == 403 and "'profile'" in r.json()["error"]
        flight = client.post("/api/flights/check", json={"citizen_id": CITIZEN},
                             headers=auth(keys["airline"], "booking")).json()
        assert set(flight) == {"citizen_id", "flight", "may_board", "decision"}
