"""socialcredit: an open, measurable implementation of a social credit system."""

from socialcredit.engine import ScoreState, Scoring, explain, score_ledger
from socialcredit.events import EventError, read_events, validate_events
from socialcredit.policy import Policy, PolicyError, list_presets, load_policy, parse_policy
from socialcredit.simulation import Run, simulate

__version__ = "0.1.0"

__all__ = [
    "EventError",
    "Policy",
    "PolicyError",
    "Run",
    "ScoreState",
    "Scoring",
    "__version__",
    "explain",
    "list_presets",
    "load_policy",
    "parse_policy",
    "read_events",
    "score_ledger",
    "simulate",
    "validate_events",
]
