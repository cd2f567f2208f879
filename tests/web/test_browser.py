"""The acceptance story in Chromium: citizen, agency, bank, employer, errors, phone width, accessibility."""

import re

import httpx
import polars as pl

from socialcredit.engine import score_ledger
from socialcredit.events import validate_events
from socialcredit.service import Database, create_key, revoke_key
from socialcredit.service._decisions import LOAN_BASE_RATE, LOAN_CLASS_SPREAD
from socialcredit.web._theme import contrast

from .conftest import ROLES, SignedIn, check_accessible

ENGINE_COLUMNS = ["event_id", "citizen_id", "kind", "day", "source", "source_ref", "confidence"]

PHONE = {"width": 390, "height": 844}


def sign_in(page, site, area: str, secret: str) -> None:
    page.set_default_timeout(10_000)
    page.goto(f"{site.url}/{area}")
    page.get_by_label("API key").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def score(page) -> int:
    return int(page.get_by_test_id("score").first.inner_text())


def fits_phone(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} is {width}px wide"


def expected(site, citizen_id: str) -> tuple[int, str]:
    """The engine's score and class of a citizen: the run's events, less those voided on appeal."""
    db = Database.open(site.db_url)
    try:
        voided = [r[0] for r in db.execute("SELECT event_id FROM events WHERE voided = 1")]
    finally:
        db.close()
    ledger = validate_events(site.loaded.events.select(ENGINE_COLUMNS).filter(~pl.col("event_id").is_in(voided)))
    scores = score_ledger(site.policy, ledger, as_of=site.day).scores.filter(pl.col("citizen_id") == citizen_id)
    return int(scores["score"][0]), str(scores["class"][0])


def test_citizen_contests_an_event_and_the_agency_upholds_it(site, page, tmp_path):
    cid = site.citizen["citizen_id"]
    sign_in(page, site, "app", site.keys["citizen"])
    assert page.get_by_role("heading", level=1).inner_text() == "Your score"
    assert score(page) == site.citizen["score"] == expected(site, cid)[0]
    # The citizen's latest camera event (the app lists the latest first).
    contested = site.loaded.events_of(cid).filter(pl.col("source") == "camera").row(-1, named=True)
    rule = site.policy.rule_for(contested["kind"])
    assert page.get_by_text(rule.reason).first.is_visible()
    event = page.locator(f'li[data-event="{contested["event_id"]}"]')
    assert f"camera {contested['source_ref']}" in event.inner_text()
    assert f"match confidence {contested['confidence'] * 100:.1f}%" in event.inner_text()
    calendar = site.loaded.run.calendar  # the pages give dates, the run's
    assert calendar.iso(contested["day"]) in event.inner_text()
    assert f"service day {calendar.iso(site.day)} (day {site.day})" in page.locator("footer").inner_text()
    event.get_by_text("Contest this event").click()
    event.get_by_label("Why is this wrong?").fill("That was not me: I was at work that day.")
    event.get_by_role("button", name="Send appeal").click()
    assert page.get_by_role("status").inner_text().startswith("Your appeal was filed")
    assert page.locator(".appeals .appeal-status").first.inner_text() == "open"
    page.screenshot(path=tmp_path / "app-appeal-open.png", full_page=True)

    sign_in(page, site, "portal", site.keys["agency"])  # another cookie path: the citizen stays signed in
    appeal = page.locator("li[data-appeal]").filter(has_text=contested["event_id"])
    assert "That was not me" in appeal.inner_text()
    assert f"on {calendar.iso(contested['day'])}" in appeal.inner_text()
    appeal.get_by_label("Note for the citizen (optional)").fill("Camera match below our threshold.")
    page.screenshot(path=tmp_path / "portal-agency-appeals.png", full_page=True)
    appeal.get_by_role("button", name="Uphold (void the event)").click()
    assert "decided" in page.get_by_role("status").inner_text()

    page.goto(f"{site.url}/app")
    after = expected(site, cid)[0]
    assert after == site.citizen["score"] - rule.points  # the void gives the points back
    assert score(page) == after
    assert page.locator(".appeals .appeal-status").first.inner_text() == "upheld"
    assert "voided on appeal" in page.locator(f'li[data-event="{contested["event_id"]}"]').inner_text()
    assert "Camera match below our threshold." in page.locator(".appeals").inner_text()
    page.screenshot(path=tmp_path / "app-appeal-upheld.png", full_page=True)
    assert page.errors == []


def test_bank_quote_with_a_purpose_shows_in_who_looked_me_up(site, page, tmp_path):
    cid = site.citizen["citizen_id"]
    page.set_viewport_size(PHONE)
    sign_in(page, site, "portal", site.keys["bank"])
    page.get_by_label("Citizen id").fill(cid)
    page.get_by_label("Purpose").fill("mortgage application 2018-117")
    page.get_by_label("Loan amount (optional)").fill("250000")
    page.get_by_role("button", name="Loan quote").click()
    result = page.get_by_test_id("result")
    klass = expected(site, cid)[1]
    rate = LOAN_BASE_RATE + LOAN_CLASS_SPREAD * site.policy.class_names.index(klass)  # no discount below AAA
    assert page.get_by_test_id("rate").inner_text() == f"{rate * 100:.2f}%"
    sanctions = [s.name for s in site.policy.sanctions
                 if site.policy.class_names.index(klass) >= site.policy.class_names.index(s.class_)]
    assert sanctions and ", ".join(sanctions) in result.inner_text()
    fits_phone(page)
    check_accessible(page.content())
    page.screenshot(path=tmp_path / "portal-bank-quote.png", full_page=True)

    sign_in(page, site, "app", site.keys["citizen"])
    lookups = page.locator(".lookups").inner_text()
    assert f"{ROLES['bank']} (bank)" in lookups and "mortgage application 2018-117" in lookups
    fits_phone(page)
    check_accessible(page.content())
    page.screenshot(path=tmp_path / "app-phone.png", full_page=True)
    assert page.errors == []


def test_employer_sees_only_what_its_grant_allows(site, page, tmp_path):
    cid = site.citizen["citizen_id"]
    sign_in(page, site, "portal", site.keys["employer"])
    page.get_by_label("Citizen id").fill(cid)
    page.get_by_label("Purpose").fill("job application, warehouse")
    page.get_by_role("button", name="Employer check").click()
    terms = page.get_by_test_id("result").locator("dt").all_inner_texts()
    grant = site.policy.grant_for("employer").fields
    assert terms == [f.capitalize() for f in ("score", "class", "benefits", "sanctions") if f in grant]
    assert terms == ["Score", "Class", "Sanctions"]  # taz-2018: employers see score, class, sanctions
    assert page.get_by_test_id("score").inner_text() == str(expected(site, cid)[0])
    assert page.get_by_role("button", name="Camera profile").count() == 0
    page.screenshot(path=tmp_path / "portal-employer.png", full_page=True)
    # The same refusal the API gives, as a page: the service decides, not the form.
    r = SignedIn(site, "portal", site.keys["employer"]).post(
        "/portal/check", {"citizen_id": cid, "purpose": "curious", "action": "profile"})
    assert r.status_code == 403
    assert "does not let role &#39;employer&#39; see &#39;profile&#39;" in r.text
    # The citizen sees who tried, and why they were refused.
    sign_in(page, site, "app", site.keys["citizen"])
    tried = page.locator(".refusals").inner_text()
    assert f"{ROLES['employer']} (employer) · profile · purpose: curious · refused: policy" in tried


def test_denials_and_errors_are_pages_a_person_understands(site, page, tmp_path):
    bank = SignedIn(site, "portal", site.keys["bank"])
    cid = site.citizen["citizen_id"]
    r = bank.post("/portal/check", {"citizen_id": cid, "action": "loan"})
    assert r.status_code == 403 and "must state a purpose" in r.text and 'role="alert"' in r.text
    assert site.loaded.citizens.filter(pl.col("citizen_id") == "c-404").height == 0
    r = bank.post("/portal/check", {"citizen_id": "c-404", "purpose": "loan", "action": "loan"})
    assert r.status_code == 404 and "no citizen &#39;c-404&#39;" in r.text
    r = SignedIn(site, "portal", site.keys["citizen"]).get("/portal")
    assert r.status_code == 403 and "a citizen key opens the citizen app" in r.text
    r = SignedIn(site, "dashboard", site.keys["bank"]).get("/dashboard")
    assert r.status_code == 403 and "only analyst and agency keys may read statistics" in r.text
    r = httpx.post(f"{site.url}/app/signin", data={"key": "sc_not-a-key"})
    assert r.status_code == 401 and "unknown API key" in r.text

    db = Database.open(site.db_url)
    try:
        secret = create_key(db, role="landlord", name="short-lived", sources=())
        sign_in(page, site, "portal", secret)
        assert page.get_by_text("Signed in as short-lived").is_visible()
        revoke_key(db, "short-lived")
    finally:
        db.close()
    page.reload()
    assert page.get_by_role("heading", level=1).inner_text() == "Please sign in again"
    assert "was revoked" in page.get_by_role("alert").inner_text()
    page.screenshot(path=tmp_path / "error-revoked.png", full_page=True)
    page.goto(f"{site.url}/portal")  # the cookie is gone: back at the sign-in
    assert page.get_by_label("API key").is_visible()
    assert [e for e in page.errors if "status of 401" not in e] == []  # the 401 is the error page itself


def test_sign_in_cookie_is_http_only_and_strict(site, page):
    sign_in(page, site, "app", site.keys["citizen"])
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/app"
    assert cookie["name"] == "sc_session" and site.keys["citizen"] not in cookie["value"]
    assert page.evaluate("document.cookie") == ""


def test_dashboard_renders_its_charts_and_pages_are_accessible(site, page, tmp_path):
    sign_in(page, site, "dashboard", site.keys["analyst"])
    # The run `db load` loaded is attached: its simulated charts (consequences, wrongful) show too.
    for name in ("classes", "kinds", "sources", "appeals", "consequences", "wrongful", "wrongful_groups"):
        page.locator(f"#fig-{name} .main-svg").first.wait_for()
    page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    check_accessible(page.content())
    for area in ("app", "portal", "dashboard"):  # sign-in pages, on a phone
        page.set_viewport_size(PHONE)
        page.goto(f"{site.url}/{area}")
        check_accessible(page.content())
        if area != "dashboard":
            fits_phone(page)
    page.goto(site.url)
    check_accessible(page.content())
    assert page.errors == []


def test_class_badges_contrast_at_least_4_5(site, page):
    sign_in(page, site, "app", site.keys["citizen"])
    colours = page.eval_on_selector_all(
        ".badge", "els => els.map(e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color])")
    assert len(colours) >= 6

    def hex_of(css: str) -> str:
        r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
        return f"#{r:02x}{g:02x}{b:02x}"

    for background, text in colours:
        assert contrast(hex_of(background), hex_of(text)) >= 4.5, (background, text)


def test_airline_and_subway_gate_checks_give_their_decision(site):
    def check(role: str, citizen: dict, status: int = 200, **data) -> str:
        r = SignedIn(site, "portal", site.keys[role]).post(
            "/portal/check", {"citizen_id": citizen["citizen_id"], "purpose": "demo", **data})
        assert r.status_code == status, r.text
        return r.text

    for citizen in (site.citizen, site.other):
        sanctioned = expected(site, citizen["citizen_id"])[1] == "D"  # taz-2018: bans and gate stops in D
        flight = check("airline", citizen, action="flight", detail="CA 1234")
        assert ("Banned from flying (CA 1234)" if sanctioned else "May board (CA 1234)") in flight
        gate = check("security", citizen, action="gate", detail="line 1, north")
        assert ("Gate: stop this person" if sanctioned else "Gate: pass") in gate
    assert expected(site, site.other["citizen_id"])[1] != "D"
    profile = check("security", site.other, action="profile")
    other = site.other
    places = "".join(f" · {p} {other[f'moves_{p}']}" for p in sorted(("street", "mall", "subway"))
                     if other[f"moves_{p}"])
    assert f"<dt>Sightings</dt><dd>{other['sightings']}{places}</dd>" in profile
    estimate = "unknown" if other["profile_age"] is None else f"{float(other['profile_age'])}"
    assert f"<dt>Age estimate</dt><dd>{estimate}" in profile
    assert "is not a number" in check("bank", site.citizen, 422, action="loan", detail="lots")
