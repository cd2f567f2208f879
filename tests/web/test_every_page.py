"""Every page, at a phone's 390 px and a desktop's 1280 px, in Chromium: no horizontal scrolling and
no console or JavaScript errors, signed out and signed in with the role each page is for."""

import pytest

from .test_portal_app import WIDTHS, fits, sign_in


def portal_result(page, citizen_id: str, button: str, purpose: str = "case 2018-77") -> None:
    page.get_by_label("Citizen id").fill(citizen_id)
    page.get_by_label("Purpose").fill(purpose)
    page.get_by_role("button", name=button).click()
    page.get_by_test_id("search" if button == "Find citizens" else "result").wait_for()


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_fits_and_runs_without_errors(site, page, width):
    page.set_viewport_size({"width": width, "height": 900})
    cid = site.citizen["citizen_id"]
    seen = []

    def check(what: str) -> None:
        page.wait_for_load_state("networkidle")
        fits(page, width)
        assert page.errors == [], (what, page.errors)
        seen.append(what)

    for path in ("/", "/app", "/portal", "/dashboard", "/docs"):  # signed out: the sign-in pages
        page.goto(site.url + path)
        check(path)
    page.goto(f"{site.url}/dashboard/citizens/nobody")
    check("a refusal page")

    sign_in(page, site.url, "app", site.keys["citizen"])
    check("/app")
    page.goto(f"{site.url}/app?all=1&status=counted")
    check("/app, every counted event")

    for role, buttons in (("bank", ("Loan quote", "Look up", "Find citizens", "Offers and profile")),
                          ("agency", ("Case look-up", "Camera profile", "Offers and profile")),
                          ("security", ("Subway gate check",)), ("airline", ("Boarding check",)),
                          ("platform", ("Offers and profile",))):
        sign_in(page, site.url, "portal", site.keys[role])
        check(f"/portal as {role}")
        for button in buttons:
            portal_result(page, cid if button != "Find citizens" else cid[:-2], button)
            check(f"/portal as {role}: {button}")

    sign_in(page, site.url, "dashboard", site.keys["analyst"])
    page.locator("#fig-classes .main-svg").first.wait_for()
    check("/dashboard")
    page.goto(f"{site.url}/dashboard/citizens?class=D")
    check("/dashboard/citizens")
    page.goto(f"{site.url}/dashboard/citizens/{cid}")
    check("/dashboard/citizens/{id}")
    assert len(seen) == 26  # every page above was checked
