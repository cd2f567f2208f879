"""The simulator: synthetic citizens, sensors with real error rates, feedback, runs."""


from socialcredit._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "Manifest": "socialcredit.simulation._run",
    "Run": "socialcredit.simulation._run",
    "simulate": "socialcredit.simulation._run",
    "Scenario": "socialcredit.simulation._scenario",
    "SimulationError": "socialcredit.simulation._scenario",
    "list_scenarios": "socialcredit.simulation._scenario",
    "load_scenario": "socialcredit.simulation._scenario",
    "parse_overrides": "socialcredit.simulation._scenario",
    "sweep": "socialcredit.simulation._sweep",
})

__all__ = [
    "Manifest",
    "Run",
    "Scenario",
    "SimulationError",
    "list_scenarios",
    "load_scenario",
    "parse_overrides",
    "simulate",
    "sweep",
]
