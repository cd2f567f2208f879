"""Scoring: a citizen's class from the score, points applied and expired, the held-days clocks."""

from __future__ import annotations

import numba as nb
import numpy as np

from socialcredit.simulation._kinds import F_MEMBER, K_COMPLAINT, M_COUNT, M_KIND, MAX_HELD, N_DAILY_KINDS
from socialcredit.simulation.kernel._layout import (
    C_WRONGFUL_BOTTOM,
    C_WRONGFUL_DOWN,
    C_WRONGFUL_POINTS,
    P_CAP_CLASS,
    P_HI,
    P_HMIN_B,
    P_KB,
    P_KS,
    P_LO,
    P_MIN_AGE,
    P_N_CLASSES,
    P_START,
)

JIT = {"cache": True, "_nrt": False, "error_model": "numpy"}


@nb.njit(inline="always", **JIT)
def learned_bit(k):
    """The learned-bit of kind k: what a citizen remembers once scored for it; none for standing records."""
    return np.uint32(1) << np.uint32(k) if k < N_DAILY_KINDS else np.uint32(0)


@nb.njit(inline="always", **JIT)
def scored(pol, p, st, a):
    """True when policy p scores citizen `a` today by age: they are of its minimum age."""
    return np.int64(st.age[a]) >= pol.pint[p, P_MIN_AGE]


@nb.njit(inline="always", **JIT)
def state_scored(pol, world, st, a, t):
    """True when the region's policy scores citizen `a` on day t: it has started there, and they
    are of its age."""
    r = np.int64(st.region[a])
    p = world.region_policy[r]
    return p >= 0 and t >= world.region_from[r] and scored(pol, p, st, a)


@nb.njit(inline="always", **JIT)
def klass(pol, p, total, cap_count):
    """The class of a citizen with `total` points under policy p (a capped class caps it)."""
    lo = pol.pint[p, P_LO]
    s = min(max(pol.pint[p, P_START] + total, lo), pol.pint[p, P_HI])
    c = np.int64(pol.ctab[p, s - lo])
    if cap_count > 0 and pol.pint[p, P_CAP_CLASS] > c:
        c = pol.pint[p, P_CAP_CLASS]
    return c


@nb.njit(inline="always", **JIT)
def band(pol, p, c):
    """0 between, 1 in the benefit classes, 2 in the sanction classes."""
    if c <= pol.pint[p, P_KB]:
        return 1
    if c >= pol.pint[p, P_KS]:
        return 2
    return 0


@nb.njit(inline="always", **JIT)
def has_effect(pol, world, st, a, e, t):
    """True when consequence effect `e` applies to citizen `a` on day `t`."""
    if not state_scored(pol, world, st, a, t):
        return False
    p = world.region_policy[st.region[a]]
    h = pol.eff_held[p, e, klass(pol, p, st.state_total[a], st.cap_count[a])]
    return h >= 0 and t - np.int64(st.since[a]) >= h


@nb.njit(inline="always", **JIT)
def class_change(pol, sc, a, r, p, old, new):
    """Keep class counts in step; note a citizen whose band changes, for `settle_bands`.

    Held days count whole days, like the engine's classes (as of a day) and the service's class
    history: a citizen who leaves a band and comes back within one day (points that expire in the
    morning, a new offence later that day) never left it. So the held-days clock only moves at the
    end of the day, from the band the citizen had when the day began to the band they end it in.
    """
    sc.hist_s[r, old] -= 1
    sc.hist_s[r, new] += 1
    if sc.band0[a] == 0 and band(pol, p, old) != band(pol, p, new):
        sc.band0[a] = 1 + band(pol, p, old)
        n = sc.changed[0] + 1
        sc.changed[n] = a
        sc.changed[0] = n


@nb.njit(inline="always", **JIT)
def settle_bands(pol, region_policy, st, sc, t):
    """End of day t: move the held-days clock, the maturity queues and the days under benefits and
    sanctions of the citizens whose band differs from the morning's; False when a queue is full."""
    changed, band0, fifo, fifo_len = sc.changed, sc.band0, sc.fifo, sc.fifo_len
    for q in range(1, changed[0] + 1):
        a = changed[q]
        ob = np.int64(band0[a]) - 1
        band0[a] = 0
        r = np.int64(st.region[a])
        p = region_policy[r]
        nb_ = band(pol, p, klass(pol, p, st.state_total[a], st.cap_count[a]))
        if ob == nb_:
            continue
        s = np.int64(st.since[a])
        if ob > 0:
            days = t - s - pol.pint[p, P_HMIN_B + ob - 1]
            if days > 0:
                if ob == 2:
                    st.sanction_days[a] = min(np.int64(st.sanction_days[a]) + days, 65535)
                else:
                    st.benefit_days[a] = min(np.int64(st.benefit_days[a]) + days, 65535)
            for j in range(MAX_HELD):
                h = pol.held[p, ob - 1, j]
                if h > 0 and t - s >= h:
                    sc.matured[r, ob - 1, j] -= 1
        st.since[a] = t
        if nb_ > 0 and pol.held[p, nb_ - 1, 0] > 0:
            b = nb_ - 1
            n = fifo_len[b]
            if 2 * n + 2 > fifo.shape[1]:
                return False
            fifo[b, 2 * n] = a
            fifo[b, 2 * n + 1] = t
            fifo_len[b] = n + 1
    changed[0] = 0
    return True


@nb.njit(inline="always", **JIT)
def score(scheme, p, k, a, actor, r, t, D, pol, st, sc, metrics):
    """Apply one counted event's points to citizen `a` under `scheme` (0 the state's, 1 the
    commercial score); False when the expiry buffer is full."""
    total = st.state_total if scheme == 0 else st.commercial_total
    capcnt = st.cap_count
    pts = pol.points[p, k]
    cap_before = capcnt[a] if scheme == 0 else 0
    old = klass(pol, p, total[a], cap_before)
    total[a] += pts
    if scheme == 0 and pol.capcls[p, k]:
        capcnt[a] += 1
    ex = pol.expires[p, k]
    if ex > 0 and t + ex < D:
        n = sc.exp_len[0]
        if n >= sc.exp_buf.shape[1]:
            return False
        sc.exp_buf[0, n] = a
        sc.exp_buf[1, n] = k + 64 * scheme
        sc.exp_buf[2, n] = sc.exp_head[t + ex]
        sc.exp_head[t + ex] = n
        sc.exp_len[0] = n + 1
    new = klass(pol, p, total[a], capcnt[a] if scheme == 0 else 0)
    if scheme == 0:
        if new != old:
            class_change(pol, sc, a, r, p, old, new)
        metrics[t, r, M_KIND + 4 * k + 3] += 1
        if a != actor:
            wrong = st.wrongful_points
            wrong[a] = min(max(np.int64(wrong[a]) + pts, -32768), 32767)
            metrics[t, r, M_COUNT + C_WRONGFUL_POINTS] += pts
            if new > old:  # an event they did not commit moved them down a class (0 is the top)
                metrics[t, r, M_COUNT + C_WRONGFUL_DOWN] += 1
                if new == pol.pint[p, P_N_CLASSES] - 1:
                    metrics[t, r, M_COUNT + C_WRONGFUL_BOTTOM] += 1
    elif new != old:
        sc.hist_c[r, old] -= 1
        sc.hist_c[r, new] += 1
    bit = learned_bit(k)
    if bit != 0 and (st.learned[a] & bit) == 0:
        st.learned[a] |= bit
        if k == K_COMPLAINT and pts < 0:
            sc.peer_pen[r] += 1
    return True


@nb.njit(inline="always", **JIT)
def expire_points(pol, region_policy, comm, st, sc, t):
    """Points that expire on day t leave the scores (before the day's events)."""
    e = sc.exp_head[t]
    while e >= 0:
        a = sc.exp_buf[0, e]
        k = sc.exp_buf[1, e] % 64
        scheme = sc.exp_buf[1, e] // 64
        r = np.int64(st.region[a])
        if scheme == 0:
            p = region_policy[r]
            old = klass(pol, p, st.state_total[a], st.cap_count[a])
            st.state_total[a] -= pol.points[p, k]
            if pol.capcls[p, k]:
                st.cap_count[a] -= 1
            new = klass(pol, p, st.state_total[a], st.cap_count[a])
            if new != old:
                class_change(pol, sc, a, r, p, old, new)
        else:
            old = klass(pol, comm, st.commercial_total[a], 0)
            st.commercial_total[a] -= pol.points[comm, k]
            new = klass(pol, comm, st.commercial_total[a], 0)
            if new != old:
                sc.hist_c[r, old] -= 1
                sc.hist_c[r, new] += 1
        e = sc.exp_buf[2, e]


@nb.njit(inline="always", **JIT)
def mature_held(pol, region_policy, st, sc, t):
    """Held-days clocks that mature on day t: citizens in the band since the end of day t - h
    (counted before the day's changes, which `settle_bands` takes off at the end of the day)."""
    fifo, fifo_len = sc.fifo, sc.fifo_len
    for p in range(pol.pint.shape[0]):
        for b in range(2):
            for j in range(MAX_HELD):
                h = pol.held[p, b, j]
                if h <= 0:
                    continue
                q = sc.ptr[p, b, j]
                while q < fifo_len[b] and fifo[b, 2 * q + 1] + h <= t:
                    a = fifo[b, 2 * q]
                    r = np.int64(st.region[a])
                    if (region_policy[r] == p and np.int64(st.since[a]) == fifo[b, 2 * q + 1]
                            and band(pol, p, klass(pol, p, st.state_total[a], st.cap_count[a])) == b + 1):
                        sc.matured[r, b, j] += 1
                    q += 1
                sc.ptr[p, b, j] = q


@nb.njit(inline="always", **JIT)
def start_classes(pol, world, st, sc):
    """Day 0: everyone scored starts at the policy's start score, in its class and band; False when
    a held-days queue is full."""
    for i in range(st.age.shape[0]):
        if state_scored(pol, world, st, i, 0) and not enter_state(pol, world, st, sc, i, 0):
            return False
        enter_commercial(pol, world.comm, st, sc, i, 0)
    return True


@nb.njit(inline="always", **JIT)
def enter_state(pol, world, st, sc, i, t):
    """Citizen i is scored from day t (the start, the day they come of age, the day their region
    joins its scheme): count them in their class and start their band's held-days clock; False
    when a held-days queue is full."""
    r = np.int64(st.region[i])
    p = world.region_policy[r]
    c = klass(pol, p, st.state_total[i], st.cap_count[i])
    sc.hist_s[r, c] += 1
    st.since[i] = t
    b = band(pol, p, c)
    if b > 0 and pol.held[p, b - 1, 0] > 0:
        n = sc.fifo_len[b - 1]
        if 2 * n + 2 > sc.fifo.shape[1]:
            return False
        sc.fifo[b - 1, 2 * n] = i
        sc.fifo[b - 1, 2 * n + 1] = t
        sc.fifo_len[b - 1] = n + 1
    return True


@nb.njit(inline="always", **JIT)
def enter_commercial(pol, comm, st, sc, i, t):
    """A platform member enters the commercial score's classes on day t, once of its age."""
    if (comm >= 0 and (st.flags[i] & F_MEMBER) and scored(pol, comm, st, i)
            and (t == 0 or np.int64(st.age[i]) == pol.pint[comm, P_MIN_AGE])):
        sc.hist_c[np.int64(st.region[i]), klass(pol, comm, st.commercial_total[i], 0)] += 1


@nb.njit(inline="always", **JIT)
def birthday(pol, world, st, sc, i, t):
    """Citizen i turned a year older for day t: they enter the classes of a policy whose age they
    reached (a region joining its scheme that day enters them in `join_scheme`); False when a
    held-days queue is full."""
    r = np.int64(st.region[i])
    p = world.region_policy[r]
    if (p >= 0 and world.region_from[r] < t and np.int64(st.age[i]) == pol.pint[p, P_MIN_AGE]
            and not enter_state(pol, world, st, sc, i, t)):
        return False
    enter_commercial(pol, world.comm, st, sc, i, t)
    return True


@nb.njit(inline="always", **JIT)
def join_scheme(pol, world, region_lo, st, sc, t):
    """Regions whose policy starts on day t: their citizens of age enter its classes; False when a
    held-days queue is full."""
    for r in range(region_lo.shape[0] - 1):
        if world.region_from[r] == t and world.region_policy[r] >= 0:
            for i in range(region_lo[r], region_lo[r + 1]):
                if scored(pol, world.region_policy[r], st, i) and not enter_state(pol, world, st, sc, i, t):
                    return False
    return True


@nb.njit(inline="always", **JIT)
def days_in_bands(pol, world, st, D):
    """At the end of the run: add the days each citizen has been under benefits or sanctions."""
    for i in range(st.age.shape[0]):
        if not state_scored(pol, world, st, i, D - 1):
            continue
        p = world.region_policy[np.int64(st.region[i])]
        b = band(pol, p, klass(pol, p, st.state_total[i], st.cap_count[i]))
        if b > 0:
            days = D - np.int64(st.since[i]) - pol.pint[p, P_HMIN_B + b - 1]
            if days > 0:
                if b == 2:
                    st.sanction_days[i] = min(np.int64(st.sanction_days[i]) + days, 65535)
                else:
                    st.benefit_days[i] = min(np.int64(st.benefit_days[i]) + days, 65535)
