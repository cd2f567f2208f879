"""API keys: revocation is final, dated, and seen by every cache holding the key; unknown names refused."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from socialcredit.service import Database, create_key, revoke_key
from socialcredit.service._errors import NotFound, Unauthorized
from socialcredit.service._keys import authenticate, now


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/k.db"


def _revoked(db, name):
    return db.execute("SELECT revoked FROM api_keys WHERE name = ?", (name,))[0][0]


def test_now_is_the_current_utc_time_to_the_millisecond():
    before = datetime.now(UTC)
    text = now()
    after = datetime.now(UTC)
    stamp = datetime.fromisoformat(text)
    assert stamp.utcoffset() == timedelta(0) and text.endswith("+00:00")
    assert before - timedelta(milliseconds=1) <= stamp <= after
    assert len(text.split(".")[1]) == len("123+00:00")


def test_revoking_an_unknown_key_is_refused_and_changes_nothing(url):
    db = Database.open(url)
    create_key(db, role="bank", name="kept")
    gen = db.get_meta("keys_gen")
    with pytest.raises(NotFound, match="no key named 'no-such-key'"):
        revoke_key(db, "no-such-key")
    assert db.get_meta("keys_gen") == gen and _revoked(db, "kept") is None


def test_a_revoked_key_is_refused_with_its_revocation_time_which_a_second_revoke_keeps(url):
    db = Database.open(url)
    secret = create_key(db, role="bank", name="short-lived")
    other = create_key(db, role="bank", name="other")
    before = datetime.now(UTC)
    revoke_key(db, "short-lived")
    first = _revoked(db, "short-lived")
    assert before - timedelta(milliseconds=1) <= datetime.fromisoformat(first) <= datetime.now(UTC)
    gen = db.get_meta("keys_gen")
    revoke_key(db, "short-lived")
    assert _revoked(db, "short-lived") == first and db.get_meta("keys_gen") == gen
    with pytest.raises(Unauthorized, match=re.escape(f"API key 'short-lived' was revoked on {first}")):
        authenticate(db, secret)
    assert authenticate(db, other).name == "other"


def test_a_cache_holding_a_key_sees_its_revocation_from_this_and_from_another_process(url):
    served = Database.open(url)  # the server's cache, in use before the revocations
    first = create_key(served, role="bank", name="first")
    second = create_key(served, role="bank", name="second")
    assert authenticate(served, first).name == "first" and authenticate(served, second).name == "second"
    revoke_key(served, "first")  # by the server's own process (its connection sees no data_version change)
    with pytest.raises(Unauthorized, match="revoked"):
        authenticate(served, first)
    assert authenticate(served, second).name == "second"
    cli = Database.open(url)  # `socialcredit keys revoke`, another process
    revoke_key(cli, "second")
    with pytest.raises(Unauthorized, match="revoked"):
        authenticate(served, second)
    added = create_key(cli, role="analyst", name="added")
    assert authenticate(served, added).role == "analyst"
