"""A shard: a run of consecutive blocks, simulated on threads and written as Parquet parts."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from socialcredit.engine import BETWEEN, YEAR_DAYS, CompiledConsequences, CompiledPolicy
from socialcredit.events import EVENT_SCHEMA
from socialcredit.simulation._hash import mix
from socialcredit.simulation._kinds import (
    EFFECTS,
    F_ADMITTED,
    F_BLACKLISTED,
    F_BOT,
    F_EMPLOYED,
    F_MALE,
    F_MEMBER,
    F_URBAN,
    INSTORE_SHIFT,
    KIND_NAMES,
    LEARNED_REFUSED,
    MAX_HELD,
    N_METRICS,
    NO_PARENT,
    PLACES,
    SOURCES,
    STATE_FIELDS,
)
from socialcredit.simulation._plan import Plan
from socialcredit.simulation.kernel import (
    AGES,
    GROUPS,
    LEVELS,
    OVERFLOW,
    P_CAP_CLASS,
    P_MIN_AGE,
    Scratch,
    State,
    dedicated_volunteers,
    flight_bans_reaching,
    run_block,
)

ID_WIDTH = 10  # citizen ids c0000000000 .. c9999999999: every run up to 10 billion people


@dataclass(frozen=True)
class EventsMode:
    """Which events a run writes: all, none, or a deterministic sample."""

    mode: int
    fraction: float = 0.0


@dataclass
class ShardResult:
    """What a shard hands back: its daily metrics and how long it took."""

    index: int
    metrics: np.ndarray  # int64 [day, region, metric]
    citizens: int
    events: int
    seconds: float


def citizen_ids(index: pl.Expr) -> pl.Expr:
    """Citizen ids from global indices, in an order that sorts like the indices."""
    return pl.concat_str([pl.lit("c"), index.cast(pl.String).str.zfill(ID_WIDTH)])


def new_state(n: int) -> State:
    """The struct of arrays for `n` citizens."""
    return State(*(np.zeros(n, dtype) for _, dtype in STATE_FIELDS))


def _first_room(size: int, days: int, events: EventsMode) -> dict[str, int]:
    """Initial scratch sizes: enough for typical runs; a block that needs more is retried."""
    expected = size * days // 16 + 4096  # about 0.06 counted events per citizen-day
    recorded = {0: 1, 1: expected, 2: int(expected * events.fraction * 1.5) + 4096}[events.mode]
    return {"expiry": expected, "queue": size + 4096, "events": recorded}


def new_scratch(plan: Plan, size: int, room: dict[str, int]) -> Scratch:
    """Fresh working memory for one block (the kernel allocates nothing itself)."""
    n_regions = len(plan.scenario.regions)
    n_policies = plan.arrays["pol"].pint.shape[0]
    return Scratch(
        hist_s=np.zeros((n_regions, 8), np.int64),
        hist_c=np.zeros((n_regions, 8), np.int64),
        fifo=np.empty((2, 2 * room["queue"]), np.int64),
        fifo_len=np.zeros(2, np.int64),
        matured=np.zeros((n_regions, 2, MAX_HELD), np.int64),
        exp_head=np.full(plan.days + 1, -1, np.int64),
        exp_len=np.zeros(1, np.int64),
        exp_buf=np.empty((3, room["expiry"]), np.int64),
        peer_pen=np.zeros(n_regions, np.int64),
        ptr=np.zeros((n_policies, 2, MAX_HELD), np.int64),
        cap_s=np.zeros(size, np.uint8),
        cap_c=np.zeros(size, np.uint8),
        touched=np.empty(size, np.int64),
        bots=np.empty(size, np.int64),
        volunteers=np.empty(size, np.int64),
        ev=np.empty((7, room["events"]), np.int64),
        ev_conf=np.empty(room["events"], np.float64),
        count=np.zeros(8, np.int64),
        order=np.empty(size, np.int64),
        seg=np.empty(n_regions * LEVELS * AGES + 1, np.int64),
        band0=np.zeros(size, np.uint8),
        changed=np.zeros(size + 1, np.int64),
        listed=np.zeros(n_regions, np.int64),
        gorder=np.empty(size, np.int64),
        gseg=np.empty(n_regions * GROUPS + 1, np.int64),
        gpos=np.empty(size, np.int64),
    )


def simulate_blocks(plan: Plan, first: int, last: int, events: EventsMode, threads: int,
                    on_block: Callable[[int], None] | None = None):
    """Simulate blocks first..last-1; return state, summed metrics and recorded events."""
    bs = plan.block_size
    start = first * bs
    n = min(last * bs, plan.population) - start
    st = new_state(n)
    a = plan.arrays
    fp = a["fp"]._replace(sample=events.fraction)
    days = plan.days
    n_regions = len(plan.scenario.regions)
    total = np.zeros((days, n_regions, N_METRICS), np.int64)

    def one(block: int):
        layout = plan.block_layout(block)
        size = int(layout[-1])
        off = block * bs - start
        views = State(*(arr[off: off + size] for arr in st))
        metrics = np.zeros((days, n_regions, N_METRICS), np.int32)
        room = _first_room(size, days, events)
        while True:
            scratch = new_scratch(plan, size, room)
            n_ev = run_block(plan.seed, block, days, fp, layout, a["world"], a["kinds"], a["pol"],
                             a["cons"], events.mode, views, metrics, scratch)
            if n_ev != OVERFLOW:
                break
            # A buffer ran out: start the block again, deterministically, with twice the room.
            room = {name: 2 * value for name, value in room.items()}
            for arr in views:
                arr[:] = 0
            metrics[:] = 0
        ev, conf = scratch.ev, scratch.ev_conf
        return block, size, metrics, ev[:, :n_ev].copy(), conf[:n_ev].copy()

    recorded = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for block, size, metrics, ev, conf in pool.map(one, range(first, last)):
            total += metrics
            if len(conf):
                recorded.append((block, ev, conf))
            if on_block is not None:
                on_block(size)
    return st, total, recorded


def citizens_frame(plan: Plan, first_citizen: int, st: State) -> pl.DataFrame:
    """Final state per citizen: demographics, scores and classes, wrongful points, consequences."""
    s = st._asdict()
    n = len(s["age"])
    index = np.arange(first_citizen, first_citizen + n, dtype=np.int64)
    flags = s["flags"]
    region = s["region"].astype(np.int64)
    region_policy = plan.arrays["world"].region_policy[region]
    score = np.zeros(n, np.int64)
    # Classes as codes into every policy's class names, named by polars (object arrays are slow).
    names = sorted({c for p in plan.policies for c in p.class_names})
    klass = np.zeros(n, np.uint8)
    min_age = plan.arrays["pol"].pint[:, P_MIN_AGE]
    age = s["age"].astype(np.int64)
    started = plan.arrays["world"].region_from[region] <= plan.days - 1  # the region's scheme, by the last day
    scored = (region_policy >= 0) & started & (age >= min_age[region_policy])
    # Consequences in force on the last day (benefits need their held days, like in the kernel).
    effects = {name: np.zeros(n, bool) for name in ("insurance", "loan_discount", "loan_refusal",
                                                    "flight_ban", "gate_stop")}
    held_for = plan.days - 1 - s["since"].astype(np.int64)
    in_band = np.zeros(n, bool)  # in the benefit or sanction classes of their policy
    for p in np.unique(region_policy[scored]):
        mask = (region_policy == p) & scored
        cp = CompiledPolicy.of(plan.policies[p])
        sc = cp.clamp(s["state_total"][mask].astype(np.int64))
        cap = np.where(s["cap_count"][mask] > 0, plan.arrays["pol"].pint[p, P_CAP_CLASS], -1)
        idx = cp.classify(sc, cap)
        score[mask] = sc
        klass[mask] = np.array([names.index(c) for c in cp.policy.class_names], np.uint8)[idx]
        in_band[mask] = CompiledConsequences.of(plan.policies[p]).bands[idx] != BETWEEN
        for name, flag in effects.items():
            h = plan.arrays["pol"].eff_held[p, EFFECTS.index(name), idx]
            flag[mask] = (h >= 0) & (held_for[mask] >= h)
    member = (flags & F_MEMBER) != 0
    c_score = np.zeros(n, np.int64)
    c_class = np.zeros(n, np.uint8)
    if plan.commercial >= 0:
        cp = CompiledPolicy.of(plan.policies[plan.commercial])
        cs = cp.clamp(s["commercial_total"].astype(np.int64))
        c_score = cs
        c_class = np.array([names.index(c) for c in cp.policy.class_names],
                           np.uint8)[cp.classify(cs)]
    c_member = member & (plan.commercial >= 0) & (age >= min_age[plan.commercial])
    block = index // plan.block_size
    flight_ban = np.zeros(n, bool)
    flight_bans_reaching(plan.seed, block, index % plan.block_size,
                         effects["flight_ban"], (flags & F_BLACKLISTED) != 0, plan.arrays["fp"],
                         flight_ban)
    volunteer = np.zeros(n, bool)
    dedicated_volunteers(plan.seed, block, index % plan.block_size, plan.arrays["fp"], volunteer)
    block_start = block * plan.block_size
    parent = s["parent"].astype(np.int64)
    sightings = s["sightings"]
    seen = sightings > 0
    moves = s["moves"].astype(np.int64)
    regions = [r.name for r in plan.scenario.regions]
    groups = [g.name for g in plan.scenario.population.groups]
    frame = pl.DataFrame({
        "citizen": index,
        "region": pl.Series(region, dtype=pl.UInt32).replace_strict(
            dict(enumerate(regions)), return_dtype=pl.Enum(regions)),
        "age": s["age"],
        # Day of birth (day 0: the start date; the model's years have 365 days, ages on the last day).
        "birth_day": -YEAR_DAYS * (age - (plan.days - 1) // YEAR_DAYS),
        "male": (flags & F_MALE) != 0,
        "urban": (flags & F_URBAN) != 0,
        "income_decile": (s["group_decile"] & 15).astype(np.uint8),
        "group": pl.Series(s["group_decile"] >> 4, dtype=pl.UInt32).replace_strict(
            dict(enumerate(groups)), return_dtype=pl.Enum(groups)),
        "parent": pl.Series(np.where(parent == NO_PARENT, -1, block_start + parent)),
        "platform_member": member,
        "employed": (flags & F_EMPLOYED) != 0,
        "blacklisted": (flags & F_BLACKLISTED) != 0,
        "bot": (flags & F_BOT) != 0,
        "volunteer": volunteer,
        "admitted": (flags & F_ADMITTED) != 0,
        "score": pl.Series(score).set(pl.Series(~scored), None),
        "class": _named(klass, names).set(pl.Series(~scored), None),
        "commercial_score": pl.Series(c_score).set(pl.Series(~c_member), None),
        "commercial_class": _named(c_class, names).set(pl.Series(~c_member), None),
        "insurance": _named(effects["insurance"].astype(np.uint8), ["standard", "better"]),
        "loan_price": _named(np.where(effects["loan_refusal"], 2, effects["loan_discount"]),
                             ["standard", "discounted", "refused"]),
        "flight_ban": flight_ban,
        "gate_flagged": effects["gate_stop"],
        "wrongful_points": s["wrongful_points"],
        # The day the citizen entered the benefit (sanction) classes they are in: held days count
        # from it (null between the bands).
        "band_since": pl.Series(s["since"].astype(np.int64)).set(pl.Series(~in_band), None),
        "sanction_days": s["sanction_days"],
        "benefit_days": s["benefit_days"],
        "scored_kinds": s["learned"] & np.uint32(LEARNED_REFUSED - 1),
        "refused_travel": (s["learned"] & np.uint32(LEARNED_REFUSED)) != 0,
        "instore_clothes_stops": (s["learned"] >> INSTORE_SHIFT).astype(np.uint8),
        "sightings": sightings,
        "profile_age": pl.Series(s["profile_age"]).set(pl.Series(~seen), None),
        "profile_age_error": pl.Series(s["profile_age"].astype(np.int16) - s["age"].astype(np.int16))
        .set(pl.Series(~seen), None),
        **{f"moves_{place}": ((moves >> (5 * i)) & 31).astype(np.uint8)
           for i, place in enumerate(PLACES)},
    })
    return frame.with_columns(
        citizen_id=citizen_ids(pl.col("citizen")),
        parent=pl.when(pl.col("parent") >= 0).then(citizen_ids(pl.col("parent"))),
    ).select("citizen_id", pl.exclude("citizen_id", "citizen"))


def _named(codes: np.ndarray, names: list[str]) -> pl.Series:
    """A string column from codes into `names` (a gather: no Python string per row)."""
    return pl.Series(names, dtype=pl.String).gather(pl.Series(codes))


def events_frame(plan: Plan, recorded: list) -> pl.DataFrame:
    """Recorded events with provenance and true actor; the columns the engine reads come first."""
    if not recorded:
        return pl.DataFrame(schema=EVENT_COLUMNS)
    blocks = np.concatenate([np.full(ev.shape[1], b, np.int64) for b, ev, _ in recorded])
    ev = np.concatenate([ev for _, ev, _ in recorded], axis=1)
    conf = np.concatenate([c for _, _, c in recorded])
    offset = blocks * plan.block_size
    actor = offset + ev[3]
    citizen = offset + ev[4]
    region = plan.region_start.searchsorted(citizen, side="right") - 1
    kind, src, place = ev[2], ev[5] // 8, ev[5] % 8 - 1
    p_state = plan.arrays["world"].region_policy[region]
    points = plan.arrays["pol"].points
    state_points = np.where((ev[6] & 1) != 0, points[np.maximum(p_state, 0), kind], 0)
    comm_points = (np.where((ev[6] & 2) != 0, points[plan.commercial, kind], 0)
                   if plan.commercial >= 0 else np.zeros(len(kind), np.int64))
    regions = [r.name for r in plan.scenario.regions]
    frame = pl.DataFrame({
        "day": ev[0].astype(np.int32),
        "block": blocks,
        "seq": ev[1],
        "kind": pl.Series(kind, dtype=pl.UInt32).replace_strict(
            dict(enumerate(KIND_NAMES)), return_dtype=pl.String),
        "source": pl.Series(src, dtype=pl.UInt32).replace_strict(
            dict(enumerate(SOURCES)), return_dtype=pl.String),
        "place": place,
        "confidence": pl.Series(conf).set(pl.Series(conf < 0), None),
        "citizen": citizen,
        "actor": actor,
        "region": pl.Series(region, dtype=pl.UInt32).replace_strict(
            dict(enumerate(regions)), return_dtype=pl.Enum(regions)),
        "state_points": state_points,
        "commercial_points": comm_points,
    })
    return frame.select(
        event_id=pl.concat_str([pl.lit("e"), pl.col("day").cast(pl.String).str.zfill(5), pl.lit("."),
                                pl.col("block").cast(pl.String).str.zfill(6), pl.lit("."),
                                pl.col("seq").cast(pl.String).str.zfill(7)]),
        citizen_id=citizen_ids(pl.col("citizen")),
        kind=pl.col("kind"),
        day=pl.col("day"),
        source=pl.col("source"),
        source_ref=pl.when(pl.col("place") >= 0).then(
            pl.col("place").cast(pl.UInt32).replace_strict(dict(enumerate(PLACES)),
                                                           return_dtype=pl.String)),
        confidence=pl.col("confidence"),
        actor_id=citizen_ids(pl.col("actor")),
        wrongful=pl.col("citizen") != pl.col("actor"),
        region=pl.col("region"),
        state_points=pl.col("state_points"),
        commercial_points=pl.col("commercial_points"),
    ).cast(EVENT_COLUMNS)


# The event record's columns (socialcredit.events), then what only a simulation knows: who really
# did it, whether the attribution was wrong, the region and the points each score gave.
EVENT_COLUMNS = {**EVENT_SCHEMA, "actor_id": pl.String, "wrongful": pl.Boolean,
                 "region": pl.String, "state_points": pl.Int64, "commercial_points": pl.Int64}


def run_shard(plan: Plan, index: int, first: int, last: int, events: EventsMode, threads: int,
              parts: str, on_block: Callable[[int], None] | None = None,
              device: str = "cpu", citizens_kept: float = 1.0) -> ShardResult:
    """Simulate one shard and write its citizens and events as Parquet parts under `parts`, then
    its record (metrics and counts): a shard with a record is finished (see `finished_shard`)."""
    t0 = time.perf_counter()
    blocks = simulate_blocks
    if device == "cuda":  # the same kernel, one CUDA thread per block
        from socialcredit.simulation._gpu import simulate_blocks as blocks
    st, metrics, recorded = blocks(plan, first, last, events, threads, on_block)
    citizens = citizens_frame(plan, first * plan.block_size, st)
    n = citizens.height
    del st
    if citizens_kept < 1.0:
        first_citizen = first * plan.block_size
        citizens = citizens.filter(citizens_sampled(
            plan.seed, np.arange(first_citizen, first_citizen + n, dtype=np.uint64), citizens_kept))
    folder = Path(parts)
    write_atomically(folder / shard_part("citizens", index), citizens.write_parquet)
    del citizens
    ev = events_frame(plan, recorded)
    write_atomically(folder / shard_part("events", index), ev.write_parquet)
    result = ShardResult(index, metrics, n, ev.height, time.perf_counter() - t0)
    write_atomically(folder / _record_name(index), lambda file: np.savez(
        file, metrics=metrics, citizens=n, events=ev.height, seconds=result.seconds))
    return result


def citizens_sampled(seed: int, index: np.ndarray, fraction: float) -> np.ndarray:
    """Whether each citizen (global index) is in the run's sample of `fraction` of citizens: a hash
    of (seed, index), so the sample is the same whatever the shards."""
    x = mix(index ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


def shard_part(table: str, index: int) -> str:
    """The file name of a shard's part of `table` (citizens or events)."""
    return f"{table}-{index:06d}.parquet"


def _record_name(index: int) -> str:
    return f"shard-{index:06d}.npz"


def finished_shard(parts: Path, index: int) -> ShardResult | None:
    """What a shard finished earlier (by a process that may since have died) handed back; None
    where it did not finish: its record or one of its parts is missing."""
    record = parts / _record_name(index)
    if not record.is_file() or not all((parts / shard_part(t, index)).is_file()
                                       for t in ("citizens", "events")):
        return None
    with np.load(record) as saved:
        return ShardResult(index, saved["metrics"], int(saved["citizens"]), int(saved["events"]),
                           float(saved["seconds"]))


def write_atomically(target: Path, write: Callable) -> None:
    """Write through `write(file)` to a temporary name, then rename: a reader (or a resumed run)
    never sees half a file."""
    temporary = target.with_name(target.name + ".tmp")
    with open(temporary, "wb") as file:
        write(file)
    os.replace(temporary, target)


def default_threads() -> int:
    """Threads this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
