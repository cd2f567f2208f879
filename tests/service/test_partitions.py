"""A ledger split into partitions by citizen (PostgreSQL), each projected by a service process of its
own, stores and answers what one service does on the same events.

The partitioned services here are two Service objects on one database (each with its own
connections, write lock and advisory lock, as two processes have), and two `serve --partition`
processes; the reference is one service on SQLite that gets the same batches.
"""

import json
import random

import httpx
import polars as pl
import pytest

from socialcredit.policy import load_policy
from socialcredit.service import Conflict, Service, authenticate

from ..conftest import db_load
from .conftest import DAY, auth, make_keys
from .test_consistency import assert_tables_agree_with_the_engine

POLICY = "taz-2018"
SCORE_COLUMNS = "citizen_id, score, class, class_idx, as_of"
KINDS = [("traffic.red_light", "camera"), ("public.littering", "camera"), ("contract.breach", "courts"),
         ("court.judgment_default", "courts"), ("civic.volunteering", "community"), ("civic.heroic_act", "community"),
         ("traffic.drunk_driving", "traffic-police")]


def batches(n_batches: int = 4, per_batch: int = 400, citizens: int = 120, seed: int = 7) -> list[list[dict]]:
    """Batches of events of many citizens over the days before DAY (some re-sent in a later batch)."""
    rng = random.Random(seed)
    out, sent = [], []
    for b in range(n_batches):
        rows = [{"event_id": f"e-{b}-{i:04d}", "citizen_id": f"c-{rng.randrange(citizens):03d}", "kind": kind,
                 "day": rng.randrange(DAY + 1), "source": source}
                for i, (kind, source) in enumerate(rng.choice(KINDS) for _ in range(per_batch))]
        rows += sent[-10:]  # sent again, unchanged: stored once
        sent += rows
        out.append(rows)
    return out


def tables(service: Service) -> dict[str, pl.DataFrame]:
    db = service.db
    return {
        "scores": db.frame(f"SELECT {SCORE_COLUMNS} FROM scores", (), {
            "citizen_id": pl.String, "score": pl.Int64, "class": pl.String, "class_idx": pl.Int32,
            "as_of": pl.Int32}).sort("citizen_id"),
        "history": db.frame("SELECT citizen_id, day, class_idx FROM class_history", (), {
            "citizen_id": pl.String, "day": pl.Int32, "class_idx": pl.Int32}).sort(pl.all()),
        "events": db.frame("SELECT event_id, citizen_id, voided FROM events", (), {
            "event_id": pl.String, "citizen_id": pl.String, "voided": pl.Int32}).sort("event_id"),
    }


def assert_same(one: Service, split: Service) -> None:
    expected, got = tables(one), tables(split)
    for name in expected:
        assert got[name].equals(expected[name]), name


@pytest.fixture
def make_split(pg_url):
    """Two services, one per partition of a database made with two."""
    owners = []

    def make(policy=POLICY) -> list[Service]:
        owners.extend(Service.open(pg_url, policy, partitions=2, partition=p) for p in range(2))
        owners[0].set_day(DAY)
        owners[1].ledger.catch_up()
        return owners

    yield make
    for s in owners:
        s.close()


def project_all(owners: list[Service]) -> None:
    for s in owners:
        while s.ledger.project():
            pass


def test_each_partition_projects_its_own_citizens_and_together_they_score_as_one_service(make_service, make_split):
    split = make_split()
    one = make_service(POLICY)
    one_keys, split_keys = make_keys(one.db), make_keys(split[0].db)
    for i, rows in enumerate(batches()):
        body = json.dumps(rows).encode()
        one.ingest(authenticate(one.db, one_keys["agency"]), body, wait=False)
        # Any process acknowledges any batch; each projects its own citizens' events of it.
        receiver = split[i % 2]
        receiver.ingest(authenticate(receiver.db, split_keys["agency"]), body, wait=False)
    # Each projects the batches together (a class change within them is not history), as one does.
    one.ledger.project()
    assert split[0].ledger.pending() == 4
    split[0].ledger.project()
    assert split[0].ledger.pending() == 4  # the other partition has not projected them yet
    assert not split[0].ledger.wait_projected(4, timeout=0.05)
    # The other partition's process stops before projecting (a crash loses no acknowledged batch) and
    # a new one takes its partition over.
    split[1].close()
    split[1] = Service.open(split[0].db.url, partition=1)
    split[1].ledger.project()
    assert split[0].ledger.pending() == split[1].ledger.pending() == 0
    assert split[1].ledger.wait_projected(4, timeout=0.05)
    assert_same(one, split[0])
    assert sorted(split[1].arrivals(0)) == sorted(one.arrivals(0))  # each owner's arrivals add up to the batch's

    # Each partition's table holds its owner's citizens, and both hold some.
    db = split[0].db
    held = [{r[0] for r in db.execute(f"SELECT DISTINCT citizen_id FROM events_p{p}")} for p in range(2)]
    assert held[0] and held[1] and not held[0] & held[1]
    for p in range(2):
        assert set(db.in_partition(pl.Series(sorted(held[0] | held[1])), p)) == held[p]
        assert {db.partition_of(c) for c in held[p]} == {p}

    # Moved by one process, the day reaches the other partition when its owner catches up.
    one.set_day(DAY + 400)
    split[1].set_day(DAY + 400)
    assert split[0].day == DAY
    split[0].ledger.catch_up()
    assert split[0].day == split[1].day == DAY + 400
    assert_same(one, split[0])
    with pytest.raises(Conflict, match="cannot go back"):
        split[0].set_day(DAY)

    # Every process answers for every citizen, as the single service does.
    for citizen in sorted(held[0])[:3] + sorted(held[1])[:3]:
        for owner in split:
            key = authenticate(owner.db, split_keys["agency"])
            got = owner.lookup(key, citizen, "credit-check")
            assert got == one.lookup(authenticate(one.db, one_keys["agency"]), citizen, "credit-check")
    key = authenticate(split[1].db, split_keys["analyst"])
    assert split[1].stats(key)["classes"] == one.stats(authenticate(one.db, one_keys["analyst"]))["classes"]


def test_an_appeal_upheld_by_another_partitions_process_is_scored_by_the_owner(make_service, make_split):
    policy = load_policy(POLICY).model_copy(update={"appeals": True})
    one, split = make_service(policy), make_split(policy)
    rows = [{"event_id": f"a-{i}", "citizen_id": f"c-{i % 40:02d}", "kind": "court.judgment_default",
             "day": DAY - 1, "source": "courts"} for i in range(120)]
    services = [one, *split]
    keys = [make_keys(one.db), make_keys(split[0].db)]
    one.ingest(authenticate(one.db, keys[0]["agency"]), json.dumps(rows).encode())
    split[0].ingest(authenticate(split[0].db, keys[1]["agency"]), json.dumps(rows).encode(), wait=False)
    project_all(split)
    db = split[0].db
    # A citizen of partition 1, whose appeal the process of partition 0 decides.
    citizen = next(c for c in sorted({r["citizen_id"] for r in rows}) if db.partition_of(c) == 1)
    event = next(r["event_id"] for r in rows if r["citizen_id"] == citizen)
    for service, decider in ((one, one), (split[1], split[0])):
        # The appellant's keys, and another agency than the reporter, which decides.
        mine = make_keys(service.db, tag="-appeal", citizen=citizen)
        appeal = service.file_appeal(authenticate(service.db, mine["citizen"]), event, "not me")
        decider.decide_appeal(authenticate(decider.db, mine["agency"]), appeal["id"], True, "upheld")
    assert_same(one, split[0])
    # The owner's state saw the void: its next projection scores the citizen from the ledger.
    more = [{"event_id": "late-1", "citizen_id": citizen, "kind": "civic.volunteering", "day": DAY,
             "source": "community"}]
    for service, secrets in ((one, keys[0]), (split[0], keys[1])):
        service.ingest(authenticate(service.db, secrets["agency"]), json.dumps(more).encode(), wait=False)
    project_all(services)
    assert_same(one, split[0])
    # The reference is right too: the citizen whose voided event the state still counts is scored
    # from the ledger at their next event, even where the state sees no move.
    assert_tables_agree_with_the_engine(one, set())


def test_partitions_are_chosen_when_the_database_is_made(pg_url, tmp_path):
    with pytest.raises(RuntimeError, match="needs PostgreSQL"):
        Service.open(f"sqlite:///{tmp_path}/x.db", POLICY, partitions=2)
    Service.open(pg_url, POLICY, partitions=3, partition=0).close()
    with pytest.raises(RuntimeError, match="in 3 partition"):
        Service.open(pg_url, POLICY, partitions=2)
    with pytest.raises(Conflict, match="no partition 3"):
        Service.open(pg_url, POLICY, partition=3)
    whole = Service.open(pg_url, POLICY)  # reads, and moves the day, but projects no partition
    try:
        with pytest.raises(Conflict, match="serve --partition"):
            whole.ledger.project()
        with pytest.raises(Conflict, match="--partition P/3"):
            whole.start()
    finally:
        whole.close()


def test_two_serve_processes_share_the_work_and_answer_for_every_citizen(make_service, pg_url, server_factory):
    first = server_factory(pg_url, args=["--partition", "0/2"])
    first.start()  # it makes the database, in two partitions
    second = server_factory(pg_url, args=["--partition", "1/2"])
    second.start()
    one = make_service(POLICY)
    whole = Service.open(pg_url)  # reads the tables, projects nothing
    keys, one_keys = make_keys(whole.db), make_keys(one.db)
    sent = batches(n_batches=2)
    for server, rows in zip((first, second), sent, strict=True):
        answer = httpx.post(server.url + "/api/events", content=json.dumps(rows), headers=auth(keys["agency"]),
                            timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["projected"] is True  # by both processes
        one.ingest(authenticate(one.db, one_keys["agency"]), json.dumps(rows).encode())
    try:
        assert_same(one, whole)
    finally:
        whole.close()
    # Every process answers for citizens of both partitions.
    citizens = sorted({r["citizen_id"] for rows in sent for r in rows})[::6]
    answers = []
    for server in (first, second):
        with httpx.Client(base_url=server.url, headers=auth(keys["agency"], "credit-check")) as client:
            answers.append([client.get(f"/api/citizens/{c}").json() for c in citizens])
    assert answers[0] == answers[1]
    assert [a["score"] for a in answers[0]] == [
        one.lookup(authenticate(one.db, one_keys["agency"]), c, "credit-check")["score"] for c in citizens]


def test_a_run_loaded_into_partitions_is_stored_and_then_projected_as_into_one_database(loaded_runs, pg_url,
                                                                                       tmp_path):
    """`db load --partitions 2`, then a process per partition: the loaded scores and histories are the
    single database's, and the batches after the load are projected by the owners alike."""
    loaded = loaded_runs(POLICY)
    db_load(loaded.path, pg_url, "--partitions", "2")
    one = Service.open(loaded.copy(tmp_path))
    owners = [Service.open(pg_url, partition=p) for p in range(2)]
    try:
        assert owners[0].db.partitions == 2 and owners[0].day == owners[1].day == one.day
        for owner in owners:
            owner.ledger.catch_up()  # nothing to do: the load scored every partition as of its day
        assert_same(one, owners[0])
        with pytest.raises(Conflict, match="while it is empty"):
            owners[0].load_run(loaded.path)
        citizens = loaded.events["citizen_id"].unique().sort().head(60).to_list()
        rows = [{"event_id": f"after-{i}", "citizen_id": c, "kind": "traffic.red_light", "day": one.day,
                 "source": "camera"} for i, c in enumerate(citizens)]
        for service in (one, owners[1]):
            agency = authenticate(service.db, make_keys(service.db, tag="-later")["agency"])
            service.ingest(agency, json.dumps(rows).encode(), wait=False)
        project_all([one, *owners])
        assert_same(one, owners[0])
    finally:
        for s in (one, *owners):
            s.close()
