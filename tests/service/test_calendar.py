"""Calendar dates in the service: its clock (wall or simulated), events sent by date, and the dates
every answer gives beside the day numbers. Expiry and held days count calendar days."""

import datetime as dt
import json

import httpx
import polars as pl
import pytest
from typer.testing import CliRunner

from socialcredit.cli import app
from socialcredit.engine import score_ledger
from socialcredit.events import Calendar, validate_events
from socialcredit.policy import parse_policy
from socialcredit.service import Service, authenticate, create_key
from socialcredit.service._errors import Conflict, Invalid
from tests.conftest import SMALL_POLICY


class FakeClock:
    """A wall clock the test moves: today's date as the service reads it."""

    def __init__(self, today: dt.date):
        self.today = today

    def __call__(self) -> dt.date:
        return self.today


@pytest.fixture
def small():
    return parse_policy(SMALL_POLICY, source="small")


def _agency(service: Service):
    return authenticate(service.db, create_key(service.db, role="agency", name="city", sources=["police", "camera"]))


def _send(service: Service, key, *rows: dict) -> dict:
    return service.ingest(key, json.dumps(list(rows)).encode())


def test_on_the_wall_clock_the_service_day_is_todays_and_points_expire_at_midnight(tmp_path, small):
    clock = FakeClock(dt.date(2018, 3, 1))
    service = Service.open(f"sqlite:///{tmp_path}/wall.db", small, clock=clock)
    try:
        service.follow_clock()
        assert (service.day, service.date) == (59, "2018-03-01")  # day 0: the default start, 2018-01-01
        key = _agency(service)
        # Two events of a rule whose points last 3 days: one given by date, one by day number.
        sent = _send(service, key,
                     {"event_id": "a", "citizen_id": "c", "kind": "k.capped", "date": "2018-02-28", "source": "police"},
                     {"event_id": "b", "citizen_id": "c", "kind": "k.capped", "day": 59, "source": "police"})
        assert (sent["day"], sent["date"]) == (59, "2018-03-01")
        assert service.db.execute("SELECT event_id, day FROM events ORDER BY event_id") == [("a", 58), ("b", 59)]
        assert service._status("c")[0] == 980
        ledger = validate_events(pl.DataFrame({"event_id": ["a", "b"], "citizen_id": ["c", "c"],
                                               "kind": ["k.capped"] * 2, "day": [58, 59], "source": ["police"] * 2}))
        for today, score in ((dt.date(2018, 3, 2), 980), (dt.date(2018, 3, 3), 990), (dt.date(2018, 3, 4), 1000)):
            clock.today = today  # the next day: the service follows without being told
            service.follow_clock()
            assert service.date == today.isoformat()
            expected = score_ledger(small, ledger, as_of=service.day).scores.row(0, named=True)["score"]
            assert service._status("c")[0] == expected == score, today
        with pytest.raises(Conflict, match="follows the wall clock"):
            service.set_day(500)
    finally:
        service.close()


def test_an_event_dated_after_today_or_whose_day_and_date_disagree_is_refused_naming_row_and_field(tmp_path, small):
    service = Service.open(f"sqlite:///{tmp_path}/refuse.db", small, clock=FakeClock(dt.date(2018, 1, 11)))
    try:
        service.follow_clock()
        key = _agency(service)
        good = {"event_id": "ok", "citizen_id": "c", "kind": "k.capped", "date": "2018-01-11T23:59:00+08:00",
                "source": "police"}
        cases = [
            ({"event_id": "x", "citizen_id": "c", "kind": "k.capped", "date": "2018-01-12", "source": "police"},
             "batch: row 2, field day: day 11 (2018-01-12) is in the future of the service day 10 (2018-01-11)", "day"),
            ({"event_id": "x", "citizen_id": "c", "kind": "k.capped", "date": "2018-01-05", "day": 3,
              "source": "police"},
             "batch: row 2, columns day and date disagree: day 3 is 2018-01-04, the date says 2018-01-05 (day 4)",
             "date"),
            ({"event_id": "x", "citizen_id": "c", "kind": "k.capped", "date": "11.01.2018", "source": "police"},
             "batch: row 2, column date: expected an ISO date (2018-03-01) or timestamp (2018-03-01T08:30:00+08:00) "
             "(got '11.01.2018')", "date"),
            ({"event_id": "x", "citizen_id": "c", "kind": "k.capped", "date": 20180111, "source": "police"},
             "row 2, field date: expected an ISO date as text, got 20180111", "date"),
        ]
        for bad, message, field in cases:
            with pytest.raises(Invalid) as refused:
                _send(service, key, good, bad)
            assert (str(refused.value), refused.value.row, refused.value.field) == (message, 2, field)
        assert service.db.execute("SELECT COUNT(*) FROM events")[0][0] == 0  # a refused batch writes nothing
        _send(service, key, good)
        assert service.db.execute("SELECT day FROM events") == [(10,)]
    finally:
        service.close()


def test_a_simulated_clock_moves_only_when_told(tmp_path, small):
    service = Service.open(f"sqlite:///{tmp_path}/sim.db", small)
    try:
        service.follow_clock()
        assert service.day == 0
        service.set_day(40)
        assert (service.day, service.date) == (40, "2018-02-10")
        with pytest.raises(Conflict, match="cannot go back"):
            service.set_day(39)
    finally:
        service.close()


def test_a_database_counts_days_from_one_start_date(tmp_path, small):
    url = f"sqlite:///{tmp_path}/start.db"
    service = Service.open(url, small)
    try:
        service.set_start_date(dt.date(2026, 1, 1))  # no event yet: the database takes it
        service.set_day(338)
        assert service.date == "2026-12-05"
        _send(service, _agency(service),
              {"event_id": "a", "citizen_id": "c", "kind": "k.reward", "date": "2026-12-05", "source": "police"})
        assert service.db.execute("SELECT day FROM events") == [(338,)]
        with pytest.raises(Conflict, match="counts days from 2026-01-01, --start-date from 2018-01-01"):
            service.set_start_date(dt.date(2018, 1, 1))
    finally:
        service.close()
    again = Service.open(url)  # the start date is the database's: it opens with it
    try:
        assert again.calendar == Calendar(dt.date(2026, 1, 1)) and again.date == "2026-12-05"
    finally:
        again.close()


def test_a_loaded_run_brings_its_start_date_and_the_answers_give_dates(loaded_runs, tmp_path):
    loaded = loaded_runs("taz-2018")
    run = loaded.run
    service = Service.open(loaded.copy(tmp_path))
    try:
        calendar = run.calendar
        assert service.calendar == calendar and calendar.start == run.manifest.scenario.start_date
        assert service.date == calendar.iso(loaded.day) == (dt.date(2018, 1, 1) + dt.timedelta(loaded.day)).isoformat()
        agency = _agency(service)
        citizen = loaded.citizen(**{"class": "D"})["citizen_id"]
        _, _, idx = service._status(citizen)
        _, sanctions = service.consequences(citizen, idx)
        assert sanctions and all(s["since_date"] == calendar.iso(s["since_day"]) for s in sanctions)
        stats = service.stats(agency)
        assert stats["date"] == service.date
        assert all(d["date"] == calendar.iso(d["day"]) for d in stats["events_per_day"])
        history = service.history(agency, citizen, purpose="a test")
        assert history["date"] == service.date
        assert history["events"] and all(e["date"] == calendar.iso(e["day"]) for e in history["events"])
        profile = service.profile(agency, citizen, purpose="a test")
        assert profile["last_seen"]["date"] == calendar.iso(profile["last_seen"]["day"])
    finally:
        service.close()


def test_serve_refuses_a_day_on_the_wall_clock(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{tmp_path}/x.db", "--policy", "taz-2018",
                                      "--clock", "wall", "--day", "5"])
    assert result.exit_code == 2 and "--day sets a simulated clock" in result.output
    result = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{tmp_path}/x.db", "--policy", "taz-2018",
                                      "--start-date", "5 May"])
    assert result.exit_code == 2
    assert "--start-date: expected an ISO date such as 2018-01-01, got '5 May'" in result.output


def test_serve_runs_on_the_wall_clock_by_default(server_factory, tmp_path):
    url = f"sqlite:///{tmp_path}/live.db"
    start = dt.date.today() - dt.timedelta(days=30)
    db = Service.open(url, "taz-2018")
    try:
        secret = create_key(db.db, role="agency", name="city", sources=["traffic-police"])
    finally:
        db.close()
    server = server_factory(url, day=None, args=["--start-date", start.isoformat()])
    server.start()
    headers = {"Authorization": f"Bearer {secret}"}
    today = dt.date.today()  # (a test run across midnight may see tomorrow: both are the wall clock)
    stats = httpx.get(f"{server.url}/api/stats", headers=headers).json()
    assert (stats["day"], stats["date"]) in ((30, today.isoformat()), (31, (today + dt.timedelta(1)).isoformat()))
    event = {"event_id": "e", "citizen_id": "c", "kind": "traffic.red_light", "date": stats["date"],
             "source": "traffic-police"}
    sent = httpx.post(f"{server.url}/api/events", headers=headers, json=[event])
    assert sent.status_code == 200 and sent.json()["date"] == stats["date"]
    tomorrow = {**event, "event_id": "f", "date": (dt.date.fromisoformat(stats["date"]) + dt.timedelta(1)).isoformat()}
    refused = httpx.post(f"{server.url}/api/events", headers=headers, json=[tomorrow])
    assert refused.status_code == 422 and refused.json()["field"] == "day"
    assert "in the future" in refused.json()["error"]
