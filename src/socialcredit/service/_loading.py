"""Loading a simulation run into the service's database: its citizens (with their births and camera
profiles), its events, and each citizen's class history replayed from the events' days."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from socialcredit.engine import BIRTHS_SCHEMA, ScoreState, class_history
from socialcredit.events import EVENT_SCHEMA, EventError, validate_events
from socialcredit.service._db import EVENT_COLUMNS
from socialcredit.service._errors import Conflict, Invalid

if TYPE_CHECKING:
    from socialcredit.simulation import Manifest


class RunLoading:
    """The Ledger's `load_run` (a mixin over its database, write lock, score cache and counts)."""

    def load_run(self, run_dir: Path) -> dict[str, int]:
        """Load a run folder's citizens.parquet and events.parquet; return what was loaded."""
        run_dir = Path(run_dir)
        citizens_file, events_file = run_dir / "citizens.parquet", run_dir / "events.parquet"
        if not citizens_file.is_file() and not events_file.is_file():
            raise Invalid(f"{run_dir}: neither citizens.parquet nor events.parquet found")
        if self.partitioned and (self.partition is not None or self.db.execute("SELECT 1 FROM events LIMIT 1")):
            raise Conflict(f"{self.db.url} holds a ledger in partitions: a run is loaded into it while it is "
                           "empty, with `db load`; send later events to POST /api/events", field="run_dir")
        manifest = _manifest(run_dir)
        if manifest is not None:
            self.set_calendar(manifest.calendar, f"the run {run_dir}")
        loaded = {"citizens": 0, "events": 0}
        events = None
        if events_file.is_file():
            raw = pl.read_parquet(events_file)
            try:
                events = validate_events(raw, origin=str(events_file))
            except EventError as exc:
                raise Invalid(str(exc), row=exc.row, field=exc.column) from None
            if events.height and int(events["day"].max()) > self.day:
                self.set_day(int(events["day"].max()))
        with self.write(whole=True) as cur:
            if manifest is not None:  # the dashboard shows the run beside the ledger
                self.db.set_meta(cur, "run_dir", str(run_dir.resolve()))
            if citizens_file.is_file():
                age_noise = None if manifest is None else manifest.scenario.sensors.age_noise_years
                loaded["citizens"] = self._load_citizens(cur, pl.read_parquet(citizens_file), citizens_file,
                                                         age_noise)
            if events is not None:
                state = self._sync(cur)
                if events.height and not self.db.execute("SELECT 1 FROM events LIMIT 1", (), cur):
                    self._load_first_events(cur, state, events)
                    for p in range(self.db.partitions if self.partitioned else 0):
                        # Every partition's scores are as of the service day now (see Ledger.catch_up).
                        self.db.set_meta(cur, f"day.{p}", str(self.day))
                else:
                    self._load_more_events(cur, state, events)
                self._bump(cur)
                loaded["events"] = events.height
        return loaded

    def _load_first_events(self, cur, state: ScoreState, events: pl.DataFrame) -> None:
        """Events into an empty ledger (none can conflict: their ids are unique), stored in key
        order with the secondary indexes built after them, while a worker thread scores them and
        replays the class histories (SQLite and polars run mostly without the GIL)."""
        ledger = events.select(EVENT_COLUMNS)
        citizen_ids = events["citizen_id"].unique()
        births = self._births(cur, citizen_ids)
        self._mutated = True  # before the worker changes the state: a rollback drops it
        with ThreadPoolExecutor(1) as worker:
            scored = worker.submit(self._apply_new, state, ledger)
            history = worker.submit(class_history, self.compiled, ledger, as_of=self.day, births=births)
            with self.db.indexes_deferred(cur, "events"):
                self.db.insert_frame(cur, "events", events.sort("event_id").with_columns(batch=pl.lit(0, pl.Int64)))
            self._count_days(events["day"], 1)
            self._write_scores(cur, state, *scored.result())
            self._store_history(cur, history.result(), citizen_ids)

    def _load_more_events(self, cur, state: ScoreState, events: pl.DataFrame) -> None:
        """Events into a ledger that holds some already (perhaps these, in part: a run loaded again)."""
        stored = self.db.insert_frame(cur, "events", events.with_columns(batch=pl.lit(0, pl.Int64)),
                                      conflict=self.db.event_conflict)
        if stored == events.height:
            self._count_days(events["day"], 1)
            self._score_new(cur, state, events.select(EVENT_COLUMNS))
        else:  # loaded before, in part: score from the ledger, rebuild the state later
            self.rescore(cur, events["citizen_id"].unique())
            self._state = None
            if self._delta is not None:
                self._delta.valid = False  # which events were new is not known: count again
        self._replay_history(cur, events["citizen_id"].unique())

    def _replay_history(self, cur, citizen_ids: pl.Series) -> None:
        """The class histories of these citizens replayed from their ledger: class changes dated by
        their events' days, as a run dates them, so that held days and `since` are the simulation's
        (a live batch dates them by the service day)."""
        db = self.db
        ledger = db.frame(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events "
                          f"WHERE voided = 0 AND {db.any_of('citizen_id')}", (db.list_param(citizen_ids),),
                          EVENT_SCHEMA, cur)
        history = class_history(self.compiled, ledger, as_of=self.day, births=self._births(cur, citizen_ids))
        self._store_history(cur, history, citizen_ids)

    def _store_history(self, cur, history: pl.DataFrame, citizen_ids: pl.Series) -> None:
        """Replace these citizens' class histories with `history` (from engine.class_history)."""
        db = self.db
        db.execute(f"DELETE FROM class_history WHERE {db.any_of('citizen_id')}", (db.list_param(citizen_ids),), cur)
        db.insert_frame(cur, "class_history", history.select("citizen_id", pl.col("day").cast(pl.Int32), "class_idx"))

    def _load_citizens(self, cur, citizens: pl.DataFrame, origin: Path, age_noise: float | None) -> int:
        if "citizen_id" not in citizens.columns:
            raise Invalid(f"{origin}: missing column citizen_id", field="citizen_id")
        citizens = citizens.with_columns(pl.col("citizen_id").cast(pl.String))
        attributes = [c for c in citizens.columns if c != "citizen_id"]
        encoded = (pl.struct(attributes).struct.json_encode() if attributes else pl.lit("{}"))
        self.db.insert_frame(cur, "citizens", citizens.select("citizen_id", attributes=encoded),
                             conflict="ON CONFLICT (citizen_id) DO UPDATE SET attributes = excluded.attributes")
        births = None
        if "birth_day" in citizens.columns:
            births = citizens.select(BIRTHS_SCHEMA.keys()).cast(BIRTHS_SCHEMA)
            self.db.insert_frame(cur, "births", births,
                                 conflict="ON CONFLICT (citizen_id) DO UPDATE SET birth_day = excluded.birth_day")
            if self._state is not None:
                self._mutated = True
                self._state.add_births(births)
        # Every loaded citizen of age has a score from the start (the start score until an event
        # moves it), so that class counts and look-ups cover the citizens with no event too.
        of_age = citizens
        first = self.compiled.scored_from(citizens["citizen_id"], births)
        if first is not None:
            of_age = citizens.with_columns(day=pl.Series(first)).filter(pl.col("day") <= self.day)
            # Those who came of age since the start entered the start class that day (unless
            # scored already: a run loaded again).
            came = of_age.filter(pl.col("day") > 0)
            if came.height:
                db = self.db
                known = db.frame(f"SELECT citizen_id FROM scores WHERE {db.any_of('citizen_id')}",
                                 (db.list_param(came["citizen_id"]),), {"citizen_id": pl.String}, cur)
                db.insert_frame(cur, "class_history", came.join(known, on="citizen_id", how="anti").select(
                    "citizen_id", pl.col("day").cast(pl.Int32), class_idx=pl.lit(self.start_class, pl.Int32)))
        start = of_age.select("citizen_id", score=pl.lit(self.compiled.policy.start, pl.Int64),
                                **{"class": pl.lit(self.class_names[self.start_class])},
                                class_idx=pl.lit(self.start_class, pl.Int32), as_of=pl.lit(self.day, pl.Int32))
        if self.db.insert_frame(cur, "scores", start, conflict="ON CONFLICT (citizen_id) DO NOTHING"):
            if self._delta is not None:
                self._delta.valid = False  # which citizens were new is not known: count again
            self._bump(cur)
        profiles = camera_profiles(citizens, age_noise)
        if profiles is not None:
            self.db.insert_frame(cur, "camera_profiles", profiles, conflict=(
                "ON CONFLICT (citizen_id) DO UPDATE SET age_estimate = excluded.age_estimate, "
                "age_uncertainty = excluded.age_uncertainty, sightings = excluded.sightings, "
                "by_place = excluded.by_place"))
        return citizens.height


def camera_profiles(citizens: pl.DataFrame, age_noise: float | None) -> pl.DataFrame | None:
    """The camera profiles of a run's citizens.parquet, None if it has none.

    The simulator's data centre keeps, per citizen, `profile_age` (its age estimate, null if never
    seen), `sightings` and `moves_<placetype>` (sightings by place type, each capped at 31). The
    estimate is the running mean of one observation per sighting, each off by a triangular error
    on [-age_noise_years, +age_noise_years] (variance noise^2 / 6), so its standard error after n
    sightings is noise / sqrt(6 n); without the run's manifest the uncertainty is unknown (null).
    The true age (`age`) and the estimate's error (`profile_age_error`) are the simulation's own
    knowledge, not the data centre's: they stay out of the profile.
    """
    if "profile_age" not in citizens.columns or "sightings" not in citizens.columns:
        return None
    places = [c.removeprefix("moves_") for c in citizens.columns if c.startswith("moves_")]
    uncertainty = (pl.lit(None, pl.Float64) if age_noise is None else
                   (age_noise / (6.0 * pl.col("sightings").cast(pl.Float64)).sqrt()).round(2))
    by_place = (pl.struct([pl.col(f"moves_{p}").cast(pl.Int64).alias(p) for p in places]).struct.json_encode()
                if places else pl.lit("{}"))
    return citizens.select(
        "citizen_id",
        age_estimate=pl.col("profile_age").cast(pl.Float64),  # null for a citizen never seen
        age_uncertainty=pl.when(pl.col("profile_age").is_not_null()).then(uncertainty),
        sightings=pl.col("sightings").cast(pl.Int64),
        by_place=by_place,
    )


def _manifest(run_dir: Path) -> Manifest | None:
    """The run folder's manifest (None: a folder of tables alone); one this version cannot read is
    refused, naming what is wrong."""
    from socialcredit.simulation import Run, SimulationError

    if not (run_dir / "manifest.json").is_file():
        return None
    try:
        return Run.open(run_dir).manifest
    except SimulationError as exc:
        raise Invalid(str(exc), field="manifest") from None
