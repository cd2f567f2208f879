"""A shard: a run of consecutive blocks, simulated on threads and written as Parquet parts.

Events are written as they are made: each block's events become a frame on the thread that
simulated it (ids formatted by a compiled loop and handed to polars as Arrow string views, names
as dictionary codes) and go, in block order, to one Parquet writer that encodes them while the
next blocks run. Memory holds a few blocks' events, not the shard's.
"""

from __future__ import annotations

import ctypes
import gc
import io
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
import polars as pl
from polars.io.plugins import register_io_source

from socialcredit.engine import BETWEEN, YEAR_DAYS, CompiledConsequences, CompiledPolicy
from socialcredit.events import EVENT_SCHEMA
from socialcredit.simulation._forkserver import PRELOAD_KERNEL
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
    RECORD_ALL,
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
    st, blocks = blocks_in_order(plan, first, last, events, threads,
                                 lambda block, first_citizen, views, ev, conf: (ev.copy(), conf.copy()))
    total = np.zeros((plan.days, len(plan.scenario.regions), N_METRICS), np.int64)
    recorded = []
    for block, size, metrics, (ev, conf) in blocks:
        total += metrics
        if len(conf):
            recorded.append((block, ev, conf))
        if on_block is not None:
            on_block(size)
    return st, total, recorded


def blocks_in_order(plan: Plan, first: int, last: int, events: EventsMode, threads: int,
                    finish: Callable[[int, int, State, np.ndarray, np.ndarray], Any]
                    ) -> tuple[State, Iterator[tuple[int, int, np.ndarray, Any]]]:
    """The shard's state, and an iterator that simulates blocks first..last-1 on `threads` threads
    and yields (block, size, metrics, finish(block, first citizen, state, events, confidences)) in
    block order; `finish` runs on the block's thread, over the block's final state and its
    recorded events (views of scratch: copy what you keep). At most a few blocks run ahead of the
    one the caller is at, so memory holds a few blocks' results."""
    bs = plan.block_size
    start = first * bs
    n = min(last * bs, plan.population) - start
    st = new_state(n)
    a = plan.arrays
    fp = a["fp"]._replace(sample=events.fraction)
    days = plan.days
    n_regions = len(plan.scenario.regions)

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
        done = finish(block, start + off, views, scratch.ev[:, :n_ev], scratch.ev_conf[:n_ev])
        return block, size, metrics, done

    def ordered() -> Iterator[tuple[int, int, np.ndarray, Any]]:
        ahead = max(1, threads) + 1
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            todo = iter(range(first, last))
            running = deque(pool.submit(one, block) for _, block in zip(range(ahead), todo, strict=False))
            try:
                while running:
                    result = running.popleft().result()
                    for block in todo:
                        running.append(pool.submit(one, block))
                        break
                    yield result
            finally:
                for future in running:
                    future.cancel()

    return st, ordered()


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
    return pl.DataFrame({
        "citizen_id": citizen_texts(index),
        "region": _named(region, regions),
        "age": s["age"],
        # Day of birth (day 0: the start date; the model's years have 365 days, ages on the last day).
        "birth_day": -YEAR_DAYS * (age - (plan.days - 1) // YEAR_DAYS),
        "male": (flags & F_MALE) != 0,
        "urban": (flags & F_URBAN) != 0,
        "income_decile": (s["group_decile"] & 15).astype(np.uint8),
        "group": _named(s["group_decile"] >> 4, groups),
        "parent": citizen_texts(np.where(parent == NO_PARENT, 0, block_start + parent), parent != NO_PARENT),
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


def citizen_texts(index: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    """Citizen ids (`citizen_ids`) of global indices, null where not `valid`, formatted by a compiled
    loop into Arrow string views."""
    if len(index) and int(index.max()) >= 10**ID_WIDTH:  # wider than the fixed width: as zfill writes them
        ids = pl.select(citizen_ids(pl.lit(pl.Series(index, dtype=pl.Int64)))).to_series()
        return ids if valid is None else ids.set(pl.Series(~valid), None)
    views = np.zeros((len(index), 16), np.uint8)
    _format_citizens(index.astype(np.int64), views)
    return pl.Series(_StringViews(views, valid=valid))


def _named(codes: np.ndarray, names: list[str]) -> pl.Series:
    """An Enum column of codes into `names` (a gather: no Python string per row)."""
    return _categories(tuple(names)).gather(pl.Series(codes))


@cache
def _categories(names: tuple[str, ...]) -> pl.Series:
    """`names` as an Enum column of themselves, made once: what `_named` gathers from."""
    return pl.Series(names, dtype=pl.Enum(names))


# The citizens' columns written dictionary-coded (Enum, see `_named`) but read as text: cheaper to
# encode.
CITIZEN_TEXTS = ("class", "commercial_class", "insurance", "loan_price")


def citizens_metadata(schema: dict[str, pl.DataType]) -> dict[str, str]:
    """Parquet metadata for citizens frames of `schema` (see `events_metadata`): its CITIZEN_TEXTS
    columns read as text."""
    return {"ARROW:schema": _arrow_schema({**schema, **dict.fromkeys(CITIZEN_TEXTS, pl.String)})}


def events_batch(plan: Plan, block: int, ev: np.ndarray, conf: np.ndarray) -> pl.DataFrame:
    """One block's recorded events as rows of the events table, its names dictionary-coded (Enum;
    `events_schema`): what the Parquet writer takes. Ids are formatted by a compiled loop into
    Arrow string views, with no Python string per row."""
    offset = block * plan.block_size
    actor = offset + ev[3]
    citizen = offset + ev[4]
    region = plan.region_start.searchsorted(citizen, side="right") - 1
    kind, src, place = ev[2], ev[5] // 8, ev[5] % 8 - 1
    p_state = plan.arrays["world"].region_policy[region]
    points = plan.arrays["pol"].points
    state_points = np.where((ev[6] & 1) != 0, points[np.maximum(p_state, 0), kind], 0)
    comm_points = (np.where((ev[6] & 2) != 0, points[plan.commercial, kind], 0)
                   if plan.commercial >= 0 else np.zeros(len(kind), np.int64))
    schema = events_schema(plan)
    names = {name: pl.Series(dtype.categories, dtype=dtype)
             for name, dtype in schema.items() if isinstance(dtype, pl.Enum)}
    event_id, citizen_id, actor_id = _ids(block, offset, ev)
    return pl.DataFrame({
        "event_id": event_id,
        "citizen_id": citizen_id,
        "kind": names["kind"].gather(kind),
        "day": ev[0].astype(np.int32),
        "source": names["source"].gather(src),
        "source_ref": names["source_ref"].gather(pl.Series(place).set(pl.Series(place < 0), None)),
        "confidence": pl.Series(conf).set(pl.Series(conf < 0), None),
        "actor_id": actor_id,
        "wrongful": citizen != actor,
        "region": names["region"].gather(region),
        "state_points": state_points.astype(np.int64),
        "commercial_points": comm_points.astype(np.int64),
    }, schema=schema)


# The event record's columns (socialcredit.events), then what only a simulation knows: who really
# did it, whether the attribution was wrong, the region and the points each score gave.
EVENT_COLUMNS = {**EVENT_SCHEMA, "actor_id": pl.String, "wrongful": pl.Boolean,
                 "region": pl.String, "state_points": pl.Int64, "commercial_points": pl.Int64}
# Columns of few values, written dictionary-coded: Enum while written, text when read (see
# events_metadata).
NAMED = {"kind": KIND_NAMES, "source": SOURCES, "source_ref": PLACES}


def events_schema(plan: Plan) -> dict[str, pl.DataType]:
    """The events table as the writer takes it: EVENT_COLUMNS with Enum for the named columns."""
    named = {**NAMED, "region": [r.name for r in plan.scenario.regions]}
    return {name: pl.Enum(named[name]) if name in named else dtype for name, dtype in EVENT_COLUMNS.items()}


def _arrow_schema(schema: dict[str, pl.DataType]) -> str:
    """The Arrow schema a Parquet file of `schema` carries (its 'ARROW:schema' metadata)."""
    buffer = io.BytesIO()
    pl.DataFrame(schema=schema).write_parquet(buffer)
    buffer.seek(0)
    return pl.read_parquet_metadata(buffer)["ARROW:schema"]


@cache
def _text_arrow_schema() -> str:
    """The events table's, with EVENT_COLUMNS' texts (made once)."""
    return _arrow_schema(EVENT_COLUMNS)


def events_metadata() -> dict[str, str]:
    """Parquet metadata that makes readers take the Enum columns polars writes (dictionary pages of
    the names, cheap to write) as the text columns they are in EVENT_COLUMNS: the file reads back
    as if its names were written as text, a value per row."""
    return {"ARROW:schema": _text_arrow_schema()}


ROW_GROUP_ROWS = 1 << 18  # rows of a Parquet row group: fixed, so that the bytes never depend on the batches
ZSTD_LEVEL = 1  # the fastest: ~10% less encoding than polars' default (3) for ~2% more bytes
EVENT_ID_WIDTH = 21  # e<day:5>.<block:6>.<seq:7>
_ID_LIMITS = ((0, 10**5), (1, 10**7))  # (row of ev, bound) of the digits the fast path writes


def _ids(block: int, offset: int, ev: np.ndarray) -> tuple[pl.Series, pl.Series, pl.Series]:
    """event_id, citizen_id and actor_id of a block's events."""
    n = ev.shape[1]
    if n and (block >= 10**6 or max(int(ev[3].max()), int(ev[4].max())) + offset >= 10**ID_WIDTH
              or any(int(ev[row].max()) >= bound for row, bound in _ID_LIMITS)
              or n * EVENT_ID_WIDTH >= 2**31):  # (a view's offset is an int32)
        return _ids_wide(block, offset, ev)  # wider than the fixed widths: as zfill writes them
    data = np.empty(n * EVENT_ID_WIDTH, np.uint8)
    views = np.zeros((3, n, 16), np.uint8)
    _format_ids(block, offset, ev, data, views[0], views[1], views[2])
    return (pl.Series(_StringViews(views[0], data)), pl.Series(_StringViews(views[1])),
            pl.Series(_StringViews(views[2])))


def _ids_wide(block: int, offset: int, ev: np.ndarray) -> tuple[pl.Series, pl.Series, pl.Series]:
    frame = pl.DataFrame({"day": ev[0], "seq": ev[1], "citizen": offset + ev[4], "actor": offset + ev[3]})
    ids = frame.select(
        event_id=pl.concat_str([pl.lit("e"), pl.col("day").cast(pl.String).str.zfill(5), pl.lit("."),
                                pl.lit(str(block).zfill(6)), pl.lit("."),
                                pl.col("seq").cast(pl.String).str.zfill(7)]),
        citizen_id=citizen_ids(pl.col("citizen")),
        actor_id=citizen_ids(pl.col("actor")))
    return ids["event_id"], ids["citizen_id"], ids["actor_id"]


_PAIRS = np.array([ord(c) for i in range(100) for c in f"{i:02d}"], np.uint8)  # "00" .. "99"


@nb.njit(nogil=True, cache=True, inline="always")
def _digits(out: np.ndarray, at: int, value: int, width: int) -> None:
    """`value` (>= 0, at most `width` digits) as `width` decimal digits, zero-padded."""
    v = np.uint64(value)
    k = width
    while k >= 2:
        pair = v % np.uint64(100)
        v //= np.uint64(100)
        k -= 2
        out[at + k] = _PAIRS[2 * pair]
        out[at + k + 1] = _PAIRS[2 * pair + 1]
    if k == 1:
        out[at] = np.uint8(48 + v % np.uint64(10))


@nb.njit(nogil=True, cache=True)
def _format_ids(block: int, offset: int, ev: np.ndarray, data: np.ndarray, event_views: np.ndarray,
                citizen_views: np.ndarray, actor_views: np.ndarray) -> None:
    """Arrow string views (16 bytes: int32 length, then the text when it fits in 12 bytes, else its
    first 4 bytes, buffer 0 and the int32 offset of the text in `data`) of the ids."""
    for i in range(ev.shape[1]):
        at = i * EVENT_ID_WIDTH
        data[at] = 101  # e
        _digits(data, at + 1, ev[0, i], 5)
        data[at + 6] = 46  # .
        _digits(data, at + 7, block, 6)
        data[at + 13] = 46
        _digits(data, at + 14, ev[1, i], 7)
        view = event_views[i]
        view[0] = EVENT_ID_WIDTH
        for k in range(4):
            view[4 + k] = data[at + k]
            view[12 + k] = (at >> (8 * k)) & 255
        _citizen_view(citizen_views[i], offset + ev[4, i])
        _citizen_view(actor_views[i], offset + ev[3, i])


@nb.njit(nogil=True, cache=True)
def _format_citizens(index: np.ndarray, views: np.ndarray) -> None:
    for i in range(len(index)):
        _citizen_view(views[i], index[i])


@nb.njit(nogil=True, cache=True, inline="always")
def _citizen_view(view: np.ndarray, index: int) -> None:
    view[0] = ID_WIDTH + 1
    view[4] = 99  # c
    _digits(view, 5, index, ID_WIDTH)


class _ArrowSchema(ctypes.Structure):
    pass


class _ArrowArray(ctypes.Structure):
    pass


_SchemaRelease = ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowSchema))
_ArrayRelease = ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowArray))
# The Arrow C data interface's structs (arrow.apache.org/docs/format/CDataInterface.html).
_ArrowSchema._fields_ = [("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
                         ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64), ("children", ctypes.c_void_p),
                         ("dictionary", ctypes.c_void_p), ("release", _SchemaRelease),
                         ("private_data", ctypes.c_void_p)]
_ArrowArray._fields_ = [("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
                        ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64), ("buffers", ctypes.c_void_p),
                        ("children", ctypes.c_void_p), ("dictionary", ctypes.c_void_p), ("release", _ArrayRelease),
                        ("private_data", ctypes.c_void_p)]
_EXPORTED: dict[int, tuple] = {}  # private_data of an exported array -> what its buffers live in


@_SchemaRelease
def _release_schema(schema) -> None:
    schema.contents.release = _SchemaRelease()  # static strings: nothing else to free


@_ArrayRelease
def _release_array(array) -> None:  # called by polars (any thread) once it drops the buffers
    _EXPORTED.pop(array.contents.private_data, None)
    array.contents.release = _ArrayRelease()


_capsule = ctypes.pythonapi.PyCapsule_New
_capsule.restype = ctypes.py_object
_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class _StringViews:
    """A text column over numpy buffers, for pl.Series without a copy (the Arrow PyCapsule interface):
    `views` holds a row's 16-byte Arrow string view, `data` the texts longer than 12 bytes, `valid`
    (optional) which rows are not null."""

    def __init__(self, views: np.ndarray, data: np.ndarray | None = None, valid: np.ndarray | None = None) -> None:
        self.views, self.data = views, data
        self.bits = None if valid is None else np.packbits(valid, bitorder="little")  # Arrow's validity bitmap
        self.nulls = 0 if valid is None else len(valid) - int(np.count_nonzero(valid))

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]:
        schema = _ArrowSchema(format=b"vu", name=b"", flags=2, release=_release_schema)  # 2: nullable
        data = [] if self.data is None else [self.data]
        sizes = np.array([len(d) for d in data], np.int64)
        pointers = [None if self.bits is None else self.bits.ctypes.data, self.views.ctypes.data,
                    *(d.ctypes.data for d in data), sizes.ctypes.data]
        buffers = (ctypes.c_void_p * len(pointers))(*pointers)
        array = _ArrowArray(length=len(self.views), null_count=self.nulls, n_buffers=len(pointers),
                            buffers=ctypes.cast(buffers, ctypes.c_void_p), release=_release_array)
        array.private_data = key = ctypes.addressof(array)
        _EXPORTED[key] = (array, schema, buffers, sizes, self.views, self.bits, *data)
        return (_capsule(ctypes.addressof(schema), b"arrow_schema", None),
                _capsule(ctypes.addressof(array), b"arrow_array", None))


class ParquetStream:
    """One Parquet file written from frames handed over one at a time, in order: polars' streaming
    sink encodes them on its own threads while the caller goes on (a short queue between them
    bounds memory). Written to a temporary name, renamed by `close`. With `ipc`, an Arrow IPC
    file instead (uncompressed: cheap to write and to read back, for a part merged later)."""

    def __init__(self, target: Path, schema: dict[str, pl.DataType], metadata: dict[str, str],
                 *, ipc: bool = False) -> None:
        self.target, self.rows, self.ipc = target, 0, ipc
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._temporary = target.with_name(target.name + ".tmp")
        frames = register_io_source(self._frames, schema=schema)
        self._thread = threading.Thread(target=self._sink, args=(frames, metadata), daemon=True)
        self._thread.start()

    def _frames(self, with_columns, predicate, n_rows, batch_size) -> Iterator[pl.DataFrame]:
        while (frame := self._queue.get()) is not None:
            if isinstance(frame, BaseException):
                raise frame
            yield frame if with_columns is None else frame.select(with_columns)

    def _sink(self, frames: pl.LazyFrame, metadata: dict[str, str]) -> None:
        try:
            if self.ipc:
                frames.sink_ipc(self._temporary, compression="uncompressed")
            else:
                frames.sink_parquet(self._temporary, metadata=metadata, row_group_size=ROW_GROUP_ROWS,
                                    compression_level=ZSTD_LEVEL)
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
            self._error = exc

    def write(self, frame: pl.DataFrame) -> None:
        """Append rows (waits while the writer is behind)."""
        self.rows += frame.height
        self._put(frame)

    def _put(self, item: Any) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise self._error or RuntimeError(f"{self.target}: the Parquet writer stopped") from None

    def close(self) -> None:
        """Finish the file and give it its name."""
        self._put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        os.replace(self._temporary, self.target)

    def abort(self) -> None:
        """Stop writing and leave no file."""
        if self._thread.is_alive():
            try:
                self._queue.put_nowait(RuntimeError("aborted"))
            except queue.Full:
                pass
            while self._thread.is_alive():
                try:
                    self._queue.get_nowait()
                    self._queue.put_nowait(RuntimeError("aborted"))
                except (queue.Empty, queue.Full):
                    pass
                self._thread.join(0.05)
        self._temporary.unlink(missing_ok=True)


def run_shard(plan: Plan, index: int, first: int, last: int, events: EventsMode, threads: int,
              parts: str, on_block: Callable[[int], None] | None = None,
              device: str = "cpu", citizens_kept: float = 1.0, part_format: str = "parquet") -> ShardResult:
    """Simulate one shard and write its citizens and events as parts under `parts` (Parquet, the
    run's own file when it is the only shard; else Arrow IPC, merged once: see `PART_FORMATS`),
    then its record (metrics and counts): a shard with a record is finished (see `finished_shard`)."""
    ipc = part_format == "arrow"
    t0 = time.perf_counter()
    folder = Path(parts)
    first_citizen = first * plan.block_size

    def kept(frame: pl.DataFrame, start: int) -> pl.DataFrame:
        """The citizens of the run's sample (all without one) of a frame starting at citizen `start`."""
        if citizens_kept >= 1.0:
            return frame
        return frame.filter(citizens_sampled(
            plan.seed, np.arange(start, start + frame.height, dtype=np.uint64), citizens_kept))

    n_regions = len(plan.scenario.regions)
    metrics = np.zeros((plan.days, n_regions, N_METRICS), np.int64)
    # Both tables are written while the blocks run, in block order. Events even without any (an
    # empty table), so that every run has the same files; citizens once their columns are known.
    streams = {"events": ParquetStream(folder / shard_part("events", index, part_format),
                                       events_schema(plan), events_metadata(), ipc=ipc)}

    def write_citizens(frame: pl.DataFrame) -> None:
        if "citizens" not in streams:
            streams["citizens"] = ParquetStream(folder / shard_part("citizens", index, part_format),
                                                frame.schema, citizens_metadata(frame.schema), ipc=ipc)
        streams["citizens"].write(frame)

    try:
        if device == "cuda":  # the same kernel, one CUDA thread per block
            from socialcredit.simulation._gpu import simulate_blocks as on_gpu

            st, metrics, recorded = on_gpu(plan, first, last, events, threads, on_block)
            write_citizens(kept(citizens_frame(plan, first_citizen, st), first_citizen))
            n = len(st.age)
            for block, ev, conf in recorded:
                streams["events"].write(events_batch(plan, block, ev, conf))
        else:
            def finish(block: int, first_citizen: int, views: State, ev: np.ndarray, conf: np.ndarray):
                batch = events_batch(plan, block, ev, conf) if len(conf) else None
                return kept(citizens_frame(plan, first_citizen, views), first_citizen), batch

            _, blocks = blocks_in_order(plan, first, last, events, threads, finish)
            n = 0
            for _, size, block_metrics, (block_citizens, batch) in blocks:
                metrics += block_metrics
                n += size
                write_citizens(block_citizens)
                if batch is not None:
                    streams["events"].write(batch)
                if on_block is not None:
                    on_block(size)
        for stream in streams.values():
            stream.close()
    except BaseException:
        for stream in streams.values():
            stream.abort()
        raise
    n_events = streams["events"].rows
    result = ShardResult(index, metrics, n, n_events, time.perf_counter() - t0)
    write_atomically(folder / _record_name(index), lambda file: np.savez(
        file, metrics=metrics, citizens=n, events=n_events, seconds=result.seconds))
    return result


def citizens_sampled(seed: int, index: np.ndarray, fraction: float) -> np.ndarray:
    """Whether each citizen (global index) is in the run's sample of `fraction` of citizens: a hash
    of (seed, index), so the sample is the same whatever the shards."""
    x = mix(index ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


# A shard's parts: Parquet when the run has one shard (renamed into the run), Arrow IPC when it has
# several (written and read back at little cost, then encoded once, into the run's Parquet files).
PART_FORMATS = ("parquet", "arrow")


def shard_part(table: str, index: int, part_format: str = "parquet") -> str:
    """The file name of a shard's part of `table` (citizens or events)."""
    return f"{table}-{index:06d}.{part_format}"


def _record_name(index: int) -> str:
    return f"shard-{index:06d}.npz"


def finished_shard(parts: Path, index: int, part_format: str = "parquet") -> ShardResult | None:
    """What a shard finished earlier (by a process that may since have died) handed back; None
    where it did not finish: its record or one of its parts is missing."""
    record = parts / _record_name(index)
    if not record.is_file() or not all((parts / shard_part(t, index, part_format)).is_file()
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


def load_kernel() -> None:
    """Load the compiled kernel and the id formatters (numba's cache) into this process, on a tiny
    run of its own. Numba only, no polars (whose thread pool does not survive a fork): a process
    that forks workers (a Dask forkserver, see `_run._forked_workers`) may call it first."""
    from socialcredit.simulation._plan import make_plan
    from socialcredit.simulation._scenario import load_scenario

    plan = make_plan(load_scenario("one-town"), population=256, days=2, seed=0)
    a, layout = plan.arrays, plan.block_layout(0)
    size = int(layout[-1])
    st, mode = new_state(size), EventsMode(RECORD_ALL, 1.0)
    metrics = np.zeros((plan.days, len(plan.scenario.regions), N_METRICS), np.int32)
    scratch = new_scratch(plan, size, _first_room(size, plan.days, mode))
    # On this thread, as blocks_in_order's `one` calls it (no pool: this may run during an import).
    n = run_block(plan.seed, 0, plan.days, a["fp"]._replace(sample=mode.fraction), layout, a["world"],
                  a["kinds"], a["pol"], a["cons"], mode.mode, st, metrics, scratch)
    ev = scratch.ev[:, :max(n, 0)]
    data, ids = np.empty(ev.shape[1] * EVENT_ID_WIDTH, np.uint8), np.zeros((3, ev.shape[1], 16), np.uint8)
    _format_ids(0, 0, ev, data, ids[0], ids[1], ids[2])
    index = np.arange(size, dtype=np.int64)
    _format_citizens(index, np.zeros((size, 16), np.uint8))
    block, within, flags = index // plan.block_size, index % plan.block_size, np.zeros(size, bool)
    flight_bans_reaching(plan.seed, block, within, flags, flags.copy(), a["fp"], flags.copy())
    dedicated_volunteers(plan.seed, block, within, a["fp"], flags.copy())


if os.environ.get(PRELOAD_KERNEL) == "1":  # a Dask forkserver preloading this module: its workers
    load_kernel()  # fork with the kernel loaded (see `_run._forked_workers`)
    gc.freeze()  # and their collections (the server's own at exit too) skip all that was loaded
