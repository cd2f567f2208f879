"""Population: a block's synthetic citizens, drawn from the scenario's shares, and their order."""

from __future__ import annotations

import numba as nb
import numpy as np

from socialcredit.simulation._hash import POPULATION_DAY, stream_key, uniform
from socialcredit.simulation._kinds import (
    F_BLACKLISTED,
    F_EMPLOYED,
    F_MALE,
    F_MEMBER,
    F_SAVVY,
    F_URBAN,
    NO_PARENT,
)
from socialcredit.simulation.kernel._layout import AGES, GROUPS, LEVELS, S_POPULATION, S_VOLUNTEER
from socialcredit.simulation.kernel._scoring import JIT


@nb.njit(**JIT)
def populate(seed, block, fp, region_lo, world, st, listed):
    """Draw the block's citizens: age, sex, residence, platform use, skills, work, group, income
    decile, deviance and civic traits, whether an adult starts on the defaulter list (counted in
    `listed` by region), and a parent among the older citizens of the region."""
    key = stream_key(seed, block, POPULATION_DAY, S_POPULATION)
    age, flags, gd, group_cum = st.age, st.flags, st.group_decile, world.group_cum
    n_regions = region_lo.shape[0] - 1
    for r in range(n_regions):
        lo, hi = region_lo[r], region_lo[r + 1]
        for i in range(lo, hi):
            c = 32 * i
            u = uniform(key, c)
            v = uniform(key, c + 1)
            if u < fp.age_0_14:
                ag = int(v * 15)
            elif u < fp.age_0_14 + fp.age_15_59:
                ag = 15 + int(v * 45)
            else:
                ag = 60 + int(v * 30)  # ASSUMPTION: ages 60-89, evenly
            f = 0
            if uniform(key, c + 2) < fp.male:
                f |= F_MALE
            if uniform(key, c + 3) < world.region_urban[r]:
                f |= F_URBAN
            if uniform(key, c + 4) < fp.member:
                f |= F_MEMBER
            if 15 <= ag < 60 and uniform(key, c + 5) < fp.savvy:
                f |= F_SAVVY
            if 18 <= ag < 60 and uniform(key, c + 6) < fp.employed:
                f |= F_EMPLOYED
            if ag >= 18 and uniform(key, c + 11) < fp.listed_share:
                f |= F_BLACKLISTED
                listed[r] += 1
            ug = uniform(key, c + 7)
            g = 0
            while g < group_cum.shape[0] - 1 and ug >= group_cum[g]:
                g += 1
            age[i] = ag
            flags[i] = f
            st.region[i] = r
            gd[i] = g * 16 + int(uniform(key, c + 8) * 10)
            st.traits[i] = int(uniform(key, c + 9) * 16) * 16 + int(uniform(key, c + 10) * 16)
        for i in range(lo, hi):
            ag = np.int64(age[i])
            pa = NO_PARENT
            if ag < 25 and hi - lo > 1:
                for attempt in range(8):
                    j = lo + int(uniform(key, 32 * i + 16 + attempt) * (hi - lo))
                    if j != i and ag + 20 <= np.int64(age[j]) <= ag + 45:
                        pa = j
                        break
            st.parent[i] = pa


@nb.njit(inline="always", **JIT)
def volunteers(key, i, fp):
    """Whether citizen `i` of a block is a dedicated volunteer: one draw per citizen, for the run,
    on the block's `volunteer_key`."""
    return uniform(key, i) < fp.volunteer_share


@nb.njit(inline="always", **JIT)
def volunteer_key(seed, block):
    """The stream of a block's volunteer draws."""
    return stream_key(seed, block, POPULATION_DAY, S_VOLUNTEER)


@nb.njit(**JIT)
def list_volunteers(seed, block, fp, n, out):
    """The dedicated volunteers among a block's `n` citizens, into `out`; return how many."""
    m = 0
    if fp.volunteer_share > 0.0:
        key = volunteer_key(seed, block)
        for i in range(n):
            if volunteers(key, i, fp):
                out[m] = i
                m += 1
    return m


@nb.njit(**JIT)
def dedicated_volunteers(seed, blocks, within, fp, out):
    """Per citizen (block, index within it), into `out`: whether they are a dedicated volunteer."""
    for n in range(blocks.shape[0]):
        out[n] = volunteers(volunteer_key(seed, blocks[n]), within[n], fp)


@nb.njit(**JIT)
def order_citizens(st, order, seg):
    """A counting sort of the block's citizens by (region, deviance level, age at the start).

    `order` lists citizens so; `seg[(r * LEVELS + v) * AGES + a]` is where the citizens of region r,
    level v and starting age a begin in it (the next entry is where they end). Everyone ages at
    the same time, so the order stays sorted by current age: age a today sat at a - years.
    """
    region, traits, age = st.region, st.traits, st.age
    seg[:] = 0
    n = age.shape[0]
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


@nb.njit(**JIT)
def order_groups(st, gorder, gseg, gpos):
    """A counting sort of the block's citizens by (region, demographic group): the members of
    group g in region r are gorder[gseg[r * GROUPS + g]: gseg[r * GROUPS + g + 1]], and citizen i
    sits at gorder[gpos[i]] (a look-alike is drawn from these, see _sensors.look_alike)."""
    region, gd = st.region, st.group_decile
    gseg[:] = 0
    n = gd.shape[0]
    for i in range(n):
        gseg[np.int64(region[i]) * GROUPS + (np.int64(gd[i]) >> 4) + 1] += 1
    for b in range(1, gseg.shape[0]):
        gseg[b] += gseg[b - 1]
    for i in range(n):
        b = np.int64(region[i]) * GROUPS + (np.int64(gd[i]) >> 4)
        gorder[gseg[b]] = i
        gpos[i] = gseg[b]
        gseg[b] += 1
    for b in range(gseg.shape[0] - 1, 0, -1):
        gseg[b] = gseg[b - 1]
    gseg[0] = 0
