"""Tailored offers in Chromium: the shop group's portal shows each offer with the in-store records it
came from, and the citizen's app shows what the profile holds and who used it, at 390 and 1280 px."""

import httpx

from .conftest import ROLES
from .test_portal_app import WIDTHS, fits, sign_in

PURPOSE = "autumn campaign 2018-9"


def test_the_shop_group_sees_offers_with_their_records_and_the_citizen_sees_who_used_the_profile(site, page,
                                                                                                tmp_path):
    cid, day = site.citizen["citizen_id"], site.day
    records = [
        {"event_id": f"shop-{i}", "citizen_id": cid, "kind": kind, "day": day - ago, "source": "e-commerce",
         "source_ref": ref, "confidence": confidence}
        for i, (kind, ago, ref, confidence) in enumerate([
            ("instore.stopped_at.jackets", 5, "store 4, camera 11", 0.64),
            ("instore.tried_on.jackets", 2, "store 4, fitting room 2", 0.97),
            ("instore.stopped_at.handbags", 1, "store 9, camera 2", 0.93),
        ])]
    r = httpx.post(f"{site.url}/api/events", json=records, headers={"Authorization": f"Bearer {site.keys['platform']}"},
                   timeout=30)
    assert r.status_code == 200, r.text

    sign_in(page, site.url, "portal", site.keys["platform"])
    buttons = page.locator("form[action='/portal/check'] button").all_inner_texts()
    assert buttons == ["Customer check", "Find citizens", "Offers and profile"]  # by taz-2018's platform grant
    page.get_by_label("Citizen id").fill(cid)
    page.get_by_label("Purpose").fill(PURPOSE)
    page.get_by_role("button", name="Offers and profile").click()
    offers = page.get_by_test_id("offers").locator("li.offer")
    assert offers.evaluate_all("els => els.map(e => e.dataset.item)") == ["jackets", "handbags"]
    jackets = offers.first
    assert jackets.locator("strong").first.inner_text() == "10% off jackets"  # interest 1 + 2
    assert jackets.locator("li[data-record]").evaluate_all("els => els.map(e => e.dataset.record)") == \
        ["shop-1", "shop-0"]
    weak = jackets.locator('li[data-record="shop-0"]')
    assert "stopped at jackets" in weak.inner_text() and "store 4, camera 11" in weak.inner_text()
    assert "warn-text" in weak.locator("span").get_attribute("class")  # a 64% face match may be someone else
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        fits(page, width)
        page.screenshot(path=tmp_path / f"portal-offers-{width}.png", full_page=True)

    # Under taz-2018 the employer has no 'offers': no button, and the API refuses it.
    sign_in(page, site.url, "portal", site.keys["employer"])
    assert "Offers and profile" not in page.locator("form[action='/portal/check'] button").all_inner_texts()
    refused = httpx.get(f"{site.url}/api/citizens/{cid}/offers", timeout=30,
                        headers={"Authorization": f"Bearer {site.keys['employer']}", "X-Purpose": "hiring 12"})
    assert refused.status_code == 403

    sign_in(page, site.url, "app", site.keys["citizen"])
    held = page.get_by_test_id("profile-records").locator("li[data-record]")
    assert held.evaluate_all("els => els.map(e => e.dataset.record)") == ["shop-2", "shop-1", "shop-0"]
    assert page.get_by_test_id("offers").locator("li.offer").count() == 2
    # The site's policy allows appeals: a look-alike's in-store record is contested like a penalty.
    record = page.locator('li.event[data-event="shop-0"]')
    assert record.locator("summary", has_text="Contest this event").count() == 1
    users = page.get_by_test_id("profile-users").inner_text()
    assert f"{ROLES['platform']} (platform) · purpose: {PURPOSE}" in users
    assert ROLES["employer"] not in users  # refused: listed under "Who tried and was refused" instead
    assert f"{ROLES['employer']} (employer) · offers" in page.locator(".refusals").inner_text()
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        fits(page, width)
        page.screenshot(path=tmp_path / f"app-offers-{width}.png", full_page=True)
    assert page.errors == []
