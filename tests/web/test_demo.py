"""`socialcredit demo` end to end: a tiny town, printed keys that work, a live feed, Ctrl-C."""

import re
import subprocess
import time

import httpx

from .conftest import SOCIALCREDIT, free_port, stop, wait_for

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
        assert set(keys) == {"citizen", "bank", "airline", "security", "agency", "employer", "analyst"}
        for path in ("/app", "/portal", "/dashboard", "/docs"):
            assert f"{url}{path}" in text
        citizen = re.search(r"\(citizen (\S+)\)", text).group(1)

        def call(role, method, path, purpose=None, **kwargs):
            headers = {"Authorization": f"Bearer {keys[role][1]}"} | ({"X-Purpose": purpose} if purpose else {})
            r = httpx.request(method, url + path, headers=headers, timeout=30, **kwargs)
            assert r.status_code == 200, (role, path, r.text)
            return r.json()

        own = call("citizen", "GET", f"/api/citizens/{citizen}")
        assert own["class"] in ("AAA", "AA", "A", "B", "C", "D")
        assert call("citizen", "GET", f"/api/citizens/{citizen}/history")["events"]
        assert "rate" in call("bank", "POST", "/api/loans/quote", "demo loan", json={"citizen_id": citizen})
        assert "may_board" in call("airline", "POST", "/api/flights/check", "demo flight", json={"citizen_id": citizen})
        assert call("security", "POST", "/api/gates/subway", "demo gate", json={"citizen_id": citizen})["decision"]
        assert set(call("employer", "GET", f"/api/citizens/{citizen}", "demo hire")) == {
            "citizen_id", "day", "score", "class", "sanctions"}
        before = call("analyst", "GET", "/api/stats")["events"]
        deadline = time.monotonic() + 30
        while call("agency", "GET", "/api/stats")["events"] <= before:  # the live feed moves the ledger
            assert time.monotonic() < deadline, "the live feed sent nothing"
            time.sleep(0.5)

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
