"""The projection's fast paths give the engine's answers: citizens found by hashed ids (and by joins
once two ids share a hash), capped groups found by packed keys (and ranked apart where two share one),
batches stored in id order, and only the scores rows that move written."""

import json
import sqlite3
import threading

import numpy as np
import polars as pl
import pytest

from socialcredit.engine import ScoreState, _state, score_ledger
from socialcredit.events import EVENT_SCHEMA, validate_events
from socialcredit.policy import load_policy
from socialcredit.service import Database, authenticate

from .conftest import SOURCES, make_keys

POLICY = load_policy("taz-2018")
DAY = 100  # the service fixture's day


def random_events(n: int, n_citizens: int, seed: int, *, sources=None) -> pl.DataFrame:
    """Random events of the policy's kinds (of those a key with `sources` may send), ids shuffled."""
    rng = np.random.default_rng(seed)
    kinds = [r for r in POLICY.rules if sources is None or (r.sources or ["camera"])[0] in sources]
    rules = [kinds[i] for i in rng.integers(0, len(kinds), n)]
    return validate_events(pl.DataFrame({
        "event_id": [f"e{i:06d}" for i in rng.permutation(n)],
        "citizen_id": [f"c{i}" for i in rng.integers(0, n_citizens, n)],
        "kind": [r.kind for r in rules],
        "day": rng.integers(0, 4, n).astype(np.int32),  # few days: crowded capped groups
        "source": [(r.sources or ["camera"])[0] for r in rules],
        "confidence": rng.choice([0.5, 0.9, 1.0], n),
    }))


def apply_in_batches(ledger: pl.DataFrame, size: int) -> ScoreState:
    state = ScoreState(POLICY, as_of=DAY)
    for part in ledger.iter_slices(size):
        state.apply(part)
    return state


def test_the_state_in_batches_equals_the_engine_with_caps_crowded():
    ledger = random_events(6000, 300, seed=1)
    expected = score_ledger(POLICY, ledger, as_of=DAY)
    assert expected.status_counts()["cap"] > 0
    for size in (1, 97, 2500):
        assert apply_in_batches(ledger.head(1500) if size == 1 else ledger, size).scores().equals(
            expected.scores if size != 1 else score_ledger(POLICY, ledger.head(1500), as_of=DAY).scores)


def test_ids_that_share_a_hash_are_told_apart(monkeypatch):
    """Every id hashed alike: the first look-up finds the clash and the state codes by joins from then on."""
    ledger = random_events(3000, 200, seed=2)
    expected = score_ledger(POLICY, ledger, as_of=DAY).scores
    state = apply_in_batches(ledger.head(1000), 500)  # hashed codes first
    monkeypatch.setattr(_state, "text_hashes", lambda ids: np.zeros(len(ids), np.uint64))
    for part in ledger.slice(1000).iter_slices(400):
        state.apply(part)
    assert state._exact is not None
    assert state.scores().equals(expected)
    assert state.known(pl.Series(["c1", "nobody"])).tolist() == [True, False]
    fresh = ScoreState(POLICY, as_of=DAY)  # clashing from the first batch on
    for part in ledger.iter_slices(700):
        fresh.apply(part)
    assert fresh.scores().equals(expected)


def test_capped_groups_that_share_a_key_are_ranked_apart(monkeypatch):
    ledger = random_events(3000, 200, seed=3)
    expected = score_ledger(POLICY, ledger, as_of=DAY).scores
    monkeypatch.setattr(_state, "_group_key", lambda code, rule, day: code % 3)  # many groups per key
    assert apply_in_batches(ledger, 250).scores().equals(expected)


def bodies(ledger: pl.DataFrame, size: int) -> list[bytes]:
    return [json.dumps(part.to_dicts()).encode() for part in ledger.iter_slices(size)]


def stored_scores(db: Database) -> pl.DataFrame:
    return db.frame("SELECT citizen_id, score, class FROM scores ORDER BY citizen_id", (),
                    {"citizen_id": pl.String, "score": pl.Int64, "class": pl.String})


def engine_scores(db: Database, day: int) -> pl.DataFrame:
    ledger = db.frame("SELECT event_id, citizen_id, kind, day, source, source_ref, confidence FROM events "
                      "WHERE voided = 0", (), EVENT_SCHEMA)
    return score_ledger(POLICY, ledger, as_of=day).scores.with_columns(pl.col("class").cast(pl.String))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def test_projected_batches_with_resends_agree_with_the_engine(make_service, backend, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    service = make_service(url=url)
    agency = authenticate(service.db, make_keys(service.db)["agency"])
    # Sent in id order, then a batch of ids stored and pending at once.
    ledger = random_events(4000, 250, seed=4, sources=SOURCES['agency']).sort("event_id")
    sent = bodies(ledger, 500)
    for body in sent[:4]:
        service.ingest(agency, body, wait=False)
    assert service.ledger.project(max_batches=2) == 2  # two batches in one projection
    service.ledger.counts()  # the counts are kept from here on
    resent = json.dumps(ledger.slice(900, 300).to_dicts()).encode()
    for body in [resent, *sent[4:]]:
        service.ingest(agency, body, wait=False)
    while service.ledger.project(max_batches=1):
        pass
    assert service.db.execute("SELECT COUNT(*) FROM events")[0][0] == ledger.height
    assert stored_scores(service.db).equals(engine_scores(service.db, DAY))
    days, classes = service.ledger.counts()
    assert sum(days.values()) == ledger.height and sum(classes) == stored_scores(service.db).height
    # The dashboard's arrivals: each event once, in the batch that stored it (the re-sent batch's
    # events counted where they first came in), as the ledger's own batch column says.
    by_batch = service.db.execute("SELECT batch, kind, source, COUNT(*) FROM events GROUP BY batch, kind, source")
    arrived = service.arrivals(0)
    assert sorted(arrived) == sorted(by_batch) and all(type(n) is int for *_, n in arrived)
    assert {b for b, *_ in arrived} == set(range(1, len(sent) + 2)) - {5}  # batch 5 was the re-sent one
    assert sorted(service.arrivals(3)) == sorted(r for r in by_batch if r[0] > 3)


def test_new_events_are_scored_while_they_are_stored_and_maybe_resent_ones_once_stored(service, monkeypatch):
    """Events whose ids lie beyond every stored one are applied to the state on a worker thread while
    the ledger stores them; a batch whose ids reach among stored ones is applied after the insert
    has said which were new. Both score as the engine does."""
    agency = authenticate(service.db, make_keys(service.db)["agency"])
    ledger = random_events(3000, 150, seed=6, sources=SOURCES['agency']).sort("event_id")
    on_worker = []
    apply_new = type(service.ledger)._apply_new

    def spy(self, state, events):
        on_worker.append(threading.current_thread() is not threading.main_thread())
        return apply_new(self, state, events)

    monkeypatch.setattr(type(service.ledger), "_apply_new", spy)
    for body in bodies(ledger.head(1000), 500):
        service.ingest(agency, body, wait=False)
    assert service.ledger.project(max_batches=2) == 2
    # Re-sent events among new ones, then new ones beyond them all.
    service.ingest(agency, bodies(pl.concat([ledger.slice(900, 200), ledger.slice(1100, 900)]), 1100)[0], wait=False)
    service.ingest(agency, bodies(ledger.slice(2000), 1000)[0], wait=False)
    assert service.ledger.project(max_batches=1) == service.ledger.project(max_batches=1) == 1
    assert on_worker == [True, False, True]
    assert service.db.execute("SELECT COUNT(*) FROM events")[0][0] == ledger.height
    assert stored_scores(service.db).equals(engine_scores(service.db, DAY))


def test_a_database_made_with_the_ledger_indexed_by_batch_loses_that_index(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    db = Database.open(url)
    with db.transaction() as cur:  # as databases made before the arrivals table had it
        cur.execute("CREATE INDEX events_batch ON events (batch)")
    db.close()
    db = Database.open(url)
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")}
    assert "events_citizen" in indexes and "events_batch" not in indexes
    db.close()


def test_a_failed_insert_changes_nothing_and_the_retry_is_exact(service, monkeypatch):
    agency = authenticate(service.db, make_keys(service.db)["agency"])
    ledger = random_events(1000, 100, seed=5, sources=SOURCES['agency']).sort("event_id")
    for body in bodies(ledger, 500):
        service.ingest(agency, body, wait=False)
    assert service.ledger.project(max_batches=1) == 1
    insert = Database.insert_frame

    def failing(self, cur, table, frame, **kwargs):
        if table == "events":
            raise OSError("disk gone")  # not the batch's fault: not counted towards its quarantine
        return insert(self, cur, table, frame, **kwargs)

    monkeypatch.setattr(Database, "insert_frame", failing)
    with pytest.raises(OSError):
        service.ledger.project(max_batches=1)
    assert service.db.execute("SELECT COUNT(*) FROM events")[0][0] == 500  # the first batch alone
    monkeypatch.setattr(Database, "insert_frame", insert)
    assert service.ledger.project(max_batches=1) == 1
    assert stored_scores(service.db).equals(engine_scores(service.db, DAY))


def test_only_the_rows_that_move_are_written(service, monkeypatch):
    agency = authenticate(service.db, make_keys(service.db)["agency"])
    capped = {"kind": "civic.volunteering", "day": 1, "source": "community"}  # max_per_day 1
    first = [{"event_id": "a1", "citizen_id": "c1", **capped}, {"event_id": "a2", "citizen_id": "c2", **capped}]
    service.ingest(agency, json.dumps(first).encode(), wait=False)
    service.ledger.project()
    written = []
    insert = Database.insert_frame

    def spy(self, cur, table, frame, **kwargs):
        if table == "scores":
            written.extend(frame["citizen_id"].to_list())
        return insert(self, cur, table, frame, **kwargs)

    monkeypatch.setattr(Database, "insert_frame", spy)
    second = [{"event_id": "b1", "citizen_id": "c1", **capped},  # over the cap: counts for nothing
              {"event_id": "b2", "citizen_id": "c3", **capped, "source": "camera"},  # not the rule's source
              {"event_id": "b3", "citizen_id": "c2", "kind": "traffic.red_light", "day": 2, "source": "camera"}]
    service.ingest(agency, json.dumps(second).encode(), wait=False)
    service.ledger.project()
    # c1's event scores nothing: its row stays; c3 is new (a row at the start); c2 moved.
    assert sorted(written) == ["c2", "c3"]
    assert stored_scores(service.db).equals(engine_scores(service.db, DAY))


def test_a_new_database_has_large_pages_and_an_old_one_keeps_its_own(tmp_path):
    db = Database.open(f"sqlite:///{tmp_path}/new.db")
    assert db.execute("PRAGMA page_size")[0][0] == 65_536
    assert db.inbox.execute("PRAGMA page_size")[0][0] == db.log.execute("PRAGMA page_size")[0][0] == 4096
    db.close()
    old = sqlite3.connect(tmp_path / "old.db")  # a file made before: SQLite's default page size
    old.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    old.close()
    db = Database.open(f"sqlite:///{tmp_path}/old.db")
    assert db.execute("PRAGMA page_size")[0][0] == 4096
    assert db.execute("SELECT COUNT(*) FROM events")[0][0] == 0
    db.close()


def test_sqlite_inserts_a_frame_slice_by_slice_and_counts_only_the_rows_written(tmp_path, monkeypatch):
    """Rows go in a slice at a time (the GIL is free between slices); the count is every slice's
    new rows, whichever slices the conflicting rows fall in."""
    from socialcredit.service import _db

    monkeypatch.setattr(_db, "_GIL_SLICE_ROWS", 3)
    db = Database.open(f"sqlite:///{tmp_path}/slices.db")
    with db.transaction() as cur:
        db.execute("DELETE FROM meta", (), cur)
        db.execute("INSERT INTO meta (key, value) VALUES ('k2', 'old'), ('k7', 'old')", (), cur)
        frame = pl.DataFrame({"key": [f"k{i}" for i in range(10)], "value": [f"v{i}" for i in range(10)]})
        written = db.insert_frame(cur, "meta", frame, conflict="ON CONFLICT (key) DO NOTHING")
    assert written == 8
    assert dict(db.execute("SELECT key, value FROM meta")) == {
        **{f"k{i}": f"v{i}" for i in range(10)}, "k2": "old", "k7": "old"}
    db.close()
