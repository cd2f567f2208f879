"""The kernel's named layouts: what each argument of `run_block` holds, by name.

numba compiles a namedtuple of arrays (or of floats) as a struct whose fields are resolved at
compile time, so `st.age[i]` costs what `age[i]` does. The plan (_plan.py) fills the tables, the
shard (_shard.py) makes the state and scratch, the GPU launcher (_gpu.py) passes the same ones.
"""

from __future__ import annotations

from collections import namedtuple

from socialcredit.simulation._kinds import STATE_FIELDS

# Per citizen: the struct of arrays of _kinds.STATE_FIELDS (age, flags, region, group_decile, ...).
State = namedtuple("State", [name for name, _ in STATE_FIELDS])

# The scenario's numbers, as floats (whole numbers too: income_drop, adm_day).
Params = namedtuple("Params", [
    "fnmr", "deterrence", "self_censorship", "peer_censorship", "conformity", "gaming",
    "threshold", "false_tail", "true_tail", "age_noise", "passive", "rural_coverage",
    "job_loss",  # the largest daily job-loss risk of the run's policies: the stream's rate
    "income_drop", "flight", "train", "subway", "loan", "adm_base",
    "sample", "male", "member", "savvy", "employed", "age_0_14", "age_15_59",
    "blacklist_bans", "adm_day", "instore", "listed_share", "delisting",
    "train_banned_share", "retry", "travel_income", "flight_ban_reach", "train_ban_reach",
    "volunteer_share", "volunteer_rate", "volunteer_inv",
    "offer_rate", "offer_take", "offer_take_mismatch",
])

# Regions and what the sensors and consequence streams need of them.
World = namedtuple("World", [
    "region_policy",  # [region] -> policy index, -1 unscored
    "region_from",  # [region] the day its policy starts scoring (0: from the start)
    "region_urban",  # [region] urban share
    "coverage",  # [day, region, place] camera coverage
    "fmr",  # [region, group] false-match rate at the region's represented gallery
    "group_cum",  # cumulative population shares of the demographic groups
    "plat_share",  # [platform] share of people using it (the last: e-commerce members)
    "comm",  # the commercial policy's index, -1 none
    "inv_stream",  # 1/log(1-p) of the daily streams: passive, jobs, flights, trains, loans (the
                   # travel streams at the richest traveller's rate, thinned by income)
    "inv_delist",  # 1/log(1-p) of the delisting stream
])

# Behaviour kinds: who does them how often, and which sensors may see them.
Kinds = namedtuple("Kinds", [
    "driver", "min_age", "max_age", "base", "rural",  # [kind]
    "place_cum",  # [kind, place] cumulative place shares of camera-seen acts
    "rmax",  # [kind, deviance level] the largest rate, the thinning bound
    "inv_rate",  # [kind, level] 1/log(1-rmax)
    "sign",  # [region, kind] -1 penalised, +1 rewarded, 0 neither
    "obs_type", "obs_src", "obs_prob", "obs_plat",  # [kind, observer]
])

# The compiled policies, stacked: policy index first.
Policies = namedtuple("Policies", [
    "ctab",  # [policy, score - lo] -> class
    "pint",  # [policy, P_*] integers of a policy (columns below)
    "held",  # [policy, band, slot] held days of the benefit (band 0) or sanction (1) classes
    "eff_held",  # [policy, effect, class] days a class must be held for an effect, -1 never
    "eff_size",  # [policy, effect] its size: a risk, a chance, a discount (plan._size)
    "points", "expires", "capcls",  # [policy, kind]
    "accept",  # [policy, kind, source]
    "min_conf", "rule_of", "caps",  # [policy, kind]
])
# Columns of Policies.pint.
P_START, P_LO, P_HI, P_CAP_CLASS, P_KB, P_KS, P_N_CLASSES, P_HMIN_B, P_HMIN_S, P_MIN_AGE = range(10)
N_PINT = 10

# The policies' consequences, for the daily holder counts.
Consequences = namedtuple("Consequences", [
    "count",  # [policy] consequences
    "cls",  # [policy, j] the class bound
    "benefit",  # [policy, j] 1 benefit (classes up to cls), 0 sanction (classes from cls)
    "held",  # [policy, j] 1 when held days apply (holders from the maturity queues)
    "slot",  # [policy, j] its held-days slot
    "effect",  # [policy, j] its effect (see _kinds.EFFECTS)
])

# Working memory of one block (the kernel allocates nothing; _shard.new_scratch makes it).
Scratch = namedtuple("Scratch", [
    "hist_s", "hist_c",  # [region, class] class counts, state and commercial
    "fifo", "fifo_len",  # held-days queues (citizen, since) of the two bands
    "matured",  # [region, band, slot] holders whose held days have matured
    "exp_head", "exp_len", "exp_buf",  # expiry lists by day
    "peer_pen",  # [region] citizens penalised for complaints
    "ptr",  # [policy, band, slot] read positions of the maturity queues
    "cap_s", "cap_c", "touched",  # per-day cap counters and who has one
    "bots",  # citizens running a bot
    "volunteers",  # the block's dedicated volunteers (their number in count[4])
    "ev", "ev_conf",  # recorded events and their confidences
    "count",  # counters handed between the day loop and the kind passes
    "order", "seg",  # citizens by (region, deviance level, age) and where each cell starts
    "band0", "changed",  # the band a citizen began the day in; who changed band today
    "listed",  # [region] citizens on the defaulter list now
    "gorder", "gseg", "gpos",  # citizens by (region, group), where each cell starts, each one's place
])
GROUPS = 16  # demographic groups a block's group index holds (the high nibble of group_decile)

OVERFLOW = -1  # run_block's answer when a scratch buffer ran out of room
RECORD_NONE, RECORD_ALL, RECORD_SAMPLE = 0, 1, 2
LEVELS = 16  # deviance levels (the high nibble of `traits`)
AGES = 256  # ages an uint8 holds

# Stream ids (acts of kind k use stream 1 + k).
S_PASSIVE, S_JOBS, S_FLIGHTS, S_TRAINS, S_LOANS, S_GATES, S_ADMISSION, S_SAMPLE = range(40, 48)
S_DELIST = 48
S_BAN_REACH = 49  # drawn once per citizen (day 0): whose class-based ban reaches the carriers
S_VOLUNTEER = 50  # drawn once per citizen: who volunteers every week or so
S_OFFERS = 51  # an in-store record's offer: draws d and d + 1 for the passive sighting at draw d
S_POPULATION, S_PLATFORM = 100, 110
# Counter slots (see _kinds.COUNTERS).
C_JOBS, C_FLIGHTS, C_FLIGHTS_BLOCKED, C_FLIGHTS_DISC, C_TRAINS, C_TRAINS_BLOCKED, C_GATES = range(7)
C_LOANS, C_LOANS_DISC, C_LOANS_REFUSED, C_ADM_APPLIED, C_ADM_ADMITTED, C_ADM_HELPED = range(7, 13)
C_ADM_HURT, C_BOTS, C_SIGHTINGS, C_WRONGFUL_POINTS, C_BLACKLISTED = range(13, 18)
C_INSTORE, C_INSTORE_WRONGFUL, C_LISTED, C_DELISTED, C_WRONGFUL_DOWN, C_WRONGFUL_BOTTOM = range(18, 24)
C_OFFERS, C_OFFERS_TAKEN, C_OFFERS_WRONGFUL, C_OFFERS_WRONGFUL_TAKEN = range(24, 28)
# Effects (see _kinds.EFFECTS).
E_LOAN_DISC, E_LOAN_REFUSAL, E_INSURANCE, E_FLIGHT_DISC, E_FLIGHT_BAN, E_TRAIN_BAN = range(6)
E_GATE, E_JOB_LOSS, E_ADM_BONUS, E_ADM_PENALTY = range(6, 10)
