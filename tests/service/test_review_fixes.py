"""Defects a security review found, each pinned: inputs that gave 500s, a search that told a
citizen which ids exist, and a dashboard page that logged a look-up it never showed."""

import pytest

from socialcredit.service import authenticate
from socialcredit.service._errors import Forbidden, Invalid
from socialcredit.service._sessions import csrf_token, csrf_valid
from socialcredit.web._dashboard import _number

from .conftest import make_keys


def test_a_csrf_token_that_is_not_ascii_is_refused_not_an_error():
    assert not csrf_valid("a-session", "é")
    assert csrf_valid("a-session", csrf_token("a-session"))


@pytest.mark.parametrize("page", ["²", "1" * 30, "-1", "1.5"])
def test_a_page_number_is_a_plain_whole_number(page):
    with pytest.raises(Invalid, match="must be a whole number"):
        _number(page, "page")


@pytest.mark.parametrize("ndjson", [False, True])
def test_a_number_beyond_pythons_digit_limit_is_a_422_naming_the_row(make_service, ndjson):
    service = make_service()
    agency = authenticate(service.db, make_keys(service.db)["agency"])
    row = '{"event_id": "e-1", "citizen_id": "c-1", "kind": "traffic.red_light", "source": "camera", "day": ' + (
        "1" * 5000) + "}"  # written out: json.dumps itself refuses such a number
    body = row if ndjson else f"[{row}]"
    with pytest.raises(Invalid, match="cannot be read") as caught:
        service.ingest(agency, body.encode())
    assert caught.value.row == (1 if ndjson else None)
    assert service.db.inbox.execute("SELECT COUNT(*) FROM inbox")[0][0] == 0


def test_a_citizen_cannot_search_for_other_citizens(make_service):
    service = make_service()
    citizen = authenticate(service.db, make_keys(service.db)["citizen"])
    with pytest.raises(Forbidden, match="searching is for organisations"):
        service.search(citizen, "c-")
    assert service.db.log.execute("SELECT COUNT(*) FROM refusals")[0][0] == 0  # nothing probed, nothing logged
