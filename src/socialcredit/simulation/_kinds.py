"""The fixed vocabulary of the simulator: behaviours, sources, sensors, effects, metric slots.

Every number here is a default that a scenario can override; where it comes from is said next
to it ("ASSUMPTION" marks our own choice, changeable in the scenario TOML).
"""

from __future__ import annotations

import numpy as np

# Global source codes (the names the policies use).
SOURCES = ("camera", "traffic-police", "city-management", "browsing", "games", "social-media",
           "e-commerce", "payments", "courts", "community", "banks")
SRC = {s: i for i, s in enumerate(SOURCES)}
PLACES = ("street", "mall", "subway")
PLACE_MALL = PLACES.index("mall")

# Rate drivers (trait enum used by the kernel).
NEUTRAL, DEVIANT, CIVIC, LOW_INCOME, HIGH_INCOME, DEVIANT_POOR, STANDING = range(7)
# Observer types.
OBS_NONE, OBS_CAMERA, OBS_PLATFORM, OBS_AGENCY = range(4)

# kind, driver, (min age, max age), default daily rate, rural multiplier, place shares
# (street, mall, subway) for camera-seen acts, observers [(source, probability)] tried in order
# (an act yields at most one observed event: ASSUMPTION, so one act is never double-counted).
# Rates are ASSUMPTIONS (no public per-person rates): chosen so that a year gives a plausible mix
# of a few dozen scored events per adult, with offences rarer than routine platform records.
KINDS: tuple[tuple, ...] = (
    ("traffic.red_light", DEVIANT, (12, 90), 0.004, 0.5, (1.0, 0.0, 0.0),
     [("camera", 0.0), ("traffic-police", 0.02)]),
    ("traffic.violation", DEVIANT, (18, 75), 0.002, 0.8, (1.0, 0.0, 0.0),
     [("camera", 0.0), ("traffic-police", 0.05)]),
    ("traffic.drunk_driving", DEVIANT, (18, 75), 0.00005, 1.0, (1.0, 0.0, 0.0),
     [("traffic-police", 0.3)]),
    ("public.littering", DEVIANT, (6, 90), 0.004, 0.5, (0.6, 0.2, 0.2),
     [("camera", 0.0), ("city-management", 0.01)]),
    ("public.queue_jumping", DEVIANT, (10, 90), 0.002, 0.5, (0.0, 0.5, 0.5),
     [("camera", 0.0), ("city-management", 0.01)]),
    ("public.equipment_destroyed", DEVIANT, (12, 70), 0.00001, 1.0, (1.0, 0.0, 0.0),
     [("camera", 0.0), ("city-management", 0.1)]),
    ("online.pornography", DEVIANT, (16, 70), 0.01, 1.0, (0.0, 0.0, 0.0), [("browsing", 1.0)]),
    ("online.excess_gaming", DEVIANT, (10, 40), 0.015, 1.0, (0.0, 0.0, 0.0), [("games", 1.0)]),
    ("online.party_newspaper_visit", CIVIC, (18, 90), 0.005, 1.0, (0.0, 0.0, 0.0),
     [("browsing", 1.0)]),
    ("social.complaint", DEVIANT, (18, 90), 0.005, 1.0, (0.0, 0.0, 0.0), [("social-media", 1.0)]),
    ("shop.baby_food", NEUTRAL, (22, 42), 0.01, 1.0, (0.0, 0.0, 0.0), [("e-commerce", 1.0)]),
    ("shop.organic_vegetables", HIGH_INCOME, (18, 90), 0.005, 0.5, (0.0, 0.0, 0.0),
     [("e-commerce", 1.0)]),
    ("civic.heroic_act", CIVIC, (16, 80), 0.00002, 1.0, (1.0, 0.0, 0.0), [("community", 0.8)]),
    ("civic.volunteering", CIVIC, (14, 85), 0.003, 1.0, (0.0, 0.0, 0.0), [("community", 0.9)]),
    ("contract.breach", DEVIANT_POOR, (18, 90), 0.0001, 1.0, (0.0, 0.0, 0.0),
     [("courts", 0.5), ("banks", 0.3)]),
    ("court.debt_lawsuit_lost", LOW_INCOME, (18, 90), 0.00005, 1.0, (0.0, 0.0, 0.0),
     [("courts", 1.0)]),
    ("court.judgment_default", DEVIANT_POOR, (18, 90), 0.00002, 1.0, (0.0, 0.0, 0.0),
     [("courts", 1.0)]),
    ("finance.bill_paid_on_time", NEUTRAL, (18, 90), 0.02, 1.0, (0.0, 0.0, 0.0),
     [("payments", 1.0), ("banks", 0.5)]),
    ("finance.payment_overdue", LOW_INCOME, (18, 90), 0.001, 1.0, (0.0, 0.0, 0.0),
     [("payments", 1.0), ("banks", 0.5)]),
    ("finance.loan_repaid", NEUTRAL, (22, 70), 0.0005, 1.0, (0.0, 0.0, 0.0), [("banks", 1.0)]),
    ("contract.fulfilled", NEUTRAL, (18, 90), 0.005, 1.0, (0.0, 0.0, 0.0),
     [("e-commerce", 1.0), ("payments", 1.0)]),
    ("identity.verified", NEUTRAL, (18, 90), 0.0005, 1.0, (0.0, 0.0, 0.0), [("payments", 1.0)]),
    ("relationships.high_score_contact", NEUTRAL, (18, 90), 0.003, 1.0, (0.0, 0.0, 0.0),
     [("payments", 1.0)]),
    # Standing records: what a customer's file holds on the start date (the history before it), on
    # day 0 only; the rate is the chance the record exists, growing with the square of the income
    # rank ((decile + 1) / 5.5)^2 (ASSUMPTION). The two chances are fitted by `socialcredit
    # calibrate` (2026-12-03; pilot-regions-2018, 100,000 x 365, seed 1, 30 runs) to targets-2018's
    # commercial-score shares (docs/sources.md#sesame-credit): 0.289 at 700 or above (published
    # ~0.30), 0.0152 at 850 or above (published 0.01-0.02).
    ("finance.credit_history_long", STANDING, (23, 90), 0.2989, 1.0, (0.0, 0.0, 0.0),
     [("payments", 1.0)]),
    ("assets.verified", STANDING, (25, 90), 0.0624, 1.0, (0.0, 0.0, 0.0), [("payments", 1.0)]),
)
KIND_NAMES = tuple(k[0] for k in KINDS)
N_KINDS = len(KINDS)
K_NEWSPAPER = KIND_NAMES.index("online.party_newspaper_visit")
K_COMPLAINT = KIND_NAMES.index("social.complaint")
K_VOLUNTEERING = KIND_NAMES.index("civic.volunteering")
K_JUDGMENT_DEFAULT = KIND_NAMES.index("court.judgment_default")
# Kinds acted every day come first; the standing records (day 0 only) last, without feedback.
N_DAILY_KINDS = sum(1 for k in KINDS if k[1] != STANDING)
assert all(k[1] == STANDING for k in KINDS[N_DAILY_KINDS:])
PLATFORM_SOURCES = ("browsing", "games", "social-media", "e-commerce", "payments")

# Effects of consequences on people; the scenario maps policy consequence names onto them.
EFFECTS = ("loan_discount", "loan_refusal", "insurance", "flight_discount", "flight_ban",
           "train_ban", "gate_stop", "job_loss", "admission_bonus", "admission_penalty")
N_EFFECTS = len(EFFECTS)
# Bans that reach the carriers' lists only for a share of their holders (scenario `<effect>_reach`).
REACH_EFFECTS = ("flight_ban", "train_ban")

# Counters of consequences and feedback per day and region (daily.parquet columns).
COUNTERS = ("jobs_lost", "flights", "flights_blocked", "flights_discounted", "trains",
            "trains_blocked", "gate_stops", "loans", "loans_discounted", "loans_refused",
            "admissions_applied", "admissions_admitted", "admissions_helped", "admissions_hurt",
            "bots_deployed", "sightings", "wrongful_points", "blacklisted", "instore_records",
            "instore_wrongful", "listed", "delisted", "wrongful_downgrades", "wrongful_into_bottom",
            # Tailored offers online from the in-store records of the commercial profile: made, taken,
            # made from a look-alike's record (someone else's interest), and those taken.
            "offers_made", "offers_taken", "offers_wrongful", "offers_wrongful_taken")

MAX_CLASSES = 8
MAX_CONSEQUENCES = 16
MAX_HELD = 4
# Metric slots of one (day, region) row.
M_SCLASS = 0
M_CCLASS = M_SCLASS + MAX_CLASSES
M_KIND = M_CCLASS + MAX_CLASSES  # 4 per kind: true, observed, wrongful, counted by the state
M_SCONS = M_KIND + 4 * N_KINDS
M_CCONS = M_SCONS + MAX_CONSEQUENCES
M_COUNT = M_CCONS + MAX_CONSEQUENCES
N_METRICS = M_COUNT + len(COUNTERS)

# Per-citizen state: the struct of arrays (name, dtype). 32 bytes per citizen.
STATE_FIELDS: tuple[tuple[str, type], ...] = (
    ("age", np.uint8), ("flags", np.uint8), ("region", np.uint8), ("group_decile", np.uint8),
    ("traits", np.uint8), ("parent", np.uint16), ("state_total", np.int32),
    ("commercial_total", np.int32), ("cap_count", np.uint8), ("learned", np.uint32),
    ("since", np.uint16), ("sanction_days", np.uint16), ("benefit_days", np.uint16),
    ("wrongful_points", np.int16), ("profile_age", np.uint8), ("sightings", np.uint8),
    ("moves", np.uint16),
)
BYTES_PER_CITIZEN = sum(np.dtype(t).itemsize for _, t in STATE_FIELDS)
# flags bits
F_MALE, F_URBAN, F_MEMBER, F_BOT, F_BLACKLISTED, F_EMPLOYED, F_SAVVY, F_ADMITTED = (
    1, 2, 4, 8, 16, 32, 64, 128)
NO_PARENT = 0xFFFF
# `learned`: bit k is set once the citizen was scored for daily kind k (at most 23); bit 23 once
# a ticket was refused them (they try to travel less); the high byte counts the clothes the
# e-commerce group's in-store cameras recorded the citizen stopping at.
LEARNED_REFUSED = 1 << 23
INSTORE_SHIFT = 24
assert N_DAILY_KINDS <= 23
# Travel grows with income: at the scenario's `travel_income` g, 1 + g((income decile + 1)/5.5 - 1)
# times its mean rate (ASSUMPTION: g = 1, the gradient of other spending; the factor averages 1
# over the deciles).
