"""Policies: declarative scoring schemes in TOML, validated on load."""

from socialcredit.policy._load import PolicyError, list_presets, load_policy, parse_policy, policy_source
from socialcredit.policy._model import (
    GRANT_FIELDS,
    ROLES,
    Consequence,
    Grant,
    Policy,
    RatingClass,
    Rule,
    Source,
)

__all__ = [
    "Consequence",
    "GRANT_FIELDS",
    "Grant",
    "Policy",
    "PolicyError",
    "ROLES",
    "RatingClass",
    "Rule",
    "Source",
    "list_presets",
    "load_policy",
    "parse_policy",
    "policy_source",
]
