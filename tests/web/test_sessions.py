"""Page sessions: the cookie holds a session id, never the key; sign-out, expiry and revocation end
it; a POST that no page of the site sent is refused and changes nothing; the database files are private."""

import hashlib
import os
import stat
from pathlib import Path

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient

from socialcredit.service import Database, Service, create_app, create_key, revoke_key
from socialcredit.service._sessions import SESSION_MAX_AGE_S

from .conftest import SignedIn, form_token

FOREIGN = "https://evil.example"


def cookie_of(response: httpx.Response) -> tuple[str, str, dict[str, str]]:
    """Name, value and attributes (lower-case names) of the one cookie a response sets."""
    (header,) = response.headers.get_list("set-cookie")
    pair, *attributes = (part.strip() for part in header.split(";"))
    name, value = pair.split("=", 1)
    return name, value, {a.partition("=")[0].lower(): a.partition("=")[2] for a in attributes}


def session_rows(site, session_id: str | None = None) -> list[tuple]:
    """The stored sessions (all, or the one of `session_id`)."""
    db = Database.open(site.db_url)
    try:
        if session_id is None:
            return db.execute("SELECT hash, key_name, created, expires FROM sessions")
        digest = hashlib.sha256(session_id.encode()).hexdigest()
        return db.execute("SELECT hash, key_name, created, expires FROM sessions WHERE hash = ?", (digest,))
    finally:
        db.close()


def appeals_filed(site) -> int:
    db = Database.open(site.db_url)
    try:
        return db.execute("SELECT COUNT(*) FROM appeals")[0][0]
    finally:
        db.close()


def test_the_cookie_holds_a_session_id_not_the_key(site):
    secret = site.keys["citizen"]
    r = httpx.post(f"{site.url}/app/signin", data={"key": secret})
    assert r.status_code == 303 and secret not in r.headers["set-cookie"]
    name, session_id, attributes = cookie_of(r)
    assert name == "sc_session" and len(session_id) >= 43
    assert {"httponly": "", "samesite": "strict", "path": "/app", "max-age": str(SESSION_MAX_AGE_S)}.items() \
        <= attributes.items()
    assert "secure" not in attributes  # plain HTTP here; see the TLS test
    ((digest, key_name, created, expires),) = session_rows(site, session_id)
    assert key_name == "the-citizen" and session_id not in digest
    assert (pl.Series([expires]).str.to_datetime() - pl.Series([created]).str.to_datetime()).dt.total_seconds()[0] \
        == SESSION_MAX_AGE_S
    page = httpx.get(f"{site.url}/app", cookies={name: session_id})
    assert page.status_code == 200 and "Your score" in page.text


def test_signing_out_ends_the_session(site, page):
    page.set_default_timeout(10_000)
    page.goto(f"{site.url}/portal")
    page.get_by_label("API key").fill(site.keys["bank"])
    page.get_by_role("button", name="Sign in").click()
    (cookie,) = page.context.cookies()
    assert session_rows(site, cookie["value"])
    page.get_by_role("button", name="Sign out").click()
    assert page.get_by_label("API key").is_visible() and page.context.cookies() == []
    assert session_rows(site, cookie["value"]) == []
    replayed = httpx.get(f"{site.url}/portal", cookies={cookie["name"]: cookie["value"]})
    assert replayed.status_code == 401 and "your session has ended" in replayed.text
    assert "Signed in as" not in replayed.text
    assert page.errors == []


def test_forged_posts_are_refused_and_change_nothing(site):
    citizen = SignedIn(site, "app", site.keys["citizen"])
    token = form_token(citizen.get("/app").text)
    event = site.loaded.events_of(site.citizen["citizen_id"]).filter(pl.col("source") == "camera").row(-1, named=True)
    appeal = {"event_id": event["event_id"], "reason": "not me"}
    forgeries = [
        ({}, {}),  # no token
        ({"csrf": "0" * 64}, {}),  # a made-up token
        ({"csrf": token}, {"Origin": FOREIGN}),  # the right token, sent by another site's page
        ({"csrf": token}, {"Origin": "null"}),  # an origin the browser hides
        ({"csrf": token}, {"Referer": f"{FOREIGN}/trap"}),
    ]
    for fields, headers in forgeries:
        r = citizen.client.post("/app/appeal", data=appeal | fields, headers=headers)
        assert r.status_code == 403, (fields, headers)
        assert "did not come from a page of this site" in r.text and 'role="alert"' in r.text
    r = citizen.client.post("/app/signout", data={}, headers={"Origin": FOREIGN})
    assert r.status_code == 403
    assert appeals_filed(site) == 0 and "Appeal open." not in citizen.get("/app").text  # nothing changed
    r = citizen.client.post("/app/appeal", data=appeal | {"csrf": token}, headers={"Origin": site.url})
    assert r.status_code == 303 and appeals_filed(site) == 1  # the page's own form still works


def test_signing_in_from_another_site_is_refused(site):
    before = len(session_rows(site))
    for header in ({"Origin": FOREIGN}, {"Referer": f"{FOREIGN}/login"}):
        r = httpx.post(f"{site.url}/portal/signin", data={"key": site.keys["agency"]}, headers=header)
        assert r.status_code == 403 and "set-cookie" not in r.headers
        assert "did not come from a page of this site" in r.text
    assert len(session_rows(site)) == before
    r = httpx.post(f"{site.url}/portal/signin", data={"key": site.keys["agency"]}, headers={"Origin": site.url})
    assert r.status_code == 303 and len(session_rows(site)) == before + 1


def test_an_expired_session_is_refused_and_removed(site):
    analyst = SignedIn(site, "dashboard", site.keys["analyst"])
    session_id = analyst.client.cookies["sc_session"]
    assert analyst.get("/dashboard/data").status_code == 200
    db = Database.open(site.db_url)
    try:
        with db.transaction() as cur:
            db.execute("UPDATE sessions SET expires = ? WHERE key_name = ?",
                       ("2018-01-01T00:00:00.000+00:00", "analyst"), cur)
    finally:
        db.close()
    r = analyst.get("/dashboard")
    assert r.status_code == 401 and "your session expired" in r.text
    assert cookie_of(r)[2]["max-age"] == "0"  # the browser drops the cookie
    assert session_rows(site, session_id) == []


def test_a_revoked_keys_session_is_refused(site):
    db = Database.open(site.db_url)
    try:
        landlord = SignedIn(site, "portal", create_key(db, role="landlord", name="revoked-later"))
        session_id = landlord.client.cookies["sc_session"]
        desk = landlord.get("/portal").text
        assert "Signed in as <strong>revoked-later</strong>" in desk
        revoke_key(db, "revoked-later")
    finally:
        db.close()
    r = landlord.client.post("/portal/check", data={"citizen_id": site.citizen["citizen_id"], "purpose": "tenancy",
                                                    "csrf": form_token(desk)})
    assert r.status_code == 401 and "was revoked" in r.text and "Result" not in r.text
    assert session_rows(site, session_id) == []


@pytest.fixture
def fresh_service(tmp_path):
    """An empty database made under a permissive umask, with a bank key."""
    umask = os.umask(0o022)
    try:
        service = Service.open(f"sqlite:///{tmp_path}/fresh.db", "taz-2018")
    finally:
        os.umask(umask)
    yield service, create_key(service.db, role="bank", name="bank")
    service.close()


def test_the_cookie_is_secure_over_tls(fresh_service):
    service, secret = fresh_service
    with TestClient(create_app(service), base_url="https://testserver") as client:
        r = client.post("/portal/signin", data={"key": secret}, follow_redirects=False)
        assert r.status_code == 303 and "secure" in cookie_of(r)[2]
        assert "Signed in as <strong>bank</strong>" in client.get("/portal").text


def test_database_files_are_for_their_owner_only(fresh_service, tmp_path):
    service, secret = fresh_service
    umask = os.umask(0o022)
    try:
        with TestClient(create_app(service)) as client:  # started: the look-up log's journal too
            client.post("/portal/signin", data={"key": secret})
            files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in Path(tmp_path).glob("fresh.db*")}
    finally:
        os.umask(umask)
    assert {"fresh.db", "fresh.db-wal", "fresh.db-shm", "fresh.db-inbox", "fresh.db-log",
            "fresh.db-log.journal"} <= set(files)
    assert files == dict.fromkeys(files, 0o600)
