"""The inbox: acknowledged batches wait there until projected, and a crash between the projection
and the inbox clean-up projects nothing twice (the projection records how far it got)."""

import json

from socialcredit.service import authenticate

from .conftest import handmade_event


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

    from .conftest import make_keys

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
