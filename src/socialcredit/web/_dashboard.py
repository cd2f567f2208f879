"""The analyst dashboard's numbers and plotly figures: live from the database, simulated from the run."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from functools import lru_cache
from pathlib import Path

import polars as pl

from socialcredit.service import ApiKey, Service
from socialcredit.web._theme import ClassStyle

WINDOW_S = 60.0  # "events per minute": events that arrived in the last 60 seconds
TIMELINE_S = 30 * 60.0
_LAYOUT = {"margin": {"l": 56, "r": 12, "t": 40, "b": 24}, "height": 340, "font": {"size": 13},
           "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff",
           "legend": {"orientation": "h", "y": -0.15, "yanchor": "top"},
           "xaxis": {"automargin": True}, "yaxis": {"automargin": True, "rangemode": "tozero"}}


class Dashboard:
    """Figures for analysts; `service.stats` decides who may see them, as it does for the API."""

    def __init__(self, service: Service, styles: list[ClassStyle]):
        self.service = service
        self.styles = styles
        self.rates = _Rates()

    def data(self, key: ApiKey, run_dir: Path | None) -> dict:
        """Numbers and figures for the dashboard page and its refresh."""
        stats = self.service.stats(key)  # raises Forbidden for roles other than analyst and agency
        by_kind, by_source, timeline = self.rates.sample(self.service)
        appeals = stats["appeals"]
        classes = stats["classes"]  # every scored citizen, with an event or not (minors hold no class)
        figures = {
            "classes": _bar("Citizens by class (live)", [s.name for s in self.styles],
                            [classes[s.name] for s in self.styles], [s.background for s in self.styles]),
            "kinds": _bar("Events in the last minute, by kind", list(by_kind), list(by_kind.values())),
            "sources": _lines("Events per minute, by source", timeline),
            "appeals": _bar("Appeals by status", ["open", "upheld", "rejected"],
                            [appeals[s] for s in ("open", "upheld", "rejected")],
                            ["#4575b4", "#1a9850", "#d73027"]),
        }
        if run_dir is not None:
            figures |= _simulated(str(run_dir))
        return {
            "day": stats["day"], "date": stats["date"], "policy": stats["policy"], "events": stats["events"],
            "pending_batches": stats["pending_batches"], "per_minute": sum(by_kind.values()),
            "appeals": {s: n for s, n in appeals.items() if n}, "simulated": run_dir is not None,
            "figures": figures,
        }


class _Rates:
    """Events per minute by kind and source, from the ledger rows that arrive between two samples."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cursor: int | None = None  # the last ingestion batch counted; loaded runs are batch 0
        self._last = 0.0
        self._samples: deque[tuple[float, float, Counter, Counter]] = deque()  # time, seconds since last

    def sample(self, service: Service) -> tuple[dict, dict, list[tuple[float, Counter]]]:
        with self._lock:
            rows = service.arrivals(self._cursor or 0)
            now = time.time()
            kinds, sources = Counter(), Counter()
            for _, kind, source, n in rows:
                kinds[kind] += n
                sources[source or "-"] += n
            if self._cursor is not None and now > self._last:  # the first sample only finds where "now" is
                self._samples.append((now, now - self._last, kinds, sources))
            self._cursor = max([self._cursor or 0, *(int(r[0]) for r in rows)])
            self._last = now
            while self._samples and self._samples[0][0] < now - TIMELINE_S:
                self._samples.popleft()
            recent = [s for s in self._samples if s[0] >= now - WINDOW_S]
            by_kind = sum((s[2] for s in recent), Counter())
            by_source = sum((s[3] for s in recent), Counter())
            timeline = [(t, Counter({k: v * 60.0 / dt for k, v in src.items()})) for t, dt, _, src in self._samples]
            return dict(by_kind.most_common()), dict(by_source.most_common()), timeline


def _bar(title: str, x: list, y: list, colours: list[str] | None = None) -> dict:
    trace = {"type": "bar", "x": x, "y": y}
    if colours:
        trace["marker"] = {"color": colours, "line": {"color": "#333333", "width": 1}}
    return {"data": [trace], "layout": {**_LAYOUT, "title": {"text": title}}}


def _lines(title: str, timeline: list[tuple[float, Counter]]) -> dict:
    names = sorted({k for _, c in timeline for k in c})
    stamps = [time.strftime("%H:%M:%S", time.localtime(t)) for t, _ in timeline]
    data = [{"type": "scatter", "mode": "lines", "name": n, "x": stamps,
             "y": [round(c.get(n, 0), 1) for _, c in timeline]} for n in names]
    layout = {**_LAYOUT, "title": {"text": title}}
    if not data:
        layout["annotations"] = [{"text": "no live events yet (socialcredit demo --live sends some)",
                                  "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}]
    return {"data": data, "layout": layout}


@lru_cache(maxsize=4)
def _simulated(run_dir: str) -> dict:
    """Figures of the simulation run behind the database: read once, they do not change."""
    from socialcredit.simulation import Run  # here: a service without a loaded run needs no simulator

    run = Run.open(run_dir)
    daily = run.scan("daily").drop("region").group_by("day").sum().sort("day").collect()
    days = [run.calendar.iso(d) for d in daily["day"]]

    def series(prefix: str) -> list[dict]:
        cols = [c for c in daily.columns if c.startswith(prefix)]
        return [{"type": "scatter", "mode": "lines", "name": c.removeprefix(prefix), "x": days,
                 "y": daily[c].fill_null(0).to_list()} for c in cols]

    consequences = [{**t, "name": f"sanction: {t['name']}"} for t in series("sanction.")]
    consequences += [{**t, "name": f"benefit: {t['name']}", "line": {"dash": "dot"}} for t in series("benefit.")]
    wrongful_cols = [c for c in daily.columns if c.endswith(".wrongful")]
    by_kind = {c.removesuffix(".wrongful"): int(daily[c].sum()) for c in wrongful_cols}
    by_kind = {k: v for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v}
    figures = {
        "consequences": {"data": consequences, "layout": {
            **_LAYOUT, "height": 480, "title": {"text": "Citizens under sanctions and benefits (simulated, by day)"}}},
        "wrongful": _bar("Wrongful attributions by kind (simulated, whole run)", list(by_kind), list(by_kind.values()),
                         ["#d73027"] * len(by_kind)),
    }
    events, citizens = run.scan("events"), run.scan("citizens")
    if events is not None and "group" in citizens.collect_schema().names():
        people = citizens.select("citizen_id", pl.col("group").cast(pl.String)).collect()
        wrong = events.filter(pl.col("wrongful")).group_by("citizen_id").agg(n=pl.len()).collect()
        per_group = (people.join(wrong, on="citizen_id", how="left").group_by("group")
                     .agg(citizens=pl.len(), wrongful=pl.col("n").fill_null(0).sum()).sort("group"))
        rate = [round(1000 * w / max(c, 1), 2) for c, w in zip(per_group["citizens"], per_group["wrongful"],
                                                                 strict=True)]
        figures["wrongful_groups"] = _bar("Wrongful attributions per 1,000 citizens, by group (simulated)",
                                          per_group["group"].to_list(), rate, ["#d73027"] * per_group.height)
    return figures
