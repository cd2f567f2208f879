"""socialcredit: an open, measurable implementation of a social credit system."""

from socialcredit._lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {
    "ScoreState": "socialcredit.engine",
    "Scoring": "socialcredit.engine",
    "explain": "socialcredit.engine",
    "score_ledger": "socialcredit.engine",
    "EventError": "socialcredit.events",
    "read_events": "socialcredit.events",
    "validate_events": "socialcredit.events",
    "Policy": "socialcredit.policy",
    "PolicyError": "socialcredit.policy",
    "list_presets": "socialcredit.policy",
    "load_policy": "socialcredit.policy",
    "parse_policy": "socialcredit.policy",
    "Run": "socialcredit.simulation",
    "simulate": "socialcredit.simulation",
})

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
