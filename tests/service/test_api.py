"""The API in-process: ingestion, look-ups, history, profile, consequences, appeals, stats."""

import polars as pl

from socialcredit import service as service_pkg
from socialcredit.engine import score_ledger
from socialcredit.events import validate_events

from .conftest import CITIZEN, DAY, auth, event


def test_public_api_is_sorted_and_importable():
    assert service_pkg.__all__ == sorted(service_pkg.__all__)
    for name in service_pkg.__all__:
        assert hasattr(service_pkg, name), name


def test_ingest_then_lookup_gives_the_engine_score(send, client, keys, service):
    rows = [event(i, kind="court.judgment_default", day=3, source="courts") for i in range(5)]
    r = send(rows)
    assert r.status_code == 200, r.text
    assert r.json() == {"batch": 1, "events": 5, "projected": True, "day": DAY}
    body = client.get(f"/api/citizens/{CITIZEN}", headers=auth(keys["citizen"])).json()
    expected = score_ledger(service.policy, validate_events(pl.DataFrame(rows)), as_of=DAY).scores
    # The numbers follow the preset (a listed defaulter drops into D); the service follows the engine.
    assert (body["score"], body["class"]) == (expected["score"][0], expected["class"][0])
    assert body["class"] == "D"
    assert [s["name"] for s in body["sanctions"]] == [s.name for s in service.policy.sanctions]
    assert "blacklist" not in body  # not in the citizen's grant of taz-2018
    assert body["reasons"][0]["rule"] == "judgment-default"
    airline = client.get(f"/api/citizens/{CITIZEN}", headers=auth(keys["airline"], "booking")).json()
    assert airline["blacklist"] == {"listed": True, "bans": ["flight-ban", "train-ban"]}


def test_resent_events_are_stored_and_counted_once(send, client, keys):
    rows = [event(i, kind="public.littering", source="city-management") for i in range(3)]
    assert send(rows).status_code == 200
    assert send(rows + [event(9, kind="public.littering", source="city-management")]).status_code == 200
    body = client.get(f"/api/citizens/{CITIZEN}", headers=auth(keys["citizen"])).json()
    assert body["score"] == 1000 - 4 * 5
    stats = client.get("/api/stats", headers=auth(keys["analyst"])).json()
    assert stats["events"] == 4


def test_ndjson_and_wait_false(send, client, keys, service):
    r = send([event(1), event(2)], ndjson=True, wait="false")
    assert r.status_code == 202 and r.json()["events"] == 2
    while service.ledger.pending():
        service.ledger.project()
    assert client.get(f"/api/citizens/{CITIZEN}", headers=auth(keys["citizen"])).json()["score"] == 990


def test_history_shows_points_and_provenance(send, client, keys):
    send([event(1, source_ref="cam-rc-subway-3", confidence=0.8), event(2, kind="civic.volunteering",
                                                                         source="community")])
    body = client.get(f"/api/citizens/{CITIZEN}/history", headers=auth(keys["citizen"])).json()
    by_id = {e["event_id"]: e for e in body["events"]}
    assert by_id["e-1"]["points"] == -5 and by_id["e-1"]["source_ref"] == "cam-rc-subway-3"
    assert by_id["e-1"]["confidence"] == 0.8 and by_id["e-1"]["status"] == "counted"
    assert by_id["e-2"]["points"] == 5 and by_id["e-2"]["rule"] == "volunteering"
    assert {r["rule"] for r in body["reasons"]} == {"red-light", "volunteering"}


def test_every_lookup_is_logged_and_shown_to_the_citizen(send, client, keys):
    send([event(1)])
    client.get(f"/api/citizens/{CITIZEN}", headers=auth(keys["bank"], "mortgage"))
    client.get(f"/api/citizens/{CITIZEN}", headers=auth(keys["agency"], "case 17"))
    client.post("/api/flights/check", json={"citizen_id": CITIZEN}, headers=auth(keys["airline"], "booking"))
    log = client.get(f"/api/citizens/{CITIZEN}/lookups", headers=auth(keys["citizen"])).json()["lookups"]
    assert [(e["who"], e["role"], e["purpose"], e["endpoint"]) for e in log] == [
        ("airline", "airline", "booking", "flight"),
        ("agency", "agency", "case 17", "lookup"),
        ("bank", "bank", "mortgage", "lookup"),
    ]
    assert log[2]["fields"] == ["score", "class", "sanctions"]
    assert all(e["at"] and e["day"] == DAY for e in log)


def test_profile_from_camera_events_and_citizen_attributes(send, client, keys, service, tmp_path):
    pl.DataFrame({"citizen_id": [CITIZEN], "age": [38.0], "flags": ["watchlist"]}).write_parquet(
        tmp_path / "citizens.parquet")
    service.load_run(tmp_path)
    send([event(1, day=5, source_ref="cam-rc-subway-1"), event(2, day=7, source_ref="cam-rc-mall-2"),
          event(3, day=9, source_ref="cam-rc-subway-4", kind="public.littering")], role="security")
    r = client.get(f"/api/citizens/{CITIZEN}/profile", headers=auth(keys["security"], "patrol"))
    body = r.json()
    assert body["sightings"] == 3
    assert body["sightings_by_place_type"] == {"mall": 1, "subway": 2}
    assert body["last_seen"]["day"] == 9 and body["last_seen"]["camera"] == "cam-rc-subway-4"
    assert abs(body["age_estimate"] - 38) <= body["age_uncertainty"] == 3.0
    assert "watchlist" in body["flags"]


def test_subway_gate_flight_and_loan_act_on_the_class(send, client, keys):
    send([event(i, citizen="bad", kind="court.judgment_default", source="courts") for i in range(5)])
    send([event(9, citizen="good", kind="civic.volunteering", source="community")])
    gate = auth(keys["security"], "gate 4")
    assert client.post("/api/gates/subway", json={"citizen_id": "bad"}, headers=gate).json()["decision"] == "stop"
    assert client.post("/api/gates/subway", json={"citizen_id": "good"}, headers=gate).json()["decision"] == "pass"
    air = auth(keys["airline"], "booking")
    bad = client.post("/api/flights/check", json={"citizen_id": "bad"}, headers=air).json()
    assert bad["may_board"] is False and bad["because"] == ["flight-ban"]
    assert client.post("/api/flights/check", json={"citizen_id": "good"}, headers=air).json()["may_board"]
    bank = auth(keys["bank"], "loan")
    quotes = {c: client.post("/api/loans/quote", json={"citizen_id": c, "amount": 1e4}, headers=bank).json()
              for c in ("bad", "good")}
    assert {c: q["rate"] for c, q in quotes.items()} == {"good": 0.04 + 2 * 0.005, "bad": 0.04 + 5 * 0.005}
    # The bank sees every sanction the citizen is under (its grant has "sanctions"), none of which refuses a loan.
    assert "flight-ban" in quotes["bad"]["sanctions"] and quotes["bad"]["refused_by"] == []
    assert quotes["good"]["sanctions"] == []


def test_benefits_need_the_class_held_for_held_days(make_service):
    service = make_service()
    keys_ = {"agency": service_pkg.create_key(service.db, role="agency", name="a", sources=["community"])}
    key = service_pkg.authenticate(service.db, keys_["agency"])
    rows = "\n".join(f'{{"event_id": "h{i}", "citizen_id": "x", "kind": "civic.heroic_act", "day": 100, '
                     f'"source": "community"}}' for i in range(10))
    service.ingest(key, rows.encode())
    assert service.consequences("x", 0) == ([], [])  # AAA since day 100, benefits need 180 days
    service.ledger.set_day(279)
    assert service.consequences("x", 0) == ([], [])
    service.ledger.set_day(280)
    benefits, _ = service.consequences("x", 0)
    assert {b["name"] for b in benefits} == {b.name for b in service.policy.benefits}
    assert all(b["since_day"] == 100 for b in benefits)


def test_upheld_appeal_voids_the_event_and_rescores(make_service):
    from fastapi.testclient import TestClient

    from socialcredit.service import create_app

    from .conftest import make_keys

    service = make_service("accountable")
    keys = make_keys(service.db)
    with TestClient(create_app(service)) as client:
        rows = [event(1, kind="traffic.red_light", confidence=0.99), event(2, kind="traffic.red_light",
                                                                            confidence=0.99, day=2)]
        assert client.post("/api/events", json=rows, headers=auth(keys["agency"])).status_code == 200
        before = client.get(f"/api/citizens/{CITIZEN}", headers=auth(keys["citizen"])).json()["score"]
        r = client.post("/api/appeals", json={"event_id": "e-1", "reason": "not me"}, headers=auth(keys["citizen"]))
        assert r.status_code == 201, r.text
        appeal = r.json()["id"]
        again = client.post("/api/appeals", json={"event_id": "e-1", "reason": "x"}, headers=auth(keys["citizen"]))
        assert again.status_code == 409
        assert client.post(f"/api/appeals/{appeal}/decision", json={"upheld": True},
                           headers=auth(keys["citizen"])).status_code == 403
        r = client.post(f"/api/appeals/{appeal}/decision", json={"upheld": True, "note": "camera error"},
                        headers=auth(keys["agency"]))
        assert r.status_code == 200 and r.json()["status"] == "upheld"
        after = client.get(f"/api/citizens/{CITIZEN}", headers=auth(keys["citizen"])).json()["score"]
        rule = service.policy.rule_for("traffic.red_light")
        assert after == before - rule.points
        again = client.post(f"/api/appeals/{appeal}/decision", json={"upheld": False}, headers=auth(keys["agency"]))
        assert again.status_code == 409
        history = client.get(f"/api/citizens/{CITIZEN}/history", headers=auth(keys["citizen"])).json()
        assert {e["event_id"]: e["status"] for e in history["events"]} == {"e-1": "voided", "e-2": "counted"}
        other = client.post("/api/appeals", json={"event_id": "nope", "reason": "x"}, headers=auth(keys["citizen"]))
        assert other.status_code == 404


def test_appeals_refused_where_the_policy_has_none(send, client, keys):
    send([event(1)])
    r = client.post("/api/appeals", json={"event_id": "e-1", "reason": "not me"}, headers=auth(keys["citizen"]))
    assert r.status_code == 403 and "allows no appeals" in r.json()["error"]


def test_stats_counts_classes_and_events_per_day(send, client, keys, service):
    rows = [event(1, day=1), event(2, day=1, citizen="c-2"), event(3, day=4, citizen="c-3")]
    send(rows)
    body = client.get("/api/stats", headers=auth(keys["analyst"])).json()
    klass = score_ledger(service.policy, validate_events(pl.DataFrame(rows)), as_of=DAY).scores["class"][0]
    assert body["classes"][klass] == 3 and sum(body["classes"].values()) == 3
    assert body["events_per_day"] == [{"day": 1, "events": 2}, {"day": 4, "events": 1}]


def test_the_lean_lookup_route_answers_as_the_documented_one(send, client, keys):
    send([event(1)])
    url = f"/api/citizens/{CITIZEN}"
    lean = client.get(url, headers=auth(keys["bank"], "mortgage"))
    assert lean.status_code == 200 and set(lean.json()) == {"citizen_id", "day", "score", "class", "sanctions"}
    assert client.head(url, headers=auth(keys["bank"], "mortgage")).status_code == 405
    assert client.get(url, headers=auth(keys["bank"], "x" * 501)).status_code == 422
    assert client.get(url, headers={"Authorization": "Bearer   "}).status_code == 401
    assert client.get(url, headers=auth(keys["bank"])).status_code == 403
    assert client.get("/api/citizens/nobody", headers=auth(keys["bank"], "m")).status_code == 404
    assert list(client.get("/openapi.json").json()["paths"][url.replace(CITIZEN, "{citizen_id}")]) == ["get"]
    log = client.get(url + "/lookups", headers=auth(keys["citizen"])).json()["lookups"]
    assert [(e["who"], e["purpose"]) for e in log] == [("bank", "mortgage")]
