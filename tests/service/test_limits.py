"""The service's limits (body sizes, request rates, requests in flight) and its security headers."""

import asyncio
import concurrent.futures
import json
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from socialcredit.service import Service, Settings, authenticate, create_app, create_key, revoke_key
from socialcredit.service._limits import PAGE_POLICY, TokenBuckets

from .conftest import auth, event, make_keys

MiB = 1024 * 1024


def rss_kib(pid: int) -> int:
    """The resident memory of process `pid` (VmRSS), in KiB."""
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmRSS:"))
    return int(line.split()[1])


def streamed(total: int, chunk: int = 64 * 1024):
    """`total` bytes as a stream of chunks: the sender never holds the body."""
    piece = b"k" * chunk
    for _ in range(total // chunk):
        yield piece


def limited_app(make_service, **limits):
    service = make_service(settings=Settings(**limits))
    return service, make_keys(service.db)


# -- bodies ---------------------------------------------------------------------------------------

def test_a_256_mib_sign_in_is_refused_while_streaming_and_the_server_stays_small(tmp_path, server_factory):
    server = server_factory(f"sqlite:///{tmp_path}/sc.db")
    server.start()
    before = rss_kib(server.proc.pid)
    form = {"content-type": "application/x-www-form-urlencoded"}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        # Chunked: no length to go by, so the body is counted as it arrives.
        r = client.post("/app/signin", content=streamed(256 * MiB), headers=form)
        assert r.status_code == 413, r.text
        assert r.json() == {"error": "body larger than 1,048,576 bytes"}
        assert r.headers["connection"] == "close"  # the rest is never read
        # A declared length is refused before a byte of the body is read.
        r = client.post("/app/signin", content=streamed(256 * MiB), headers={**form, "content-length": str(256 * MiB)})
        assert r.status_code == 413
        assert r.json() == {"error": "body of 268,435,456 bytes; at most 1,048,576"}
        after = rss_kib(server.proc.pid)
        assert client.get("/").status_code == 200  # and it serves on
    assert after - before < 32 * 1024, (before, after)


@pytest.mark.parametrize("path", ["/api/loans/quote", "/api/appeals", "/app/signin", "/portal/check"])
def test_every_route_refuses_bodies_over_the_small_limit(make_service, path):
    service, keys = limited_app(make_service, max_other_body_bytes=1000)
    with TestClient(create_app(service)) as client:
        big = json.dumps({"citizen_id": "c-1", "pad": "x" * 2000}).encode()
        r = client.post(path, content=big, headers=auth(keys["bank"]))
        assert r.status_code == 413 and r.json()["error"] == f"body of {len(big):,} bytes; at most 1,000"
        r = client.post(path, content=streamed(4096, 512), headers=auth(keys["bank"]))
        # (A page that handles the refusal answers with its own error page.)
        assert r.status_code == 413 and "body larger than 1,000 bytes" in r.text


def test_batches_have_their_own_larger_limit(make_service):
    service, keys = limited_app(make_service, max_other_body_bytes=1000, max_body_bytes=100_000)
    batch = json.dumps([event(i) for i in range(100)])
    assert 1000 < len(batch) < 100_000
    with TestClient(create_app(service)) as client:
        r = client.post("/api/events", content=batch, headers=auth(keys["agency"]))
        assert r.status_code == 200 and r.json()["events"] == 100
        r = client.post("/api/events", content=streamed(200_000, 4096), headers=auth(keys["agency"]))
        assert r.status_code == 413 and r.json()["error"] == "body larger than 100,000 bytes"


# -- rates ----------------------------------------------------------------------------------------

def test_an_address_without_a_key_is_held_to_its_rate(make_service):
    service, _ = limited_app(make_service, rate_per_address=0.01, burst_per_address=3)
    with TestClient(create_app(service)) as client:
        assert [client.get("/").status_code for _ in range(3)] == [200, 200, 200]
        r = client.get("/")
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 100  # a token every 100 s
        assert "from this address" in r.json()["error"]


def test_made_up_keys_count_against_the_address_and_spare_a_proven_key(make_service):
    service, keys = limited_app(make_service, rate_per_address=0.01, burst_per_address=3)
    with TestClient(create_app(service)) as client:
        # The bank's key is proven by its first answer (which its address paid for)...
        assert client.get("/api/citizens/c-1", headers=auth(keys["bank"], "credit")).status_code == 404
        statuses = [client.get("/api/citizens/c-1", headers=auth(f"sc_guess{i}")).status_code for i in range(4)]
        assert statuses == [401, 401, 429, 429]
        # ... so a flood of guesses from its address leaves it alone.
        assert client.get("/api/citizens/c-1", headers=auth(keys["bank"], "credit")).status_code == 404


def test_a_made_up_key_answered_by_a_route_that_reads_no_key_stays_on_the_address(make_service):
    """A page like / answers 200 whatever key a request names: that proves nothing about the key, so
    a flood of made-up keys there is held to the address's rate like any request without a key."""
    service, _ = limited_app(make_service, rate_per_address=0.01, burst_per_address=3)
    with TestClient(create_app(service)) as client:
        statuses = [client.get("/", headers=auth("sc_made-up")).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]


def test_a_second_authorization_header_does_not_move_a_key_off_its_rate(make_service):
    """The routes read the first Authorization header, and so do the limits: a made-up key after a
    real one does not buy the real one a fresh rate."""
    service, keys = limited_app(make_service, rate_per_key=0.01, burst_per_key=2)
    with TestClient(create_app(service)) as client:
        statuses = []
        for i in range(5):
            headers = [("authorization", f"Bearer {keys['analyst']}"), ("authorization", f"Bearer sc_other{i}")]
            statuses.append(client.get("/api/stats", headers=headers).status_code)
        assert statuses == [200, 200, 200, 429, 429]


def test_a_key_is_held_to_its_rate_and_others_are_not(make_service):
    service, keys = limited_app(make_service, rate_per_key=0.01, burst_per_key=2)
    with TestClient(create_app(service)) as client:
        def stats(role):
            return client.get("/api/stats", headers=auth(keys[role]))

        assert [stats("analyst").status_code for _ in range(4)] == [200, 200, 200, 429]  # 1 proves, 2 in the bucket
        r = stats("analyst")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json() == {"error": "too many requests: slow down"}
        assert stats("agency").status_code == 200


def test_a_revoked_key_counts_against_the_address_again(make_service):
    service, _ = limited_app(make_service, rate_per_address=0.01, burst_per_address=2)
    secret = create_key(service.db, role="analyst", name="soon-revoked")
    with TestClient(create_app(service)) as client:
        assert client.get("/api/stats", headers=auth(secret)).status_code == 200  # proven (address: 1 left)
        assert [client.get("/api/stats", headers=auth(secret)).status_code for _ in range(5)] == [200] * 5
        revoke_key(service.db, "soon-revoked")
        statuses = [client.get("/api/stats", headers=auth(secret)).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]  # the first refusal still counted against the key


def test_a_signed_in_page_counts_against_its_session_not_the_address(make_service):
    service, keys = limited_app(make_service, rate_per_address=0.01, burst_per_address=3)
    with TestClient(create_app(service)) as client:
        r = client.post("/dashboard/signin", data={"key": keys["analyst"]}, follow_redirects=False)
        assert r.status_code == 303
        assert [client.get("/dashboard").status_code for _ in range(5)] == [200] * 5  # the first proves it
        # The address paid for the sign-in and the first page: one left.
        assert [client.get("/").status_code for _ in range(2)] == [200, 429]


def test_the_buckets_held_in_memory_are_bounded():
    buckets = TokenBuckets(rate=1.0, burst=1.0, max_names=4)
    for name in "abcd":
        assert buckets.take(name, now=0.0) == 0.0
    assert buckets.take("a", now=0.5) == 0.5  # half a token back: half a second to wait
    buckets.take("e", now=0.6)  # four held, none full again: the oldest half goes
    assert len(buckets) == 3 and "a" not in buckets and "e" in buckets
    buckets.take("f", now=2.0)
    buckets.take("g", now=2.0)  # four held again; those full again by now are as good as none
    assert len(buckets) == 2 and "f" in buckets and "g" in buckets


# -- requests in flight ---------------------------------------------------------------------------

def test_beyond_the_requests_in_flight_the_service_answers_503(make_service):
    service, keys = limited_app(make_service, max_in_flight=2, max_batches_in_flight=1)
    app = create_app(service)

    async def scenario():
        release = asyncio.Event()

        async def slow_batch():  # a batch upload that holds its place until released
            yield b'[{"event_id": "e-1", "citizen_id": "c-1", "kind": "traffic.red_light", "day": 1, '
            await release.wait()
            yield b'"source": "camera"}]'

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = asyncio.create_task(client.post("/api/events", content=slow_batch(), headers=auth(keys["agency"])))
            limits = app.front.app  # the first upload is in flight once the limits count it (its body waits)
            while limits.batches_in_flight < 1:
                await asyncio.sleep(0.01)
            second_batch = await client.post("/api/events", content=b"[]", headers=auth(keys["agency"]))
            lookup = await client.get("/api/stats", headers=auth(keys["analyst"]))
            release.set()
            return await first, second_batch, lookup

    # In a thread of its own: a test before this one (Playwright's sync API) may leave an event loop
    # running in this thread, and asyncio.run refuses to start inside one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first, second_batch, lookup = pool.submit(asyncio.run, scenario()).result()
    assert second_batch.status_code == 503 and second_batch.headers["retry-after"] == "1"
    assert second_batch.json() == {"error": "the service is busy: try again shortly"}
    assert lookup.status_code == 200  # one request in flight of 2: a look-up goes in
    assert first.status_code == 200 and first.json()["events"] == 1


@pytest.mark.parametrize(("setting", "value", "error"), [
    ("rate_per_key", 0, "Settings.rate_per_key must be above 0, not 0"),
    ("max_in_flight", -1, "Settings.max_in_flight must be above 0, not -1"),
    ("burst_per_address", 0.5, "Settings.burst_per_address must be at least 1, not 0.5"),
])
def test_limits_that_would_refuse_everything_are_refused(make_service, setting, value, error):
    service = make_service(settings=Settings(**{setting: value}))
    with pytest.raises(ValueError, match=error):
        create_app(service)


# -- what the 422 handler writes ------------------------------------------------------------------

@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_a_number_json_cannot_write_back_is_a_422_naming_the_field(client, keys, amount):
    body = f'{{"citizen_id": "c-1", "amount": {amount}}}'
    r = client.post("/api/loans/quote", content=body, headers={**auth(keys["bank"], "credit"),
                                                                 "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "amount", r.text
    assert r.json()["error"].startswith("amount: ")


def test_json_nested_beyond_what_python_reads_is_a_422(client, keys):
    r = client.post("/api/loans/quote", content="[" * 100_000 + "]" * 100_000,
                    headers={**auth(keys["bank"], "credit"), "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    assert r.json()["error"].startswith("body cannot be read as JSON: maximum recursion depth exceeded")


# -- security headers -----------------------------------------------------------------------------

SECURITY = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "same-origin"}


def test_every_answer_carries_the_security_headers(make_service):
    service, keys = limited_app(make_service, rate_per_address=0.01, burst_per_address=6)
    with TestClient(create_app(service)) as client:
        answers = [client.get("/"), client.get("/static/style.css"), client.get("/app"),
                   client.get("/api/citizens/c-1", headers=auth(keys["bank"], "credit")),  # the lean look-up
                   client.get("/api/stats", headers=auth(keys["analyst"])), client.get("/nowhere")]
        answers.append(client.get("/"))  # 429
        assert [r.status_code for r in answers] == [200, 200, 200, 404, 200, 404, 429]
        for r in answers:
            assert r.headers["content-security-policy"] == PAGE_POLICY, r.url
            assert {name: r.headers[name] for name in SECURITY} == SECURITY, r.url


def test_the_interactive_docs_come_from_the_app_under_the_pages_policy(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-security-policy"] == PAGE_POLICY
    assert r.headers["x-frame-options"] == "DENY"
    assert "http" not in r.text and "<script>" not in r.text  # no other origin, no inline script
    for src in re.findall(r'(?:src|href)="([^"]+)"', r.text):
        assert client.get(src).status_code == 200, src


def test_the_pages_work_under_their_content_security_policy(tmp_path, server_factory, page):
    service = Service.open(f"sqlite:///{tmp_path}/sc.db", "taz-2018")
    try:
        service.ledger.set_day(100)
        keys = make_keys(service.db)
        batch = json.dumps([event(i, day=i) for i in range(1, 6)]).encode()
        service.ingest(authenticate(service.db, keys["agency"]), batch)
    finally:
        service.close()
    server = server_factory(f"sqlite:///{tmp_path}/sc.db")
    server.start()
    violations = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text and violations.append(msg.text))
    for area, role in (("dashboard", "analyst"), ("app", "citizen")):
        page.goto(f"{server.url}/{area}")
        page.get_by_label("API key").fill(keys[role])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state("networkidle")
        assert page.url.endswith(f"/{area}")
    page.goto(f"{server.url}/dashboard")
    page.wait_for_selector(".js-plotly-plot .main-svg")  # Plotly ran and drew
    assert violations == [] and page.errors == []
