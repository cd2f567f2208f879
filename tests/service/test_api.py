"""The API in-process over a simulated run loaded by `socialcredit db load`: look-ups, history,
profile, consequences, appeals and stats answer what the run's citizens.parquet and events.parquet
say, scored by the same engine. Hand-made events only where a test is about ingestion mechanics or
a precise edge case of the rules."""

import math

import polars as pl
import pytest

from socialcredit import service as service_pkg
from socialcredit.engine import explain, score_ledger
from socialcredit.events import validate_events
from socialcredit.policy import load_policy
from socialcredit.service._decisions import LOAN_BASE_RATE, LOAN_CLASS_SPREAD
from socialcredit.service._lookups import PLACE_TYPES

from .conftest import CITIZEN, DAY, auth, handmade_event

ENGINE_COLUMNS = ["event_id", "citizen_id", "kind", "day", "source", "source_ref", "confidence"]


def ledger(world, extra: list[dict] = ()) -> pl.DataFrame:
    """The run's events as the engine reads them, with `extra` events sent since."""
    events = world.loaded.events.select(ENGINE_COLUMNS)
    if extra:
        events = pl.concat([events, pl.DataFrame(list(extra)).select(ENGINE_COLUMNS)], how="diagonal_relaxed")
    return validate_events(events)


def active(policy, klass: str):
    """Benefits and sanctions of `klass`; the run (45 days) is shorter than any held_days but 0,
    so only those with held_days = 0 can be active (checked)."""
    idx = policy.class_names.index(klass)
    names = policy.class_names
    assert all(c.held_days == 0 or c.held_days > 45 for c in [*policy.benefits, *policy.sanctions])
    benefits = [b for b in policy.benefits if idx <= names.index(b.class_) and b.held_days == 0]
    sanctions = [s for s in policy.sanctions if idx >= names.index(s.class_) and s.held_days == 0]
    return benefits, sanctions


def one_per_class(loaded) -> list[dict]:
    """For every class in the run, the citizen in it with the most camera events."""
    return [loaded.citizen(**{"class": k}) for k in sorted(loaded.citizens["class"].drop_nulls().unique())]


def test_public_api_is_sorted_and_importable():
    assert service_pkg.__all__ == sorted(service_pkg.__all__)
    for name in service_pkg.__all__:
        assert hasattr(service_pkg, name), name


@pytest.mark.parametrize("policy", ["taz-2018", "rongcheng"])
def test_a_lookup_answers_the_run_score_class_and_consequences(run_world, policy):
    world = run_world(policy)
    picked = one_per_class(world.loaded)
    assert {c["class"] for c in picked} >= {"A", "D"}  # the run reaches the bottom class
    quiet = (world.loaded.citizens.filter(pl.col("score").is_not_null())  # scored (of the policy's age)
             .join(world.loaded.events, on="citizen_id", how="anti").row(0, named=True))
    for citizen in [*picked, quiet]:
        cid = citizen["citizen_id"]
        body = world.call("GET", f"/api/citizens/{cid}", "agency", "case 7").json()
        assert (body["score"], body["class"]) == (citizen["score"], citizen["class"]), cid
        benefits, sanctions = active(world.policy, citizen["class"])
        assert [b["name"] for b in body["benefits"]] == [b.name for b in benefits]
        assert [s["name"] for s in body["sanctions"]] == [s.name for s in sanctions]
        bans = [s.name for s in sanctions if s.effect in ("flight_ban", "train_ban")]
        assert body["blacklist"] == {"listed": bool(bans), "bans": bans}
        if cid != quiet["citizen_id"]:
            factors = explain(world.policy, ledger(world), cid, as_of=world.service.day).factors
            assert body["reasons"] == factors.to_dicts()
    assert quiet["score"] == world.policy.start  # a citizen without events: the start


def test_an_event_sent_after_the_load_is_scored_on_top_of_the_run(run_world):
    world = run_world("taz-2018")
    citizen = world.loaded.citizen(**{"class": "A"})
    cid, day = citizen["citizen_id"], world.service.day
    new = {"event_id": "live-1", "citizen_id": cid, "kind": "court.judgment_default", "day": day,
           "source": "courts", "source_ref": "case 2018-117", "confidence": None}
    r = world.call("POST", "/api/events", "agency", json=[new])
    assert r.status_code == 200, r.text
    expected = score_ledger(world.policy, ledger(world, [new]), as_of=day).scores.filter(pl.col("citizen_id") == cid)
    body = world.call("GET", f"/api/citizens/{cid}", "citizen" if cid == world.citizen else "agency", "case 8").json()
    assert (body["score"], body["class"]) == (expected["score"][0], str(expected["class"][0]))
    assert body["score"] == citizen["score"] + world.policy.rule_for("court.judgment_default").points


def test_history_is_the_run_events_with_points_and_provenance(run_world):
    world = run_world("taz-2018")
    body = world.call("GET", f"/api/citizens/{world.citizen}/history", "citizen").json()
    expected = explain(world.policy, ledger(world), world.citizen, as_of=world.service.day)
    mine = world.loaded.events_of(world.citizen)
    events = {e["event_id"]: e for e in body["events"]}
    assert set(events) == set(mine["event_id"])
    for row in expected.events.with_columns(pl.col("status").cast(pl.String)).iter_rows(named=True):
        got = events[row["event_id"]]
        assert {k: got[k] for k in row} == row, row["event_id"]
    cameras = mine.filter(pl.col("source") == "camera")
    assert cameras.height and set(cameras["source_ref"]) <= set(PLACE_TYPES)
    for e in cameras.iter_rows(named=True):
        assert (events[e["event_id"]]["source_ref"], events[e["event_id"]]["confidence"]) == (
            e["source_ref"], e["confidence"])
    assert body["reasons"] == expected.factors.to_dicts()


def test_the_camera_profile_is_the_run_profile_and_live_sightings_add_to_it(run_world):
    world = run_world("taz-2018")
    citizens = world.loaded.citizens
    # Seen by the run's cameras, with an estimate that is not the true age (the camera's, not the census').
    citizen = (citizens.filter((pl.col("profile_age_error") != 0) & (pl.col("sightings") > 1))
               .sort(["sightings", "citizen_id"], descending=[True, False]).row(0, named=True))
    cid = citizen["citizen_id"]
    noise = world.loaded.run.manifest.scenario.sensors.age_noise_years
    body = world.call("GET", f"/api/citizens/{cid}/profile", "security", "patrol 4").json()
    assert body["age_estimate"] == citizen["profile_age"] != citizen["age"]
    assert body["age_uncertainty"] == round(noise / math.sqrt(6 * citizen["sightings"]), 2)
    assert body["sightings"] == citizen["sightings"]
    by_place = {p: citizen[f"moves_{p}"] for p in PLACE_TYPES if citizen[f"moves_{p}"]}
    assert body["sightings_by_place_type"] == by_place
    cams = world.loaded.events_of(cid).filter(pl.col("source") == "camera")
    if cams.height:
        last = cams.row(-1, named=True)
        assert body["last_seen"] == {"day": last["day"], "date": world.loaded.run.calendar.iso(last["day"]),
                                     "camera": last["source_ref"], "confidence": last["confidence"]}
    else:
        assert body["last_seen"] is None
    sanctions = [s.name for s in active(world.policy, citizen["class"])[1]]
    assert [f for f in body["flags"] if f.startswith("sanction:")] == [f"sanction:{s}" for s in sanctions]

    # A live feed names its cameras cam-<region>-<placetype>-<n>; the simulator the place type alone.
    day = world.service.day
    live = [{"event_id": "live-1", "citizen_id": cid, "kind": "traffic.red_light", "day": day,
             "source": "camera", "source_ref": "cam-town-subway-17", "confidence": 0.97},
            {"event_id": "live-2", "citizen_id": cid, "kind": "public.littering", "day": day,
             "source": "camera", "source_ref": "mall", "confidence": 0.99},
            {"event_id": "live-3", "citizen_id": cid, "kind": "public.littering", "day": day,
             "source": "camera", "source_ref": "lamp post 4", "confidence": 0.99}]
    assert world.call("POST", "/api/events", "security", json=live).status_code == 200
    after = world.call("GET", f"/api/citizens/{cid}/profile", "security", "patrol 4").json()
    assert after["sightings"] == citizen["sightings"] + 3
    assert after["sightings_by_place_type"] == {**by_place, "subway": by_place.get("subway", 0) + 1,
                                                "mall": by_place.get("mall", 0) + 1, "unknown": 1}
    assert after["last_seen"] == {"day": day, "date": world.service.date, "camera": "lamp post 4", "confidence": 0.99}
    assert after["age_estimate"] == citizen["profile_age"]  # a live event carries no face to estimate from

    never = citizens.filter(pl.col("sightings") == 0).row(0, named=True)
    body = world.call("GET", f"/api/citizens/{never['citizen_id']}/profile", "agency", "case 9").json()
    assert (body["age_estimate"], body["age_uncertainty"], body["sightings"], body["sightings_by_place_type"],
            body["last_seen"]) == (None, None, 0, {}, None)


@pytest.mark.parametrize("policy", ["taz-2018", "rongcheng"])
def test_subway_gate_flight_and_loan_act_on_the_class(run_world, policy):
    world = run_world(policy)
    decisions = set()
    for citizen in one_per_class(world.loaded):
        cid, klass = citizen["citizen_id"], citizen["class"]
        benefits, sanctions = active(world.policy, klass)
        gate = world.call("POST", "/api/gates/subway", "security", "gate 4", json={"citizen_id": cid}).json()
        stops = [s.name for s in sanctions if s.effect == "gate_stop"]
        assert (gate["decision"], gate["because"]) == ("stop" if stops else "pass", stops), (cid, klass)
        flight = world.call("POST", "/api/flights/check", "airline", "booking", json={"citizen_id": cid}).json()
        bans = [s.name for s in sanctions if s.effect == "flight_ban"]
        assert (flight["may_board"], flight["because"]) == (not bans, bans), (cid, klass)
        quote = world.call("POST", "/api/loans/quote", "bank", "loan", json={"citizen_id": cid, "amount": 1e4}).json()
        refused = [s.name for s in sanctions if s.effect == "loan_refusal"]
        rate = (LOAN_BASE_RATE + LOAN_CLASS_SPREAD * world.policy.class_names.index(klass)
                + sum(c.parameters["rate_change"] for c in [*benefits, *sanctions] if c.effect == "loan_price"))
        assert (quote["approved"], quote["refused_by"]) == (not refused, refused), (cid, klass)
        assert quote["rate"] == (None if refused else pytest.approx(rate)), (cid, klass)
        assert quote["sanctions"] == [s.name for s in sanctions]
        decisions |= {gate["decision"], flight["decision"], quote["approved"]}
    # Both outcomes of each decision the policy can take happen in the run.
    assert decisions >= ({"stop", "pass", "banned", "board"} if policy == "taz-2018" else {"pass", True, False})


def test_an_upheld_appeal_of_a_wrongful_camera_match_voids_it_and_rescores(run_world, loaded_runs):
    loaded = loaded_runs("accountable")
    policy = load_policy("accountable")
    # The run knows which camera matches were false (`wrongful`): contest one that counts.
    rules = pl.DataFrame({"kind": [r.kind for r in policy.rules],
                          "min_confidence": [r.min_confidence or 0.0 for r in policy.rules]})
    # A citizen of age (accountable scores from 18) with other events too, so that the rescore has a
    # ledger to score.
    adults = loaded.citizens.filter(pl.col("score").is_not_null()).select("citizen_id")
    others = (loaded.events.group_by("citizen_id").len().filter(pl.col("len") > 1).select("citizen_id")
              .join(adults, on="citizen_id"))
    wrongful = (loaded.events.filter(pl.col("wrongful") & (pl.col("source") == "camera"))
                .join(rules, on="kind").filter(pl.col("confidence") >= pl.col("min_confidence"))
                .join(others, on="citizen_id").sort("event_id"))
    assert wrongful.height, "the run has no wrongful camera match that counts under accountable"
    contested = wrongful.row(0, named=True)
    world = run_world("accountable", citizen=contested["citizen_id"])
    cid = world.citizen
    before = world.call("GET", f"/api/citizens/{cid}", "citizen").json()
    citizen = loaded.citizens.filter(pl.col("citizen_id") == cid).row(0, named=True)
    assert (before["score"], before["class"]) == (citizen["score"], citizen["class"])
    profile = world.call("GET", f"/api/citizens/{cid}/profile", "citizen").json()
    r = world.call("POST", "/api/appeals", "citizen", json={"event_id": contested["event_id"], "reason": "not me"})
    assert r.status_code == 201, r.text
    appeal = r.json()["id"]
    assert world.call("POST", "/api/appeals", "citizen",
                      json={"event_id": contested["event_id"], "reason": "x"}).status_code == 409
    assert world.call("POST", f"/api/appeals/{appeal}/decision", "citizen", json={"upheld": True}).status_code == 403
    r = world.call("POST", f"/api/appeals/{appeal}/decision", "agency", json={"upheld": True, "note": "look-alike"})
    assert r.status_code == 200 and r.json()["status"] == "upheld"
    rest = ledger(world).filter(pl.col("event_id") != contested["event_id"])
    expected = score_ledger(policy, rest, as_of=world.service.day).scores.filter(pl.col("citizen_id") == cid)
    after = world.call("GET", f"/api/citizens/{cid}", "citizen").json()
    assert (after["score"], after["class"]) == (expected["score"][0], str(expected["class"][0]))
    assert after["score"] != before["score"]
    history = world.call("GET", f"/api/citizens/{cid}/history", "citizen").json()
    assert {e["event_id"]: e["status"] for e in history["events"]}[contested["event_id"]] == "voided"
    again = world.call("GET", f"/api/citizens/{cid}/profile", "citizen").json()
    assert again["sightings"] == profile["sightings"] - 1
    place = contested["source_ref"]
    assert again["sightings_by_place_type"].get(place, 0) == profile["sightings_by_place_type"][place] - 1
    assert world.call("POST", f"/api/appeals/{appeal}/decision", "agency", json={"upheld": False}).status_code == 409
    assert world.call("POST", "/api/appeals", "citizen", json={"event_id": "nope", "reason": "x"}).status_code == 404


def test_appeals_refused_where_the_policy_has_none(run_world):
    world = run_world("taz-2018")
    event_id = world.loaded.events_of(world.citizen)["event_id"][0]
    r = world.call("POST", "/api/appeals", "citizen", json={"event_id": event_id, "reason": "not me"})
    assert r.status_code == 403 and "allows no appeals" in r.json()["error"]


def test_stats_count_the_run_classes_and_events_per_day(run_world):
    world = run_world("taz-2018")
    body = world.call("GET", "/api/stats", "analyst").json()
    classes = dict(world.loaded.citizens.group_by("class").len().iter_rows())
    assert body["classes"] == {k: classes.get(k, 0) for k in world.policy.class_names}
    per_day = world.loaded.events.group_by("day").len().sort("day")
    calendar = world.loaded.run.calendar
    assert body["events_per_day"] == [{"day": d, "date": calendar.iso(d), "events": n} for d, n in per_day.iter_rows()]
    assert (body["day"], body["date"]) == (world.service.day, calendar.iso(world.service.day))
    assert body["events"] == world.loaded.events.height
    assert body["appeals"] == {"open": 0, "upheld": 0, "rejected": 0}  # taz-2018 allows none


def test_stats_count_the_appeals_by_status(run_world):
    world = run_world("accountable")
    events = world.loaded.events_of(world.citizen)["event_id"]
    for event_id in events[:2]:
        r = world.call("POST", "/api/appeals", "citizen", json={"event_id": event_id, "reason": "not me"})
        assert r.status_code == 201, r.text
    assert world.call("GET", "/api/stats", "agency").json()["appeals"] == {"open": 2, "upheld": 0, "rejected": 0}


# Hand-made events below: ingestion mechanics and precise edge cases of the rules.


def test_resent_events_are_stored_and_counted_once(send, client, keys, service):
    rows = [handmade_event(i, kind="public.littering", source="city-management") for i in range(3)]
    assert send(rows).status_code == 200
    assert send(rows + [handmade_event(9, kind="public.littering", source="city-management")]).status_code == 200
    body = client.get(f"/api/citizens/{CITIZEN}", headers=auth(keys["citizen"])).json()
    assert body["score"] == service.policy.start + 4 * service.policy.rule_for("public.littering").points
    stats = client.get("/api/stats", headers=auth(keys["analyst"])).json()
    assert stats["events"] == 4


def test_ndjson_and_wait_false(send, client, keys, service):
    r = send([handmade_event(1), handmade_event(2)], ndjson=True, wait="false")
    assert r.status_code == 202 and r.json()["events"] == 2
    while service.ledger.pending():
        service.ledger.project()
    expected = service.policy.start + 2 * service.policy.rule_for("traffic.red_light").points
    assert client.get(f"/api/citizens/{CITIZEN}", headers=auth(keys["citizen"])).json()["score"] == expected


def test_benefits_need_the_class_held_for_held_days(make_service):
    service = make_service()
    policy = service.policy
    key = service_pkg.authenticate(service.db, service_pkg.create_key(service.db, role="agency", name="a",
                                                                      sources=["community"]))
    top = policy.class_names[0]
    held = {b.held_days for b in policy.benefits if b.class_ == top}
    assert len(held) == 1 and held != {0}  # taz-2018: every AAA benefit needs the same time in AAA
    (held,) = held
    heroic = policy.rule_for("civic.heroic_act").points
    n = -(-(policy.classes[0].min - policy.start) // heroic)  # heroic acts enough for the top class
    rows = "\n".join(f'{{"event_id": "h{i}", "citizen_id": "x", "kind": "civic.heroic_act", "day": {DAY}, '
                     f'"source": "community"}}' for i in range(n))
    service.ingest(key, rows.encode())
    assert service._status("x")[1] == top
    assert service.consequences("x", 0) == ([], [])  # in the top class since DAY: not long enough
    service.ledger.set_day(DAY + held - 1)
    assert service.consequences("x", 0) == ([], [])
    service.ledger.set_day(DAY + held)
    benefits, _ = service.consequences("x", 0)
    assert {b["name"] for b in benefits} == {b.name for b in policy.benefits}
    assert all(b["since_day"] == DAY for b in benefits)


def test_the_lean_lookup_route_answers_as_the_documented_one(send, client, keys):
    send([handmade_event(1)])
    url = f"/api/citizens/{CITIZEN}"
    lean = client.get(url, headers=auth(keys["bank"], "mortgage"))
    assert lean.status_code == 200 and set(lean.json()) == {"citizen_id", "day", "date", "score", "class", "sanctions"}
    assert client.head(url, headers=auth(keys["bank"], "mortgage")).status_code == 405
    assert client.get(url, headers=auth(keys["bank"], "x" * 501)).status_code == 422
    assert client.get(url, headers={"Authorization": "Bearer   "}).status_code == 401
    assert client.get(url, headers=auth(keys["bank"])).status_code == 403
    assert client.get("/api/citizens/nobody", headers=auth(keys["bank"], "mortgage")).status_code == 404
    assert list(client.get("/openapi.json").json()["paths"][url.replace(CITIZEN, "{citizen_id}")]) == ["get"]
    log = client.get(url + "/lookups", headers=auth(keys["citizen"])).json()["lookups"]
    assert [(e["who"], e["purpose"]) for e in log] == [("bank", "mortgage")]
