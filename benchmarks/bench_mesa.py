"""The same model written the way Mesa users write it (one Agent object per citizen), 10,000 x 30.

Behaviour rates with traits and feedback (deterrence, conformity, bots), sensors (camera coverage,
misses, false matches onto an innocent of the same region, platforms, agencies), scoring with the
same policies (points, daily caps, confidence thresholds, expiry, class caps) and consequences (job
loss in class D), all from the same plan arrays the simulator uses. Printed beside the simulator's
citizen-days per second on the same population and on 1,000,000 x 365 (target: >= 300x Mesa).
Needs `pip install mesa` (a `bench` extra). Run with `python benchmarks/bench_mesa.py`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mesa
import numpy as np

from socialcredit.simulation import kernel as K
from socialcredit.simulation import load_scenario, simulate
from socialcredit.simulation._forkserver import default_threads
from socialcredit.simulation._kinds import (
    CIVIC,
    DEVIANT,
    DEVIANT_POOR,
    HIGH_INCOME,
    K_NEWSPAPER,
    LOW_INCOME,
    N_KINDS,
    OBS_CAMERA,
    OBS_NONE,
    OBS_PLATFORM,
)
from socialcredit.simulation._plan import make_plan
from socialcredit.simulation._shard import EventsMode, simulate_blocks


class Citizen(mesa.Agent):
    """One citizen: demographics, traits, scores and what they have learned."""

    def __init__(self, model: TownModel):
        super().__init__(model)
        rnd = model.random
        fp = model.fp
        u = rnd.random()
        self.age = (int(rnd.random() * 15) if u < fp.age_0_14 else
                    15 + int(rnd.random() * 45) if u < fp.age_0_14 + fp.age_15_59 else
                    60 + int(rnd.random() * 30))
        self.urban = rnd.random() < model.urban
        self.member = rnd.random() < fp.member
        self.platforms = [rnd.random() < s for s in model.plat_share[:3]]
        self.savvy = 15 <= self.age < 60 and rnd.random() < fp.savvy
        self.employed = 18 <= self.age < 60 and rnd.random() < fp.employed
        self.group = int(np.searchsorted(model.group_cum, rnd.random(), side="right"))
        self.decile = int(rnd.random() * 10)
        self.deviance = int(rnd.random() * 16)
        self.civic = int(rnd.random() * 16)
        self.totals = [0, 0]  # state, commercial
        self.cap_count = 0
        self.learned: set[int] = set()
        self.bot = False
        self.caps_today: dict[tuple[int, int], int] = {}

    def rate(self, k: int) -> float:
        """Today's rate of kind `k`, as in the simulator."""
        m = self.model
        driver, min_age, max_age, base, rural = m.kt
        if not min_age[k] <= self.age <= max_age[k]:
            return 0.0
        x = base[k]
        d = driver[k]
        if d in (DEVIANT, DEVIANT_POOR):
            x *= (self.deviance + 0.5) / 8
        if d == CIVIC:
            x *= (self.civic + 0.5) / 8
        if d in (LOW_INCOME, DEVIANT_POOR):
            x *= (10 - self.decile) / 5.5
        if d == HIGH_INCOME:
            x *= (self.decile + 1) / 5.5
        if not self.urban:
            x *= rural[k]
        if k in self.learned:
            sign = m.sign[k]
            x *= (1 - m.fp.deterrence) if sign < 0 else (1 + m.fp.conformity) if sign > 0 else 1
        return x

    def step(self) -> None:
        """One day: act, be observed, be scored; lose the job in class D."""
        m = self.model
        self.caps_today.clear()
        for k in range(N_KINDS):
            if m.random.random() < self.rate(k) or (k == K_NEWSPAPER and self.bot):
                m.observe(self, k)
        if self.employed and m.state_class(self) == m.n_classes - 1:
            if m.random.random() < m.fp.job_loss:
                self.employed = False
                self.decile = max(0, self.decile - 2)


class TownModel(mesa.Model):
    """The one-town scenario with Agent objects and Python loops."""

    def __init__(self, population: int, days: int, seed: int):
        super().__init__(seed=seed)
        plan = make_plan(load_scenario("one-town"), population=population, days=days, seed=seed)
        a = plan.arrays
        self.fp = a["fp"]
        world, kinds = a["world"], a["kinds"]
        self.kt = (kinds.driver, kinds.min_age, kinds.max_age, kinds.base, kinds.rural)
        self.obs = (kinds.obs_type, kinds.obs_src, kinds.obs_prob, kinds.obs_plat)
        self.place_cum = kinds.place_cum
        self.coverage = world.coverage[0, 0]  # day 0, the one region
        self.fmr = world.fmr[0]
        self.plat_share = world.plat_share
        self.group_cum = world.group_cum
        self.urban = world.region_urban[0]
        self.sign = kinds.sign[0]
        self.pol = a["pol"]
        self.state, self.comm = int(world.region_policy[0]), plan.commercial
        self.n_classes = int(self.pol.pint[self.state, K.P_N_CLASSES])
        self.day = 0
        self.expiring: dict[int, list] = {}
        self.citizens = [Citizen(self) for _ in range(population)]

    def classify(self, p: int, total: int, cap_count: int) -> int:
        ctab, pint = self.pol.ctab, self.pol.pint
        lo, hi = pint[p, K.P_LO], pint[p, K.P_HI]
        c = int(ctab[p, min(max(pint[p, K.P_START] + total, lo), hi) - lo])
        return max(c, int(pint[p, K.P_CAP_CLASS])) if cap_count > 0 else c

    def state_class(self, c: Citizen) -> int:
        return self.classify(self.state, c.totals[0], c.cap_count)

    def observe(self, actor: Citizen, k: int) -> None:
        obs_type, obs_src, obs_prob, obs_plat = self.obs
        for o in range(3):
            typ = obs_type[k, o]
            if typ == OBS_NONE:
                return
            att, conf = actor, 1.0
            if typ == OBS_CAMERA:
                place = int(np.searchsorted(self.place_cum[k], self.random.random(), side="right"))
                cover = self.coverage[min(place, 2)] * (1 if actor.urban else self.fp.rural_coverage)
                mate = self.random.random()
                if self.random.random() >= cover or mate < self.fp.fnmr:
                    continue
                room = 1 - self.fp.threshold
                if self.random.random() < self.fmr[actor.group]:
                    att = self.random.choice(self.citizens)
                    conf = 1 - room * self.random.random() ** (1 / self.fp.false_tail)
                else:
                    conf = 1 - room * (self.fp.fnmr / mate) ** (1 / self.fp.true_tail)
            elif typ == OBS_PLATFORM:
                plat = obs_plat[k, o]
                if not (actor.member if plat == 3 else actor.platforms[plat]):
                    continue
            elif self.random.random() >= obs_prob[k, o]:
                continue
            self.score(att, k, int(obs_src[k, o]), conf)
            return

    def score(self, c: Citizen, k: int, src: int, conf: float) -> None:
        pol = self.pol
        points, expires, capcls, accept, min_conf, rule_of, caps = (
            pol.points, pol.expires, pol.capcls, pol.accept, pol.min_conf, pol.rule_of, pol.caps)
        for scheme, p in ((0, self.state), (1, self.comm if c.member else -1)):
            if p < 0 or rule_of[p, k] < 0 or not accept[p, k, src] or conf < min_conf[p, k]:
                continue
            used = c.caps_today.get((scheme, k), 0)
            if caps[p, k] and used >= caps[p, k]:
                continue
            c.caps_today[(scheme, k)] = used + 1
            c.totals[scheme] += int(points[p, k])
            if scheme == 0 and capcls[p, k]:
                c.cap_count += 1
            if expires[p, k]:
                self.expiring.setdefault(self.day + int(expires[p, k]), []).append((c, scheme, p, k))
            c.learned.add(k)
            if scheme == 0 and k == K_NEWSPAPER and points[p, k] > 0 and c.savvy and not c.bot:
                c.bot = self.random.random() < self.fp.gaming

    def step(self) -> None:
        for c, scheme, p, k in self.expiring.pop(self.day, []):
            c.totals[scheme] -= int(self.pol.points[p, k])
            if scheme == 0 and self.pol.capcls[p, k]:
                c.cap_count -= 1
        self.agents.shuffle_do("step")
        self.day += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    cd = args.population * args.days

    t0 = time.perf_counter()
    model = TownModel(args.population, args.days, seed=1)
    for _ in range(args.days):
        model.step()
    mesa_rate = cd / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        simulate(population=50_000, days=3, seed=1, out=Path(tmp) / "warm")
        t0 = time.perf_counter()
        simulate(population=args.population, days=args.days, seed=1, out=Path(tmp) / "same")
        same_rate = cd / (time.perf_counter() - t0)
    plan = make_plan(load_scenario("one-town"), population=1_000_000, days=365, seed=1)
    t0 = time.perf_counter()
    simulate_blocks(plan, 0, plan.n_blocks, EventsMode(0), default_threads())
    big_rate = 1_000_000 * 365 / (time.perf_counter() - t0)

    print(f"Mesa {mesa.__version__}, one-town {args.population:,} citizens x {args.days} days")
    print(f"  Mesa:                                  {mesa_rate:12,.0f} citizen-days/s")
    print(f"  socialcredit simulate(), same size:    {same_rate:12,.0f} citizen-days/s "
          f"({same_rate / mesa_rate:,.0f}x; includes writing the run folder)")
    print(f"  socialcredit kernel, 1,000,000 x 365:  {big_rate:12,.0f} citizen-days/s "
          f"({big_rate / mesa_rate:,.0f}x, target >= 300x)")


if __name__ == "__main__":
    main()
