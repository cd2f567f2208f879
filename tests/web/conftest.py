import os
import re
import signal
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

from socialcredit.service import Service, create_key

SOCIALCREDIT = str(Path(sys.executable).parent / "socialcredit")
ROLES = {  # role -> key name; senders get their sources below
    "citizen": "the-citizen", "agency": "credit-office", "security": "guard-co", "bank": "first-bank",
    "employer": "big-factory", "landlord": "home-rentals", "airline": "sky-air", "analyst": "analyst",
    "platform": "shop-group",
}
SOURCES = {"agency": ["camera", "traffic-police", "browsing", "community"], "security": ["camera"],
           "platform": ["e-commerce"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not start: {log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> int:
    """Ctrl-C, as a person would; kill only if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def taz_with_appeals(tmp: Path) -> Path:
    """The reported scheme with appeals allowed (taz-2018 itself has none), so one site shows everything."""
    text = (files("socialcredit.policy") / "presets" / "taz-2018.toml").read_text(encoding="utf-8")
    text = text.replace('name = "taz-2018"', 'name = "taz-2018-appeals"', 1)
    text = text.replace("appeals = false", "appeals = true", 1)
    path = tmp / "taz-2018-appeals.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Site:
    """`socialcredit serve` in a subprocess over a simulated run that `socialcredit db load` loaded
    (scored with a TOML policy: taz-2018 with appeals), with a key per role. The citizen key is the
    run's class-D citizen with the most camera events."""

    def __init__(self, tmp: Path, loaded):
        self.loaded = loaded
        self.db_url = loaded.copy(tmp)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "server.log"
        self.citizen = loaded.citizen(**{"class": "D"})
        self.other = loaded.citizen(**{"class": "A"})  # a citizen the sanctions do not reach
        service = Service.open(self.db_url)  # the policy file the database remembers from the load
        try:
            self.policy = service.policy
            self.day = service.day
            self.keys = {role: create_key(service.db, role=role, name=name,
                                          citizen=self.citizen["citizen_id"] if role == "citizen" else None,
                                          sources=SOURCES.get(role, ()))
                         for role, name in ROLES.items()}
        finally:
            service.close()
        # No --policy: `serve` opens the database with the policy file it was loaded under.
        self.proc = subprocess.Popen([SOCIALCREDIT, "serve", "--db", self.db_url, "--port", str(self.port),
                                      "--clock", "simulated"],  # the run's day, not today
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     env={**os.environ, "NO_COLOR": "1"})
        wait_for(self.url, self.proc, self.log)


class SignedIn:
    """An httpx client signed in to one area of a site, as a browser is: it holds the session cookie,
    and `post` sends a form with the CSRF token that the area's page puts in its forms."""

    def __init__(self, site: Site, area: str, secret: str):
        self.area = area
        self.client = httpx.Client(base_url=site.url, timeout=30)
        signed_in = self.client.post(f"/{area}/signin", data={"key": secret})
        assert signed_in.status_code == 303, signed_in.text
        self.csrf: str | None = None

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict, **kwargs) -> httpx.Response:
        if self.csrf is None:
            self.csrf = form_token(self.get(f"/{self.area}").text)
        return self.client.post(path, data={"csrf": self.csrf, **data}, **kwargs)


def form_token(html: str) -> str:
    """The CSRF token in a page's forms."""
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


@pytest.fixture(scope="session")
def appeals_policy(tmp_path_factory) -> Path:
    return taz_with_appeals(tmp_path_factory.mktemp("policy"))


@pytest.fixture(scope="module")
def site(tmp_path_factory, loaded_runs, appeals_policy):
    s = Site(tmp_path_factory.mktemp("site"), loaded_runs(str(appeals_policy)))
    yield s
    stop(s.proc)


class Outline(HTMLParser):
    """Headings, form controls, labels and the html lang of a page."""

    def __init__(self):
        super().__init__()
        self.headings: list[int] = []
        self.controls: list[tuple[str, dict]] = []
        self.labels: set[str] = set()
        self.lang = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        elif len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self.headings.append(int(tag[1]))
        elif tag in ("input", "textarea", "select") and a.get("type") not in ("hidden", "submit"):
            self.controls.append((tag, a))
        elif tag == "label" and a.get("for"):
            self.labels.add(a["for"])


def check_accessible(html: str) -> Outline:
    """Smoke check: lang, one h1 first, no skipped heading level, a label for every control."""
    outline = Outline()
    outline.feed(html)
    assert outline.lang == "en"
    assert outline.headings and outline.headings[0] == 1 and outline.headings.count(1) == 1, outline.headings
    for before, after in zip(outline.headings, outline.headings[1:], strict=False):
        assert after <= before + 1, f"heading h{after} after h{before}"
    for tag, attrs in outline.controls:
        assert attrs.get("id") in outline.labels, f"<{tag} name={attrs.get('name')}> has no label"
    return outline
