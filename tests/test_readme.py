"""The README's examples work as printed."""

import re
from pathlib import Path

from socialcredit.engine import score_ledger
from socialcredit.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def block(language: str) -> str:
    return re.search(rf"```{language}\n(.*?)```", README, re.S).group(1)


def test_worked_policy_example_is_valid(tmp_path):
    path = tmp_path / "town.toml"
    path.write_text(block("toml"))
    policy = load_policy(path)
    assert policy.name == "town" and [r.id for r in policy.rules] == ["red-light", "drunk-driving"]
    # A policy without a citizen grant leaves the citizen app nothing to show: the example has one.
    assert {"score", "history", "lookups"} <= set(policy.grant_for("citizen").fields)


def test_python_example_runs_and_incremental_equals_batch(monkeypatch):
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(block("python"), scope)
    assert scope["state"].scores().equals(scope["result"].scores)
    # What apply returns: each event of the batch with its status as of the state's day (150).
    events = scope["events"]
    as_of_150 = score_ledger(scope["policy"], events, as_of=150).decisions.filter(events["day"] >= 100)["status"]
    assert scope["status"].equals(as_of_150) and "future" in scope["status"]
    assert scope["result"].scores.filter(citizen_id="c-0003")["class"].item() == "AAA"


def test_the_events_table_is_the_event_record():
    """The README's table of event columns says what socialcredit.events.EVENT_FIELDS defines."""
    from socialcredit.events import EVENT_FIELDS

    section = README[README.index("### Events"):README.index("The sample ledger")]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| `")]
    assert rows == [[f"`{f.name}`", f.described, f.requirement, f.meaning] for f in EVENT_FIELDS]
