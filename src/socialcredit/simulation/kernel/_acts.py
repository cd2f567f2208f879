"""Acts: each kind's acts on a day, found by geometric jumps over the citizens (thinned against the
kind's largest rate), observed by the first sensor that catches them, attributed and scored."""

from __future__ import annotations

import numba as nb
import numpy as np

from socialcredit.simulation._hash import POPULATION_DAY, mix, stream_key, uniform
from socialcredit.simulation._kinds import (
    CIVIC,
    DEVIANT,
    DEVIANT_POOR,
    F_BLACKLISTED,
    F_BOT,
    F_MEMBER,
    F_SAVVY,
    F_URBAN,
    HIGH_INCOME,
    K_COMPLAINT,
    K_JUDGMENT_DEFAULT,
    K_NEWSPAPER,
    K_VOLUNTEERING,
    LOW_INCOME,
    M_COUNT,
    M_KIND,
    OBS_CAMERA,
    OBS_NONE,
    OBS_PLATFORM,
    STANDING,
)
from socialcredit.simulation.kernel._draws import next_candidate
from socialcredit.simulation.kernel._layout import (
    AGES,
    C_BLACKLISTED,
    C_BOTS,
    LEVELS,
    RECORD_ALL,
    RECORD_SAMPLE,
    S_PLATFORM,
)
from socialcredit.simulation.kernel._scoring import JIT, learned_bit, score, scored
from socialcredit.simulation.kernel._sensors import camera_sees_act


@nb.njit(inline="always", **JIT)
def rate(d, level_rate, rural, det, conf, st, bit, sign, censor, i):
    """Today's daily rate of a kind for citizen `i` of a segment, with feedback.

    `level_rate` is the kind's base rate times the segment's deviance factor (deviant kinds); the
    segment already holds only the kind's ages.
    """
    x = level_rate
    if d == CIVIC:
        x *= ((np.int64(st.traits[i]) & 15) + 0.5) / 8.0
    elif d == LOW_INCOME or d == DEVIANT_POOR:
        x *= (10 - np.int64(st.group_decile[i] & 15)) / 5.5
    elif d == HIGH_INCOME:
        x *= (np.int64(st.group_decile[i] & 15) + 1) / 5.5
    elif d == STANDING:
        x *= ((np.int64(st.group_decile[i] & 15) + 1) / 5.5) ** 2
    if (st.flags[i] & F_URBAN) == 0:
        x *= rural
    if st.learned[i] & bit:
        if sign < 0:
            x *= det
        elif sign > 0:
            x *= conf
    return x * censor


@nb.njit(inline="always", **JIT)  # inlined: a call per kind and day copies every layout
def kind_pass(k, t, D, seed, block, key, n_active_bots, fp, region_lo, world, kinds, pol, record,
              sample_key, st, sc, metrics):
    """One kind on one day: find the acts, observe, attribute and score them; False when full."""
    flags, region = st.flags, st.region
    count, order, seg, bots, ev = sc.count, sc.order, sc.seg, sc.bots, sc.ev
    region_policy, comm = world.region_policy, world.comm
    plat_key = stream_key(seed, block, POPULATION_DAY, S_PLATFORM)
    n_regions = region_lo.shape[0] - 1
    draw = 0
    n_touched, n_bots, n_ev, seq = count[0], count[1], count[2], count[3]
    years = t // 365
    age_lo = max(kinds.min_age[k] - years, 0)  # the kind's ages, as the citizens' starting ages
    age_hi = min(kinds.max_age[k] - years, AGES - 1)
    censor = 1.0
    d = kinds.driver[k]
    rural_k = kinds.rural[k]
    det = 1.0 - fp.deterrence
    conform = 1.0 + fp.conformity
    bit = learned_bit(k)
    # Segments: each (region, deviance level) of the order, then the bots (newspaper) or the
    # dedicated volunteers (volunteering).
    last = n_regions * LEVELS + 1 if k == K_NEWSPAPER or k == K_VOLUNTEERING else n_regions * LEVELS
    for sg in range(last):
        r = sg // LEVELS
        if r < n_regions:
            v = sg % LEVELS
            if v == 0 and k == K_COMPLAINT:
                censor = 1.0
                if kinds.sign[r, k] < 0 and t >= world.region_from[r]:
                    share = sc.peer_pen[r] / max(region_lo[r + 1] - region_lo[r], 1)
                    censor = (1.0 - fp.self_censorship) * max(0.0, 1.0 - fp.peer_censorship * share)
            top = kinds.rmax[k, v]
            if top <= 0.0 or age_lo > age_hi:
                continue
            sign = kinds.sign[r, k]
            level_rate = kinds.base[k]
            if d == DEVIANT or d == DEVIANT_POOR:
                level_rate *= (v + 0.5) / 8.0
            inv = kinds.inv_rate[k, v]
            cell = (r * LEVELS + v) * AGES
            lo, hi = seg[cell + age_lo], seg[cell + age_hi + 1]
            if lo == hi:  # small regions leave many cells empty: spare them a draw
                continue
        elif k == K_NEWSPAPER:  # bots never tire: each visits the party newspaper once a day
            top, inv = 1.0, 0.0
            lo, hi = 0, n_active_bots
        else:  # a dedicated volunteer's shifts come at their own rate, whatever their traits
            top, inv = fp.volunteer_rate, fp.volunteer_inv
            lo, hi = 0, count[4]
            if top <= 0.0 or lo == hi:
                continue
        i = lo - 1
        while True:
            if top >= 1.0:
                i += 1
            else:
                i, draw = next_candidate(key, draw, inv, i, hi)
            if i >= hi:
                break
            if r == n_regions:
                if k == K_NEWSPAPER:
                    actor = bots[i]
                else:
                    actor = sc.volunteers[i]
                    if not kinds.min_age[k] <= st.age[actor] <= kinds.max_age[k]:
                        continue
                ra = np.int64(region[actor])
            else:
                actor = order[i]
                ra = r
                x = rate(d, level_rate, rural_k, det, conform, st, bit, sign, censor, actor)
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
                typ = kinds.obs_type[k, o]
                if typ == OBS_NONE:
                    break
                src = kinds.obs_src[k, o]
                if typ == OBS_CAMERA:
                    seen, named, c, at, draw = camera_sees_act(key, draw, fp, world, kinds, st, sc, k,
                                                               actor, ra, lo_r, hi_r, t, metrics)
                    if seen:
                        att, conf, place = named, c, at
                        break
                    continue
                if typ == OBS_PLATFORM:
                    plat = kinds.obs_plat[k, o]
                    if plat == world.plat_share.shape[0] - 1:
                        member = (flags[actor] & F_MEMBER) != 0
                    else:
                        member = uniform(mix(plat_key + np.uint64(plat)), actor) < world.plat_share[plat]
                    if member:
                        att = actor
                        break
                else:
                    draw += 1
                    if uniform(key, draw - 1) < kinds.obs_prob[k, o]:
                        att = actor
                        break
            if att < 0:
                continue
            metrics[t, ra, M_KIND + 4 * k + 1] += 1
            if att != actor:
                metrics[t, ra, M_KIND + 4 * k + 2] += 1
            if k == K_JUDGMENT_DEFAULT and (flags[att] & F_BLACKLISTED) == 0:
                flags[att] |= F_BLACKLISTED
                sc.listed[ra] += 1
                metrics[t, ra, M_COUNT + C_BLACKLISTED] += 1
            cf = 1.0 if conf < 0.0 else conf
            counted = 0
            for scheme in range(2):  # the state's score, then the commercial one
                if scheme == 0:
                    p = region_policy[ra]
                    cap_n = sc.cap_s
                else:
                    p = comm if (flags[att] & F_MEMBER) else -1
                    cap_n = sc.cap_c
                if not (p >= 0 and pol.rule_of[p, k] >= 0 and scored(pol, p, st, att)
                        and (scheme == 1 or t >= world.region_from[ra]) and pol.accept[p, k, src]
                        and cf >= pol.min_conf[p, k]
                        and (pol.caps[p, k] == 0 or cap_n[att] < pol.caps[p, k])):
                    continue
                if pol.caps[p, k] > 0:
                    if sc.cap_s[att] == 0 and sc.cap_c[att] == 0:
                        sc.touched[n_touched] = att
                        n_touched += 1
                    cap_n[att] += 1
                if not score(scheme, p, k, att, actor, ra, t, D, pol, st, sc, metrics):
                    return False
                counted |= 1 << scheme
                if (scheme == 0 and k == K_NEWSPAPER and pol.points[p, k] > 0
                        and (flags[att] & (F_SAVVY | F_BOT)) == F_SAVVY):
                    draw += 1
                    if uniform(key, draw - 1) < fp.gaming:
                        flags[att] |= F_BOT
                        bots[n_bots] = att
                        n_bots += 1
                        metrics[t, ra, M_COUNT + C_BOTS] += 1
            if record == RECORD_ALL or (
                    record == RECORD_SAMPLE and uniform(sample_key, seq) < fp.sample):
                if n_ev >= ev.shape[1]:
                    return False
                ev[0, n_ev] = t
                ev[1, n_ev] = seq
                ev[2, n_ev] = k
                ev[3, n_ev] = actor
                ev[4, n_ev] = att
                ev[5, n_ev] = src * 8 + (place + 1)
                ev[6, n_ev] = counted
                sc.ev_conf[n_ev] = conf
                n_ev += 1
            seq += 1
    for j in range(n_touched):
        sc.cap_s[sc.touched[j]] = 0
        sc.cap_c[sc.touched[j]] = 0
    count[1], count[2], count[3] = n_bots, n_ev, seq
    return True
