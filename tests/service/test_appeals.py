"""Appeals with separation of duties: who may decide, what the decision discloses, and that an event
is appealed once (README: "An appeal is decided by an agency key bound to the event's source...")."""

import json

import pytest

from socialcredit.policy import load_policy
from socialcredit.service import authenticate, create_key, revoke_key
from socialcredit.service._errors import Conflict, Forbidden

from .conftest import CITIZEN
from .conftest import handmade_event as event


@pytest.fixture
def appeals(make_service):
    """An accountable service (it allows appeals) with three agencies: two bound to the cameras,
    one to the courts alone, and the citizen's key."""
    service = make_service("accountable")
    keys = {name: authenticate(service.db, create_key(service.db, role="agency", name=name, sources=sources))
            for name, sources in (("city", ["camera"]), ("police", ["camera", "traffic-police"]),
                                  ("courts", ["courts"]))}
    keys["citizen"] = authenticate(service.db, create_key(service.db, role="citizen", name="me", citizen=CITIZEN))
    return service, keys


def _report(service, key, *ids):
    service.ingest(key, json.dumps([event(i, confidence=0.99) for i in ids]).encode())


def test_only_an_agency_bound_to_the_source_decides_and_never_the_reporter_while_another_could(appeals):
    service, keys = appeals
    _report(service, keys["city"], 1)
    appeal = service.file_appeal(keys["citizen"], "e-1", "not me")["id"]
    with pytest.raises(Forbidden, match="'courts' is not bound to the event's source 'camera'"):
        service.decide_appeal(keys["courts"], appeal, True, None)
    with pytest.raises(Forbidden, match="key 'city' reported this event: another agency bound to 'camera' "
                                        r"decides \(police\)"):
        service.decide_appeal(keys["city"], appeal, True, None)
    refused = service.lookups(keys["citizen"], CITIZEN)["refused"]
    assert [(r["who"], r["endpoint"]) for r in refused] == [("city", "appeal-decision"), ("courts", "appeal-decision")]
    decided = service.decide_appeal(keys["police"], appeal, True, "below our threshold")
    # accountable grants the agency 'class' alone: the answer shows the class, not the score.
    assert decided == {"id": appeal, "event_id": "e-1", "status": "upheld", "citizen_id": CITIZEN,
                       "class": service._status(CITIZEN)[1]}
    logged = service.lookups(keys["citizen"], CITIZEN)["lookups"]
    assert [(r["who"], r["endpoint"], r["fields"], r["purpose"]) for r in logged[:1]] == [
        ("police", "appeal-decision", ["class"], "deciding appeals")]
    # With no other agency bound to the cameras, the reporter decides: someone must.
    revoke_key(service.db, "police")
    _report(service, keys["city"], 2)
    second = service.file_appeal(keys["citizen"], "e-2", "not me either")["id"]
    assert service.decide_appeal(keys["city"], second, False, "seen")["status"] == "rejected"


def test_an_event_is_appealed_once(appeals):
    service, keys = appeals
    _report(service, keys["city"], 1, 2)
    first = service.file_appeal(keys["citizen"], "e-1", "not me")["id"]
    with pytest.raises(Conflict, match="event 'e-1' has an appeal already \\(open\\)"):
        service.file_appeal(keys["citizen"], "e-1", "really not me")
    service.decide_appeal(keys["police"], first, True, None)
    with pytest.raises(Conflict, match="event 'e-1' was voided already"):
        service.file_appeal(keys["citizen"], "e-1", "again")
    second = service.file_appeal(keys["citizen"], "e-2", "not me")["id"]
    service.decide_appeal(keys["police"], second, False, None)
    with pytest.raises(Conflict, match="event 'e-2' has an appeal already \\(rejected\\)"):
        service.file_appeal(keys["citizen"], "e-2", "please look again")
    with pytest.raises(Conflict, match="was decided already"):
        service.decide_appeal(keys["police"], second, True, None)


def test_the_appeal_queue_shows_each_citizen_as_the_grant_allows_and_logs_it(make_service):
    # taz-2018 grants the agency 'history': the contested event shows (with appeals allowed here).
    service = make_service(load_policy("taz-2018").model_copy(update={"appeals": True}))
    city = authenticate(service.db, create_key(service.db, role="agency", name="city", sources=["camera"]))
    me = authenticate(service.db, create_key(service.db, role="citizen", name="me", citizen=CITIZEN))
    _report(service, city, 1)
    service.file_appeal(me, "e-1", "not me")
    queue = service.list_appeals(city, status="open")
    assert [(a["event_id"], a["kind"], a["source"], a["confidence"], a["date"]) for a in queue] == [
        ("e-1", "traffic.red_light", "camera", 0.99, "2018-01-02")]
    logged = service.lookups(me, CITIZEN)["lookups"]
    assert [(r["who"], r["endpoint"], r["fields"], r["purpose"]) for r in logged[:1]] == [
        ("city", "appeals", ["appeals", "history"], "deciding appeals")]
