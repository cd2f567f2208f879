"""`db load` with a register of births, at the edges a simulated run rarely lands on exactly.

Hand-made citizens tables (no run puts a birthday on a chosen day): under rongcheng (18 and over) a
citizen is scored from the day they come of age, which is `birth_day + 18 * 365`.
"""

import polars as pl
import pytest

from socialcredit.service import Service
from socialcredit.service import _loading as loading_module

OF_AGE = 18 * 365  # rongcheng's min_age, in days


def _citizens_folder(folder, comes_of_age: dict[str, int], *, births: bool = True):
    """A run folder of citizens only (no manifest, no events): each comes of age on the given day."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pl.DataFrame({"citizen_id": list(comes_of_age), "age": [30] * len(comes_of_age)})
    if births:
        table = table.with_columns(birth_day=pl.Series([d - OF_AGE for d in comes_of_age.values()]))
    table.write_parquet(folder / "citizens.parquet")
    return folder


def _history(service: Service) -> list[tuple]:
    return sorted(service.db.execute("SELECT citizen_id, day, class_idx FROM class_history"))


def test_a_citizen_is_scored_from_the_day_they_come_of_age_that_day_included(tmp_path):
    service = Service.open(f"sqlite:///{tmp_path}/a.db", "rongcheng")
    try:
        service.ledger.set_day(5)
        service.load_run(_citizens_folder(tmp_path / "run", {"adult": -400, "day-one": 1, "today": 5,
                                                             "tomorrow": 6}))
        start = service.ledger.start_class
        scored = {row[0] for row in service.db.execute("SELECT citizen_id FROM scores")}
        assert scored == {"adult", "day-one", "today"}
        # They entered the start class on the day they came of age; an adult from before day 0 needs no entry.
        assert _history(service) == [("day-one", 1, start), ("today", 5, start)]
        assert service._status("tomorrow")[0] is None and service._status("today")[0] == service.policy.start
    finally:
        service.close()


def test_on_day_0_a_citizen_of_age_on_day_1_is_not_scored_yet(tmp_path):
    service = Service.open(f"sqlite:///{tmp_path}/b.db", "rongcheng")
    try:
        service.load_run(_citizens_folder(tmp_path / "run", {"soon": 1, "now": 0}))
        assert service.day == 0
        assert service._status("soon") == (None, None, -1)
        assert service._status("now")[1] == service.policy.class_names[service.ledger.start_class]
    finally:
        service.close()


def test_without_a_register_everyone_loaded_is_scored_from_the_start(tmp_path):
    service = Service.open(f"sqlite:///{tmp_path}/c.db", "rongcheng")
    try:
        service.ledger.set_day(5)
        service.load_run(_citizens_folder(tmp_path / "run", {"x": 6, "y": 7}, births=False))
        assert {row[0] for row in service.db.execute("SELECT citizen_id FROM scores")} == {"x", "y"}
        assert _history(service) == []
    finally:
        service.close()


def test_a_load_that_fails_forgets_the_births_it_had_read(tmp_path, monkeypatch):
    """A load rolled back leaves the incremental state as the database is: the minor it would have
    registered is not a minor when their next event comes."""
    service = Service.open(f"sqlite:///{tmp_path}/d.db", "rongcheng")
    try:
        service.ledger.set_day(5)
        service.ledger.warm()  # the incremental state is in memory, as in a running service

        def disk_full(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(loading_module, "camera_profiles", disk_full)  # after the births are read
        with pytest.raises(OSError):
            service.load_run(_citizens_folder(tmp_path / "run", {"kid": 400}))
        monkeypatch.undo()
        assert not service.db.execute("SELECT 1 FROM births")
        folder = tmp_path / "events"
        folder.mkdir()
        pl.DataFrame({"event_id": ["h-1"], "citizen_id": ["kid"], "kind": ["civic.heroic_act"], "day": [5],
                      "source": ["community"]}).write_parquet(folder / "events.parquet")
        service.load_run(folder)
        assert service._status("kid")[0] == service.policy.start + 30  # counted: no register says minor
    finally:
        service.close()


def _events_folder(folder, rows: list[tuple[str, str, int]]):
    """A run folder of events only: (event_id, citizen_id, day) red lights seen by the police."""
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"event_id": [r[0] for r in rows], "citizen_id": [r[1] for r in rows],
                  "kind": ["traffic.red_light"] * len(rows), "day": [r[2] for r in rows],
                  "source": ["traffic-police"] * len(rows)}).write_parquet(folder / "events.parquet")
    return folder


def test_runs_loaded_into_a_running_service_keep_its_statistics_and_scores(tmp_path):
    """Loads into a service whose statistics and scoring state are in memory: a new run's events
    are counted day by day, a run loaded again in part starts the state afresh, and the next load
    scores from it as the engine does."""
    from socialcredit.engine import score_ledger
    from socialcredit.events import EVENT_SCHEMA
    from socialcredit.service import authenticate

    from .conftest import make_keys

    service = Service.open(f"sqlite:///{tmp_path}/e.db", "taz-2018")
    try:
        analyst = authenticate(service.db, make_keys(service.db)["analyst"])
        service.load_run(_events_folder(tmp_path / "one", [("a1", "a", 0), ("a2", "a", 1), ("b1", "b", 1)]))
        service.stats(analyst)  # the counts are now kept in memory and moved by each write
        service.ledger.warm()
        service.load_run(_events_folder(tmp_path / "two", [("a3", "a", 2), ("b2", "b", 2), ("c1", "c", 2)]))
        days = {row["day"]: row["events"] for row in service.stats(analyst)["events_per_day"]}
        assert days == {0: 1, 1: 2, 2: 3}
        service.load_run(_events_folder(tmp_path / "three", [("a3", "a", 2), ("c2", "c", 2)]))  # a3 again
        service.load_run(_events_folder(tmp_path / "four", [("a4", "a", 2), ("d1", "d", 2)]))
        stats = service.stats(analyst)
        assert stats["events"] == 9 and {r["day"]: r["events"] for r in stats["events_per_day"]} == {0: 1, 1: 2, 2: 6}
        ledger = service.db.frame("SELECT event_id, citizen_id, kind, day, source, source_ref, confidence "
                                  "FROM events", (), EVENT_SCHEMA)
        engine = score_ledger(service.policy, ledger, as_of=service.day).scores
        for citizen, score, _ in engine.iter_rows():
            assert service._status(citizen)[0] == score, citizen
    finally:
        service.close()


def test_a_loaded_history_starts_the_day_a_citizen_comes_of_age(tmp_path):
    """An event before a citizen is of age changes no class: the class history db load replays
    starts with their entry into the start class on the day they come of age."""
    service = Service.open(f"sqlite:///{tmp_path}/f.db", "rongcheng")
    try:
        folder = _citizens_folder(tmp_path / "run", {"kid": 10, "adult": -400})
        pl.DataFrame({"event_id": ["h-1", "h-2"], "citizen_id": ["kid", "adult"], "kind": ["civic.heroic_act"] * 2,
                      "day": [2, 2], "source": ["community"] * 2}).write_parquet(folder / "events.parquet")
        service.ledger.set_day(20)
        service.load_run(folder)
        start = service.ledger.start_class
        aa = service.policy.class_names.index("AA")  # 1000 + 30: what the heroic act gives an adult
        assert _history(service) == [("adult", 2, aa), ("kid", 10, start)]
        assert service._status("kid")[0] == service.policy.start
    finally:
        service.close()
