"""The service's scores equal the engine's batch scores over the same ledger (SQLite, PostgreSQL)."""

import json

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from socialcredit.engine import score_ledger
from socialcredit.events import validate_events
from socialcredit.service import Service, authenticate, create_app, create_key
from socialcredit.service._lookups import PLACE_TYPES
from tests.conftest import db_load

from .conftest import SOURCES, auth, make_keys

EVENT_COLUMNS = ["event_id", "citizen_id", "kind", "day", "source", "source_ref", "confidence"]


CAMERA_REFS = (*PLACE_TYPES, "cam-town-subway-3", None)


def random_batch(rng, policy, start, n, day, citizens=40):
    """Hand-made random events: the incremental scoring against the batch engine under re-sends,
    voids and expiry, for any ledger (not only what a run holds)."""
    kinds = [r.kind for r in policy.rules]
    return [{"event_id": f"r-{start + i}", "citizen_id": f"c-{rng.integers(citizens)}",
             "kind": kinds[rng.integers(len(kinds))], "day": int(rng.integers(max(0, day - 60), day + 1)),
             "source": SOURCES["agency"][rng.integers(len(SOURCES["agency"]))],
             # What the simulator writes (a place type) and what a live feed may (its camera's name).
             "source_ref": CAMERA_REFS[rng.integers(len(CAMERA_REFS))],
             "confidence": None if rng.random() < 0.2 else float(np.round(rng.uniform(0.5, 1), 3))}
            for i in range(n)]


def replay(service, births: pl.DataFrame | None = None, folder=None):
    """Random batches, re-sends, days moving on and a void, then the service's scores against the
    batch engine's; `births`, loaded first as a citizens.parquet, is the register a min_age reads."""
    policy = service.policy
    rng = np.random.default_rng(5)
    keys = make_keys(service.db)
    if births is not None:
        births.write_parquet(folder / "citizens.parquet")
        service.ledger.load_run(folder)
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
        expected = score_ledger(policy, ledger, as_of=day, births=births).scores.with_columns(
            pl.col("class").cast(pl.String))
        if births is not None:  # the register's citizens of age without an event hold the start score
            of_age = births.filter(pl.col("birth_day") + 365 * policy.min_age <= day)
            quiet = of_age.join(expected, on="citizen_id", how="anti").select(
                "citizen_id", score=pl.lit(policy.start, pl.Int64),
                **{"class": pl.lit(service.policy.class_names[service.ledger.start_class])})
            expected = pl.concat([expected, quiet])
            minors = births.filter(pl.col("birth_day") + 365 * policy.min_age > day)["citizen_id"]
            assert 20 < len(minors) < births.height - 20  # some came of age during the replay, not all
            counts = client.get("/api/stats", headers=auth(keys["analyst"], "replay")).json()
            assert sum(counts["classes"].values()) == expected.height
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


def _register(n: int = 320) -> pl.DataFrame:
    """Birth days of the replay's citizens c-0 .. c-{n-1}: each comes of age (18) on a day from 0 to
    about 2,400, the days the replay moves through."""
    rng = np.random.default_rng(11)
    return pl.DataFrame({"citizen_id": [f"c-{i}" for i in range(n)],
                         "birth_day": -18 * 365 + rng.integers(0, 2400, n)})


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_replay_with_a_min_age_scores_citizens_from_their_birthday(make_service, request, tmp_path, backend):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    service = make_service("accountable", url=url)
    assert service.policy.min_age == 18
    replay(service, births=_register(), folder=tmp_path)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_run_loaded_by_db_load_scores_as_the_simulator(simulated_runs, request, tmp_path, backend):
    """`socialcredit db load` into SQLite or PostgreSQL: every citizen of the run has its score and
    class from citizens.parquet, then the service scores new events on top of it as the engine does."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/run.db"
    run = simulated_runs("accountable")
    db_load(run.path, url)
    service = Service.open(url)
    try:
        got = service.db.frame("SELECT citizen_id, score, class FROM scores ORDER BY citizen_id", (),
                               {"citizen_id": pl.String, "score": pl.Int64, "class": pl.String})
        scored = run.citizens.filter(pl.col("score").is_not_null())  # accountable scores from 18
        assert 0 < scored.height < run.citizens.height
        assert got.equals(scored.select("citizen_id", "score", "class").sort("citizen_id"))
        row = run.citizens.row(7, named=True)
        attributes = service.db.execute("SELECT attributes FROM citizens WHERE citizen_id = ?", (row["citizen_id"],))
        assert json.loads(attributes[0][0]) == {k: v for k, v in row.items() if k != "citizen_id"}
        # New events, scored incrementally on top of the loaded state, as the batch engine scores all.
        rng = np.random.default_rng(11)
        ids = run.citizens["citizen_id"]
        batch = [{**e, "citizen_id": ids[int(rng.integers(ids.len()))]}
                 for e in random_batch(rng, service.policy, 0, 500, service.day)]
        key = authenticate(service.db, create_key(service.db, role="agency", name="a", sources=SOURCES["agency"]))
        service.ingest(key, json.dumps(batch).encode())
        ledger = pl.concat([run.events.select(EVENT_COLUMNS), validate_events(pl.DataFrame(batch))],
                           how="diagonal_relaxed")
        expected = score_ledger(service.policy, validate_events(ledger), as_of=service.day,
                                births=run.citizens.select("citizen_id", "birth_day")).scores
        got = service.db.frame("SELECT citizen_id, score, class FROM scores ORDER BY citizen_id", (),
                               {"citizen_id": pl.String, "score": pl.Int64, "class": pl.String})
        touched = got.join(expected.with_columns(pl.col("class").cast(pl.String)), on="citizen_id", how="inner")
        assert touched.height == expected.height
        assert touched.filter((pl.col("score") != pl.col("score_right")) | (pl.col("class") != pl.col("class_right"))
                              ).height == 0
    finally:
        service.close()


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
