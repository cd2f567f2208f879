"""Consequences that people meet: jobs lost in sanctioned classes, travel bans, loan prices,
university admission through a parent's class, subway gate stops; and the day's holder counts."""

from __future__ import annotations

import numba as nb
import numpy as np

from socialcredit.simulation._hash import stream_key, uniform
from socialcredit.simulation._kinds import (
    F_ADMITTED,
    F_BLACKLISTED,
    F_EMPLOYED,
    LEARNED_REFUSED,
    M_CCLASS,
    M_CCONS,
    M_COUNT,
    M_SCLASS,
    M_SCONS,
    NO_PARENT,
)
from socialcredit.simulation.kernel._draws import next_in_regions, poisson
from socialcredit.simulation.kernel._layout import (
    C_ADM_ADMITTED,
    C_ADM_APPLIED,
    C_ADM_HELPED,
    C_ADM_HURT,
    C_DELISTED,
    C_FLIGHTS,
    C_FLIGHTS_BLOCKED,
    C_FLIGHTS_DISC,
    C_GATES,
    C_JOBS,
    C_LISTED,
    C_LOANS,
    C_LOANS_DISC,
    C_LOANS_REFUSED,
    C_TRAINS,
    C_TRAINS_BLOCKED,
    E_ADM_BONUS,
    E_ADM_PENALTY,
    E_FLIGHT_BAN,
    E_FLIGHT_DISC,
    E_GATE,
    E_JOB_LOSS,
    E_LOAN_DISC,
    E_LOAN_REFUSAL,
    E_TRAIN_BAN,
    P_N_CLASSES,
    S_ADMISSION,
    S_BAN_REACH,
    S_DELIST,
    S_FLIGHTS,
    S_GATES,
    S_JOBS,
    S_LOANS,
    S_PASSIVE,
    S_TRAINS,
)
from socialcredit.simulation.kernel._scoring import JIT, has_effect


@nb.njit(inline="always", **JIT)
def travel_factor(decile, fp):
    """A traveller's rate over the mode's mean rate, by income decile (0-9)."""
    return 1.0 + fp.travel_income * ((decile + 1) / 5.5 - 1.0)


@nb.njit(inline="always", **JIT)
def travel_top(rate, fp):
    """The richest traveller's daily rate of a mode whose mean is `rate` (at most 1): the rate the
    travel streams jump at, thinned by income."""
    return min(rate * travel_factor(9, fp), 1.0)


@nb.njit(inline="always", **JIT)
def ban_reaches(seed, block, i, flight, fp):
    """Whether citizen `i`'s class-based flight (or train) ban reaches the carriers' lists: one
    draw per citizen and mode, the same on every day of the run."""
    share = fp.flight_ban_reach if flight else fp.train_ban_reach
    if share >= 1.0:
        return True
    return uniform(stream_key(seed, block, 0, S_BAN_REACH), 2 * i + (0 if flight else 1)) < share


@nb.njit(**JIT)
def flight_bans_reaching(seed, blocks, within, class_ban, blacklisted, fp, out):
    """Per citizen (block, index within it), into `out`: whether a flight ticket is refused them at
    the end of the run, by a class-based ban that reaches the airlines or by the defaulter list."""
    for n in range(blocks.shape[0]):
        out[n] = (blacklisted[n] and fp.blacklist_bans > 0) or (
            class_ban[n] and ban_reaches(seed, blocks[n], within[n], True, fp))


@nb.njit(inline="always", **JIT)
def daily_streams(seed, block, t, fp, region_lo, world, pol, st, metrics):
    """Job loss, flights, trains and loans of the day: each a stream of adults met by a geometric
    jump, their class (or the defaulter list) deciding what happens."""
    flags, gd = st.flags, st.group_decile
    for stream in range(S_JOBS, S_LOANS + 1):
        if stream == S_JOBS:
            top = fp.job_loss
        elif stream == S_FLIGHTS:
            top = fp.flight
        elif stream == S_TRAINS:
            top = fp.train
        else:
            top = fp.loan
        if top <= 0.0:
            continue
        key = stream_key(seed, block, t, stream)
        draw = 0
        inv = world.inv_stream[stream - S_PASSIVE]
        thin = top / travel_top(top, fp)  # travel: the stream runs at the top rate
        r, i = 0, -1
        while True:
            i, r, draw = next_in_regions(key, draw, inv, i, r, region_lo)
            if r == region_lo.shape[0] - 1:
                break
            if st.age[i] < 18:
                continue
            if stream == S_JOBS:
                if (flags[i] & F_EMPLOYED) and has_effect(pol, world, st, i, E_JOB_LOSS, t):
                    risk = pol.eff_size[world.region_policy[st.region[i]], E_JOB_LOSS]
                    if risk < top:  # the stream runs at the largest risk: thin to the policy's
                        draw += 1
                        if uniform(key, draw - 1) * top >= risk:
                            continue
                    flags[i] &= ~np.uint8(F_EMPLOYED)
                    decile = max(np.int64(gd[i] & 15) - np.int64(fp.income_drop), 0)
                    gd[i] = (gd[i] & 0xF0) | decile
                    metrics[t, r, M_COUNT + C_JOBS] += 1
            elif stream == S_FLIGHTS or stream == S_TRAINS:
                flight = stream == S_FLIGHTS
                # Thinning from the richest traveller's rate: travel grows with income, and who
                # was refused a ticket tries less.
                x = travel_factor(np.int64(gd[i] & 15), fp) * thin
                if st.learned[i] & np.uint32(LEARNED_REFUSED):
                    x *= fp.retry
                draw += 1
                if uniform(key, draw - 1) >= x:
                    continue
                metrics[t, r, M_COUNT + (C_FLIGHTS if flight else C_TRAINS)] += 1
                covered = True
                if not flight:  # a ban covers some classes of train only
                    draw += 1
                    covered = uniform(key, draw - 1) < fp.train_banned_share
                banned = covered and (
                    ((flags[i] & F_BLACKLISTED) != 0 and fp.blacklist_bans > 0)
                    or (has_effect(pol, world, st, i, E_FLIGHT_BAN if flight else E_TRAIN_BAN, t)
                        and ban_reaches(seed, block, i, flight, fp)))
                if banned:
                    metrics[t, r, M_COUNT + (C_FLIGHTS_BLOCKED if flight else C_TRAINS_BLOCKED)] += 1
                    st.learned[i] |= np.uint32(LEARNED_REFUSED)
                elif flight and has_effect(pol, world, st, i, E_FLIGHT_DISC, t):
                    metrics[t, r, M_COUNT + C_FLIGHTS_DISC] += 1
            else:
                metrics[t, r, M_COUNT + C_LOANS] += 1
                if has_effect(pol, world, st, i, E_LOAN_REFUSAL, t):
                    metrics[t, r, M_COUNT + C_LOANS_REFUSED] += 1
                elif has_effect(pol, world, st, i, E_LOAN_DISC, t):
                    metrics[t, r, M_COUNT + C_LOANS_DISC] += 1


@nb.njit(inline="always", **JIT)
def delistings(seed, block, t, fp, region_lo, world, st, sc, metrics):
    """Listed defaulters who comply leave the list: a stream over everyone, kept where listed."""
    if fp.delisting <= 0.0:
        return
    key = stream_key(seed, block, t, S_DELIST)
    draw = 0
    r, i = 0, -1
    while True:
        i, r, draw = next_in_regions(key, draw, world.inv_delist, i, r, region_lo)
        if r == region_lo.shape[0] - 1:
            break
        if st.flags[i] & F_BLACKLISTED:
            st.flags[i] &= ~np.uint8(F_BLACKLISTED)
            st.learned[i] &= ~np.uint32(LEARNED_REFUSED)  # free to travel: they try as before
            sc.listed[r] -= 1
            metrics[t, r, M_COUNT + C_DELISTED] += 1


@nb.njit(inline="always", **JIT)
def admissions(seed, block, t, fp, world, pol, st, metrics):
    """University admission, once a year: parents' class helps or hurts their children."""
    key = stream_key(seed, block, t, S_ADMISSION)
    for i in range(st.age.shape[0]):
        if st.age[i] != 18:
            continue
        r = np.int64(st.region[i])
        metrics[t, r, M_COUNT + C_ADM_APPLIED] += 1
        chance = fp.adm_base
        pa = np.int64(st.parent[i])
        if pa != NO_PARENT:
            pp = world.region_policy[st.region[pa]]
            if has_effect(pol, world, st, pa, E_ADM_BONUS, t):
                chance *= 1.0 + pol.eff_size[pp, E_ADM_BONUS]
                metrics[t, r, M_COUNT + C_ADM_HELPED] += 1
            elif has_effect(pol, world, st, pa, E_ADM_PENALTY, t):
                chance *= 1.0 - pol.eff_size[pp, E_ADM_PENALTY]
                metrics[t, r, M_COUNT + C_ADM_HURT] += 1
        if uniform(key, i) < chance:
            st.flags[i] |= F_ADMITTED
            metrics[t, r, M_COUNT + C_ADM_ADMITTED] += 1


@nb.njit(inline="always", **JIT)
def end_of_day(seed, block, t, fp, world, pol, cons, sc, metrics):
    """Class counts and consequence holders per region; subway gate stops of the flagged."""
    gate_key = stream_key(seed, block, t, S_GATES)
    comm, hist_s, hist_c = world.comm, sc.hist_s, sc.hist_c
    for r in range(world.region_policy.shape[0]):
        metrics[t, r, M_COUNT + C_LISTED] = sc.listed[r]
        p = world.region_policy[r]
        if p >= 0:
            n_cls = pol.pint[p, P_N_CLASSES]
            for c in range(n_cls):
                metrics[t, r, M_SCLASS + c] = hist_s[r, c]
            gate = 0
            for j in range(cons.count[p]):
                holders = 0
                if cons.held[p, j] == 0:
                    for c in range(n_cls):
                        if (c <= cons.cls[p, j]) if cons.benefit[p, j] else (c >= cons.cls[p, j]):
                            holders += hist_s[r, c]
                else:
                    holders = sc.matured[r, 0 if cons.benefit[p, j] else 1, cons.slot[p, j]]
                metrics[t, r, M_SCONS + j] = holders
                if cons.effect[p, j] == E_GATE:
                    gate = max(gate, holders)
            lam = gate * fp.subway * pol.eff_size[p, E_GATE] * world.region_urban[r]
            metrics[t, r, M_COUNT + C_GATES] += poisson(lam, gate_key, 64 * r)
        if comm >= 0:
            n_cls = pol.pint[comm, P_N_CLASSES]
            for c in range(n_cls):
                metrics[t, r, M_CCLASS + c] = hist_c[r, c]
            for j in range(cons.count[comm]):
                holders = 0
                for c in range(n_cls):
                    if (c <= cons.cls[comm, j]) if cons.benefit[comm, j] else (c >= cons.cls[comm, j]):
                        holders += hist_c[r, c]
                metrics[t, r, M_CCONS + j] = holders
