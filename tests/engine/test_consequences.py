"""Benefits and sanctions compiled once: what each class brings, after how many days, by effect."""

from hypothesis import given
from hypothesis import strategies as st

from socialcredit.engine import BENEFITS, BETWEEN, SANCTIONS, CompiledConsequences
from socialcredit.policy import load_policy

TAZ = load_policy("taz-2018")
RONGCHENG = load_policy("rongcheng")


def test_the_top_class_brings_its_benefits_after_the_held_days():
    rules = CompiledConsequences.of(TAZ)
    aaa = TAZ.class_names.index("AAA")
    assert [c.name for c in rules.in_force(aaa, since=10, day=189)] == []
    assert [c.name for c in rules.in_force(aaa, since=10, day=190)] == [b.name for b in TAZ.benefits]
    d = TAZ.class_names.index("D")
    assert [c.effect for c in rules.in_force(d, since=364, day=364)] == [
        "job_loss", "gate_stop", "flight_ban", "train_ban", "admission"]
    assert [rules.band(c) for c in range(len(TAZ.class_names))] == [BENEFITS, *[BETWEEN] * 4, SANCTIONS]


def test_a_sanction_covers_its_class_and_every_worse_one():
    rules = CompiledConsequences.of(RONGCHENG)
    names = RONGCHENG.class_names
    assert [c.name for c in rules.in_force(names.index("C"), 0, 0)] == ["warning-and-supervision"]
    assert [c.name for c in rules.in_force(names.index("D"), 0, 0)] == [
        "warning-and-supervision", "loss-of-eligibility", "loan-restriction"]
    assert rules.held_for("loan_refusal", benefit=False).tolist() == [-1, -1, -1, -1, -1, 0]
    assert rules.deciding("loan_refusal", benefit=True) is None


@given(policy=st.sampled_from([TAZ, RONGCHENG, load_policy("accountable"), load_policy("sesame")]),
       data=st.data(), since=st.integers(0, 400), held=st.integers(0, 400))
def test_in_force_is_what_the_policy_lists(policy, data, since, held):
    """Against the policy read directly: a benefit covers its class and better, a sanction its class
    and worse, once the band has been held for the consequence's held days."""
    rules = CompiledConsequences.of(policy)
    names = policy.class_names
    klass = data.draw(st.integers(0, len(names) - 1))
    day = since + held
    expected = [c.name for c in policy.benefits
                if klass <= names.index(c.class_) and held >= c.held_days]
    expected += [c.name for c in policy.sanctions
                 if klass >= names.index(c.class_) and held >= c.held_days]
    assert [c.name for c in rules.in_force(klass, since, day)] == expected
    for c in rules.in_force(klass, since, day):
        assert rules.band(klass) == (BENEFITS if c.benefit else SANCTIONS)
