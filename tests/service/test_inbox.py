"""The inbox: acknowledged batches wait there until projected, and a crash between the projection
and the inbox clean-up projects nothing twice (the projection records how far it got)."""

import json

import pytest

from socialcredit.service import authenticate
from socialcredit.service._errors import Conflict

from .conftest import handmade_event, make_keys


def _batches(service, n: int) -> list[bytes]:
    return [json.dumps([handmade_event(f"b{b}-{i}", citizen=f"c{i}") for i in range(3)]).encode()
            for b in range(n)]


def test_batches_are_pending_until_projected_and_projected_in_order(service, keys):
    agency = authenticate(service.db, keys["agency"])
    batches = [service.ingest(agency, body, wait=False)["batch"] for body in _batches(service, 3)]
    assert service.ledger.pending() == 3
    assert service.ledger.wait_projected(batches[0], 0.05) is False  # nobody projects: gives up in time
    assert service.ledger.project(max_batches=2) == 2
    assert service.ledger.pending() == 1
    assert service.ledger.wait_projected(batches[1], 0.05) is True
    assert service.ledger.wait_projected(batches[2], 0.05) is False
    stored = service.db.execute("SELECT batch, COUNT(*) FROM events GROUP BY batch ORDER BY batch")
    assert [tuple(r) for r in stored] == [(1, 3), (2, 3)]
    assert service.ledger.project() == 1 and service.ledger.pending() == 0 and service.ledger.project() == 0


def test_a_crash_before_the_inbox_clean_up_projects_nothing_twice(service, keys, monkeypatch):
    agency = authenticate(service.db, keys["agency"])
    bodies = _batches(service, 3)
    for body in bodies[:2]:
        service.ingest(agency, body, wait=False)
    inbox = service.db.inbox
    execute = inbox.execute

    def no_delete(text, *args, **kwargs):  # the process dies after the projection committed
        return [] if text.startswith("DELETE FROM inbox") else execute(text, *args, **kwargs)

    monkeypatch.setattr(inbox, "execute", no_delete)
    assert service.ledger.project() == 2
    monkeypatch.setattr(inbox, "execute", execute)
    assert inbox.execute("SELECT COUNT(*) FROM inbox")[0][0] == 2  # still there, but projected
    assert service.ledger.pending() == 0
    service.ingest(agency, bodies[2], wait=False)
    assert service.ledger.pending() == 1
    assert service.ledger.project() == 1
    assert service.db.execute("SELECT COUNT(*) FROM events")[0][0] == 9
    per_day, classes = service.ledger.counts()
    assert sum(per_day.values()) == 9 and sum(classes) == 3
    assert inbox.execute("SELECT COUNT(*) FROM inbox")[0][0] == 0


def test_two_processes_acknowledging_at_once_lose_no_batch_on_postgresql(make_service, pg_url):
    """Batch numbers come from a sequence: a batch that took number n but commits after batch n + 1
    would fall behind a projection that already went past n + 1, and be lost. On PostgreSQL the
    inbox insert therefore holds an advisory lock to its commit (SQLite has one writer anyway).
    Two services stand for two processes; the first is held between its insert and its commit."""
    import threading

    first, second = make_service(url=pg_url), make_service(url=pg_url)
    secret = make_keys(first.db, tag="-pg")["agency"]
    agency = authenticate(first.db, secret)
    inserted, release = threading.Event(), threading.Event()
    inbox = first.db.inbox
    plain = inbox.execute

    def held(text, *args, **kwargs):  # the first batch: numbered, then kept from its commit
        rows = plain(text, *args, **kwargs)
        if text.startswith("INSERT INTO inbox"):
            inserted.set()
            release.wait(10)
        return rows

    inbox.execute = held
    a, b = _batches(first, 2)
    slow = threading.Thread(target=first.ingest, args=(agency, a), kwargs={"wait": False})
    slow.start()
    assert inserted.wait(10)
    fast = threading.Thread(target=second.ingest, args=(authenticate(second.db, secret), b), kwargs={"wait": False})
    fast.start()
    fast.join(0.5)
    assert fast.is_alive()  # the second waits for the first's commit
    second.ledger.project()  # a projection meanwhile sees neither
    release.set()
    slow.join(10)
    fast.join(10)
    while second.ledger.project():
        pass
    stored = second.db.execute("SELECT COUNT(*) FROM events")[0][0]
    assert stored == 6  # both batches of 3


@pytest.fixture(params=["sqlite", "postgresql"])
def any_service(request, make_service):
    return make_service(url=request.getfixturevalue("pg_url") if request.param == "postgresql" else None)


@pytest.mark.parametrize(("change", "column"), [
    ({"citizen": "c-2"}, "citizen_id"),
    ({"kind": "traffic.violation"}, "kind"),
    ({"day": 2}, "day"),
    ({"source": "courts"}, "source"),
    ({"source_ref": "cam-9"}, "source_ref"),
    ({"confidence": 0.5}, "confidence"),
])
def test_an_event_sent_again_with_other_content_is_a_conflict(any_service, change, column):
    """Refused naming the column, not the stored value: the ledger is not the sender's to read."""
    service = any_service
    agency = authenticate(service.db, make_keys(service.db)["agency"])
    service.ingest(agency, json.dumps([handmade_event(1), handmade_event(2)]).encode())
    again = json.dumps([handmade_event(3), handmade_event(2, **change)]).encode()
    with pytest.raises(Conflict) as caught:
        service.ingest(agency, again)
    assert (caught.value.message, caught.value.row, caught.value.field) == (
        f"batch: row 2, field event_id: event 'e-2' was received before with another {column}; an event is never "
        "changed by sending it again", 2, "event_id")
    assert service.db.inbox.execute("SELECT COUNT(*) FROM inbox")[0][0] == 0  # refused before the acknowledgement
    assert service.db.execute("SELECT COUNT(*) FROM events")[0][0] == 2


def test_an_event_sent_again_unchanged_is_taken_and_stored_once(any_service):
    service = any_service
    agency = authenticate(service.db, make_keys(service.db)["agency"])
    hero = {"kind": "civic.heroic_act", "source": "community"}
    first = service.ingest(agency, json.dumps([handmade_event(1, **hero)]).encode())
    score = service.db.execute("SELECT score FROM scores")[0][0]
    for confidence in ({}, {"confidence": 1.0}):  # a missing confidence means 1.0
        again = service.ingest(agency, json.dumps([handmade_event(1, **hero, **confidence),
                                                   handmade_event(2)]).encode())
        assert again["projected"] and again["batch"] > first["batch"]
    assert service.db.execute("SELECT COUNT(*) FROM events")[0][0] == 2
    assert service.db.execute("SELECT score FROM scores WHERE citizen_id = 'c-1'")[0][0] != score  # e-2 counted
    rows = service.db.execute("SELECT event_id, batch FROM events ORDER BY event_id")
    assert [tuple(r) for r in rows] == [("e-1", first["batch"]), ("e-2", first["batch"] + 1)]


def test_a_text_that_reads_like_a_null_marker_is_stored_as_that_text(any_service):
    r"""PostgreSQL's COPY takes an unquoted \N as NULL: texts are quoted, so "\N" stays a text."""
    service = any_service
    agency = authenticate(service.db, make_keys(service.db)["agency"])
    service.ingest(agency, json.dumps([handmade_event(1, citizen="\\N", source_ref="\\N")]).encode())
    assert service.db.execute("SELECT citizen_id, source_ref FROM events") == [("\\N", "\\N")]
    assert service.ledger.quarantined_batches() == []
