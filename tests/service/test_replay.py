"""The service's scores equal the engine's batch scores over the same ledger (SQLite, PostgreSQL)."""

import json

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from socialcredit.engine import score_ledger
from socialcredit.events import validate_events
from socialcredit.service import authenticate, create_app, create_key

from .conftest import SOURCES, auth, make_keys


def random_batch(rng, policy, start, n, day, citizens=40):
    kinds = [r.kind for r in policy.rules]
    return [{"event_id": f"r-{start + i}", "citizen_id": f"c-{rng.integers(citizens)}",
             "kind": kinds[rng.integers(len(kinds))], "day": int(rng.integers(max(0, day - 60), day + 1)),
             "source": SOURCES["agency"][rng.integers(len(SOURCES["agency"]))],
             "source_ref": f"cam-x-street-{rng.integers(9)}",
             "confidence": None if rng.random() < 0.2 else float(np.round(rng.uniform(0.5, 1), 3))}
            for i in range(n)]


def replay(service):
    policy = service.policy
    rng = np.random.default_rng(5)
    keys = make_keys(service.db)
    sent: dict[str, dict] = {}
    with TestClient(create_app(service)) as client:
        day = service.day
        for step in range(8):
            # New citizens join at every step; every other step re-sends events (idempotent).
            batch = random_batch(rng, policy, 1000 * step, 300, day, citizens=40 * (step + 1))
            resend = list(sent.values())[:50] if step % 2 else []
            r = client.post("/api/events", content=json.dumps(batch + resend), headers=auth(keys["agency"]))
            assert r.status_code == 200, r.text
            for e in batch:
                sent.setdefault(e["event_id"], e)
            day += int(rng.integers(0, 300))  # points expire as the day moves on
            service.ledger.set_day(day)
        voided = list(sent)[7]
        citizen = sent[voided]["citizen_id"]
        with service.ledger.write() as cur:
            service.ledger.void(cur, voided, citizen)
        ledger = validate_events(pl.DataFrame([e for k, e in sent.items() if k != voided]))
        expected = score_ledger(policy, ledger, as_of=day).scores.with_columns(pl.col("class").cast(pl.String))
        got = service.db.frame("SELECT citizen_id, score, class FROM scores ORDER BY citizen_id", (),
                               {"citizen_id": pl.String, "score": pl.Int64, "class": pl.String})
        assert got.equals(expected.sort("citizen_id"))
        assert expected["score"].n_unique() > 5  # the ledger exercises the rules
        for row in expected.head(5).iter_rows(named=True):
            body = client.get(f"/api/citizens/{row['citizen_id']}", headers=auth(keys["analyst"], "replay")).json()
            assert (body["score"], body["class"]) == (row["score"], row["class"])


@pytest.mark.parametrize("policy", ["accountable", "taz-2018"])
def test_replay_sqlite(make_service, policy):
    replay(make_service(policy))


@pytest.mark.parametrize("policy", ["accountable", "taz-2018"])
def test_replay_postgresql(make_service, pg_url, policy):
    replay(make_service(policy, url=pg_url))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_loaded_run_scores_equal_the_engine(make_service, request, tmp_path, backend):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    service = make_service("accountable", url=url)
    rng = np.random.default_rng(11)
    rows = random_batch(rng, service.policy, 0, 2000, 100)
    events = validate_events(pl.DataFrame(rows))
    events.with_columns(true_actor=pl.col("citizen_id")).write_parquet(tmp_path / "events.parquet")
    pl.DataFrame({"citizen_id": [f"c-{i}" for i in range(50)], "age": rng.uniform(18, 90, 50),
                  "note": ['say "hi", then leave'] * 50}).write_parquet(tmp_path / "citizens.parquet")
    assert service.load_run(tmp_path) == {"citizens": 50, "events": 2000}
    expected = score_ledger(service.policy, events, as_of=service.day).scores
    got = service.db.frame("SELECT citizen_id, score FROM scores ORDER BY citizen_id", (),
                           {"citizen_id": pl.String, "score": pl.Int64})
    assert got.equals(expected.select("citizen_id", "score").sort("citizen_id"))
    attributes = service.db.execute("SELECT attributes FROM citizens WHERE citizen_id = 'c-3'")[0][0]
    assert json.loads(attributes)["note"] == 'say "hi", then leave'


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_incremental_scores_equal_the_engine_under_daily_caps(make_service, request, backend):
    """Capped rules, late events with smaller ids, re-sends, a void and expiry, batch by batch."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    service = make_service("taz-2018", url=url)
    rules = service.policy.rules
    sources = sorted({(r.sources or ["camera"])[0] for r in rules})
    key = authenticate(service.db, create_key(service.db, role="agency", name="all", sources=sources))
    rng = np.random.default_rng(3)
    capped = [r for r in rules if r.max_per_day]
    assert capped
    picked = [capped[i] if rng.random() < 0.8 else rules[i % len(rules)]
              for i in rng.integers(0, len(capped), 3000)]
    rows = [{"event_id": f"k-{rng.integers(10**6):06d}-{i}", "citizen_id": f"c-{rng.integers(12)}",
             "kind": r.kind, "day": int(rng.integers(80, 101)), "source": (r.sources or ["camera"])[0]}
            for i, r in enumerate(picked)]
    sent: list[dict] = []
    for part in np.array_split(np.arange(len(rows)), 7):
        batch = [rows[i] for i in part] + sent[:20]  # re-sent events are stored and counted once
        service.ingest(key, "\n".join(json.dumps(r) for r in batch).encode())
        sent += [rows[i] for i in part]
    voided = sent[11]
    with service.ledger.write() as cur:
        service.ledger.void(cur, voided["event_id"], voided["citizen_id"])
    service.ingest(key, json.dumps([{**voided, "event_id": "k-late", "day": 100}]).encode())
    ledger = validate_events(pl.DataFrame([e for e in sent if e is not voided]
                                          + [{**voided, "event_id": "k-late", "day": 100}]))
    assert (score_ledger(service.policy, ledger).status == 4).sum() > 100  # caps bite
    for day in (100, 300):  # then points expire
        service.ledger.set_day(day)
        expected = score_ledger(service.policy, ledger, as_of=day).scores
        got = service.db.frame("SELECT citizen_id, score, class FROM scores ORDER BY citizen_id", (),
                               {"citizen_id": pl.String, "score": pl.Int64, "class": pl.String})
        assert got.equals(expected.with_columns(pl.col("class").cast(pl.String)).sort("citizen_id"))
