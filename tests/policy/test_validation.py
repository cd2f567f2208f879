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
    text = SMALL_POLICY + '\n[[sanction]]\nname = "ban"\nclass = "E"\neffect = "flight_ban"\n'
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


def _consequence(table, name, klass, effect, parameters="", extra=""):
    return (f'\n[[{table}]]\nname = "{name}"\nclass = "{klass}"\neffect = "{effect}"\n'
            + (f"parameters = {{ {parameters} }}\n" if parameters else "") + extra)


def test_a_consequence_names_its_effect_from_the_vocabulary():
    assert problems(SMALL_POLICY + '\n[[sanction]]\nname = "ban"\nclass = "C"\n') == [
        ("sanction[0].effect", "required field is missing")]
    ((where, msg),) = problems(SMALL_POLICY + _consequence("sanction", "ban", "C", "exile"))
    assert where == "sanction[0].effect" and "'flight_ban'" in msg and "(got 'exile')" in msg


def test_an_effect_is_a_benefit_or_a_sanction_and_takes_its_own_parameters():
    assert problems(SMALL_POLICY + _consequence("benefit", "ban", "A", "flight_ban")) == [
        ("benefit[0].effect", "'flight_ban' is a sanction's effect, not a benefit's")]
    assert problems(SMALL_POLICY + _consequence("sanction", "stop", "C", "gate_stop")) == [
        ("sanction[0].parameters.stop_probability", "required by effect 'gate_stop'")]
    assert problems(SMALL_POLICY + _consequence("sanction", "stop", "C", "gate_stop",
                                                "stop_probability = 1.5")) == [
        ("sanction[0].parameters.stop_probability", "Input should be less than or equal to 1 (got 1.5)")]
    assert problems(SMALL_POLICY + _consequence("sanction", "ban", "C", "flight_ban", "blocked = true")) == [
        ("sanction[0].parameters.blocked", "unknown parameter of effect 'flight_ban' (its parameters: none)")]
    ((where, msg),) = problems(SMALL_POLICY + _consequence("benefit", "perk", "A", "perk", "heat = 0.1"))
    assert where == "benefit[0].parameters.heat" and "discount, deposit_waived" in msg


def test_a_benefit_helps_and_a_sanction_hurts():
    assert problems(SMALL_POLICY + _consequence("benefit", "loan", "A", "loan_price", "rate_change = 0.01")) == [
        ("benefit[0].parameters.rate_change", "a benefit's rate_change must be below 0 (got 0.01)")]
    assert problems(SMALL_POLICY + _consequence("sanction", "loan", "C", "loan_price", "rate_change = -0.01")) == [
        ("sanction[0].parameters.rate_change", "a sanction's rate_change must be above 0 (got -0.01)")]
    assert problems(SMALL_POLICY + _consequence("sanction", "kids", "C", "admission", "chance_change = 0.2")) == [
        ("sanction[0].parameters.chance_change", "a sanction's chance_change must be below 0 (got 0.2)")]
    assert parse_policy(SMALL_POLICY + _consequence("benefit", "kids", "A", "admission", "chance_change = 0.2")
                        + _consequence("sanction", "kids-", "C", "admission", "chance_change = -0.2"))


def test_one_consequence_of_each_deciding_effect_per_list():
    text = (SMALL_POLICY + _consequence("sanction", "ban", "C", "flight_ban")
            + _consequence("sanction", "ban-2", "C", "flight_ban"))
    ((where, msg),) = problems(text)
    assert where == "sanction[1].effect" and "sanction[0]" in msg
    perks = _consequence("benefit", "bikes", "A", "perk") + _consequence("benefit", "hotels", "A", "perk")
    assert parse_policy(SMALL_POLICY + perks)  # perks decide nothing: as many as the policy likes


def test_benefits_lie_above_sanctions_and_held_days_sit_at_a_bands_edge():
    overlap = _consequence("benefit", "perk", "C", "perk") + _consequence("sanction", "ban", "C", "flight_ban")
    assert [w for w, _ in problems(SMALL_POLICY + overlap)] == ["sanction[0].class"]
    inner = (_consequence("benefit", "bikes", "B", "perk") + _consequence("benefit", "loans", "A", "loan_price",
                                                                         "rate_change = -0.01", "held_days = 30\n"))
    ((where, msg),) = problems(SMALL_POLICY + inner)
    assert where == "benefit[1].held_days" and "(B)" in msg
