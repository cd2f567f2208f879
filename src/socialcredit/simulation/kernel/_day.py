"""The day loop: one block of citizens, every day of a run, in one compiled function."""

from __future__ import annotations

import numba as nb
import numpy as np

from socialcredit.simulation._hash import stream_key
from socialcredit.simulation._kinds import N_DAILY_KINDS, N_KINDS
from socialcredit.simulation.kernel._acts import kind_pass
from socialcredit.simulation.kernel._consequences import admissions, daily_streams, delistings, end_of_day
from socialcredit.simulation.kernel._layout import OVERFLOW, S_SAMPLE
from socialcredit.simulation.kernel._population import list_volunteers, order_citizens, order_groups, populate
from socialcredit.simulation.kernel._scoring import (
    birthday,
    days_in_bands,
    expire_points,
    join_scheme,
    mature_held,
    settle_bands,
    start_classes,
)
from socialcredit.simulation.kernel._sensors import passive_sightings


@nb.njit(nogil=True, cache=True, _nrt=False, error_model="numpy")
def run_block(seed, block, D, fp, region_lo, world, kinds, pol, cons, record, st, metrics, scratch):
    """Simulate one block for days 0..D-1 into `st` and `metrics`; return the events recorded.

    `st` (a State) and `metrics` must be zero and `scratch` (a Scratch) fresh (see
    _shard.new_scratch); returns OVERFLOW when a scratch buffer ran out of room.
    """
    sc = scratch
    populate(seed, block, fp, region_lo, world, st, sc.listed)
    order_citizens(st, sc.order, sc.seg)
    order_groups(st, sc.gorder, sc.gseg, sc.gpos)
    if not start_classes(pol, world, st, sc):
        return OVERFLOW
    count = sc.count
    count[4] = list_volunteers(seed, block, fp, st.age.shape[0], sc.volunteers)
    n_bots = 0
    n_active_bots = 0
    n_ev = 0
    for t in range(D):
        seq = 0
        sample_key = stream_key(seed, block, t, S_SAMPLE)
        mature_held(pol, world.region_policy, st, sc, t)
        expire_points(pol, world.region_policy, world.comm, st, sc, t)
        # Acts of every kind, observed (or not) by the sensors, scored as they are attributed.
        for k in range(N_KINDS if t == 0 else N_DAILY_KINDS):  # standing records: day 0
            key = stream_key(seed, block, t, 1 + k)
            count[0] = 0
            count[1], count[2], count[3] = n_bots, n_ev, seq
            if not kind_pass(k, t, D, seed, block, key, n_active_bots, fp, region_lo, world, kinds,
                             pol, record, sample_key, st, sc, metrics):
                return OVERFLOW
            n_bots, n_ev, seq = count[1], count[2], count[3]
        n_active_bots = n_bots
        # The day's band changes move the held-days clocks (consequences below read them).
        if not settle_bands(pol, world.region_policy, st, sc, t):
            return OVERFLOW
        passive_sightings(seed, block, t, fp, region_lo, world, st, sc, metrics)
        daily_streams(seed, block, t, fp, region_lo, world, pol, st, metrics)
        delistings(seed, block, t, fp, region_lo, world, st, sc, metrics)
        if t % 365 == np.int64(fp.adm_day):
            admissions(seed, block, t, fp, world, pol, st, metrics)
        end_of_day(seed, block, t, fp, world, pol, cons, sc, metrics)
        if t % 365 == 364 and t + 1 < D:  # a year on (the run's ages are those of its last day)
            for i in range(st.age.shape[0]):
                st.age[i] = min(np.int64(st.age[i]) + 1, 255)
                if not birthday(pol, world, st, sc, i, t + 1):
                    return OVERFLOW
        if t + 1 < D and not join_scheme(pol, world, region_lo, st, sc, t + 1):
            return OVERFLOW
    days_in_bands(pol, world, st, D)
    return n_ev
