"""`socialcredit demo` end to end: a tiny town, printed keys that work, a live feed, Ctrl-C."""

import re
import subprocess
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from socialcredit.engine import score_ledger
from socialcredit.events import validate_events
from socialcredit.policy import load_policy
from socialcredit.service._decisions import LOAN_BASE_RATE, LOAN_CLASS_SPREAD
from socialcredit.simulation import Run

from .conftest import SOCIALCREDIT, free_port, stop, wait_for

ENGINE_COLUMNS = ["event_id", "citizen_id", "kind", "day", "source", "source_ref", "confidence"]

KEY_LINE = re.compile(r"^  (\w+)\s+(\S+)\s+(sc_\S+)$", re.M)


def test_demo_serves_a_tiny_town_with_working_keys_and_a_live_feed(tmp_path, page):
    port = free_port()
    log = tmp_path / "demo.log"
    proc = subprocess.Popen([SOCIALCREDIT, "demo", "--population", "2000", "--days", "30", "--seed", "7",
                             "--port", str(port), "--out", str(tmp_path / "demo"), "--live"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url, proc, log, timeout=90)
        text = log.read_text()
        keys = {role: (name, secret) for role, name, secret in KEY_LINE.findall(text)}
        assert set(keys) == {"citizen", "bank", "airline", "security", "agency", "employer", "analyst", "platform"}
        for path in ("/app", "/portal", "/dashboard", "/docs"):
            assert f"{url}{path}" in text
        citizen = re.search(r"\(citizen (\S+)\)", text).group(1)

        def call(role, method, path, purpose=None, **kwargs):
            headers = {"Authorization": f"Bearer {keys[role][1]}"} | ({"X-Purpose": purpose} if purpose else {})
            r = httpx.request(method, url + path, headers=headers, timeout=30, **kwargs)
            assert r.status_code == 200, (role, path, r.text)
            return r.json()

        run_dir = Path(re.search(r"simulated in [\d.]+ s -> (\S+)$", text, re.M).group(1))
        run = Run(run_dir)
        policy = load_policy(run.manifest.policies["town"])
        # The printed citizen is the rule's: one in the lowest class the run reached.
        row = run.citizens.filter(pl.col("citizen_id") == citizen).row(0, named=True)
        worst = max(run.citizens["class"].drop_nulls().unique(), key=policy.class_names.index)
        assert row["class"] == worst

        before = call("analyst", "GET", "/api/stats")["events"]
        assert before >= run.events.height  # the whole run was loaded (and perhaps a live batch)
        deadline = time.monotonic() + 30
        while call("agency", "GET", "/api/stats")["events"] <= before:  # the live feed moves the ledger
            assert time.monotonic() < deadline, "the live feed sent nothing"
            time.sleep(0.5)

        # What the citizen sees is the engine's score over the run's events and the live ones since.
        for _ in range(5):
            own = call("citizen", "GET", f"/api/citizens/{citizen}")
            history = call("citizen", "GET", f"/api/citizens/{citizen}/history")["events"]
            if call("citizen", "GET", f"/api/citizens/{citizen}") == own:
                break  # no live event of the citizen came in between
        ids = {e["event_id"] for e in history}
        assert ids >= set(run.events.filter(pl.col("citizen_id") == citizen)["event_id"])
        live = pl.DataFrame([e for e in history if e["event_id"].startswith("live-")],
                            schema=dict.fromkeys(ENGINE_COLUMNS)).with_columns(citizen_id=pl.lit(citizen))
        ledger = pl.concat([run.events.filter(pl.col("citizen_id") == citizen).select(ENGINE_COLUMNS),
                            live.select(ENGINE_COLUMNS)], how="diagonal_relaxed")
        scored = score_ledger(policy, validate_events(ledger), as_of=own["day"]).scores.row(0, named=True)
        assert (own["score"], own["class"]) == (scored["score"], str(scored["class"]))
        if live.height == 0:
            assert (own["score"], own["class"]) == (row["score"], row["class"])
        klass = own["class"]
        idx = policy.class_names.index(klass)
        sanctions = [s.name for s in policy.sanctions if idx >= policy.class_names.index(s.class_) and not s.held_days]
        assert [s["name"] for s in own["sanctions"]] == sanctions

        quote = call("bank", "POST", "/api/loans/quote", "demo loan", json={"citizen_id": citizen})
        assert (quote["approved"], quote["sanctions"]) == (True, sanctions)  # taz-2018 refuses no loan
        assert quote["rate"] == pytest.approx(LOAN_BASE_RATE + LOAN_CLASS_SPREAD * idx)  # no AAA within 30 days
        flight = call("airline", "POST", "/api/flights/check", "demo flight", json={"citizen_id": citizen})
        assert flight["may_board"] == ("flight-ban" not in sanctions)
        gate = call("security", "POST", "/api/gates/subway", "demo gate", json={"citizen_id": citizen})
        assert gate["decision"] == ("stop" if "subway-gate-stop" in sanctions else "pass")
        grant = policy.grant_for("employer").fields
        employer = call("employer", "GET", f"/api/citizens/{citizen}", "demo hire")
        assert set(employer) == {"citizen_id", "day", "date", *(f for f in ("score", "class", "benefits", "sanctions")
                                                         if f in grant)}

        # The shop group's profile: one in-store record per stop the run counted for the citizen, each
        # in the offers built from it (all are within the window).
        stops = row["instore_clothes_stops"]
        assert f"the shop group sent {stops} in-store record" in text
        offers = call("platform", "GET", f"/api/citizens/{citizen}/offers", "demo offers")
        instore = [e for e in offers["profile"] if e["kind"].startswith("instore.")]
        assert len(instore) == stops
        offered = [e["event_id"] for o in offers["offers"] for e in o["records"] if e["kind"].startswith("instore.")]
        assert sorted(offered) == sorted(e["event_id"] for e in instore)
        used = [r for r in call("citizen", "GET", f"/api/citizens/{citizen}/lookups")["lookups"]
                if r["endpoint"] == "offers"]
        assert [(r["who"], r["purpose"]) for r in used] == [(keys["platform"][0], "demo offers")]

        # The guided tour: printed with its keys and links, and on the home page with the same links.
        steps = re.findall(r"^  \d\. (.+)\n     key: (.+), at (\S+)$", text, re.M)
        assert [key for _, key, _ in steps] == ["citizen", "bank", "citizen", "platform, then citizen",
                                                 "citizen, then agency"]
        assert f"{url}/portal?citizen_id={citizen}" == steps[1][2] == steps[3][2]
        assert "socialcredit demo --policy accountable" in steps[4][0]  # the scenario's taz-2018 allows no appeals
        page.goto(url)
        tour = page.locator("ol.tour li")
        hrefs = tour.locator("a").evaluate_all("els => els.map(a => a.getAttribute('href'))")
        assert [f"{url}{href}" for href in hrefs] == [link for _, _, link in steps]
        assert tour.locator("a").all_inner_texts() == [what for what, _, _ in steps]
        assert f"The demo's citizen is {citizen}." in page.locator("main").inner_text()

        page.goto(f"{url}/dashboard")
        page.get_by_label("API key").fill(keys["analyst"][1])
        page.get_by_role("button", name="Sign in").click()
        for name in ("classes", "kinds", "sources", "appeals", "consequences", "wrongful", "wrongful_groups"):
            page.locator(f"#fig-{name} .main-svg").first.wait_for()
        page.wait_for_timeout(5500)  # one refresh from /dashboard/data
        page.screenshot(path=tmp_path / "dashboard-demo.png", full_page=True)
        assert page.errors == []
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]


def _demo(tmp_path, port, name, *extra):
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([SOCIALCREDIT, "demo", "--population", "2000", "--days", "30", "--seed", "7",
                             "--port", str(port), "--out", str(tmp_path / "demo"), *extra],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return proc, log


def test_make_run_again_keeps_the_database_its_keys_and_look_ups_and_fresh_starts_over(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    seen = {}
    for name, extra in (("first", ()), ("again", ()), ("fresh", ("--fresh",))):
        proc, log = _demo(tmp_path, port, name, *extra)
        try:
            wait_for(url, proc, log, timeout=90)
            text = log.read_text()
            keys = {role: secret for role, _, secret in KEY_LINE.findall(text)}
            citizen = re.search(r"\(citizen (\S+)\)", text).group(1)
            bank = {"Authorization": f"Bearer {keys['bank']}", "X-Purpose": f"look-up {name}"}
            assert httpx.get(f"{url}/api/citizens/{citizen}", headers=bank, timeout=30).status_code == 200
            log_rows = httpx.get(f"{url}/api/citizens/{citizen}/lookups", timeout=30,
                                 headers={"Authorization": f"Bearer {keys['citizen']}"}).json()
            seen[name] = (text, keys, {row["purpose"] for row in log_rows["lookups"]})
        finally:
            assert stop(proc) == 0, log.read_text()[-3000:]
    first, again, fresh = seen["first"], seen["again"], seen["fresh"]
    assert "loading the run into" in first[0] and "reusing the demo database" not in first[0]
    assert "reusing the demo database" in again[0] and "loading the run into" not in again[0]
    assert again[1] == first[1]  # the same keys work again
    assert {"look-up first", "look-up again"} <= again[2]  # the first demo's look-up is still in the log
    assert "starting a new demo database (--fresh): removing" in fresh[0]
    assert set(fresh[1].values()).isdisjoint(first[1].values())  # new keys
    assert fresh[2] == {"look-up fresh"}
    assert (tmp_path / "demo" / "demo-keys.txt").stat().st_mode & 0o777 == 0o600
