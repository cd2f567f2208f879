"""Sensors: face-recognition cameras that see acts and passers-by, sometimes the wrong person,
the profiles (age estimate, moves by place, in-store records) they build, and the online offers
the in-store records feed."""

from __future__ import annotations

import numba as nb
import numpy as np

from socialcredit.simulation._hash import mix, stream_key, uniform
from socialcredit.simulation._kinds import F_MEMBER, F_URBAN, INSTORE_SHIFT, M_COUNT, PLACE_MALL
from socialcredit.simulation.kernel._draws import next_in_regions
from socialcredit.simulation.kernel._layout import (
    C_INSTORE,
    C_INSTORE_WRONGFUL,
    C_OFFERS,
    C_OFFERS_TAKEN,
    C_OFFERS_WRONGFUL,
    C_OFFERS_WRONGFUL_TAKEN,
    C_SIGHTINGS,
    GROUPS,
    S_OFFERS,
    S_PASSIVE,
)
from socialcredit.simulation.kernel._scoring import JIT

# A false match is a look-alike: the gallery photo that beats the true mate's shows someone of the
# seen person's demographic group (NIST FRVT: false matches are mostly within a group), drawn from
# that group's members of the block-region, so a group's multiplier applies to its own members;
# only where the group has no other member there does the innocent come from anyone in the region.
_LOOK_ALIKE_SALT = np.uint64(0x5DEECE66D1F2A3B7)


@nb.njit(inline="always", **JIT)
def look_alike(key, draw, st, sc, actor, r, lo, hi):
    """The innocent a false match names: another member of the actor's group in region r (whose
    citizens are [lo, hi)), or another citizen of the region when the group has no other."""
    u = uniform(mix(key ^ _LOOK_ALIKE_SALT ^ np.uint64(draw)), 0)
    cell = r * GROUPS + (np.int64(st.group_decile[actor]) >> 4)
    first, last = sc.gseg[cell], sc.gseg[cell + 1]
    if last - first > 1:
        j = first + int(u * (last - first - 1))
        if j >= sc.gpos[actor]:
            j += 1
        return sc.gorder[j]
    att = lo + int(u * (hi - lo - 1))
    if att >= actor:
        att += 1
    return att


@nb.njit(inline="always", **JIT)
def sight(fp, st, att, actor, place, u1, u2):
    """A camera sighting refines the attributed citizen's profile with the face it really saw."""
    page, psight, moves = st.profile_age, st.sightings, st.moves
    n = min(np.int64(psight[att]) + 1, 255)
    psight[att] = n
    obs = np.int64(st.age[actor]) + np.int64(round((u1 + u2 - 1.0) * fp.age_noise))
    if n == 1:
        est = obs
    else:
        est = np.int64(page[att])
        est = est + np.int64(round((obs - est) / n))
    page[att] = min(max(est, 0), 255)
    shift = np.uint16(5 * place)
    if ((moves[att] >> shift) & np.uint16(31)) < 31:
        moves[att] += np.uint16(1) << shift


@nb.njit(inline="always", **JIT)
def camera_sees_act(key, draw, fp, world, kinds, st, sc, k, actor, ra, lo_r, hi_r, t, metrics):
    """A camera at the act's place (drawn from the kind's place shares) sees it, or misses it.

    Returns (seen, the citizen it names, confidence, place, next draw): draws d0..d0+6 belong to
    the sighting, used or not, and a look-alike search takes one more.
    """
    up = uniform(key, draw)
    place = 0
    while place < 2 and up >= kinds.place_cum[k, place]:
        place += 1
    cov = world.coverage[t, ra, place]
    if (st.flags[actor] & F_URBAN) == 0:
        cov *= fp.rural_coverage
    d0 = draw
    draw += 7
    # The mate's score: below the threshold with chance fnmr (missed), and reaching x > threshold
    # unless it falls among the fnmr * ((1 - threshold) / (1 - x)) ** true_tail missed there.
    um = uniform(key, d0 + 2)
    if uniform(key, d0 + 1) >= cov or um < fp.fnmr:
        return False, -1, -1.0, -1, draw
    uf = uniform(key, d0 + 3)
    uc = uniform(key, d0 + 4)
    un1 = uniform(key, d0 + 5)
    un2 = uniform(key, d0 + 6)
    att = actor
    room = 1.0 - fp.threshold
    if uf < world.fmr[ra, np.int64(st.group_decile[actor] >> 4)] and hi_r - lo_r > 1:
        # A non-mate above the threshold: its score from the tail ((1 - x) / room) ** false_tail.
        att = look_alike(key, draw, st, sc, actor, ra, lo_r, hi_r)
        draw += 1
        conf = 1.0 - room * uc ** (1.0 / fp.false_tail)
    else:
        conf = 1.0 - room * (fp.fnmr / um) ** (1.0 / fp.true_tail)
    sight(fp, st, att, actor, place, un1, un2)
    metrics[t, ra, M_COUNT + C_SIGHTINGS] += 1
    return True, att, conf, place, draw


@nb.njit(inline="always", **JIT)
def passive_sightings(seed, block, t, fp, region_lo, world, st, sc, metrics):
    """Cameras see people going about their day and refine profiles; in malls the e-commerce
    group's in-store cameras record which clothes a customer stops at or tries on, into the
    commercial profile of whoever they recognise (the same face match: a look-alike's may get it),
    and the profile feeds an offer of the item online to its owner (`offer`)."""
    top = fp.passive
    if top <= 0.0:
        return
    flags, learned = st.flags, st.learned
    key = stream_key(seed, block, t, S_PASSIVE)
    offer_key = stream_key(seed, block, t, S_OFFERS)
    draw = 0
    inv = world.inv_stream[0]
    r, i = 0, -1
    while True:
        i, r, draw = next_in_regions(key, draw, inv, i, r, region_lo)
        if r == region_lo.shape[0] - 1:
            break
        lo, hi = region_lo[r], region_lo[r + 1]
        place = int(uniform(key, draw) * 3)
        cov = world.coverage[t, r, place]
        if (flags[i] & F_URBAN) == 0:
            cov *= fp.rural_coverage
        if uniform(key, draw + 1) >= cov or uniform(key, draw + 2) < fp.fnmr:
            draw += 3
            continue
        att = i
        if uniform(key, draw + 3) < world.fmr[r, np.int64(st.group_decile[i] >> 4)] and hi - lo > 1:
            att = look_alike(key, draw + 4, st, sc, i, r, lo, hi)
        sight(fp, st, att, i, place, uniform(key, draw + 5), uniform(key, draw + 6))
        metrics[t, r, M_COUNT + C_SIGHTINGS] += 1
        if (place == PLACE_MALL and (flags[att] & F_MEMBER)
                and uniform(key, draw + 7) < fp.instore):
            if (learned[att] >> np.uint32(INSTORE_SHIFT)) < 255:
                learned[att] += np.uint32(1) << np.uint32(INSTORE_SHIFT)
            metrics[t, r, M_COUNT + C_INSTORE] += 1
            if att != i:
                metrics[t, r, M_COUNT + C_INSTORE_WRONGFUL] += 1
            offer(offer_key, draw, fp, att != i, metrics, t, r)
        draw += 8


@nb.njit(inline="always", **JIT)
def offer(key, draw, fp, mismatch, metrics, t, r):
    """An in-store record makes an online offer for the item to the profile's owner, who takes it
    at the rate of their own interest, or rarely when the record was a look-alike's.

    Draws d and d + 1 of the offers stream for the sighting at draw d of the passive stream (8
    apart), so the passive stream and everything it decides stay as they were without offers.
    """
    if uniform(key, draw) >= fp.offer_rate:
        return
    metrics[t, r, M_COUNT + C_OFFERS] += 1
    if mismatch:
        metrics[t, r, M_COUNT + C_OFFERS_WRONGFUL] += 1
    if uniform(key, draw + 1) < (fp.offer_take_mismatch if mismatch else fp.offer_take):
        metrics[t, r, M_COUNT + C_OFFERS_TAKEN] += 1
        if mismatch:
            metrics[t, r, M_COUNT + C_OFFERS_WRONGFUL_TAKEN] += 1
