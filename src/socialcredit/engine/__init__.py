"""The scoring engine: pure, vectorised functions from policy and events to scores and reasons."""

from socialcredit.engine._batch import Scoring, score_ledger
from socialcredit.engine._compiled import BIRTHS_SCHEMA, STATUS_NAMES, YEAR_DAYS, CompiledPolicy, Status
from socialcredit.engine._consequences import BENEFITS, BETWEEN, SANCTIONS, CompiledConsequence, CompiledConsequences
from socialcredit.engine._explain import Explanation, explain
from socialcredit.engine._history import HISTORY_SCHEMA, class_history
from socialcredit.engine._state import ScoreState

__all__ = [
    "BENEFITS",
    "BETWEEN",
    "BIRTHS_SCHEMA",
    "CompiledConsequence",
    "CompiledConsequences",
    "CompiledPolicy",
    "Explanation",
    "HISTORY_SCHEMA",
    "SANCTIONS",
    "STATUS_NAMES",
    "ScoreState",
    "Scoring",
    "Status",
    "YEAR_DAYS",
    "class_history",
    "explain",
    "score_ledger",
]
