"""The portal's search and quotes and the app's history in Chromium: what the grant allows, said in
words, and pages that fit a phone and a desktop; policies that give a role little or nothing."""

import re
import subprocess

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient

from socialcredit.service import Service, create_app, create_key
from socialcredit.service._decisions import LOAN_BASE_RATE, LOAN_CLASS_SPREAD
from socialcredit.service._lookups import SEARCH_PAGE
from socialcredit.web._pages import HISTORY_ROWS, on_date, undated
from tests.test_readme import block

from .conftest import ROLES, SOCIALCREDIT, SignedIn, check_accessible, free_port, stop, wait_for

WIDTHS = (390, 1280)


def sign_in(page, url: str, area: str, secret: str) -> None:
    page.set_default_timeout(10_000)
    page.goto(f"{url}/{area}")
    if page.get_by_role("button", name="Sign out").count():  # another key of this area first
        page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def fits(page, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{page.url} is wider than {width}px"


def test_the_bank_finds_citizens_by_id_prefix_and_each_one_listed_sees_the_search(site, page, tmp_path):
    cid = site.citizen["citizen_id"]
    ids = sorted(site.loaded.citizens["citizen_id"].to_list())
    prefix = cid[:-1]
    matches = [c for c in ids if c.startswith(prefix)]
    sign_in(page, site.url, "portal", site.keys["bank"])
    page.get_by_label("Citizen id").fill(prefix)
    page.get_by_label("Purpose").fill("mortgage application 2018-200")
    page.get_by_role("button", name="Find citizens").click()
    found = page.get_by_test_id("search")
    assert found.locator("li[data-citizen]").evaluate_all("els => els.map(e => e.dataset.citizen)") == \
        matches[:SEARCH_PAGE]
    assert cid in matches[:SEARCH_PAGE]
    row = found.locator(f'li[data-citizen="{cid}"]')
    assert row.locator(".badge").inner_text() == "D"  # taz-2018 lets banks see class and score
    assert f"{site.citizen['score']} points" in row.inner_text()
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        fits(page, width)
    check_accessible(page.content())
    page.screenshot(path=tmp_path / "portal-search.png", full_page=True)

    # A short prefix: pages of SEARCH_PAGE, each page logged for the citizens on it.
    page.get_by_label("Citizen id").fill(ids[0][0])
    page.get_by_role("button", name="Find citizens").click()
    everyone = [c for c in ids if c.startswith(ids[0][0])]
    assert f"{len(everyone):,} found · page 1 of {-(-len(everyone) // SEARCH_PAGE)}" in found.inner_text()
    page.get_by_role("button", name="Next page").click()
    listed = found.locator("li[data-citizen]").evaluate_all("els => els.map(e => e.dataset.citizen)")
    assert listed == everyone[SEARCH_PAGE:2 * SEARCH_PAGE]

    # Choosing a citizen fills in the desk's form with the purpose of the search.
    page.get_by_label("Citizen id").fill(prefix)
    page.get_by_role("button", name="Find citizens").click()
    found.get_by_role("link", name=cid).click()
    assert page.get_by_label("Citizen id").input_value() == cid
    assert page.get_by_label("Purpose").input_value() == "mortgage application 2018-200"

    sign_in(page, site.url, "app", site.keys["citizen"])
    seen = page.locator(".lookups").inner_text()
    assert f"{ROLES['bank']} (bank) · search · purpose: mortgage application 2018-200 · saw score, class" in seen
    assert page.errors == []


def test_a_class_d_quote_is_a_surcharge_with_its_reason_and_keeps_score_and_class(site, page, tmp_path):
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, site.url, "portal", site.keys["bank"])
    assert page.get_by_label("Purpose").get_attribute("placeholder") == "e.g. mortgage application 2018-117"
    for citizen in (site.citizen, site.other):
        idx = site.policy.class_names.index(citizen["class"])
        page.get_by_label("Citizen id").fill(citizen["citizen_id"])
        page.get_by_label("Purpose").fill("mortgage application 2018-117")
        page.get_by_role("button", name="Loan quote").click()
        rate = LOAN_BASE_RATE + LOAN_CLASS_SPREAD * idx  # taz-2018: no loan_price consequence
        assert page.get_by_test_id("rate").inner_text() == f"{rate * 100:.2f}%"
        reason = page.get_by_test_id("rate-reason")
        if idx:
            assert reason.inner_text() == (f"A surcharge of {LOAN_CLASS_SPREAD * idx * 100:.2f} points over the "
                                           f"best rate of {LOAN_BASE_RATE * 100:.2f}%: class {citizen['class']} "
                                           f"+{LOAN_CLASS_SPREAD * idx * 100:.2f} points.")
            assert "warn-text" in reason.get_attribute("class")
            colour = reason.evaluate("e => getComputedStyle(e).color")
            assert colour != "rgb(30, 107, 52)"  # not the good news' green
        else:
            assert reason.inner_text() == "The best rate."
        facts = page.get_by_test_id("result").locator("dt").all_inner_texts()
        assert facts[:2] == ["Score", "Class"]  # the grant shows them: the quote keeps them
        assert page.get_by_test_id("score").inner_text() == str(citizen["score"])
        fits(page, 390)
        page.screenshot(path=tmp_path / f"portal-quote-{citizen['class']}.png", full_page=True)
    # The API's answer carries them too.
    r = httpx.post(f"{site.url}/api/loans/quote", json={"citizen_id": site.citizen["citizen_id"]},
                   headers={"Authorization": f"Bearer {site.keys['bank']}", "X-Purpose": "mortgage 1"})
    body = r.json()
    assert (body["score"], body["class"]) == (site.citizen["score"], "D")
    assert body["rate_changes"] == [{"because": "class D", "rate_change": pytest.approx(LOAN_CLASS_SPREAD * 5)}]
    assert page.errors == []


def test_the_buttons_follow_the_grant(site, page):
    sign_in(page, site.url, "portal", site.keys["bank"])
    buttons = page.locator("form[action='/portal/check'] button").all_inner_texts()
    assert buttons == ["Loan quote", "Look up", "Find citizens", "Offers and profile"]  # taz-2018: no camera profile
    sign_in(page, site.url, "portal", site.keys["security"])
    buttons = page.locator("form[action='/portal/check'] button").all_inner_texts()
    assert buttons == ["Subway gate check", "Look up", "Find citizens", "Camera profile"]
    assert page.get_by_label("Purpose").get_attribute("placeholder") == "e.g. incident report 2018-0042"
    assert page.errors == []


def test_the_history_filters_by_kind_source_and_status_and_folds_by_month(site, page, tmp_path):
    cid = site.citizen["citizen_id"]
    events = site.loaded.events_of(cid)
    listed = events.sort(["day", "event_id"], descending=True).head(HISTORY_ROWS)  # the newest, unless "show all"
    sign_in(page, site.url, "app", site.keys["citizen"])
    months = page.locator("details.month")
    assert months.count() == listed["day"].map_elements(site.loaded.run.calendar.iso, pl.String).str.slice(0, 7) \
        .n_unique()
    assert [months.nth(i).get_attribute("open") is not None for i in range(months.count())] == \
        [True] + [False] * (months.count() - 1)  # the newest month open, the others folded
    for i in range(months.count()):
        month = months.nth(i).get_attribute("data-month")
        dates = months.nth(i).locator("li.event .row span:nth-child(2)").all_text_contents()
        assert dates and all(d.startswith(month) for d in dates)
    # No "today" in a reason said of another day than the service's.
    reasons = page.locator("li.event .reason, [data-testid=factors] li").all_text_contents()
    assert reasons and not any(re.search(r"\btoday\b", r, re.I) for r in reasons)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        fits(page, width)
        page.screenshot(path=tmp_path / f"app-{width}.png", full_page=True)

    kind = events["kind"].mode().sort()[0]
    page.get_by_label("Kind").select_option(kind)
    page.get_by_role("button", name="Filter").click()
    assert f"kind={kind}" in page.url
    n = events.filter(pl.col("kind") == kind).height
    assert page.get_by_test_id("history-count").inner_text().startswith(f"{n} of {events.height} events match")
    page.locator("details.month summary").evaluate_all("els => els.forEach(e => e.parentElement.open = true)")
    cards = page.locator("li.event")
    assert cards.count() == min(n, HISTORY_ROWS)
    assert all(kind in t for t in cards.all_inner_texts())

    page.goto(f"{site.url}/app?status=counted&source=camera")
    counted = page.locator("li.event .status").all_text_contents()  # folded months too
    assert counted and set(counted) == {"counted"}
    assert all("source camera" in t for t in page.locator("li.event").all_text_contents())
    assert page.get_by_label("Source").input_value() == "camera"
    check_accessible(page.content())
    assert page.errors == []


def test_key_factors_say_how_many_more_there_are(site):
    r = httpx.get(f"{site.url}/api/citizens/{site.citizen['citizen_id']}/history",
                  headers={"Authorization": f"Bearer {site.keys['citizen']}"})
    body = r.json()
    rules = {e["rule"] for e in body["events"] if e["status"] == "counted" and not e["voided"]}
    html = SignedIn(site, "app", site.keys["citizen"]).get("/app").text
    more = len(rules) - len(body["reasons"])
    if more:
        assert f"… and {more} more rule{'s' if more != 1 else ''} with a smaller effect" in html
    else:
        assert 'data-testid="more-factors"' not in html


def test_reasons_are_said_for_the_day_of_the_event():
    reason = "You spent too much time on video games today."
    assert on_date(reason, "2018-03-04", "2018-04-30") == "You spent too much time on video games on 2018-03-04."
    assert on_date(reason, "2018-04-30", "2018-04-30") == reason
    assert on_date("Today you ran a red light.", "2018-03-04", "2018-04-30") == "On 2018-03-04 you ran a red light."
    assert on_date("You littered.", "2018-03-04", "2018-04-30") == "You littered."
    assert undated(reason) == "You spent too much time on video games."


def serve(tmp_path, policy: str, roles: dict[str, str]) -> tuple[str, subprocess.Popen, dict[str, str]]:
    """`socialcredit serve` over an empty database under `policy`, with a key per role."""
    url, log = f"sqlite:///{tmp_path}/empty.db", tmp_path / "server.log"
    service = Service.open(url, policy)
    try:
        keys = {role: create_key(service.db, role=role, name=name, citizen="c-1" if role == "citizen" else None,
                                 sources=["camera"] if role in ("agency", "security") else ())
                for role, name in roles.items()}
    finally:
        service.close()
    port = free_port()
    proc = subprocess.Popen([SOCIALCREDIT, "serve", "--db", url, "--port", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_for(f"http://127.0.0.1:{port}", proc, log)
    return f"http://127.0.0.1:{port}", proc, keys


def test_under_accountable_the_agency_has_no_profile_button_and_security_no_desk(tmp_path, page):
    url, proc, keys = serve(tmp_path, "accountable", {"agency": "town-office", "security": "guards"})
    try:
        sign_in(page, url, "portal", keys["agency"])
        buttons = page.locator("form[action='/portal/check'] button").all_inner_texts()
        assert buttons == ["Case look-up", "Find citizens"]  # accountable's agency sees the class only
        sign_in(page, url, "portal", keys["security"])
        assert "gives the role security no look-ups" in page.locator("main").inner_text()
        assert page.locator("form[action='/portal/check']").count() == 0
        assert page.errors == []
    finally:
        stop(proc)


def test_an_app_under_a_policy_without_a_citizen_grant_explains_and_signs_out(tmp_path):
    text = block("toml")
    without = re.sub(r'\[\[grant\]\][^\n]*\nrole = "citizen".*?(?=\n\[\[)', "", text, flags=re.S)
    assert 'role = "citizen"' not in without and 'role = "bank"' in without
    (tmp_path / "town.toml").write_text(without)
    service = Service.open(f"sqlite:///{tmp_path}/town.db", str(tmp_path / "town.toml"))
    secret = create_key(service.db, role="citizen", name="citizen-c-1", citizen="c-1")
    try:
        with TestClient(create_app(service)) as client:
            client.post("/app/signin", data={"key": secret})
            r = client.get("/app")
            assert r.status_code == 403
            assert "Policy town gives citizens no access to their own score, history or look-ups" in r.text
            assert 'action="/app/signout"' in r.text and 'href="/app"' not in r.text.split("<main")[1]
            token = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
            out = client.post("/app/signout", data={"csrf": token}, follow_redirects=True)
            assert "Sign in" in out.text and "API key" in out.text
    finally:
        service.close()
