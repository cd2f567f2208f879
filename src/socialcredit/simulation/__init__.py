"""The simulator: synthetic citizens, sensors with real error rates, feedback, runs."""

from socialcredit.simulation._run import Run, simulate
from socialcredit.simulation._scenario import (
    Scenario,
    SimulationError,
    list_scenarios,
    load_scenario,
    parse_overrides,
)
from socialcredit.simulation._sweep import sweep

__all__ = [
    "Run",
    "Scenario",
    "SimulationError",
    "list_scenarios",
    "load_scenario",
    "parse_overrides",
    "simulate",
    "sweep",
]
