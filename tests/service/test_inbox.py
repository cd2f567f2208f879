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
