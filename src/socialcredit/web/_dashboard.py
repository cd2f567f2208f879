"""The analyst dashboard's numbers and plotly figures: live from the database, simulated from the run."""

from __future__ import annotations

import logging
import re
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

import polars as pl
from fastapi.concurrency import run_in_threadpool

from socialcredit.service import ApiKey, Invalid, Service
from socialcredit.service._roster import SORTS, RosterQuery
from socialcredit.web._theme import ClassStyle

log = logging.getLogger("socialcredit.web")

WINDOW_S = 60.0  # "events per minute": events that arrived in the last 60 seconds
TIMELINE_S = 30 * 60.0
SAMPLE_S = 5.0
FILTERS = ("class", "region", "group", "consequence")  # what a roster address may filter by
PER_PAGE = 50  # the server counts arrivals this often, viewed or not
# Line styles for lines that may lie on top of each other (five sanctions of one class do): each
# its own dash and colour, the earlier ones wider, so a line drawn over another leaves it visible.
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
COLOURS = ("#b2182b", "#2166ac", "#1b7837", "#762a83", "#e08214", "#35978f", "#8c510a", "#c51b7d", "#4d4d4d")
_LAYOUT = {"margin": {"l": 56, "r": 12, "t": 40, "b": 24}, "height": 340, "font": {"size": 13},
           "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff",
           "legend": {"orientation": "h", "y": -0.15, "yanchor": "top"},
           "xaxis": {"automargin": True}, "yaxis": {"automargin": True, "rangemode": "tozero"}}


class Dashboard:
    """Figures for analysts; `service.stats` decides who may see them, as it does for the API."""

    def __init__(self, service: Service, styles: list[ClassStyle]):
        self.service = service
        self.styles = styles
        self.rates = _Rates(service)
        self.prepared = _Prepared()

    @asynccontextmanager
    async def running(self, app):
        """While the app runs: arrivals counted on the server's clock, the run's figures read ahead."""
        await run_in_threadpool(self.rates.start)
        if (run_dir := self.service.loaded_run) is not None:
            self.prepared.get(str(run_dir), _simulated)
        try:
            yield
        finally:
            await run_in_threadpool(self.rates.stop)

    def data(self, key: ApiKey, run_dir: Path | None) -> dict:
        """Numbers and figures for the dashboard page and its refresh."""
        stats = self.service.stats(key)  # raises Forbidden for roles other than analyst and agency
        by_kind, timeline = self.rates.counts()
        appeals = stats["appeals"]
        classes = stats["classes"]  # every scored citizen, with an event or not (minors hold no class)
        names = [s.name for s in self.styles]
        figures = {
            "classes": _class_bars([classes[n] for n in names], self.styles),
            "kinds": _bar("Events in the last minute, by kind", list(by_kind), list(by_kind.values()),
                          empty="No live events in the last minute (socialcredit demo --live sends some)"),
            "sources": _lines("Events per minute (each point: the 60 s before it), by source", timeline),
            "appeals": _bar("Appeals by status", ["open", "upheld", "rejected"],
                            [appeals[s] for s in ("open", "upheld", "rejected")],
                            ["#4575b4", "#1a9850", "#d73027"],
                            empty="No appeals filed" if self.service.policy.appeals
                            else f"Policy '{self.service.policy.name}' has no appeals"),
        }
        simulated = None if run_dir is None else self.prepared.get(str(run_dir), _simulated)
        if simulated is not None:
            figures |= simulated["figures"]
        return {
            "day": stats["day"], "date": stats["date"], "policy": stats["policy"], "events": stats["events"],
            "pending_batches": stats["pending_batches"], "per_minute": sum(by_kind.values()),
            "counting_since": time.strftime("%H:%M:%S", time.localtime(self.rates.started)),
            "appeals": {s: n for s, n in appeals.items() if n}, "simulated": run_dir is not None,
            "simulated_ready": simulated is not None, "classes": classes,
            "groups": [] if simulated is None else simulated["groups"],
            "regions": [] if simulated is None else simulated["regions"],
            "figures": figures,
        }


    def roster(self, key: ApiKey, params: dict[str, str]) -> dict:
        """The roster page: a page of the citizens that match the address's filters, with links to
        sort by each column, to the pages around it and to each citizen (every row is logged)."""
        filters = {name: params.get(name) or None for name in FILTERS}
        query = RosterQuery(klass=filters["class"], region=filters["region"], group=filters["group"],
                            consequence=filters["consequence"], sort=params.get("sort", "citizen"),
                            descending=params.get("order") == "desc", page=_number(params.get("page"), "page"),
                            per_page=_number(params.get("per_page"), "per_page", PER_PAGE))
        purpose = params.get("purpose") or None
        result = self.service.roster(key, query, purpose)
        kept = {**filters, "purpose": purpose, "per_page": None if query.per_page == PER_PAGE else query.per_page}

        def link(**changes) -> str:
            state = {**kept, "sort": query.sort, "order": "desc" if query.descending else None,
                     "page": query.page} | changes
            if state["page"] == 1:
                state["page"] = None
            return roster_link(**state)

        sortable = {c: SORTS[c] is None or SORTS[c] in result["fields"] for c in SORTS}
        sorts = {c: link(sort=c, order="desc" if c == query.sort and not query.descending else None, page=None)
                 for c, allowed in sortable.items() if allowed}
        prefix = "?" + urlencode({"purpose": purpose}) if purpose else ""
        return {"result": result, "filters": {k: v for k, v in filters.items() if v},
                "described": self._described(filters), "sorts": sorts,
                "previous": link(page=query.page - 1) if query.page > 1 else None,
                "next": link(page=query.page + 1) if query.page < result["pages"] else None,
                "citizen_links": {c["citizen_id"]: f"/dashboard/citizens/{quote(c['citizen_id'], safe='')}{prefix}"
                                  for c in result["citizens"]}}

    def _described(self, filters: dict[str, str | None]) -> list[str]:
        """The filters in words: a group with its false-match multiplier, where the run says it."""
        groups = {}
        if (run_dir := self.service.loaded_run) is not None and (ready := self.prepared.get(str(run_dir), _simulated)):
            groups = {g["name"]: g["fmr_multiplier"] for g in ready["groups"]}
        words = []
        for name, value in filters.items():
            if value is None:
                continue
            if name == "group" and value in groups:
                words.append(f"group {value} (cameras falsely match its members {groups[value]:g} times as often "
                             "as the reference group: NIST FRVT)")
            else:
                words.append(f"{name} {value}")
        return words

    def citizen(self, key: ApiKey, citizen_id: str, purpose: str | None) -> dict:
        """One citizen for the dashboard: the look-up and the history as the grant shows them (both logged)."""
        status = self.service.lookup(key, citizen_id, purpose)  # refused first for a role with no grant
        grant = self.service.access.grant_of(key.role)
        # The history only where the grant shows some of it: a refused history after an answered
        # look-up would log a disclosure the page never shows.
        shows_history = {"history", "reasons"} & set(grant.fields)
        history = self.service.history(key, citizen_id, purpose) if shows_history else {}
        events = sorted(history.get("events", []), key=lambda e: (e["day"], e["event_id"]), reverse=True)
        return {"citizen_id": citizen_id, "status": status, "reasons": history.get("reasons"),
                "events": events if "events" in history else None,
                "withheld": [f for f in ("history", "reasons") if f not in grant.fields]}


def _number(text: str | None, name: str, default: int = 1) -> int:
    if not text:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text):  # ASCII digits only, and a page number SQL can offset by
        raise Invalid(f"{name} must be a whole number from 1 to 999,999,999, not '{text[:40]}'", field=name)
    return int(text)


def roster_link(**filters) -> str:
    """The address of the list of citizens that match `filters` (class, region, group, consequence)."""
    return "/dashboard/citizens?" + urlencode({k: v for k, v in filters.items() if v is not None})


class _Prepared:
    """Values worked out once on a thread of their own (the run's figures read from its Parquet
    files), so that no view waits for them: until they are ready a view gets None."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict[str, dict] = {}
        self._started: set[str] = set()

    def get(self, name: str, make: Callable[[str], dict]) -> dict | None:
        with self._lock:
            if name in self._values:
                return self._values[name]
            if name not in self._started:
                self._started.add(name)
                threading.Thread(target=self._make, args=(name, make), name="dashboard-prepare",
                                 daemon=True).start()
        return None

    def _make(self, name: str, make: Callable[[str], dict]) -> None:
        try:
            value = make(name)
        except Exception:  # the live charts go on without the run's
            log.exception("reading the simulation run %s for the dashboard failed", name)
            value = {"figures": {}, "groups": [], "regions": []}
        with self._lock:
            self._values[name] = value


class _Rates:
    """Events per minute by kind and source, counted on the server's clock: a thread of its own
    samples the batches projected (the service's arrivals) every SAMPLE_S seconds from the start, viewed
    or not."""

    def __init__(self, service: Service):
        self.service = service
        self.started = time.time()
        self._lock = threading.Lock()
        self._cursor: int | None = None  # the last ingestion batch counted; loaded runs are batch 0
        self._samples: deque[tuple[float, Counter, Counter]] = deque()  # time, by kind, by source
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.started = time.time()
        self.sample()  # finds where "now" is in the ledger
        self._stop.clear()
        self._thread = threading.Thread(target=_sample_until_stopped, args=(weakref.ref(self), self._stop),
                                        name="dashboard-rates", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def counts(self) -> tuple[dict, list[tuple[float, Counter]]]:
        """Events of the last minute by kind, and per sample the events of the minute before it by
        source. While the sampling thread runs a view reads its samples; without it (an app whose
        lifespan did not run) the view samples."""
        if self._thread is None:
            self.sample()
        now = time.time()
        with self._lock:
            samples = list(self._samples)
        by_kind = sum((k for t, k, _ in samples if t > now - WINDOW_S), Counter())
        timeline = [(t, sum((src for u, _, src in samples if t - WINDOW_S < u <= t), Counter()))
                    for t, _, _ in samples if t >= now - TIMELINE_S]
        return dict(by_kind.most_common()), timeline

    def sample(self) -> None:
        """Count the events that arrived since the last sample."""
        with self._lock:
            rows = self.service.arrivals(self._cursor or 0)
            now = time.time()
            kinds, sources = Counter(), Counter()
            for _, kind, source, n in rows:
                kinds[kind] += n
                sources[source or "-"] += n
            if self._cursor is not None:  # the first sample only finds where "now" is
                self._samples.append((now, kinds, sources))
            self._cursor = max([self._cursor or 0, *(int(r[0]) for r in rows)])
            while self._samples and self._samples[0][0] < now - TIMELINE_S - WINDOW_S:
                self._samples.popleft()


def _sample_until_stopped(rates: weakref.ref, stop: threading.Event) -> None:
    # A weak reference: a dashboard no longer served ends its thread.
    while not stop.wait(SAMPLE_S):
        sampler = rates()
        if sampler is None:
            return
        try:
            sampler.sample()
        except Exception:  # the database may be busy or restarting; the next sample tries again
            log.debug("sampling arrivals failed", exc_info=True)
        del sampler


def _class_bars(counts: list[int], styles: list[ClassStyle]) -> dict:
    """Citizens by class on a log scale, each bar labelled with its count and linked to its citizens."""
    trace = {"type": "bar", "x": [s.name for s in styles], "y": [n or None for n in counts],
             "text": [f"{n:,}" for n in counts], "textposition": "outside", "cliponaxis": False,
             "customdata": [roster_link(**{"class": s.name}) for s in styles],
             "hovertemplate": "%{x}: %{text} citizens (click to list them)<extra></extra>",
             "marker": {"color": [s.background for s in styles], "line": {"color": "#333333", "width": 1}}}
    layout = {**_LAYOUT, "title": {"text": "Citizens by class (live; log scale)"},
              "yaxis": {"automargin": True, "type": "log", "dtick": 1, "exponentformat": "none"}}
    return {"data": [trace], "layout": layout}


def _empty(title: str, message: str) -> dict:
    """A figure that says why it has nothing to show, without axes."""
    return {"data": [], "layout": {
        **_LAYOUT, "title": {"text": title}, "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "annotations": [{"text": message, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}]}}


def _bar(title: str, x: list, y: list, colours: list[str] | None = None, *, empty: str = "Nothing yet",
         links: list[str] | None = None) -> dict:
    """Bars labelled with their values; a message instead of axes when every value is 0."""
    if not any(y):
        return _empty(title, empty)
    trace = {"type": "bar", "x": x, "y": y, "text": [f"{v:,}" for v in y], "textposition": "outside",
             "cliponaxis": False}
    if colours:
        trace["marker"] = {"color": colours, "line": {"color": "#333333", "width": 1}}
    if links:
        trace |= {"customdata": links, "hovertemplate": "%{x}: %{text} (click to list them)<extra></extra>"}
    return {"data": [trace], "layout": {**_LAYOUT, "title": {"text": title}}}


def _lines(title: str, timeline: list[tuple[float, Counter]]) -> dict:
    names = sorted({k for _, c in timeline for k in c})
    if not names:
        return _empty(title, "No live events in the last 30 minutes (socialcredit demo --live sends some)")
    stamps = [time.strftime("%H:%M:%S", time.localtime(t)) for t, _ in timeline]
    data = [{"type": "scatter", "mode": "lines", "name": n, "x": stamps, "y": [c.get(n, 0) for _, c in timeline],
             "line": {"color": COLOURS[i % len(COLOURS)], "dash": DASHES[i % len(DASHES)]}}
            for i, n in enumerate(names)]
    return {"data": data, "layout": {**_LAYOUT, "title": {"text": title}}}


def _styled(traces: list[dict]) -> list[dict]:
    """Lines that may lie on top of each other, each with its own dash and colour, earlier ones wider."""
    return [{**t, "line": {"color": COLOURS[i % len(COLOURS)], "dash": DASHES[i % len(DASHES)],
                           "width": 1.5 + 1.5 * (len(traces) - 1 - i) / max(len(traces) - 1, 1)}}
            for i, t in enumerate(traces)]


def _simulated(run_dir: str) -> dict:
    """Figures of the simulation run behind the database, and its demographic groups with their
    false-match multipliers (read once: they do not change)."""
    from socialcredit.simulation import Run  # here: a service without a loaded run needs no simulator

    run = Run.open(run_dir)
    daily = run.scan("daily").drop("region").group_by("day").sum().sort("day").collect()
    days = [run.calendar.iso(d) for d in daily["day"]]

    def series(prefix: str) -> list[dict]:
        cols = [c for c in daily.columns if c.startswith(prefix)]
        return [{"type": "scatter", "mode": "lines", "name": c.removeprefix(prefix), "x": days,
                 "y": daily[c].fill_null(0).to_list()} for c in cols]

    consequences = _styled([{**t, "name": f"sanction: {t['name']}"} for t in series("sanction.")]
                           + [{**t, "name": f"benefit: {t['name']}"} for t in series("benefit.")])
    wrongful_cols = [c for c in daily.columns if c.endswith(".wrongful")]
    by_kind = {c.removesuffix(".wrongful"): int(daily[c].sum()) for c in wrongful_cols}
    by_kind = {k: v for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v}
    figures = {
        "consequences": {"data": consequences, "layout": {
            **_LAYOUT, "height": 480, "title": {"text": "Citizens under sanctions and benefits (simulated, by day)"}}},
        "wrongful": _bar("Wrongful attributions by kind (simulated, whole run)", list(by_kind), list(by_kind.values()),
                         ["#d73027"] * len(by_kind), empty="No wrongful attributions in this run"),
    }
    groups = [{"name": g.name, "share": g.share, "fmr_multiplier": g.fmr_multiplier}
              for g in run.manifest.scenario.population.groups]
    multiplier = {g["name"]: g["fmr_multiplier"] for g in groups}
    events, citizens = run.scan("events"), run.scan("citizens")
    if events is not None and "group" in citizens.collect_schema().names():
        people = citizens.select("citizen_id", pl.col("group").cast(pl.String)).collect()
        wrong = events.filter(pl.col("wrongful")).group_by("citizen_id").agg(n=pl.len()).collect()
        per_group = (people.join(wrong, on="citizen_id", how="left").group_by("group")
                     .agg(citizens=pl.len(), wrongful=pl.col("n").fill_null(0).sum()).sort("group"))
        rate = [round(1000 * w / max(c, 1), 2) for c, w in zip(per_group["citizens"], per_group["wrongful"],
                                                                 strict=True)]
        names = per_group["group"].to_list()
        labels = [f"{g}<br>(false matches ×{multiplier[g]:g})" if g in multiplier else g for g in names]
        figures["wrongful_groups"] = _bar("Wrongful attributions per 1,000 citizens, by group (simulated)",
                                          labels, rate, ["#d73027"] * per_group.height,
                                          empty="No wrongful attributions in this run",
                                          links=[roster_link(group=g) for g in names])
    regions = []
    if "region" in citizens.collect_schema().names():
        counted = citizens.group_by(pl.col("region").cast(pl.String)).len().sort("region").collect()
        regions = [{"name": r, "citizens": n} for r, n in counted.iter_rows() if r is not None]
    return {"figures": figures, "groups": groups, "regions": regions}
