"""An invalid policy is refused with a message naming the field or the line."""

import pytest

from socialcredit.policy import PolicyError, parse_policy
from tests.conftest import SMALL_POLICY


def problems(text):
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.toml")
    return info.value.problems


def test_small_policy_is_valid():
    assert parse_policy(SMALL_POLICY).name == "small"


def test_wrong_type_names_the_rule_field():
    text = SMALL_POLICY.replace('points = -1\n', 'points = "a lot"\n')
    assert [where for where, _ in problems(text)] == ["rule[3].points"]


def test_toml_syntax_error_names_the_line():
    text = SMALL_POLICY.replace('id = "camera"', 'id = camera')
    ((where, msg),) = problems(text)
    line = SMALL_POLICY.splitlines().index('id = "camera"') + 1
    assert f"line {line}" in msg and "TOML syntax error" in msg


def test_missing_required_field():
    text = SMALL_POLICY.replace('reason = "rewarded"\n', "")
    assert ("rule[2].reason", "required field is missing") in problems(text)


def test_unknown_field_is_a_typo():
    text = SMALL_POLICY.replace("max_per_day = 1\n", "max_per_dya = 1\n")
    assert [w for w, _ in problems(text)] == ["rule[2].max_per_dya"]


def test_a_kind_in_two_rules_is_refused():
    text = SMALL_POLICY.replace('kind = "k.reward"', 'kind = "k.capped"')
    ((where, msg),) = problems(text)
    assert where == "rule[2].kind" and "rule[0]" in msg


def test_classes_must_go_from_top_to_bottom_and_the_last_has_no_min():
    text = SMALL_POLICY.replace("min = 950", "min = 1060")
    assert [w for w, _ in problems(text)] == ["class[1].min"]
    text = SMALL_POLICY.replace('name = "C"\n', 'name = "C"\nmin = 10\n')
    assert [w for w, _ in problems(text)] == ["class[2].min"]


def test_references_to_classes_must_exist():
    text = SMALL_POLICY.replace('class_at_most = "C"', 'class_at_most = "Z"')
    assert problems(text) == [("rule[3].class_at_most", "unknown class 'Z'")]
    text = SMALL_POLICY + '\n[[sanction]]\nname = "ban"\nclass = "E"\n'
    assert problems(text) == [("sanction[0].class", "unknown class 'E'")]


def test_start_within_bounds_and_confidence_within_0_1():
    assert [w for w, _ in problems(SMALL_POLICY.replace("start = 1000", "start = 5"))] == ["start"]
    bad = SMALL_POLICY.replace("min_confidence = 0.9", "min_confidence = 1.5")
    assert [w for w, _ in problems(bad)] == ["rule[1].min_confidence"]


def test_grant_fields_and_roles_are_checked():
    text = SMALL_POLICY + '\n[[grant]]\nrole = "bank"\nfields = ["score", "diary"]\n'
    assert [w for w, _ in problems(text)] == ["grant[0].fields[1]"]
    text = SMALL_POLICY + '\n[[grant]]\nrole = "astrologer"\nfields = ["score"]\n'
    assert [w for w, _ in problems(text)] == ["grant[0].role"]


def test_message_lists_every_problem_with_its_location():
    text = SMALL_POLICY.replace("points = -10", 'points = "x"').replace('reason = "rewarded"\n', "")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.toml")
    assert "rule[0].points" in str(info.value) and "rule[2].reason" in str(info.value)
    assert str(info.value).startswith("invalid policy p.toml")
