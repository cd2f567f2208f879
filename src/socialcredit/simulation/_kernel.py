"""The fused kernel: one block of citizens, every day of a run, in one compiled loop.

A block (a fixed number of citizens, the unit of randomness and of attribution) is independent of
every other block: a false camera match picks the innocent from the same region within the same
block, households live within a block, peers are the block's citizens of the same region. So a
block's results depend only on (seed, block, parameters), never on how blocks are grouped into
chunks, shards, workers or devices.

Work grows with events, not citizens x days x kinds: each kind's acts are found by geometric
jumps over the citizens (thinning against the kind's largest possible rate), points expire from
a per-day bucket list, and classes are counted incrementally as scores change. The jumps walk the
block's citizens in an order grouped by region, deviance level and age (built once per block), so
a kind skips the ages it does not concern and deviant kinds thin against each level's own bound:
fewer rejected candidates, the dominant cost.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros

from socialcredit.simulation._hash import POPULATION_DAY, bits, mix, stream_key, uniform
from socialcredit.simulation._kinds import (
    CIVIC,
    DEVIANT,
    DEVIANT_POOR,
    F_ADMITTED,
    F_BLACKLISTED,
    F_BOT,
    F_EMPLOYED,
    F_MALE,
    F_MEMBER,
    F_SAVVY,
    F_URBAN,
    HIGH_INCOME,
    INSTORE_SHIFT,
    K_COMPLAINT,
    K_JUDGMENT_DEFAULT,
    K_NEWSPAPER,
    LOW_INCOME,
    M_CCLASS,
    M_CCONS,
    M_COUNT,
    M_KIND,
    M_SCLASS,
    M_SCONS,
    MAX_HELD,
    N_KINDS,
    NO_PARENT,
    OBS_CAMERA,
    OBS_NONE,
    OBS_PLATFORM,
    PLACE_MALL,
)

# Stream ids (acts of kind k use stream 1 + k).
S_PASSIVE, S_JOBS, S_FLIGHTS, S_TRAINS, S_LOANS, S_GATES, S_ADMISSION, S_SAMPLE = range(40, 48)
S_POPULATION, S_PLATFORM = 100, 110
# Counter slots (see _kinds.COUNTERS).
C_JOBS, C_FLIGHTS, C_FLIGHTS_BLOCKED, C_FLIGHTS_DISC, C_TRAINS, C_TRAINS_BLOCKED, C_GATES = range(7)
C_LOANS, C_LOANS_DISC, C_LOANS_REFUSED, C_ADM_APPLIED, C_ADM_ADMITTED, C_ADM_HELPED = range(7, 13)
C_ADM_HURT, C_BOTS, C_SIGHTINGS, C_WRONGFUL_POINTS, C_BLACKLISTED = range(13, 18)
C_INSTORE, C_INSTORE_WRONGFUL = range(18, 20)
# Effects (see _kinds.EFFECTS).
E_LOAN_DISC, E_LOAN_REFUSAL, E_INSURANCE, E_FLIGHT_DISC, E_FLIGHT_BAN, E_TRAIN_BAN = range(6)
E_GATE, E_JOB_LOSS, E_ADM_BONUS, E_ADM_PENALTY = range(6, 10)
# Float parameters (index into fp; filled by _plan.py in this order).
(FP_FNMR, FP_DETERRENCE, FP_SELF_CENSORSHIP, FP_PEER_CENSORSHIP, FP_CONFORMITY, FP_GAMING,
 FP_TRUE_CONF, FP_FALSE_CONF_LO, FP_FALSE_CONF_HI, FP_AGE_NOISE, FP_PASSIVE, FP_RURAL_COVERAGE,
 FP_JOB_LOSS, FP_INCOME_DROP, FP_FLIGHT, FP_TRAIN, FP_SUBWAY, FP_LOAN, FP_ADM_BASE, FP_ADM_BONUS,
 FP_ADM_PENALTY, FP_SAMPLE, FP_MALE, FP_MEMBER, FP_SAVVY, FP_EMPLOYED, FP_AGE_0_14,
 FP_AGE_15_59, FP_BLACKLIST_BANS, FP_GATE_STOP, FP_ADM_DAY, FP_INSTORE) = range(32)
N_FP = 32
RECORD_NONE, RECORD_ALL, RECORD_SAMPLE = 0, 1, 2


# Columns of the per-policy integer table `pint` (filled by _plan.py).
P_START, P_LO, P_HI, P_CAP_CLASS, P_KB, P_KS, P_N_CLASSES, P_HMIN_B, P_HMIN_S = range(9)
N_PINT = 9

# The kernel runs without numba's reference counting (_nrt=False), which otherwise costs more than
# the model itself on the per-event path: it allocates nothing, all scratch comes from the caller,
# and a full buffer makes it return OVERFLOW so that the caller retries the block with more room.
# No divisor can be zero, so numpy's error model spares a check on every division.
OVERFLOW = -1
LEVELS = 16  # deviance levels (the high nibble of `traits`)
AGES = 256  # ages an uint8 holds


@nb.njit(inline="always", cache=True, _nrt=False, error_model="numpy")
def _gap(key, n, inv):
    """Citizens skipped before the next candidate: floor(log(u) / log(1 - p)), inv = 1/log(1-p),
    with u in (0, 1] from draw n of the stream.

    log(u) from the draw's bits (exponent by counting leading zeros, mantissa m in [0.5, 1)) and
    an odd series in (m-1)/(m+1), relative error < 2e-7: cheaper than libm, the same on every device.
    """
    q = (bits(key, n) >> np.uint64(11)) + np.uint64(1)  # u = q / 2**53
    lz = leading_zeros(q)
    m = np.float64((q << lz) >> np.uint64(11)) * 1.1102230246251565e-16  # 2**-53
    z = (m - 1.0) / (m + 1.0)
    z2 = z * z
    ln = (np.int64(11) - np.int64(lz)) * 0.6931471805599453 + 2.0 * z * (1.0 + z2 * (1.0 / 3.0 + z2 * (
        0.2 + z2 * (1.0 / 7.0 + z2 * (1.0 / 9.0 + z2 / 11.0)))))
    return ln * inv


@nb.njit(inline="always", cache=True, _nrt=False, error_model="numpy")
def _next_candidate(key, draw, inv, i, hi):
    """The next candidate after citizen i (a geometric jump, draw `draw`), or hi when the jump
    leaves [.., hi); and the next draw."""
    jump = _gap(key, draw, inv)
    if jump >= hi - i:
        return hi, draw + 1
    return i + 1 + int(jump), draw + 1


@nb.njit(inline="always", cache=True, _nrt=False, error_model="numpy")
def _klass(ctab, pint, p, total, cap_count):
    lo = pint[p, P_LO]
    s = min(max(pint[p, P_START] + total, lo), pint[p, P_HI])
    c = np.int64(ctab[p, s - lo])
    if cap_count > 0 and pint[p, P_CAP_CLASS] > c:
        c = pint[p, P_CAP_CLASS]
    return c


@nb.njit(inline="always", cache=True, _nrt=False, error_model="numpy")
def _band(pint, p, c):
    if c <= pint[p, P_KB]:
        return 1
    if c >= pint[p, P_KS]:
        return 2
    return 0


@nb.njit(inline="always", cache=True, _nrt=False, error_model="numpy")
def _effect(ctab, pint, eff_held, region_policy, region, stot, capcnt, since, a, e, t):
    """True when consequence effect `e` applies to citizen `a` on day `t`."""
    p = region_policy[region[a]]
    if p < 0:
        return False
    h = eff_held[p, e, _klass(ctab, pint, p, stot[a], capcnt[a])]
    return h >= 0 and t - np.int64(since[a]) >= h


@nb.njit(inline="always", cache=True, _nrt=False, error_model="numpy")
def _class_change(pint, hist_s, band0, changed, a, r, p, old, new):
    """Keep class counts in step; note a citizen whose band changes, for `_settle_bands`.

    Held days count whole days, like the engine's classes (as of a day) and the service's class
    history: a citizen who leaves a band and comes back within one day (points that expire in the
    morning, a new offence later that day) never left it. So the held-days clock only moves at the
    end of the day, from the band the citizen had when the day began to the band they end it in.
    """
    hist_s[r, old] -= 1
    hist_s[r, new] += 1
    if band0[a] == 0 and _band(pint, p, old) != _band(pint, p, new):
        band0[a] = 1 + _band(pint, p, old)
        n = changed[0] + 1
        changed[n] = a
        changed[0] = n


@nb.njit(inline="always", cache=True, _nrt=False, error_model="numpy")
def _settle_bands(ctab, pint, held, region, region_policy, stot, capcnt, fifo, fifo_len, matured,
                  since, sdays, bdays, band0, changed, t):
    """End of day t: move the held-days clock, the maturity queues and the days under benefits and
    sanctions of the citizens whose band differs from the morning's; False when a queue is full."""
    for q in range(1, changed[0] + 1):
        a = changed[q]
        ob = np.int64(band0[a]) - 1
        band0[a] = 0
        r = np.int64(region[a])
        p = region_policy[r]
        nb_ = _band(pint, p, _klass(ctab, pint, p, stot[a], capcnt[a]))
        if ob == nb_:
            continue
        s = np.int64(since[a])
        if ob > 0:
            days = t - s - pint[p, P_HMIN_B + ob - 1]
            if days > 0:
                if ob == 2:
                    sdays[a] = min(np.int64(sdays[a]) + days, 65535)
                else:
                    bdays[a] = min(np.int64(bdays[a]) + days, 65535)
            for j in range(MAX_HELD):
                h = held[p, ob - 1, j]
                if h > 0 and t - s >= h:
                    matured[r, ob - 1, j] -= 1
        since[a] = t
        if nb_ > 0 and held[p, nb_ - 1, 0] > 0:
            b = nb_ - 1
            n = fifo_len[b]
            if 2 * n + 2 > fifo.shape[1]:
                return False
            fifo[b, 2 * n] = a
            fifo[b, 2 * n + 1] = t
            fifo_len[b] = n + 1
    changed[0] = 0
    return True


@nb.njit(inline="always", cache=True, _nrt=False, error_model="numpy")
def _rate(d, level_rate, rural, det, conf, flags, gd, traits, learned, bit, sign, censor, i):
    """Today's daily rate of a kind for citizen `i` of a segment, with feedback.

    `level_rate` is the kind's base rate times the segment's deviance factor (deviant kinds); the
    segment already holds only the kind's ages.
    """
    x = level_rate
    if d == CIVIC:
        x *= ((np.int64(traits[i]) & 15) + 0.5) / 8.0
    elif d == LOW_INCOME or d == DEVIANT_POOR:
        x *= (10 - np.int64(gd[i] & 15)) / 5.5
    elif d == HIGH_INCOME:
        x *= (np.int64(gd[i] & 15) + 1) / 5.5
    if (flags[i] & F_URBAN) == 0:
        x *= rural
    if learned[i] & bit:
        if sign < 0:
            x *= det
        elif sign > 0:
            x *= conf
    return x * censor


# A false match is a look-alike: the gallery photo that beats the true mate's usually shows someone of
# the same demographic group (NIST FRVT: false matches are mostly within a group), so the innocent
# is drawn from the seen person's group in the same block-region when one turns up in these tries.
LOOK_ALIKE_TRIES = 64
_LOOK_ALIKE_SALT = np.uint64(0x5DEECE66D1F2A3B7)


@nb.njit(cache=True)
def _look_alike(key, draw, gd, actor, lo, hi):
    """The innocent a false match names: another citizen of [lo, hi), of the actor's group if possible."""
    sub = mix(key ^ _LOOK_ALIKE_SALT ^ np.uint64(draw))
    group = gd[actor] >> 4
    att = actor
    for j in range(LOOK_ALIKE_TRIES):
        att = lo + int(uniform(sub, j) * (hi - lo - 1))
        if att >= actor:
            att += 1
        if (gd[att] >> 4) == group:
            break
    return att


@nb.njit(inline="always", cache=True, _nrt=False, error_model="numpy")
def _sight(fp, age, page, psight, moves, att, actor, place, u1, u2):
    """A camera sighting refines the attributed citizen's profile with the face it really saw."""
    n = min(np.int64(psight[att]) + 1, 255)
    psight[att] = n
    obs = np.int64(age[actor]) + np.int64(round((u1 + u2 - 1.0) * fp[FP_AGE_NOISE]))
    if n == 1:
        est = obs
    else:
        est = np.int64(page[att])
        est = est + np.int64(round((obs - est) / n))
    page[att] = min(max(est, 0), 255)
    shift = np.uint16(5 * place)
    if ((moves[att] >> shift) & np.uint16(31)) < 31:
        moves[att] += np.uint16(1) << shift


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def _populate(seed, block, fp, region_lo, region_urban, group_cum, age, flags, region, gd,
              traits, parent):
    key = stream_key(seed, block, POPULATION_DAY, S_POPULATION)
    n_regions = region_lo.shape[0] - 1
    for r in range(n_regions):
        lo, hi = region_lo[r], region_lo[r + 1]
        for i in range(lo, hi):
            c = 32 * i
            u = uniform(key, c)
            v = uniform(key, c + 1)
            if u < fp[FP_AGE_0_14]:
                ag = int(v * 15)
            elif u < fp[FP_AGE_0_14] + fp[FP_AGE_15_59]:
                ag = 15 + int(v * 45)
            else:
                ag = 60 + int(v * 30)  # ASSUMPTION: ages 60-89, evenly
            f = 0
            if uniform(key, c + 2) < fp[FP_MALE]:
                f |= F_MALE
            if uniform(key, c + 3) < region_urban[r]:
                f |= F_URBAN
            if uniform(key, c + 4) < fp[FP_MEMBER]:
                f |= F_MEMBER
            if 15 <= ag < 60 and uniform(key, c + 5) < fp[FP_SAVVY]:
                f |= F_SAVVY
            if 18 <= ag < 60 and uniform(key, c + 6) < fp[FP_EMPLOYED]:
                f |= F_EMPLOYED
            ug = uniform(key, c + 7)
            g = 0
            while g < group_cum.shape[0] - 1 and ug >= group_cum[g]:
                g += 1
            age[i] = ag
            flags[i] = f
            region[i] = r
            gd[i] = g * 16 + int(uniform(key, c + 8) * 10)
            traits[i] = int(uniform(key, c + 9) * 16) * 16 + int(uniform(key, c + 10) * 16)
        for i in range(lo, hi):
            ag = np.int64(age[i])
            pa = NO_PARENT
            if ag < 25 and hi - lo > 1:
                for attempt in range(8):
                    j = lo + int(uniform(key, 32 * i + 16 + attempt) * (hi - lo))
                    if j != i and ag + 20 <= np.int64(age[j]) <= ag + 45:
                        pa = j
                        break
            parent[i] = pa


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def _order_citizens(region_lo, region, traits, age, order, seg):
    """A counting sort of the block's citizens by (region, deviance level, age at the start).

    `order` lists citizens so; `seg[(r * LEVELS + v) * AGES + a]` is where the citizens of region r,
    level v and starting age a begin in it (the next entry is where they end). Everyone ages at
    the same time, so the order stays sorted by current age: age a today sat at a - years.
    """
    seg[:] = 0
    n = region_lo[-1]
    for i in range(n):
        seg[(np.int64(region[i]) * LEVELS + (np.int64(traits[i]) >> 4)) * AGES + age[i] + 1] += 1
    for b in range(1, seg.shape[0]):
        seg[b] += seg[b - 1]
    for i in range(n):  # stable: citizens of one cell stay in index order
        b = (np.int64(region[i]) * LEVELS + (np.int64(traits[i]) >> 4)) * AGES + age[i]
        order[seg[b]] = i
        seg[b] += 1
    for b in range(seg.shape[0] - 1, 0, -1):  # the cursors now hold the ends: shift back to starts
        seg[b] = seg[b - 1]
    seg[0] = 0


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def _poisson(lam, key, n):
    """A Poisson draw from uniforms n, n+1, ... of a stream (normal approximation above 50)."""
    if lam <= 0.0:
        return 0
    if lam > 50.0:
        u1 = max(uniform(key, n), 1e-300)
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * uniform(key, n + 1))
        return max(0, int(round(lam + math.sqrt(lam) * z)))
    limit = math.exp(-lam)
    prod = uniform(key, n)
    k = 0
    while prod > limit:
        prod *= uniform(key, n + 1 + k)
        k += 1
    return k


@nb.njit(inline="always", cache=True, _nrt=False, error_model="numpy")
def _score(scheme, p, k, a, actor, r, t, D, rules, people, books, metrics):
    """Apply one counted event's points to citizen `a` under `scheme`; False when a buffer is full."""
    points, expires, capcls, ctab, pint, held = rules
    total, capcnt, learned, wrong = people
    hist_s, hist_c, band0, changed, exp_buf, exp_head, exp_len, peer_pen = books
    pts = points[p, k]
    cap_before = capcnt[a] if scheme == 0 else 0
    old = _klass(ctab, pint, p, total[a], cap_before)
    total[a] += pts
    if scheme == 0 and capcls[p, k]:
        capcnt[a] += 1
    ex = expires[p, k]
    if ex > 0 and t + ex < D:
        n = exp_len[0]
        if n >= exp_buf.shape[1]:
            return False
        exp_buf[0, n] = a
        exp_buf[1, n] = k + 64 * scheme
        exp_buf[2, n] = exp_head[t + ex]
        exp_head[t + ex] = n
        exp_len[0] = n + 1
    new = _klass(ctab, pint, p, total[a], capcnt[a] if scheme == 0 else 0)
    if scheme == 0:
        if new != old:
            _class_change(pint, hist_s, band0, changed, a, r, p, old, new)
        metrics[t, r, M_KIND + 4 * k + 3] += 1
        if a != actor:
            wrong[a] = min(max(np.int64(wrong[a]) + pts, -32768), 32767)
            metrics[t, r, M_COUNT + C_WRONGFUL_POINTS] += pts
    elif new != old:
        hist_c[r, old] -= 1
        hist_c[r, new] += 1
    bit = np.uint32(1) << np.uint32(k)
    if (learned[a] & bit) == 0:
        learned[a] |= bit
        if k == K_COMPLAINT and pts < 0:
            peer_pen[r] += 1
    return True


@nb.njit(cache=True, _nrt=False, error_model="numpy")
def _kind_pass(k, t, D, seed, block, key, rmax, inv_kv, n_active_bots, fp, region_lo,
               region_policy, coverage, fmr, plat_share, plat_key, kt, obs, place_cum, sign_rk, pol,
               comm, record, sample_key, st, books, metrics, count, order, seg):
    """One kind on one day: find the acts, observe, attribute and score them; False when full."""
    (age, flags, region, gd, traits, parent, stot, ctot, capcnt, learned, since, sdays, bdays,
     wrong, page, psight, moves) = st
    ctab, pint, held, eff_held, points, expires, capcls, accept, min_conf, rule_of, caps = pol
    driver, min_age, max_age, base, rural = kt
    obs_type, obs_src, obs_prob, obs_plat = obs
    (hist_s, hist_c, fifo, fifo_len, matured, exp_head, exp_len, exp_buf, peer_pen, ptr, cap_s,
     cap_c, touched, bots, ev, ev_conf, _, _, _, band0, changed) = books
    n_regions = region_lo.shape[0] - 1
    draw = 0
    n_touched, n_bots, n_ev, seq = count[0], count[1], count[2], count[3]
    years = t // 365
    age_lo = max(min_age[k] - years, 0)  # the kind's ages, as the citizens' starting ages
    age_hi = min(max_age[k] - years, AGES - 1)
    censor = 1.0
    d = driver[k]
    rural_k = rural[k]
    det = 1.0 - fp[FP_DETERRENCE]
    conform = 1.0 + fp[FP_CONFORMITY]
    bit = np.uint32(1) << np.uint32(k)
    # Segments: each (region, deviance level) of the order, then the bots.
    last = n_regions * LEVELS + 1 if k == K_NEWSPAPER else n_regions * LEVELS
    for sg in range(last):
        r = sg // LEVELS
        if r < n_regions:
            v = sg % LEVELS
            if v == 0 and k == K_COMPLAINT:
                censor = 1.0
                if sign_rk[r, k] < 0:
                    share = peer_pen[r] / max(region_lo[r + 1] - region_lo[r], 1)
                    censor = (1.0 - fp[FP_SELF_CENSORSHIP]) * max(
                        0.0, 1.0 - fp[FP_PEER_CENSORSHIP] * share)
            top = rmax[k, v]
            if top <= 0.0 or age_lo > age_hi:
                continue
            sign = sign_rk[r, k]
            level_rate = base[k]
            if d == DEVIANT or d == DEVIANT_POOR:
                level_rate *= (v + 0.5) / 8.0
            inv = inv_kv[k, v]
            cell = (r * LEVELS + v) * AGES
            lo, hi = seg[cell + age_lo], seg[cell + age_hi + 1]
            if lo == hi:  # small regions leave many cells empty: spare them a draw
                continue
        else:  # bots never tire: each visits the party newspaper once a day
            top, inv = 1.0, 0.0
            lo, hi = 0, n_active_bots
        i = lo - 1
        while True:
            if top >= 1.0:
                i += 1
            else:
                i, draw = _next_candidate(key, draw, inv, i, hi)
            if i >= hi:
                break
            if r == n_regions:
                actor = bots[i]
                ra = np.int64(region[actor])
            else:
                actor = order[i]
                ra = r
                x = _rate(d, level_rate, rural_k, det, conform, flags, gd, traits, learned, bit,
                          sign, censor, actor)
                if x <= 0.0:
                    continue
                if x < top:  # thinning; a candidate at the bound is an act for sure
                    draw += 1
                    if uniform(key, draw - 1) * top >= x:
                        continue
            metrics[t, ra, M_KIND + 4 * k] += 1
            lo_r, hi_r = region_lo[ra], region_lo[ra + 1]
            # The first sensor that catches the act makes one observed, attributed event.
            att = -1
            conf = -1.0
            place = -1
            src = 0
            for o in range(3):
                typ = obs_type[k, o]
                if typ == OBS_NONE:
                    break
                src = obs_src[k, o]
                if typ == OBS_CAMERA:
                    up = uniform(key, draw)
                    place = 0
                    while place < 2 and up >= place_cum[k, place]:
                        place += 1
                    cov = coverage[ra, place]
                    if (flags[actor] & F_URBAN) == 0:
                        cov *= fp[FP_RURAL_COVERAGE]
                    d0 = draw
                    draw += 7  # draws d0..d0+6 belong to this sighting, used or not
                    if (uniform(key, d0 + 1) >= cov
                            or uniform(key, d0 + 2) < fp[FP_FNMR]):
                        place = -1
                        continue
                    um = uniform(key, d0 + 3)
                    uc = uniform(key, d0 + 4)
                    un1 = uniform(key, d0 + 5)
                    un2 = uniform(key, d0 + 6)
                    att = actor
                    if um < fmr[ra, np.int64(gd[actor] >> 4)] and hi_r - lo_r > 1:
                        att = _look_alike(key, draw, gd, actor, lo_r, hi_r)
                        draw += 1
                        conf = fp[FP_FALSE_CONF_LO] + (
                            fp[FP_FALSE_CONF_HI] - fp[FP_FALSE_CONF_LO]) * uc
                    else:
                        conf = fp[FP_TRUE_CONF] + (1.0 - fp[FP_TRUE_CONF]) * uc
                    _sight(fp, age, page, psight, moves, att, actor, place, un1, un2)
                    metrics[t, ra, M_COUNT + C_SIGHTINGS] += 1
                    break
                if typ == OBS_PLATFORM:
                    plat = obs_plat[k, o]
                    if plat == plat_share.shape[0] - 1:
                        member = (flags[actor] & F_MEMBER) != 0
                    else:
                        member = uniform(mix(plat_key + np.uint64(plat)), actor) < plat_share[plat]
                    if member:
                        att = actor
                        break
                else:
                    draw += 1
                    if uniform(key, draw - 1) < obs_prob[k, o]:
                        att = actor
                        break
            if att < 0:
                continue
            metrics[t, ra, M_KIND + 4 * k + 1] += 1
            if att != actor:
                metrics[t, ra, M_KIND + 4 * k + 2] += 1
            if k == K_JUDGMENT_DEFAULT and (flags[att] & F_BLACKLISTED) == 0:
                flags[att] |= F_BLACKLISTED
                metrics[t, ra, M_COUNT + C_BLACKLISTED] += 1
            cf = 1.0 if conf < 0.0 else conf
            counted = 0
            for scheme in range(2):  # the state's score, then the commercial one
                if scheme == 0:
                    p = region_policy[ra]
                    total = stot
                    cap_n = cap_s
                else:
                    p = comm if (flags[att] & F_MEMBER) else -1
                    total = ctot
                    cap_n = cap_c
                if not (p >= 0 and rule_of[p, k] >= 0 and accept[p, k, src]
                        and cf >= min_conf[p, k] and (caps[p, k] == 0 or cap_n[att] < caps[p, k])):
                    continue
                if caps[p, k] > 0:
                    if cap_s[att] == 0 and cap_c[att] == 0:
                        touched[n_touched] = att
                        n_touched += 1
                    cap_n[att] += 1
                if not _score(scheme, p, k, att, actor, ra, t, D,
                              (points, expires, capcls, ctab, pint, held),
                              (total, capcnt, learned, wrong),
                              (hist_s, hist_c, band0, changed, exp_buf, exp_head, exp_len,
                               peer_pen), metrics):
                    return False
                counted |= 1 << scheme
                if (scheme == 0 and k == K_NEWSPAPER and points[p, k] > 0
                        and (flags[att] & (F_SAVVY | F_BOT)) == F_SAVVY):
                    draw += 1
                    if uniform(key, draw - 1) < fp[FP_GAMING]:
                        flags[att] |= F_BOT
                        bots[n_bots] = att
                        n_bots += 1
                        metrics[t, ra, M_COUNT + C_BOTS] += 1
            if record == RECORD_ALL or (
                    record == RECORD_SAMPLE and uniform(sample_key, seq) < fp[FP_SAMPLE]):
                if n_ev >= ev.shape[1]:
                    return False
                ev[0, n_ev] = t
                ev[1, n_ev] = seq
                ev[2, n_ev] = k
                ev[3, n_ev] = actor
                ev[4, n_ev] = att
                ev[5, n_ev] = src * 8 + (place + 1)
                ev[6, n_ev] = counted
                ev_conf[n_ev] = conf
                n_ev += 1
            seq += 1
    for j in range(n_touched):
        cap_s[touched[j]] = 0
        cap_c[touched[j]] = 0
    count[1], count[2], count[3] = n_bots, n_ev, seq
    return True


@nb.njit(nogil=True, cache=True, _nrt=False, error_model="numpy")
def run_block(seed, block, D, fp, region_lo, region_policy, region_urban, coverage, fmr,
              group_cum, plat_share, kt, obs, place_cum, rmax, rinv, sign_rk, pol, comm, cons,
              record, st, metrics, scratch):
    """Simulate one block for days 0..D-1 into `st` and `metrics`; return the events recorded.

    `st` and `metrics` must be zero and `scratch` fresh (see _shard.new_scratch); returns
    OVERFLOW when a scratch buffer ran out of room.
    """
    (age, flags, region, gd, traits, parent, stot, ctot, capcnt, learned, since, sdays, bdays,
     wrong, page, psight, moves) = st
    ctab, pint, held, eff_held, points, expires, capcls, accept, min_conf, rule_of, caps = pol
    driver, min_age, max_age, base, rural = kt
    obs_type, obs_src, obs_prob, obs_plat = obs
    c_n, c_cls, c_ben, c_held, c_slot, c_eff = cons
    n = region_lo[-1]
    n_regions = region_lo.shape[0] - 1
    _populate(seed, block, fp, region_lo, region_urban, group_cum, age, flags, region, gd,
              traits, parent)
    (hist_s, hist_c, fifo, fifo_len, matured, exp_head, exp_len, exp_buf, peer_pen, ptr, cap_s,
     cap_c, touched, bots, ev, ev_conf, count, order, seg, band0, changed) = scratch
    inv_kv, inv_stream = rinv
    _order_citizens(region_lo, region, traits, age, order, seg)
    n_bots = 0
    n_active_bots = 0
    n_ev = 0
    plat_key = stream_key(seed, block, POPULATION_DAY, S_PLATFORM)
    # Day 0: everyone starts at the policy's start score, in its class and band.
    for i in range(n):
        r = np.int64(region[i])
        p = region_policy[r]
        if p >= 0:
            c = _klass(ctab, pint, p, 0, 0)
            hist_s[r, c] += 1
            b = _band(pint, p, c)
            if b > 0 and held[p, b - 1, 0] > 0:
                if 2 * fifo_len[b - 1] + 2 > fifo.shape[1]:
                    return OVERFLOW
                fifo[b - 1, 2 * fifo_len[b - 1]] = i
                fifo[b - 1, 2 * fifo_len[b - 1] + 1] = 0
                fifo_len[b - 1] += 1
        if comm >= 0 and (flags[i] & F_MEMBER):
            hist_c[r, _klass(ctab, pint, comm, 0, 0)] += 1

    for t in range(D):
        seq = 0
        sample_key = stream_key(seed, block, t, S_SAMPLE)
        # Held-days clocks that mature today: citizens in the band since the end of day t - h
        # (counted before today's changes, which `_settle_bands` takes off at the end of the day).
        for p in range(pint.shape[0]):
            for b in range(2):
                for j in range(MAX_HELD):
                    h = held[p, b, j]
                    if h <= 0:
                        continue
                    q = ptr[p, b, j]
                    while q < fifo_len[b] and fifo[b, 2 * q + 1] + h <= t:
                        a = fifo[b, 2 * q]
                        r = np.int64(region[a])
                        if (region_policy[r] == p and np.int64(since[a]) == fifo[b, 2 * q + 1]
                                and _band(pint, p, _klass(ctab, pint, p, stot[a], capcnt[a])) == b + 1):
                            matured[r, b, j] += 1
                        q += 1
                    ptr[p, b, j] = q
        # Points that expire today leave the score before today's events.
        e = exp_head[t]
        while e >= 0:
            a = exp_buf[0, e]
            k = exp_buf[1, e] % 64
            scheme = exp_buf[1, e] // 64
            r = np.int64(region[a])
            if scheme == 0:
                p = region_policy[r]
                old = _klass(ctab, pint, p, stot[a], capcnt[a])
                stot[a] -= points[p, k]
                if capcls[p, k]:
                    capcnt[a] -= 1
                new = _klass(ctab, pint, p, stot[a], capcnt[a])
                if new != old:
                    _class_change(pint, hist_s, band0, changed, a, r, p, old, new)
            else:
                old = _klass(ctab, pint, comm, ctot[a], 0)
                ctot[a] -= points[comm, k]
                new = _klass(ctab, pint, comm, ctot[a], 0)
                if new != old:
                    hist_c[r, old] -= 1
                    hist_c[r, new] += 1
            e = exp_buf[2, e]
        # Acts of every kind, observed (or not) by the sensors, scored as they are attributed.
        for k in range(N_KINDS):
            key = stream_key(seed, block, t, 1 + k)
            count[0] = 0
            count[1], count[2], count[3] = n_bots, n_ev, seq
            if not _kind_pass(k, t, D, seed, block, key, rmax, inv_kv, n_active_bots, fp,
                              region_lo, region_policy, coverage, fmr, plat_share, plat_key, kt,
                              obs, place_cum, sign_rk, pol, comm, record, sample_key, st, scratch,
                              metrics, count, order, seg):
                return OVERFLOW
            n_bots, n_ev, seq = count[1], count[2], count[3]
        n_active_bots = n_bots
        # The day's band changes move the held-days clocks (consequences below read them).
        if not _settle_bands(ctab, pint, held, region, region_policy, stot, capcnt, fifo, fifo_len,
                             matured, since, sdays, bdays, band0, changed, t):
            return OVERFLOW
        # Passive sightings: cameras see people going about their day and refine profiles.
        top = fp[FP_PASSIVE]
        if top > 0.0:
            key = stream_key(seed, block, t, S_PASSIVE)
            draw = 0
            inv = inv_stream[0]
            for r in range(n_regions):
                lo, hi = region_lo[r], region_lo[r + 1]
                i = lo - 1
                while True:
                    i, draw = _next_candidate(key, draw, inv, i, hi)
                    if i >= hi:
                        break
                    place = int(uniform(key, draw) * 3)
                    cov = coverage[r, place]
                    if (flags[i] & F_URBAN) == 0:
                        cov *= fp[FP_RURAL_COVERAGE]
                    if uniform(key, draw + 1) >= cov or uniform(key, draw + 2) < fp[FP_FNMR]:
                        draw += 3
                        continue
                    att = i
                    if uniform(key, draw + 3) < fmr[r, np.int64(gd[i] >> 4)] and hi - lo > 1:
                        att = _look_alike(key, draw + 4, gd, i, lo, hi)
                    _sight(fp, age, page, psight, moves, att, i, place, uniform(key, draw + 5),
                           uniform(key, draw + 6))
                    metrics[t, r, M_COUNT + C_SIGHTINGS] += 1
                    # In the mall, the e-commerce group's in-store cameras record which clothes a
                    # customer stops at or tries on, into the commercial profile of whoever they
                    # recognise (the same face match, so a look-alike's profile may get it).
                    if (place == PLACE_MALL and (flags[att] & F_MEMBER)
                            and uniform(key, draw + 7) < fp[FP_INSTORE]):
                        if (learned[att] >> np.uint32(INSTORE_SHIFT)) < 255:
                            learned[att] += np.uint32(1) << np.uint32(INSTORE_SHIFT)
                        metrics[t, r, M_COUNT + C_INSTORE] += 1
                        if att != i:
                            metrics[t, r, M_COUNT + C_INSTORE_WRONGFUL] += 1
                    draw += 8
        # Consequences that people meet: job loss in sanctioned classes, travel, loans.
        for stream in range(S_JOBS, S_LOANS + 1):
            if stream == S_JOBS:
                top = fp[FP_JOB_LOSS]
            elif stream == S_FLIGHTS:
                top = fp[FP_FLIGHT]
            elif stream == S_TRAINS:
                top = fp[FP_TRAIN]
            else:
                top = fp[FP_LOAN]
            if top <= 0.0:
                continue
            key = stream_key(seed, block, t, stream)
            draw = 0
            inv = inv_stream[stream - S_PASSIVE]
            for r in range(n_regions):
                lo, hi = region_lo[r], region_lo[r + 1]
                i = lo - 1
                while True:
                    i, draw = _next_candidate(key, draw, inv, i, hi)
                    if i >= hi:
                        break
                    if age[i] < 18:
                        continue
                    if stream == S_JOBS:
                        if (flags[i] & F_EMPLOYED) and _effect(
                                ctab, pint, eff_held, region_policy, region, stot, capcnt, since,
                                i, E_JOB_LOSS, t):
                            flags[i] &= ~np.uint8(F_EMPLOYED)
                            decile = max(np.int64(gd[i] & 15) - np.int64(fp[FP_INCOME_DROP]), 0)
                            gd[i] = (gd[i] & 0xF0) | decile
                            metrics[t, r, M_COUNT + C_JOBS] += 1
                    elif stream == S_FLIGHTS or stream == S_TRAINS:
                        flight = stream == S_FLIGHTS
                        metrics[t, r, M_COUNT + (C_FLIGHTS if flight else C_TRAINS)] += 1
                        banned = _effect(ctab, pint, eff_held, region_policy, region, stot, capcnt,
                                         since, i, E_FLIGHT_BAN if flight else E_TRAIN_BAN, t)
                        if banned or ((flags[i] & F_BLACKLISTED) and fp[FP_BLACKLIST_BANS] > 0):
                            metrics[t, r, M_COUNT + (C_FLIGHTS_BLOCKED if flight
                                                     else C_TRAINS_BLOCKED)] += 1
                        elif flight and _effect(ctab, pint, eff_held, region_policy, region, stot,
                                                capcnt, since, i, E_FLIGHT_DISC, t):
                            metrics[t, r, M_COUNT + C_FLIGHTS_DISC] += 1
                    else:
                        metrics[t, r, M_COUNT + C_LOANS] += 1
                        if _effect(ctab, pint, eff_held, region_policy, region, stot, capcnt,
                                   since, i, E_LOAN_REFUSAL, t):
                            metrics[t, r, M_COUNT + C_LOANS_REFUSED] += 1
                        elif _effect(ctab, pint, eff_held, region_policy, region, stot, capcnt,
                                     since, i, E_LOAN_DISC, t):
                            metrics[t, r, M_COUNT + C_LOANS_DISC] += 1
        # University admission, once a year: parents' class helps or hurts their children.
        if t % 365 == np.int64(fp[FP_ADM_DAY]):
            key = stream_key(seed, block, t, S_ADMISSION)
            for i in range(n):
                if age[i] != 18:
                    continue
                r = np.int64(region[i])
                metrics[t, r, M_COUNT + C_ADM_APPLIED] += 1
                chance = fp[FP_ADM_BASE]
                pa = np.int64(parent[i])
                if pa != NO_PARENT:
                    if _effect(ctab, pint, eff_held, region_policy, region, stot, capcnt, since,
                               pa, E_ADM_BONUS, t):
                        chance *= 1.0 + fp[FP_ADM_BONUS]
                        metrics[t, r, M_COUNT + C_ADM_HELPED] += 1
                    elif _effect(ctab, pint, eff_held, region_policy, region, stot, capcnt, since,
                                 pa, E_ADM_PENALTY, t):
                        chance *= 1.0 - fp[FP_ADM_PENALTY]
                        metrics[t, r, M_COUNT + C_ADM_HURT] += 1
                if uniform(key, i) < chance:
                    flags[i] |= F_ADMITTED
                    metrics[t, r, M_COUNT + C_ADM_ADMITTED] += 1
        # End of day: class counts and consequence holders per region.
        gate_key = stream_key(seed, block, t, S_GATES)
        for r in range(n_regions):
            p = region_policy[r]
            if p >= 0:
                n_cls = pint[p, P_N_CLASSES]
                for c in range(n_cls):
                    metrics[t, r, M_SCLASS + c] = hist_s[r, c]
                gate = 0
                for j in range(c_n[p]):
                    holders = 0
                    if c_held[p, j] == 0:
                        for c in range(n_cls):
                            if (c <= c_cls[p, j]) if c_ben[p, j] else (c >= c_cls[p, j]):
                                holders += hist_s[r, c]
                    else:
                        holders = matured[r, 0 if c_ben[p, j] else 1, c_slot[p, j]]
                    metrics[t, r, M_SCONS + j] = holders
                    if c_eff[p, j] == E_GATE:
                        gate = max(gate, holders)
                lam = gate * fp[FP_SUBWAY] * fp[FP_GATE_STOP] * region_urban[r]
                metrics[t, r, M_COUNT + C_GATES] += _poisson(lam, gate_key, 64 * r)
            if comm >= 0:
                n_cls = pint[comm, P_N_CLASSES]
                for c in range(n_cls):
                    metrics[t, r, M_CCLASS + c] = hist_c[r, c]
                for j in range(c_n[comm]):
                    holders = 0
                    for c in range(n_cls):
                        if (c <= c_cls[comm, j]) if c_ben[comm, j] else (c >= c_cls[comm, j]):
                            holders += hist_c[r, c]
                    metrics[t, r, M_CCONS + j] = holders
        if t % 365 == 364:
            for i in range(n):
                age[i] = min(np.int64(age[i]) + 1, 255)
    # Days under benefits and sanctions up to the end of the run.
    for i in range(n):
        p = region_policy[np.int64(region[i])]
        if p < 0:
            continue
        b = _band(pint, p, _klass(ctab, pint, p, stot[i], capcnt[i]))
        if b > 0:
            days = D - np.int64(since[i]) - pint[p, P_HMIN_B + b - 1]
            if days > 0:
                if b == 2:
                    sdays[i] = min(np.int64(sdays[i]) + days, 65535)
                else:
                    bdays[i] = min(np.int64(bdays[i]) + days, 65535)
    return n_ev
