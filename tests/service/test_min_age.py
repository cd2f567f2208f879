"""A policy's min_age in the live service: a run under rongcheng (18 and over) loaded by
`socialcredit db load`; its minors have no score, no class and no consequence of one, every
endpoint still answers for them, and a minor comes of age on the day the register says."""

import json

import polars as pl

from socialcredit.service._decisions import LOAN_BASE_RATE, LOAN_CLASS_SPREAD

from .conftest import auth


def _minor_with_events(loaded):
    ages = loaded.citizens.select("citizen_id", "age", "birth_day")
    counted = loaded.run.events.group_by("citizen_id").len()
    minors = (ages.filter(pl.col("age") < 18).join(counted, on="citizen_id")
              .sort(["len", "citizen_id"], descending=[True, False]))
    assert minors.height > 50
    return minors.row(0, named=True)


def test_a_minor_has_no_score_and_every_endpoint_answers(loaded_runs, run_world):
    loaded = loaded_runs("rongcheng")
    minor = _minor_with_events(loaded)
    world = run_world("rongcheng", citizen=minor["citizen_id"])
    assert world.policy.min_age == 18
    base = f"/api/citizens/{minor['citizen_id']}"
    body = world.call("GET", base, "analyst", "audit").json()
    assert body["score"] is None and body["class"] is None
    body = world.call("GET", base, "citizen").json()
    assert (body["score"], body["class"], body["sanctions"], body["benefits"]) == (None, None, [], [])
    history = world.call("GET", base + "/history", "citizen").json()
    statuses = {e["status"] for e in history["events"]}
    assert "underage" in statuses and "counted" not in statuses and history["reasons"] == []
    flight = world.call("POST", "/api/flights/check", "airline", "boarding",
                        json={"citizen_id": minor["citizen_id"], "flight": "CA 1"}).json()
    assert flight["may_board"] is True
    gate = world.call("POST", "/api/gates/subway", "security", "patrol",
                      json={"citizen_id": minor["citizen_id"], "gate": "g"}).json()
    assert gate["decision"] == "pass"
    loan = world.call("POST", "/api/loans/quote", "bank", "credit",
                      json={"citizen_id": minor["citizen_id"], "amount": 1000}).json()
    start = world.service.ledger.start_class
    assert loan["approved"] and loan["rate"] == round(LOAN_BASE_RATE + LOAN_CLASS_SPREAD * start, 6)
    signed_in = world.client.post("/app/signin", data={"key": world.keys["citizen"]})
    assert signed_in.status_code == 200  # after the redirect to /app
    page = world.client.get("/app")
    assert page.status_code == 200 and "Not scored" in page.text and "from the age of 18" in page.text


def test_class_counts_cover_the_adults_only(loaded_runs, run_world):
    loaded = loaded_runs("rongcheng")
    world = run_world("rongcheng")
    counts = world.call("GET", "/api/stats", "analyst", "audit").json()["classes"]
    citizens = loaded.citizens
    assert sum(counts.values()) == citizens.filter(pl.col("age") >= 18).height < citizens.height
    expected = citizens.filter(pl.col("class").is_not_null()).group_by("class").len()
    assert {c: n for c, n in counts.items() if n} == dict(expected.iter_rows())


def test_a_minor_comes_of_age_on_the_day_the_register_says(loaded_runs, run_world):
    loaded = loaded_runs("rongcheng")
    minor = _minor_with_events(loaded)
    world = run_world("rongcheng", citizen=minor["citizen_id"])
    service, cid = world.service, minor["citizen_id"]
    birthday = minor["birth_day"] + 18 * 365
    assert service.day < birthday
    rule = world.policy.rules[0]
    events = [{"event_id": f"late-{i}", "citizen_id": cid, "kind": rule.kind, "day": day,
               "source": (rule.sources or ["court"])[0]} for i, day in enumerate((birthday - 1, birthday))]
    # Sent on the eve of the birthday: the first is of a minor and never counts.
    service.ledger.set_day(birthday - 1)
    r = world.client.post("/api/events", content=json.dumps(events[:1]), headers=auth(world.keys["agency"]))
    assert r.status_code == 200, r.text
    service.ledger.project()
    assert world.call("GET", f"/api/citizens/{cid}", "analyst", "audit").json()["score"] is None
    service.ledger.set_day(birthday)
    r = world.client.post("/api/events", content=json.dumps(events[1:]), headers=auth(world.keys["agency"]))
    assert r.status_code == 200, r.text
    service.ledger.project()
    body = world.call("GET", f"/api/citizens/{cid}", "analyst", "audit").json()
    assert body["score"] == world.policy.start + rule.points  # the day-of event only
    history = world.call("GET", f"/api/citizens/{cid}/history", "citizen").json()["events"]
    status = {e["event_id"]: e["status"] for e in history}
    assert status["late-0"] == "underage" and status["late-1"] == "counted"
