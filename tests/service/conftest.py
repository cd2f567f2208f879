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


def make_keys(db, tag: str = "", citizen: str = CITIZEN) -> dict[str, str]:
    """One key per role, named after it; the citizen key is bound to `citizen`, senders to SOURCES."""
    return {role: create_key(db, role=role, name=f"{role}{tag}", citizen=citizen if role == "citizen" else None,
                             sources=SOURCES.get(role, ()) if role in SENDING_ROLES else ())
            for role in ROLES}


def auth(secret: str, purpose: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {secret}"}
    if purpose:
        headers["X-Purpose"] = purpose
    return headers


def handmade_event(i, citizen=CITIZEN, kind="traffic.red_light", day=1, source="camera", **extra) -> dict:
    """A hand-made event, for what no simulated run shows on purpose: ingestion mechanics (re-sends,
    batches, NDJSON), malformed input and precise edge cases of the rules. Tests of what the
    product answers about citizens use a simulated run (`run_world`)."""
    return {"event_id": f"e-{i}", "citizen_id": citizen, "kind": kind, "day": day, "source": source, **extra}


event = handmade_event  # the name test_fuzz.py imports


# `make_service`, `service`, `client` and `send`: an empty database that a test fills with hand-made
# events (see `handmade_event`).
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


class RunWorld:
    """A service over a private copy of a simulated run loaded by `socialcredit db load`, started
    under a TestClient, with one key per role (the citizen key bound to `citizen`)."""

    def __init__(self, loaded, service: Service, citizen: str, client: TestClient):
        self.loaded, self.service, self.citizen, self.client = loaded, service, citizen, client
        self.policy = service.policy
        self.keys = make_keys(service.db, citizen=citizen)

    def call(self, method: str, path: str, role: str, purpose: str | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {self.keys[role]}"}
        if purpose is not None:
            headers["X-Purpose"] = purpose
        return self.client.request(method, path, headers=headers, **kwargs)

    def log(self) -> list[dict]:
        """The bound citizen's look-up log, newest first, as the citizen reads it (not itself logged)."""
        r = self.call("GET", f"/api/citizens/{self.citizen}/lookups", "citizen")
        assert r.status_code == 200, r.text
        return r.json()["lookups"]


def open_world(loaded, folder: Path, citizen: str | None = None) -> RunWorld:
    """A RunWorld over a copy (in `folder`) of `loaded`; the citizen key is bound to `citizen`, by
    default the citizen in the run's lowest class with the most camera events. Close it with
    `close_world`."""
    folder.mkdir(parents=True, exist_ok=True)
    service = Service.open(loaded.copy(folder))
    if citizen is None:
        present = loaded.citizens["class"].drop_nulls().unique().to_list()
        worst = max(present, key=service.policy.class_names.index)
        citizen = loaded.citizen(**{"class": worst})["citizen_id"]
    client = TestClient(create_app(service))
    client.__enter__()  # starts the service's threads, as a server does
    return RunWorld(loaded, service, citizen, client)


def close_world(world: RunWorld) -> None:
    world.client.__exit__(None, None, None)
    world.service.close()


@pytest.fixture
def run_world(loaded_runs, tmp_path):
    """`run_world(policy, citizen=None)`: a RunWorld over the suite's run under `policy`."""
    opened = []

    def make(policy: str = "taz-2018", citizen: str | None = None) -> RunWorld:
        opened.append(open_world(loaded_runs(policy), tmp_path / f"world-{len(opened)}", citizen))
        return opened[-1]

    yield make
    for world in opened:
        close_world(world)


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards.

    PostgreSQL is part of the suite, not an option: a server that does not answer fails the test
    (`make test` starts the machine's server first; deselect with `-m "not postgresql"` on purpose).
    """
    import psycopg

    try:
        psycopg.connect(PG_BASE, connect_timeout=3).close()
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is expected at {PG_BASE} and does not answer ({type(exc).__name__}: "
                    f"{exc}); start it (make services) or point SOCIALCREDIT_TEST_PG at one", pytrace=False)

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
    """`socialcredit serve` in a subprocess: on a simulated clock at `day`, or with `day=None` on
    the wall clock (with `args`: more options)."""

    def __init__(self, db_url: str, *, policy="taz-2018", day=DAY, log: Path, args=()):
        self.db_url, self.policy, self.day, self.log, self.args = db_url, policy, day, log, list(args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout=30.0) -> None:
        cmd = [str(Path(sys.executable).parent / "socialcredit"), "serve", "--db", self.db_url, "--port",
               str(self.port), "--policy", self.policy, *([] if self.day is None else ["--day", str(self.day)]),
               *self.args]
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
