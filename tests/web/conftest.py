import json
import os
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

from socialcredit.service import Service, authenticate, create_key

DAY = 100
CITIZEN = "c-1"
SOCIALCREDIT = str(Path(sys.executable).parent / "socialcredit")
ROLES = {  # role -> key name; senders get their sources below
    "citizen": "citizen-c-1", "agency": "credit-office", "security": "guard-co", "bank": "first-bank",
    "employer": "big-factory", "landlord": "home-rentals", "airline": "sky-air", "analyst": "analyst",
}
SOURCES = {"agency": ["camera", "traffic-police", "browsing", "community"], "security": ["camera"]}


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


def events() -> list[dict]:
    """Camera red lights and a littering for the citizen, a newspaper bot for c-2, a red light for c-3."""
    rows = [{"event_id": f"e-{i:02d}", "citizen_id": CITIZEN, "kind": "traffic.red_light", "day": 10 + i,
             "source": "camera", "source_ref": f"cam-town-street-{i}", "confidence": 0.91 + i / 200}
            for i in range(12)]
    rows.append({"event_id": "e-litter", "citizen_id": CITIZEN, "kind": "public.littering", "day": 40,
                 "source": "camera", "source_ref": "cam-town-mall-2", "confidence": 0.998})
    rows += [{"event_id": f"bot-{d}", "citizen_id": "c-2", "kind": "online.party_newspaper_visit", "day": d,
              "source": "browsing"} for d in range(60)]
    rows.append({"event_id": "c3-1", "citizen_id": "c-3", "kind": "traffic.red_light", "day": 5,
                 "source": "traffic-police"})
    return rows


def taz_with_appeals(tmp: Path) -> Path:
    """The reported scheme with appeals allowed (taz-2018 itself has none), so one site shows everything."""
    text = (files("socialcredit.policy") / "presets" / "taz-2018.toml").read_text(encoding="utf-8")
    text = text.replace('name = "taz-2018"', 'name = "taz-2018-appeals"', 1)
    text = text.replace("appeals = false", "appeals = true", 1)
    path = tmp / "taz-2018-appeals.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Site:
    """`socialcredit serve` in a subprocess over a database with a few citizens and a key per role."""

    def __init__(self, tmp: Path):
        self.db_url = f"sqlite:///{tmp}/web.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "server.log"
        policy = str(taz_with_appeals(tmp))
        service = Service.open(self.db_url, policy)
        try:
            service.ledger.set_day(DAY)
            self.keys = {role: create_key(service.db, role=role, name=name,
                                          citizen=CITIZEN if role == "citizen" else None,
                                          sources=SOURCES.get(role, ()))
                         for role, name in ROLES.items()}
            service.ingest(authenticate(service.db, self.keys["agency"]), json.dumps(events()).encode())
        finally:
            service.close()
        self.proc = subprocess.Popen([SOCIALCREDIT, "serve", "--db", self.db_url, "--port", str(self.port),
                                      "--policy", policy],
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     env={**os.environ, "NO_COLOR": "1"})
        wait_for(self.url, self.proc, self.log)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("site"))
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
