"""API keys: revocation is final, dated, and seen by every cache holding the key; unknown names refused."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socialcredit.cli import app
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


@pytest.mark.parametrize(("kwargs", "field", "message"), [
    ({"role": "judge", "name": "k"}, "role",
     "unknown role 'judge' (roles: citizen, agency, security, bank, employer, landlord, platform, travel, "
     "airline, analyst)"),
    ({"role": "bank", "name": ""}, "name", "a key needs a name"),
    ({"role": "citizen", "name": "k"}, "citizen", "a citizen key must be bound to one citizen (--citizen)"),
    ({"role": "bank", "name": "k", "citizen": "c-1"}, "citizen",
     "only citizen keys are bound to a citizen, not bank keys"),
    ({"role": "agency", "name": "k"}, "source",
     "a agency key sends events and must be bound to its sources (--source)"),
    ({"role": "bank", "name": "k", "sources": ["courts"]}, "source",
     "bank keys send no events and take no --source (senders: agency, security, platform)"),
])
def test_a_key_that_cannot_be_made_is_refused_naming_the_field(tmp_path, kwargs, field, message):
    from socialcredit.service._errors import Invalid

    db = Database.open(f"sqlite:///{tmp_path}/k.db")
    with pytest.raises(Invalid) as caught:
        create_key(db, **kwargs)
    assert str(caught.value) == message and caught.value.field == field
    assert db.execute("SELECT count(*) FROM api_keys")[0][0] == 0


def test_a_second_key_with_a_name_is_refused_and_the_first_kept(url):
    from socialcredit.service._errors import Conflict

    db = Database.open(url)
    secret = create_key(db, role="bank", name="twice")
    gen = db.get_meta("keys_gen")
    with pytest.raises(Conflict) as caught:
        create_key(db, role="analyst", name="twice")
    assert str(caught.value) == "a key named 'twice' exists already" and caught.value.field == "name"
    assert authenticate(db, secret).role == "bank" and db.get_meta("keys_gen") == gen


def test_a_key_is_stored_as_a_hash_with_its_sources_and_citizen_and_bumps_the_generation(url):
    db = Database.open(url)
    gen = int(db.get_meta("keys_gen", "0"))
    secret = create_key(db, role="agency", name="police", sources=["traffic-police", "courts", "courts"])
    citizen = create_key(db, role="citizen", name="me", citizen="c-7")
    assert re.fullmatch(r"sc_[A-Za-z0-9_-]{43}", secret)  # 32 random bytes, URL-safe base64
    assert int(db.get_meta("keys_gen")) == gen + 2
    rows = db.execute("SELECT name, hash, role, citizen_id, sources FROM api_keys ORDER BY name")
    assert [r[0] for r in rows] == ["me", "police"]
    assert secret not in {r[1] for r in rows} and citizen not in {r[1] for r in rows}
    assert rows[1][2:] == ("agency", None, "courts,traffic-police")
    assert rows[0][2:] == ("citizen", "c-7", "")
    key = authenticate(db, secret)
    assert key.name == "police" and set(key.sources) == {"courts", "traffic-police"}
    assert authenticate(db, citizen).citizen_id == "c-7"


def test_now_is_utc_whatever_the_machines_time_zone(monkeypatch):
    import time

    from socialcredit.service import _keys

    monkeypatch.setenv("TZ", "Asia/Shanghai")
    monkeypatch.setattr(_keys, "_second", (-1, ""))  # not the text of a second formatted before
    time.tzset()
    try:
        stamp = datetime.fromisoformat(now())
        assert abs(stamp - datetime.now(UTC)) < timedelta(seconds=2)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("secret", [None, ""])
def test_a_request_without_a_key_is_told_how_to_send_one(tmp_path, secret):
    db = Database.open(f"sqlite:///{tmp_path}/k.db")
    with pytest.raises(Unauthorized) as caught:
        authenticate(db, secret)
    assert str(caught.value) == "missing API key: send 'Authorization: Bearer <key>'"


def keys_create(url, *args):
    return CliRunner().invoke(app, ["keys", "create", "--db", url, *args])


def test_keys_create_refuses_a_database_that_is_not_there_unless_told_to_create_it(url):
    bank = ["--role", "bank", "--name", "first-bank"]
    result = keys_create(url, *bank)
    missing = "no socialcredit schema" if url.startswith("postgresql") else "no such file"
    assert result.exit_code == 1
    assert f"no socialcredit database there ({missing}); check --db, or add --create" in result.output
    if not url.startswith("postgresql"):
        assert not Path(url.removeprefix("sqlite:///")).exists()  # nothing made by mistake
    result = keys_create(url, *bank, "--create")
    assert result.exit_code == 0, result.output
    assert keys_create(url, "--role", "bank", "--name", "second-bank").exit_code == 0  # there now
    db = Database.open(url)
    try:
        assert authenticate(db, result.output.strip()).name == "first-bank"
    finally:
        db.close()


def test_keys_create_refuses_a_citizen_the_database_does_not_know_unless_allowed(url):
    db = Database.open(url)
    try:
        with db.transaction() as cur:
            db.execute("INSERT INTO citizens (citizen_id, attributes) VALUES ('c-1', '{}')", (), cur)
        result = keys_create(url, "--role", "citizen", "--name", "typo", "--citizen", "c-l")
        assert result.exit_code == 1
        assert ("no citizen 'c-l' in the database (no record, score or event); check --citizen, "
                "or add --allow-unknown") in result.output
        assert not db.execute("SELECT 1 FROM api_keys")
        known = keys_create(url, "--role", "citizen", "--name", "one", "--citizen", "c-1")
        ahead = keys_create(url, "--role", "citizen", "--name", "new", "--citizen", "c-2", "--allow-unknown")
        assert known.exit_code == 0 and ahead.exit_code == 0, known.output + ahead.output
        assert authenticate(db, ahead.output.strip()).citizen_id == "c-2"
    finally:
        db.close()
