"""`socialcredit demo`: simulate a town, load it into the service, print demo keys, serve until Ctrl-C.

The whole system in one place, over the public packages (simulation, analysis, service and its pages).
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import polars as pl
import typer

from socialcredit.analysis import write_report
from socialcredit.offers import WINDOW_DAYS
from socialcredit.service import Database, Service, ServiceError, authenticate, create_app, create_key, serve_http
from socialcredit.simulation import Run, simulate
from socialcredit.web._pages import tour

HOST = "127.0.0.1"
# The demo's organisations: (role, key name). The citizen key is added for the chosen citizen and
# the senders (agency, security, platform) are bound to their sources when the run is known.
ORGANISATIONS = [
    ("bank", "bank-of-the-town"),
    ("airline", "sky-airline"),
    ("security", "safe-city-security"),
    ("agency", "town-credit-office"),
    ("employer", "town-factory"),
    ("platform", "town-shop-group"),
    ("analyst", "research-analyst"),
]
FEED_BATCH = 25      # events per live batch
FEED_INTERVAL_S = 1.0
OWN_EVERY = 30       # every 30th batch carries one more event of the demo citizen
# The shop group's in-store records of the demo citizen (see _send_profile): the run counts them per
# citizen without items or dates, so the demo gives each an item, a signal and a day (drawn from the
# seed) within the offers' window, and a face-match confidence between these bounds.
CLOTHES = ("jackets", "dresses", "trousers", "running_shoes", "sweaters", "handbags")
TRIED_ON_SHARE = 0.3
MATCH_CONFIDENCE = (0.75, 0.99)


def run_demo(*, population: int = 100_000, days: int = 365, seed: int = 2018, port: int = 8000,
             live: bool = False, out: Path = Path("runs/demo"), scenario: str = "one-town",
             policy: str | None = None, fresh: bool = False, echo: Callable[[str], None] = typer.echo) -> None:
    """Simulate, load, create keys, print them with the URLs, and serve on 127.0.0.1 until stopped.

    A demo database that holds the same run is used again with its keys (`fresh` starts over).
    """
    _check_port(port)  # before minutes of simulation, not after
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / f"run-{Path(scenario).stem}-{Path(policy or 'scenario').stem}-{population}x{days}-seed{seed}"
    if (run_dir / "manifest.json").is_file():  # same inputs, same run: simulations are deterministic
        echo(f"reusing the simulation in {run_dir}")
    else:
        echo(f"simulating {population:,} citizens for {days} days (scenario {scenario}, seed {seed}) ...")
        started = time.perf_counter()
        shown = [0]

        def progress(done: int, total: int) -> None:
            tenth = done * 10 // max(total, 1)
            if tenth > shown[0]:  # a line every 10%, so that a long run shows it is alive
                shown[0] = tenth
                echo(f"  {tenth * 10}% ({time.perf_counter() - started:.0f} s)")

        # A demo stopped while it simulated goes on from its finished shards (the run is the same).
        simulate(population=population, days=days, seed=seed, out=run_dir, scenario=scenario, policy=policy,
                 events="all", resume=True, on_progress=progress)
        echo(f"simulated in {time.perf_counter() - started:.1f} s -> {run_dir}")

    report = write_report(run_dir)
    echo(f"report: {report}")

    db_path, key_file = out / "demo.db", out / "demo-keys.txt"
    kept = _kept(db_path, key_file, run_dir, fresh, echo)
    # The service holds one policy: the run's, as `socialcredit db load` finds it (a scenario that
    # scores its regions with several policies is refused with their names).
    service = Service.open(f"sqlite:///{db_path}", Run.open(run_dir).state_policy())
    try:
        if kept is not None:
            keys = kept
            citizen = next(name.removeprefix("citizen-") for role, name, _ in keys if role == "citizen")
        else:
            echo(f"loading the run into {db_path} ...")
            started = time.perf_counter()
            loaded = service.load_run(run_dir)
            echo(f"loaded {loaded['citizens']:,} citizens and {loaded['events']:,} events in "
                 f"{time.perf_counter() - started:.1f} s (policy {service.policy.name}, "
                 f"day {service.day}: {service.date})")
            citizen = pick_citizen(run_dir, service)
            keys = _create_keys(service, citizen, run_dir)
            sent = _send_profile(service, keys, run_dir, citizen, seed)
            echo(f"the shop group sent {sent} in-store record{'s' if sent != 1 else ''} of citizen {citizen} "
                 "(its commercial profile)")
            _keep(service, key_file, keys, run_dir)
        with service.db.transaction() as cur:  # the home page's tour names the citizen (it knows no keys)
            service.db.set_meta(cur, "demo_citizen", citizen)
        url = f"http://{HOST}:{port}"
        echo("")
        echo(f"demo keys (kept in {key_file}, readable by you alone; paste one into a page's sign-in):")
        for role, name, secret in keys:
            echo(f"  {role:<9} {name:<20} {secret}")
        echo("")
        echo(f"  citizen app   {url}/app      (citizen {citizen})")
        echo(f"  portal        {url}/portal   (bank, airline, security, agency, employer, platform)")
        echo(f"  dashboard     {url}/dashboard (analyst or agency)")
        echo(f"  API           {url}/docs")
        echo(f"  report        {report.resolve()}")
        echo("")
        echo(f"try this (also on {url}/):")
        for n, step in enumerate(tour(service.policy, citizen), 1):
            echo(f"  {n}. {step['text']}")
            echo(f"     key: {step['key']}, at {url}{step['path']}")
        echo("")
        echo(f"serving on {url} until Ctrl-C{' with a live feed of events' if live else ''}")
        app = create_app(service)
        stop = threading.Event()
        feeder = None
        if live:
            agency = next(secret for role, _, secret in keys if role == "agency")
            feeder = threading.Thread(target=_feed, args=(url, agency, run_dir, service, citizen, seed, stop, echo),
                                      name="live-feed", daemon=True)
            feeder.start()
        try:
            serve_http(app, HOST, port)
        finally:
            stop.set()
            if feeder is not None:
                feeder.join()
    finally:
        service.close()


def _kept(db_path: Path, key_file: Path, run_dir: Path, fresh: bool,
          echo: Callable[[str], None]) -> list[tuple[str, str, str]] | None:
    """Return the keys of a demo database that holds this run (used again as it is), or None.

    None once the folder is clear for a new database; says which, and what a new one removes.
    """
    held = None
    if db_path.is_file():
        db = Database.open(f"sqlite:///{db_path}")
        try:
            held = db.get_meta("demo_run")
        finally:
            db.close()
    if held == run_dir.name and key_file.is_file() and not fresh:
        echo(f"reusing the demo database {db_path}: it holds this run, with the keys, look-ups, appeals and live "
             "events of earlier demos (--fresh starts over)")
        return [tuple(line.split()) for line in key_file.read_text(encoding="utf-8").splitlines()
                if line and not line.startswith("#")]
    if db_path.is_file():
        why = "--fresh" if fresh else (f"it holds another run ({held})" if held else "its keys are not kept")
        echo(f"starting a new demo database ({why}): removing {db_path} with its keys, look-ups and appeals")
    for stale in [*db_path.parent.glob(f"{db_path.name}*"), key_file]:
        stale.unlink(missing_ok=True)
    return None


def _keep(service: Service, key_file: Path, keys: list[tuple[str, str, str]], run_dir: Path) -> None:
    """Remember the run the database holds, and its demo keys (owner-only), for the next demo."""
    with service.db.transaction() as cur:
        service.db.set_meta(cur, "demo_run", run_dir.name)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# socialcredit demo keys: role, name, secret (the database stores only their hashes)\n")
        f.writelines(f"{role} {name} {secret}\n" for role, name, secret in keys)


def _check_port(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            probe.bind((HOST, port))
        except OSError:
            raise OSError(f"port {port} on {HOST} is in use: stop what runs there or pass --port") from None


def pick_citizen(run_dir: Path, service: Service) -> str:
    """Pick a citizen with camera events in the lowest class there is, so the app has much to show."""
    cams = (pl.scan_parquet(run_dir / "events.parquet").filter(pl.col("source") == "camera")
            .group_by("citizen_id").agg(sightings=pl.len(), wrongful=pl.col("wrongful").any()).collect())
    instore = pl.read_parquet(run_dir / "citizens.parquet", columns=["citizen_id", "instore_clothes_stops"])
    rows = service.db.execute("SELECT citizen_id, score, class_idx FROM scores")
    scores = pl.DataFrame(rows, schema={"citizen_id": pl.String, "score": pl.Int64, "class_idx": pl.Int64},
                          orient="row")
    if scores.height == 0:
        raise ServiceError("the run has no scored citizens to show in the app")
    ranked = scores.join(cams, on="citizen_id", how="left").join(instore, on="citizen_id", how="left").with_columns(
        pl.col("sightings").fill_null(0), pl.col("wrongful").fill_null(False),
        profiled=pl.col("instore_clothes_stops").fill_null(0) > 0)
    # Worst class first; then someone a camera wrongly picked out (an appeal worth making), then
    # someone the shop group's cameras profiled (offers to show), then the most sightings; the id
    # breaks ties so that the same run gives the same citizen.
    best = ranked.sort(["class_idx", "wrongful", "profiled", "sightings", "score", "citizen_id"],
                       descending=[True, True, True, True, False, False]).row(0, named=True)
    return best["citizen_id"]


def _create_keys(service: Service, citizen: str, run_dir: Path) -> list[tuple[str, str, str]]:
    sources = sorted(s for s in pl.scan_parquet(run_dir / "events.parquet").select(pl.col("source").unique())
                     .collect().to_series().to_list() if s)
    keys = [("citizen", f"citizen-{citizen}", create_key(service.db, role="citizen", name=f"citizen-{citizen}",
                                                         citizen=citizen))]
    for role, name in ORGANISATIONS:
        bound = {"agency": sources or ["camera"], "security": ["camera"], "platform": ["e-commerce"]}.get(role, [])
        keys.append((role, name, create_key(service.db, role=role, name=name, sources=bound)))
    return keys


def _send_profile(service: Service, keys: list[tuple[str, str, str]], run_dir: Path, citizen: str,
                  seed: int) -> int:
    """Send the demo citizen's in-store records as the shop group (platform key); return how many."""
    stops = (pl.scan_parquet(run_dir / "citizens.parquet").filter(pl.col("citizen_id") == citizen)
             .select("instore_clothes_stops").collect())
    n = int(stops.item()) if stops.height else 0
    if n == 0:
        return 0
    rng = random.Random(seed)
    records = []
    for i in range(n):
        signal = "tried_on" if rng.random() < TRIED_ON_SHARE else "stopped_at"
        records.append({
            "event_id": f"instore-{citizen}-{i:03d}", "citizen_id": citizen,
            "kind": f"instore.{signal}.{rng.choice(CLOTHES)}",
            "day": service.day - rng.randrange(min(WINDOW_DAYS, service.day + 1)),
            "source": "e-commerce", "source_ref": f"store {rng.randint(1, 9)}, camera {rng.randint(1, 20)}",
            "confidence": round(rng.uniform(*MATCH_CONFIDENCE), 2)})
    platform = next(secret for role, _, secret in keys if role == "platform")
    service.ingest(authenticate(service.db, platform), json.dumps(records).encode())
    return n


def _feed(url: str, secret: str, run_dir: Path, service: Service, citizen: str, seed: int,
          stop: threading.Event, echo: Callable[[str], None]) -> None:
    """Send small batches of simulated events (drawn from the run) to the service over HTTP."""
    # Only kinds the policy scores: the service refuses a batch with a kind no rule knows.
    kinds = [r.kind for r in service.policy.rules]
    pool = (pl.scan_parquet(run_dir / "events.parquet").filter(pl.col("kind").is_in(kinds))
            .select("citizen_id", "kind", "source", "source_ref", "confidence").collect())
    if pool.height == 0:
        return
    own = pool.filter(pl.col("citizen_id") == citizen)
    rng = random.Random(seed)
    session = time.strftime("%Y%m%dT%H%M%S")  # a reused database keeps earlier demos' live events
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        while not stop.is_set():  # wait for the server to listen
            try:
                client.get("/openapi.json")
                break
            except httpx.TransportError:
                stop.wait(0.2)
        n = 0
        while not stop.wait(FEED_INTERVAL_S):
            picks = pool[[rng.randrange(pool.height) for _ in range(FEED_BATCH)]]
            if own.height and n % OWN_EVERY == 0:  # now and then the demo citizen again, so the app moves
                picks = pl.concat([picks, own[[rng.randrange(own.height)]]])
            batch = [{**row, "event_id": f"live-{session}-{n:08d}-{i:03d}", "day": service.day}
                     for i, row in enumerate(picks.iter_rows(named=True))]
            try:
                response = client.post("/api/events", json=batch, params={"wait": "false"})
            except httpx.TransportError:  # the server is shutting down
                return
            if response.status_code >= 400:
                echo(f"live feed stopped: the service refused a batch ({response.status_code}): {response.text}")
                return
            n += 1
