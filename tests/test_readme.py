"""The README's examples work as printed."""

import re
from pathlib import Path

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


def test_python_example_runs_and_incremental_equals_batch(monkeypatch):
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(block("python"), scope)
    assert scope["state"].scores().equals(scope["result"].scores)
    assert scope["result"].scores.filter(citizen_id="c-0003")["class"].item() == "AAA"


def test_the_events_table_is_the_event_record():
    """The README's table of event columns says what socialcredit.events.EVENT_FIELDS defines."""
    from socialcredit.events import EVENT_FIELDS

    section = README[README.index("### Events"):README.index("The sample ledger")]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| `")]
    assert rows == [[f"`{f.name}`", f.described, f.requirement, f.meaning] for f in EVENT_FIELDS]
