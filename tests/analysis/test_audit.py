"""The policy audit flags what a regulator would question, and only that."""

import pytest
from typer.testing import CliRunner

from socialcredit.analysis import FLAGS, audit_policy
from socialcredit.cli import app
from socialcredit.policy import load_policy, parse_policy
from tests.conftest import SMALL_POLICY


def flags_of(audit, name):
    return set(audit.items.filter(name=name)["flags"].item())


def test_taz_2018_carries_every_flag_the_report_implies():
    audit = audit_policy(load_policy("taz-2018"))
    assert all(audit.has(flag) for flag in FLAGS)
    assert flags_of(audit, "complaining") >= {"speech-or-lifestyle", "never-expires"}
    assert "gameable" in flags_of(audit, "party-newspaper")
    assert "camera-no-threshold" in flags_of(audit, "red-light")
    assert "unrelated-sanction" in flags_of(audit, "flight-ban")


def test_accountable_passes_every_check():
    audit = audit_policy(load_policy("accountable"))
    assert not any(audit.has(flag) for flag in FLAGS)


def test_a_trigger_in_another_context_is_unrelated():
    text = "appeals = true\n" + SMALL_POLICY + """
[[sanction]]
name = "no-flights"
class = "C"
context = "travel"
effect = "flight_ban"
triggered_by = ["camera"]

[[sanction]]
name = "road-course"
class = "C"
context = "general"
effect = "obligation"
triggered_by = ["capped"]
"""
    audit = audit_policy(parse_policy(text))
    assert flags_of(audit, "no-flights") == {"unrelated-sanction"}
    assert flags_of(audit, "road-course") == set()
    assert not audit.has("no-appeal")


def test_camera_threshold_flag_depends_on_min_confidence():
    audit = audit_policy(parse_policy(SMALL_POLICY))
    assert "camera-no-threshold" not in flags_of(audit, "camera")
    audit = audit_policy(parse_policy(SMALL_POLICY.replace("min_confidence = 0.9\n", "")))
    assert "camera-no-threshold" in flags_of(audit, "camera")


@pytest.mark.parametrize(("policy", "code"), [("taz-2018", 1), ("accountable", 0)])
def test_cli_fail_on(policy, code):
    result = CliRunner().invoke(app, ["audit", policy, "--fail-on", "unrelated-sanction", "--fail-on", "gameable"])
    assert result.exit_code == code, result.output
    assert "Audit of policy" in result.output


def test_cli_refuses_unknown_flag():
    result = CliRunner().invoke(app, ["audit", "taz-2018", "--fail-on", "ugly"])
    assert result.exit_code == 2 and "unknown flag" in result.output
