"""Retake the README's screenshots from a running demo (`make run` in another terminal).

    .venv/bin/python scripts/screenshots.py [--url http://127.0.0.1:8000] [--demo runs/demo]

Drives Debian's Chromium (/usr/bin/chromium) with Playwright: the bank quotes a loan for the demo's
citizen with a purpose and the shop group opens the citizen's offers, then the citizen's app (a 390
px phone) shows them under "Who looked me up";
the analyst's dashboard and the run's report at 1280 px. Writes docs/screenshots/*.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def keys(demo: Path) -> dict[str, tuple[str, str]]:
    """Role -> (key name, secret), from the demo's key file."""
    rows = [line.split() for line in (demo / "demo-keys.txt").read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]
    return {role: (name, secret) for role, name, secret in rows}


def sign_in(page: Page, url: str, area: str, secret: str) -> None:
    """Sign in to a page's area with a key, as a person would."""
    page.goto(f"{url}/{area}")
    if page.get_by_role("button", name="Sign out").count():  # another key of this area first
        page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")


def main() -> None:
    """Take the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--demo", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    demo_keys = keys(args.demo)
    citizen = demo_keys["citizen"][0].removeprefix("citizen-")
    report = next(args.demo.glob("run-*/report.html"))
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        desk = browser.new_page(viewport=DESKTOP)
        sign_in(desk, args.url, "portal", demo_keys["bank"][1])
        desk.get_by_label("Citizen id").fill(citizen)
        desk.get_by_label("Purpose").fill("mortgage application 2018-117")
        desk.get_by_label("Loan amount (optional)").fill("250000")
        desk.get_by_role("button", name="Loan quote").click()
        desk.wait_for_load_state("networkidle")
        desk.screenshot(path=args.out / "portal-bank.png")
        sign_in(desk, args.url, "portal", demo_keys["platform"][1])
        desk.get_by_label("Citizen id").fill(citizen)
        desk.get_by_label("Purpose").fill("autumn campaign 2018-9")
        desk.get_by_role("button", name="Offers and profile").click()
        desk.wait_for_load_state("networkidle")
        desk.screenshot(path=args.out / "portal-offers.png")
        sign_in(desk, args.url, "dashboard", demo_keys["analyst"][1])
        desk.wait_for_timeout(3000)  # the charts draw once plotly has loaded
        desk.screenshot(path=args.out / "dashboard.png", full_page=True)
        desk.goto(report.resolve().as_uri())
        desk.wait_for_timeout(3000)
        desk.screenshot(path=args.out / "report.png", full_page=True)
        phone = browser.new_page(viewport=PHONE, device_scale_factor=2)
        sign_in(phone, args.url, "app", demo_keys["citizen"][1])
        phone.screenshot(path=args.out / "citizen-app.png")
        phone.goto(f"{args.url}/app#lookups")
        phone.screenshot(path=args.out / "citizen-app-lookups.png", full_page=True)
        browser.close()
    print(f"screenshots of {args.url} (citizen {citizen}) -> {args.out}")


if __name__ == "__main__":
    main()
