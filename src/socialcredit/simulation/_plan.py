"""A run's plan: scenario, policies and sizes turned into the arrays the kernel reads."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from socialcredit.engine import CompiledConsequence, CompiledConsequences, CompiledPolicy
from socialcredit.events import Calendar
from socialcredit.policy import Policy, parse_policy, policy_source
from socialcredit.simulation import kernel as K
from socialcredit.simulation._kinds import (
    CIVIC,
    DEVIANT,
    DEVIANT_POOR,
    EFFECTS,
    HIGH_INCOME,
    KIND_NAMES,
    KINDS,
    LOW_INCOME,
    MAX_CLASSES,
    MAX_CONSEQUENCES,
    MAX_HELD,
    N_EFFECTS,
    N_KINDS,
    OBS_AGENCY,
    OBS_CAMERA,
    OBS_PLATFORM,
    PLATFORM_SOURCES,
    SOURCES,
    SRC,
    STANDING,
)
from socialcredit.simulation._scenario import Scenario, SimulationError

# Largest factor the traits can put on a kind's base rate (see kernel._acts.rate).
_TRAIT_MAX = {DEVIANT: 15.5 / 8, CIVIC: 15.5 / 8, LOW_INCOME: 10 / 5.5, HIGH_INCOME: 10 / 5.5,
              DEVIANT_POOR: 15.5 / 8 * 10 / 5.5, STANDING: (10 / 5.5) ** 2}


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything a shard needs to simulate its blocks, in plain arrays (cheap to ship to workers)."""

    scenario: Scenario
    population: int
    days: int
    seed: int
    policies: list[Policy]
    commercial: int  # index into policies, -1 = none
    region_start: np.ndarray  # global first citizen of each region, plus the end
    arrays: dict = field(repr=False)
    policy_texts: dict[str, str] = field(repr=False)  # name -> the TOML the policy was read from

    @property
    def block_size(self) -> int:
        """Citizens per block."""
        return self.scenario.block_size

    @property
    def n_blocks(self) -> int:
        """Number of blocks (the last may be short)."""
        return -(-self.population // self.block_size)

    def block_layout(self, block: int) -> np.ndarray:
        """Local first citizen of each region within `block`, plus the block's length."""
        lo = block * self.block_size
        hi = min(lo + self.block_size, self.population)
        return (np.clip(self.region_start, lo, hi) - lo).astype(np.int64)


def make_plan(scenario: Scenario, *, population: int, days: int, seed: int) -> Plan:
    """Check sizes and policies and build the kernel's arrays."""
    if population < 1:
        raise SimulationError(f"--population must be at least 1 (got {population})")
    if not 1 <= days <= 65_000:
        raise SimulationError(f"--days must lie within [1, 65000] (got {days})")
    if not 0 <= seed < 2**63:
        raise SimulationError(f"--seed must lie within [0, 2**63) (got {seed})")
    names: list[str] = []
    for region in scenario.regions:
        if region.scheme is not None and region.scheme not in names:
            names.append(region.scheme)
    commercial = -1
    if scenario.commercial_policy is not None:
        names.append(scenario.commercial_policy)
        commercial = len(names) - 1
    sources = [policy_source(n) for n in names]
    policies = [parse_policy(text, source=source) for text, source in sources]
    texts: dict[str, str] = {}
    for policy, (text, source) in zip(policies, sources, strict=True):
        if texts.setdefault(policy.name, text) != text:
            raise SimulationError(f"two different policies are named '{policy.name}' ({source} is one): "
                                  "a run keeps one copy of each policy by name")
    region_policy = np.array([names.index(r.scheme) if r.scheme is not None else -1
                              for r in scenario.regions], dtype=np.int64)
    shares = np.array([r.share for r in scenario.regions])
    cum = np.concatenate([[0.0], np.cumsum(shares)])
    region_start = np.round(cum / cum[-1] * population).astype(np.int64)
    pol, cons = _policy_arrays(policies, commercial)
    # The job-loss stream meets adults at the largest daily risk of any policy, thinned to their own.
    params = _float_params(scenario, job_loss=float(pol.eff_size[:, EFFECTS.index("job_loss")].max()))
    sign = _signs(policies, region_policy, commercial)
    kinds = _kind_arrays(scenario, (sign > 0).any(axis=0), sign)
    streams = np.array([params.passive, params.job_loss, K.travel_top(params.flight, params),
                        K.travel_top(params.train, params), params.loan])
    world = K.World(
        region_policy=region_policy,
        region_from=np.array([day_of(scenario, r.joins()) for r in scenario.regions], dtype=np.int64),
        region_urban=np.array([r.urban for r in scenario.regions]),
        coverage=coverage_by_day(scenario, days),
        fmr=_fmr(scenario, represented_sizes(scenario)),
        group_cum=np.cumsum([g.share for g in scenario.population.groups]),
        plat_share=np.array([scenario.sensors.platforms.browsing, scenario.sensors.platforms.games,
                             scenario.sensors.platforms.social_media, 1.0]),
        comm=commercial,
        inv_stream=_jump_inverse(streams),
        inv_delist=float(_jump_inverse(np.array([params.delisting]))[0]),
    )
    # By run_block's parameter names: the shard and the GPU launcher pass them as they are.
    arrays = {"fp": params, "world": world, "kinds": kinds, "pol": pol, "cons": cons}
    return Plan(scenario, population, days, seed, policies, commercial, region_start, arrays, texts)


def day_of(scenario: Scenario, date: dt.date | None) -> int:
    """The run's day index of `date` (0: the start_date, or no date)."""
    return 0 if date is None else Calendar(scenario.start_date).day_of(date)


def coverage_by_day(scenario: Scenario, days: int) -> np.ndarray:
    """Camera coverage [day, region, place] from each region's coverage and its dated changes."""
    out = np.empty((days, len(scenario.regions), 3))
    for r, region in enumerate(scenario.regions):
        steps = [(0, region.coverage)] + [(day_of(scenario, c.date), c.coverage) for c in region.changes
                                          if c.coverage is not None]
        for (first, cov), (last, _) in zip(steps, [*steps[1:], (days, None)], strict=True):
            out[min(first, days):min(last, days), r] = (cov.street, cov.mall, cov.subway)
    return out


def _jump_inverse(p: np.ndarray) -> np.ndarray:
    """1 / log(1 - p) for the kernel's geometric jumps (0 where p is 0 or 1), computed here once
    so that every device jumps by the same numbers."""
    inside = (p > 0) & (p < 1)
    return np.where(inside, 1.0 / np.log1p(-np.where(inside, p, 0.5)), 0.0)


def _float_params(s: Scenario, *, job_loss: float) -> K.Params:
    sen, beh, con, pop = s.sensors, s.behaviour, s.consequences, s.population
    return K.Params(
        fnmr=sen.fnmr, deterrence=beh.deterrence, self_censorship=beh.self_censorship,
        peer_censorship=beh.peer_censorship, conformity=beh.conformity, gaming=beh.gaming,
        threshold=sen.threshold, false_tail=sen.false_tail, true_tail=sen.true_tail,
        age_noise=sen.age_noise_years,
        passive=sen.passive_sightings, rural_coverage=sen.rural_coverage, job_loss=job_loss,
        income_drop=float(con.income_drop), flight=con.flight, train=con.train, subway=con.subway,
        loan=con.loan, adm_base=con.admission_base, sample=1.0, male=pop.male_share,
        member=pop.platform_share, savvy=beh.savvy_share, employed=pop.employment,
        age_0_14=pop.age_0_14, age_15_59=pop.age_15_59,
        blacklist_bans=1.0 if con.blacklist_bans else 0.0,
        adm_day=float(con.admission_day), instore=sen.instore_clothes,
        listed_share=pop.listed_share, delisting=con.delisting,
        train_banned_share=con.train_banned_share, retry=con.retry, travel_income=con.travel_income,
        flight_ban_reach=con.flight_ban_reach, train_ban_reach=con.train_ban_reach,
        volunteer_share=beh.volunteer_share, volunteer_rate=beh.volunteer_rate,
        volunteer_inv=float(_jump_inverse(np.array(beh.volunteer_rate))),
        offer_rate=sen.offer_rate, offer_take=sen.offer_take, offer_take_mismatch=sen.offer_take_mismatch,
    )


def represented_sizes(s: Scenario) -> np.ndarray:
    """The people each region stands for (its share of the scenario's represented population)."""
    shares = np.array([r.share for r in s.regions])
    return shares / shares.sum() * s.represents


def _fmr(s: Scenario, region_sizes: np.ndarray) -> np.ndarray:
    """False-match rate per region and demographic group. The gallery a camera searches is everyone
    the region stands for (every ID card carries a photo), so the rate does not depend on how many
    citizens a run simulates."""
    sen = s.sensors
    gallery = np.maximum(region_sizes, 1) / sen.reference_gallery
    base = sen.fmr * gallery ** sen.gallery_exponent
    mult = np.array([g.fmr_multiplier for g in s.population.groups])
    return np.minimum(base[:, None] * mult[None, :], sen.max_fmr)


def _kind_arrays(s: Scenario, rewarded: np.ndarray, sign: np.ndarray) -> K.Kinds:
    driver = np.array([k[1] for k in KINDS], dtype=np.int64)
    min_age = np.array([k[2][0] for k in KINDS], dtype=np.int64)
    max_age = np.array([k[2][1] for k in KINDS], dtype=np.int64)
    rate = np.array([s.behaviour.rates.get(k[0], k[3]) for k in KINDS])
    rural = np.array([k[4] for k in KINDS])
    place_cum = np.cumsum([k[5] for k in KINDS], axis=1)
    obs_type = np.zeros((N_KINDS, 3), np.int64)
    obs_src = np.zeros((N_KINDS, 3), np.int64)
    obs_prob = np.zeros((N_KINDS, 3))
    obs_plat = np.full((N_KINDS, 3), -1, np.int64)
    platform_index = {"browsing": 0, "games": 1, "social-media": 2, "e-commerce": 3, "payments": 3}
    for k, spec in enumerate(KINDS):
        for o, (source, prob) in enumerate(spec[6]):
            obs_src[k, o] = SRC[source]
            obs_prob[k, o] = prob
            if source == "camera":
                obs_type[k, o] = OBS_CAMERA
            elif source in PLATFORM_SOURCES:
                obs_type[k, o] = OBS_PLATFORM
                obs_plat[k, o] = platform_index[source]
            else:
                obs_type[k, o] = OBS_AGENCY
    top = np.array([_TRAIT_MAX.get(int(d), 1.0) for d in driver]) * np.maximum(rural, 1.0)
    top = rate * top * np.where(rewarded, 1.0 + s.behaviour.conformity, 1.0)
    # The largest rate a citizen of each deviance level can have: the kernel walks the citizens of
    # one level at a time and thinning draws candidates at that level's bound, keeping x / rmax.
    # Deviant kinds scale with the level exactly; the tiny margin absorbs rounding.
    deviant = np.isin(driver, [DEVIANT, DEVIANT_POOR])[:, None]
    level = (np.arange(16) + 0.5) / 15.5
    rmax = np.minimum(top[:, None] * np.where(deviant, level[None, :], 1.0) * (1 + 1e-12), 1.0)
    return K.Kinds(driver=driver, min_age=min_age, max_age=max_age, base=rate, rural=rural,
                   place_cum=place_cum, rmax=rmax, inv_rate=_jump_inverse(rmax), sign=sign,
                   obs_type=obs_type, obs_src=obs_src, obs_prob=obs_prob, obs_plat=obs_plat)


def _signs(policies: list[Policy], region_policy: np.ndarray, commercial: int) -> np.ndarray:
    """Whether a kind is penalised (-1) or rewarded (+1) for a region's citizens."""
    out = np.zeros((len(region_policy), N_KINDS), np.int64)
    for r, p in enumerate(region_policy):
        for k, kind in enumerate(KIND_NAMES):
            for q in (int(p), commercial):
                rule = policies[q].rule_for(kind) if q >= 0 else None
                if rule is not None:
                    out[r, k] = int(np.sign(rule.points))
                    break
    return out


# The kernel's effects (simulation/_kinds.EFFECTS) of the policy's deciding effects, by (effect,
# benefit). A loan surcharge (loan_price as a sanction) changes no count the kernel keeps.
KERNEL_EFFECTS = {
    ("loan_price", True): "loan_discount", ("loan_refusal", False): "loan_refusal",
    ("insurance_tier", True): "insurance", ("flight_price", True): "flight_discount",
    ("flight_ban", False): "flight_ban", ("train_ban", False): "train_ban",
    ("gate_stop", False): "gate_stop", ("job_loss", False): "job_loss",
    ("admission", True): "admission_bonus", ("admission", False): "admission_penalty",
}


def _size(item: CompiledConsequence) -> float:
    """What the kernel multiplies by: a job-loss risk, a gate's stop chance, an admission chance's
    change (as a positive fraction), a loan rate's or a flight's discount; 1 for a ban or a refusal."""
    params = item.params
    match item.effect:
        case "admission":
            return abs(params.chance_change)
        case "loan_price":
            return -params.rate_change
        case "job_loss":
            return params.risk_per_day
        case "gate_stop":
            return params.stop_probability
        case "flight_price":
            return params.discount
    return 1.0


def _policy_arrays(policies: list[Policy], commercial: int):
    n_p = len(policies)
    rows = max(n_p, 1)  # the kernel indexes row 0 even when no region is scored
    span = max(p.max - p.min for p in policies) + 1 if policies else 1
    ctab = np.zeros((rows, span), np.int8)
    pint = np.zeros((rows, K.N_PINT), np.int64)
    held = np.full((rows, 2, MAX_HELD), -1, np.int64)
    eff_held = np.full((rows, N_EFFECTS, MAX_CLASSES), -1, np.int64)
    points, expires, caps, rule_of = (np.zeros((rows, N_KINDS), np.int64) for _ in range(4))
    rule_of[:] = -1
    caps_class = np.zeros((rows, N_KINDS), np.bool_)
    accept = np.zeros((rows, N_KINDS, len(SOURCES)), np.bool_)
    min_conf = np.zeros((rows, N_KINDS))
    c_n = np.zeros(rows, np.int64)
    c_cls, c_held, c_slot = (np.zeros((rows, MAX_CONSEQUENCES), np.int64) for _ in range(3))
    c_ben = np.zeros((rows, MAX_CONSEQUENCES), np.bool_)
    c_eff = np.full((rows, MAX_CONSEQUENCES), -1, np.int64)
    eff_size = np.zeros((rows, N_EFFECTS))
    for p, policy in enumerate(policies):
        where = f"policy '{policy.name}'"
        cp = CompiledPolicy.of(policy)
        n_cls = len(policy.classes)
        if n_cls > MAX_CLASSES:
            raise SimulationError(f"{where}: the simulator supports at most {MAX_CLASSES} classes")
        # Class of every possible score, straight from the engine.
        scores = np.arange(policy.min, policy.max + 1, dtype=np.int64)
        ctab[p, : len(scores)] = cp.classify(scores)
        pint[p, K.P_START], pint[p, K.P_LO], pint[p, K.P_HI] = policy.start, policy.min, policy.max
        pint[p, K.P_N_CLASSES] = n_cls
        pint[p, K.P_MIN_AGE] = policy.min_age
        pint[p, K.P_CAP_CLASS] = -1
        pint[p, K.P_KB] = -1
        pint[p, K.P_KS] = MAX_CLASSES + 1
        capping = {int(c) for c in cp.class_cap if c >= 0}
        if len(capping) > 1 or (capping and p == commercial):
            raise SimulationError(f"{where}: class_at_most: the simulator supports one capping "
                                  "class per state policy and none in the commercial policy")
        if capping:
            pint[p, K.P_CAP_CLASS] = capping.pop()
        for r, rule in enumerate(policy.rules):
            if rule.kind not in KIND_NAMES:
                continue
            k = KIND_NAMES.index(rule.kind)
            rule_of[p, k] = r
            points[p, k] = cp.points[r]
            expires[p, k] = cp.expires[r]
            caps[p, k] = cp.cap[r]
            if cp.cap[r] > 255:
                raise SimulationError(f"{where}: rule[{r}].max_per_day: at most 255 in the simulator")
            caps_class[p, k] = cp.class_cap[r] >= 0
            min_conf[p, k] = cp.min_confidence[r]
            for s, name in enumerate(SOURCES):
                code = cp.source_ids.index(name) + 1 if name in cp.source_ids else 0
                accept[p, k, s] = cp.source_ok[r, code]
        # Consequences from the engine's compilation: bands, held days and effects mean here what
        # they mean in the service and the report (the policy keeps benefit classes above sanction
        # classes, and held days at a band's edge).
        consequences = CompiledConsequences.of(policy)
        items = consequences.items
        if len(items) > MAX_CONSEQUENCES:
            raise SimulationError(f"{where}: at most {MAX_CONSEQUENCES} benefits and sanctions")
        c_n[p] = len(items)
        ben_classes = [c.level for c in items if c.benefit]
        san_classes = [c.level for c in items if not c.benefit]
        if ben_classes:
            pint[p, K.P_KB] = max(ben_classes)
        if san_classes:
            pint[p, K.P_KS] = min(san_classes)
        for j, item in enumerate(items):
            label = f"{where}: {'benefit' if item.benefit else 'sanction'} '{item.name}'"
            band = 0 if item.benefit else 1
            c_cls[p, j], c_ben[p, j], c_held[p, j] = item.level, item.benefit, item.held_days
            kernel_effect = KERNEL_EFFECTS.get((item.effect, item.benefit))
            c_eff[p, j] = -1 if kernel_effect is None else EFFECTS.index(kernel_effect)
            if item.held_days > 0:
                if p == commercial:
                    raise SimulationError(f"{label}: held_days must be 0 in the commercial policy")
                slots = [h for h in held[p, band] if h > 0]
                if item.held_days not in slots:
                    if len(slots) == MAX_HELD:
                        raise SimulationError(f"{label}: at most {MAX_HELD} distinct held_days")
                    held[p, band, len(slots)] = item.held_days
                c_slot[p, j] = list(held[p, band]).index(item.held_days)
        for (effect, benefit), kernel_effect in KERNEL_EFFECTS.items():
            e = EFFECTS.index(kernel_effect)
            eff_held[p, e, :n_cls] = consequences.held_for(effect, benefit)
            item = consequences.deciding(effect, benefit)
            if item is not None:
                eff_size[p, e] = _size(item)
        for band, benefit in ((0, True), (1, False)):
            helds = [c.held_days for c in items if c.benefit == benefit]
            pint[p, K.P_HMIN_B + band] = min(helds) if helds else 0
    pol = K.Policies(ctab=ctab, pint=pint, held=held, eff_held=eff_held, eff_size=eff_size, points=points,
                     expires=expires, capcls=caps_class, accept=accept, min_conf=min_conf,
                     rule_of=rule_of, caps=caps)
    cons = K.Consequences(count=c_n, cls=c_cls, benefit=c_ben, held=c_held, slot=c_slot,
                          effect=c_eff)
    return pol, cons
