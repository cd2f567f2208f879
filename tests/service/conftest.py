import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from socialcredit.policy import ROLES
from socialcredit.service import SENDING_ROLES, Service, create_app, create_key

PG_BASE = os.environ.get("SOCIALCREDIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
DAY = 100
CITIZEN = "c-1"
SOURCES = {
    "agency": ["courts", "traffic-police", "city-management", "community", "banks", "camera"],
    "security": ["camera"],
    "platform": ["e-commerce", "browsing", "social-media", "games"],
}


def make_keys(db, tag: str = "") -> dict[str, str]:
    """One key per role; the citizen key is bound to CITIZEN, senders to SOURCES."""
    return {role: create_key(db, role=role, name=f"{role}{tag}", citizen=CITIZEN if role == "citizen" else None,
                             sources=SOURCES.get(role, ()) if role in SENDING_ROLES else ())
            for role in ROLES}


def auth(secret: str, purpose: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {secret}"}
    if purpose:
        headers["X-Purpose"] = purpose
    return headers


def event(i, citizen=CITIZEN, kind="traffic.red_light", day=1, source="camera", **extra) -> dict:
    return {"event_id": f"e-{i}", "citizen_id": citizen, "kind": kind, "day": day, "source": source, **extra}


@pytest.fixture
def make_service(tmp_path):
    opened = []

    def make(policy="taz-2018", url=None, **kwargs) -> Service:
        service = Service.open(url or f"sqlite:///{tmp_path}/sc-{len(opened)}.db", policy, **kwargs)
        service.ledger.set_day(DAY)
        opened.append(service)
        return service

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def service(make_service):
    return make_service()


@pytest.fixture
def keys(service):
    return make_keys(service.db)


@pytest.fixture
def client(service):
    with TestClient(create_app(service)) as c:
        yield c


@pytest.fixture
def send(client, keys):
    def send(rows, role="agency", **params):
        body = "\n".join(json.dumps(r) for r in rows) if params.pop("ndjson", False) else json.dumps(rows)
        return client.post("/api/events", content=body, headers=auth(keys[role]), params=params)

    return send


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_BASE, connect_timeout=3):
            return None
    except Exception as exc:  # any failure means: no PostgreSQL here
        return f"{type(exc).__name__}: {exc}".strip()


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    why = _pg_reachable()
    if why:
        pytest.skip(f"PostgreSQL not reachable at {PG_BASE} ({why}); set SOCIALCREDIT_TEST_PG")
    import psycopg

    schema = f"sc_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`socialcredit serve` in a subprocess."""

    def __init__(self, db_url: str, *, policy="taz-2018", day=DAY, log: Path):
        self.db_url, self.policy, self.day, self.log = db_url, policy, day, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout=30.0) -> None:
        cmd = [str(Path(sys.executable).parent / "socialcredit"), "serve", "--db", self.db_url, "--port",
               str(self.port), "--policy", self.policy, "--day", str(self.day)]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/openapi.json", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_factory(tmp_path):
    servers = []

    def make(db_url, **kwargs) -> Server:
        server = Server(db_url, log=tmp_path / f"server-{len(servers)}.log", **kwargs)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()
