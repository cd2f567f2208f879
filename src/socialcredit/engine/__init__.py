"""The scoring engine: pure, vectorised functions from policy and events to scores and reasons."""

from socialcredit.engine._batch import Scoring, score_ledger
from socialcredit.engine._compiled import BIRTHS_SCHEMA, STATUS_NAMES, YEAR_DAYS, CompiledPolicy, Status
from socialcredit.engine._explain import Explanation, explain
from socialcredit.engine._state import ScoreState

__all__ = [
    "BIRTHS_SCHEMA",
    "CompiledPolicy",
    "Explanation",
    "STATUS_NAMES",
    "ScoreState",
    "Scoring",
    "Status",
    "YEAR_DAYS",
    "explain",
    "score_ledger",
]
