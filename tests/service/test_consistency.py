"""The service's tables agree with the engine after every kind of write, on SQLite and PostgreSQL.

After loading a simulated run, ingesting, re-sending, voiding an event on appeal (and rejecting
another appeal), moving the day past expiries and loading the run again: every stored score and
class is the engine's over the ledger's unvoided events as of the service day, every loaded citizen
without events is at the start, each citizen's last class history entry is their class, and the
statistics the writes keep up to date equal a count of the tables.
"""

import json

import numpy as np
import polars as pl
import pytest

from socialcredit.engine import BIRTHS_SCHEMA, score_ledger
from socialcredit.events import EVENT_SCHEMA
from socialcredit.service import Service, authenticate, create_key

from ..conftest import db_load
from .conftest import handmade_event

EVENTS_SQL = "SELECT event_id, citizen_id, kind, day, source, source_ref, confidence FROM events WHERE voided = 0"


class Recounts:
    """Spies on the full-table counts behind the statistics: the writes keep them up to date, so they
    run again only after a write whose effect on them is unknown, or a write by another process."""

    def __init__(self, db):
        self.n = self.seen = 0
        execute = db.execute

        def spy(text, *args, **kwargs):
            self.n += "COUNT(*) FROM events" in text or "COUNT(*) FROM scores" in text
            return execute(text, *args, **kwargs)

        db.execute = spy

    def since_last(self) -> int:
        n, self.seen = self.n - self.seen, self.n
        return n


def assert_tables_agree_with_the_engine(service: Service, citizens: set[str], recounts: Recounts | None = None,
                                        *, recounted: bool = False) -> None:
    db = service.db
    ledger = db.frame(EVENTS_SQL, (), EVENT_SCHEMA)
    births = db.frame("SELECT citizen_id, birth_day FROM births", (), BIRTHS_SCHEMA)
    engine = score_ledger(service.policy, ledger, as_of=service.day, births=births).scores
    stored = db.frame("SELECT citizen_id, score, class, class_idx FROM scores", (),
                      {"citizen_id": pl.String, "score": pl.Int64, "class": pl.String, "class_idx": pl.Int32})
    names = service.policy.class_names
    assert stored["citizen_id"].is_unique().all()
    # Every citizen loaded or with an event has a score, unless under the policy's min_age.
    minors = set(births.filter(pl.col("birth_day") + 365 * service.policy.min_age > service.day)["citizen_id"])
    assert set(stored["citizen_id"]) == (citizens | set(ledger["citizen_id"])) - minors
    assert stored["class"].to_list() == [names[i] for i in stored["class_idx"]]
    joined = engine.join(stored, on="citizen_id", how="left", suffix="_stored")
    wrong = joined.filter((pl.col("score") != pl.col("score_stored"))
                          | (pl.col("class").cast(pl.String) != pl.col("class_stored")))
    assert wrong.height == 0, wrong.head(5)
    start = service.ledger.start_class
    quiet = stored.join(engine, on="citizen_id", how="anti")
    assert (quiet["score"] == service.policy.start).all() and (quiet["class_idx"] == start).all()
    # The class history ends in each citizen's class; without one, the citizen is in the start class.
    history = db.frame("SELECT citizen_id, day, class_idx FROM class_history ORDER BY id", (),
                       {"citizen_id": pl.String, "day": pl.Int32, "class_idx": pl.Int32})
    last = history.group_by("citizen_id", maintain_order=True).last()
    ends = stored.join(last, on="citizen_id", how="left", suffix="_last")
    assert (ends["class_idx_last"].fill_null(start) == ends["class_idx"]).all()
    assert (history["day"] <= service.day).all()
    # The statistics kept up to date by the writes equal a count of the tables.
    per_day, classes = service.ledger.counts()
    if recounts is not None:
        assert (recounts.since_last() > 0) == recounted, "recounted" if not recounted else "not recounted"
    assert per_day == dict(ledger.group_by("day").len().iter_rows())
    assert classes == np.bincount(stored["class_idx"].to_numpy(), minlength=len(names)).tolist()


def exercise(service: Service, run, citizens: set[str]) -> None:
    """Every kind of write, each followed by the check."""
    recounts = Recounts(service.db)
    service.ledger.counts()  # counted once: from here on the writes keep the counts
    recounts.since_last()

    def check(recounted: bool = False) -> None:
        assert_tables_agree_with_the_engine(service, citizens, recounts, recounted=recounted)

    check()
    agency = authenticate(service.db, create_key(service.db, role="agency", name="consistency-agency",
                                                 sources=["camera", "courts", "community", "traffic-police"]))
    day = service.day
    known = sorted(citizens)[:3]
    batch = [handmade_event(f"new-{i}", citizen=c, kind=kind, day=day, source=source, confidence=0.995)
             for i, (c, (kind, source)) in enumerate(zip(
                 known * 3, [("traffic.red_light", "camera"), ("court.judgment_default", "courts"),
                             ("civic.heroic_act", "community")] * 3, strict=True))]
    batch.append(handmade_event("new-stranger", citizen="someone-new", kind="court.judgment_default", day=day,
                                source="courts"))
    service.ingest(agency, json.dumps(batch).encode())
    check()
    service.ingest(agency, json.dumps(batch).encode())  # a re-send changes nothing
    check()

    if service.policy.appeals:
        counted = run.events.filter(pl.col("state_points") < 0).sort("event_id")
        first, second = counted.row(0, named=True), counted.row(1, named=True)
        for row, upheld in ((first, True), (second, False)):
            citizen = authenticate(service.db, create_key(
                service.db, role="citizen", name=f"appellant-{row['event_id']}", citizen=row["citizen_id"]))
            appeal = service.file_appeal(citizen, row["event_id"], "that was not me")
            decided = service.decide_appeal(agency, appeal["id"], upheld, "checked")
            assert decided["status"] == ("upheld" if upheld else "rejected")
            check()
        voided = service.db.execute("SELECT event_id FROM events WHERE voided = 1")
        assert [r[0] for r in voided] == [first["event_id"]]
        # A new event of the appellant: scored without the voided one (the state still holds it).
        service.ingest(agency, json.dumps([handmade_event("after-appeal", citizen=first["citizen_id"],
                                                          kind="civic.heroic_act", day=day,
                                                          source="community")]).encode())
        check()

    service.ledger.set_day(day + 400)  # past every expiry of the presets but the longest
    check()
    newcomers = folder_of_new_citizens(service, run)  # citizens new to the database: counted again
    service.load_run(newcomers)
    citizens |= {f"newcomer-{i}" for i in range(3)}
    check(recounted=True)
    service.load_run(run.path)  # loaded before: nothing new, nothing counted twice (which is not known)
    check(recounted=True)
    other = Service.open(service.db.url)  # another process writes: counted again
    try:
        late = [handmade_event("other-process", citizen=known[0], kind="court.judgment_default",
                               day=other.day, source="courts")]
        other.ingest(authenticate(other.db, agency_secret(other)), json.dumps(late).encode())
    finally:
        other.close()
    check(recounted=True)
    service.ingest(agency, json.dumps([{**late[0], "event_id": "after-the-other"}]).encode())
    check()


def folder_of_new_citizens(service: Service, run):
    folder = service.db.path.parent / "newcomers" if service.db.path else run.path.parent / "newcomers"
    folder.mkdir(exist_ok=True)
    (run.citizens.head(3).with_columns(citizen_id=pl.format("newcomer-{}", pl.int_range(3)))
     .write_parquet(folder / "citizens.parquet"))
    return folder


def agency_secret(service: Service) -> str:
    return create_key(service.db, role="agency", name="other-process", sources=["courts"])


@pytest.mark.parametrize("policy", ["accountable", "rongcheng"])
def test_sqlite_tables_agree_with_the_engine_after_every_write(loaded_runs, tmp_path, policy):
    loaded = loaded_runs(policy)
    url = f"sqlite:///{tmp_path}/loaded.db"
    db_load(loaded.path, url)  # the load is one of the writes checked (and so mapped to this test)
    service = Service.open(url)
    try:
        exercise(service, loaded.run, set(loaded.citizens["citizen_id"]))
    finally:
        service.close()


def test_postgresql_tables_agree_with_the_engine_after_every_write(simulated_runs, pg_url):
    run = simulated_runs("accountable")
    db_load(run.path, pg_url)
    service = Service.open(pg_url)
    try:
        exercise(service, run, set(run.citizens["citizen_id"]))
    finally:
        service.close()


def test_a_new_database_counts_nothing_and_has_nothing_pending(tmp_path):
    service = Service.open(f"sqlite:///{tmp_path}/new.db", "taz-2018")
    try:
        assert service.db.get_meta("ledger_gen") is None  # never written: no generation yet
        assert service.ledger.counts() == ({}, [0] * len(service.policy.class_names))
        assert service.ledger.pending() == 0
    finally:
        service.close()


def test_a_service_counts_as_it_builds_its_state_and_its_first_statistics_scan_nothing(loaded_runs, tmp_path,
                                                                                         monkeypatch):
    """The build of the scoring state reads every event: it counts them per day as it goes (and the
    classes once), so the first /api/stats does not scan the ledger under the write lock. Counts taken
    in a write that rolls back are dropped with it."""
    loaded = loaded_runs("accountable")
    url = f"sqlite:///{tmp_path}/loaded.db"
    db_load(loaded.path, url)
    service = Service.open(url)
    try:
        recounts = Recounts(service.db)
        service.ledger.warm()  # as `serve` does when it starts
        assert recounts.since_last() == 1  # the classes; the days came with the state's scan
        assert_tables_agree_with_the_engine(service, set(loaded.citizens["citizen_id"]), recounts)

        # A write that builds the state again, counts, then fails: its counts go with it.
        agency = authenticate(service.db, create_key(service.db, role="agency", name="a", sources=["courts"]))
        service.ledger._state = service.ledger._counts = None
        insert = type(service.db).insert_frame

        def failing(self, cur, table, frame, **kwargs):
            if table == "events":
                raise OSError("disk gone")
            return insert(self, cur, table, frame, **kwargs)

        monkeypatch.setattr(type(service.db), "insert_frame", failing)
        late = [handmade_event("late-1", citizen=loaded.citizens["citizen_id"][0], kind="court.judgment_default",
                               day=service.day, source="courts")]
        service.ingest(agency, json.dumps(late).encode(), wait=False)
        with pytest.raises(OSError):
            service.ledger.project()
        assert service.ledger._counts is None
        monkeypatch.setattr(type(service.db), "insert_frame", insert)
        assert service.ledger.project() == 1
        # Counted again from the tables, at the first request after the write that dropped them.
        assert_tables_agree_with_the_engine(service, set(loaded.citizens["citizen_id"]), recounts, recounted=True)
    finally:
        service.close()


def test_statistics_asked_as_a_write_commits_wait_for_it_and_count_nothing(make_service):
    """A write's commit is seen before it adds what it changed to the counts: a request in between
    waits for the write lock, then finds the counts up to date rather than scanning the tables."""
    import threading

    service = make_service()
    agency = authenticate(service.db, create_key(service.db, role="agency", name="a", sources=["courts"]))

    def send(i: int) -> None:
        event = handmade_event(f"e{i}", citizen=f"c{i}", kind="court.judgment_default", day=1, source="courts")
        service.ingest(agency, json.dumps([event]).encode(), wait=False)

    send(0)
    service.ledger.project()
    service.ledger.counts()
    recounts = Recounts(service.db)
    committed, go_on = threading.Event(), threading.Event()
    end_counts = service.ledger._end_counts

    def late_end(ok: bool) -> None:  # between the commit and the counts' update, with the lock held
        committed.set()
        go_on.wait(10)
        end_counts(ok)

    service.ledger._end_counts = late_end
    send(1)
    projector = threading.Thread(target=service.ledger.project)
    projector.start()
    assert committed.wait(10)
    service.ledger._end_counts = end_counts
    answer = []
    asking = threading.Thread(target=lambda: answer.append(service.ledger.counts()))
    asking.start()
    asking.join(0.2)
    assert asking.is_alive()  # it saw the new generation and waits for the write lock
    go_on.set()
    projector.join(10)
    asking.join(10)
    assert recounts.since_last() == 0
    assert answer == [({1: 2}, service.ledger.counts()[1])] and sum(answer[0][1]) == 2
