"""The shipped presets load and say what their sources (docs/sources.md) say they must."""

import pytest

from socialcredit.policy import list_presets, load_policy

REPORTED_DEDUCTIONS = {"traffic.red_light", "public.littering", "public.queue_jumping",
                       "online.pornography", "online.excess_gaming", "social.complaint"}
REPORTED_REWARDS = {"shop.baby_food", "shop.organic_vegetables", "online.party_newspaper_visit"}
SPEECH_AND_LIFESTYLE = {"social.complaint", "online.pornography", "online.excess_gaming",
                        "shop.baby_food", "shop.organic_vegetables", "online.party_newspaper_visit"}


def test_the_four_presets_ship():
    assert list_presets() == ["accountable", "rongcheng", "sesame", "taz-2018"]


@pytest.mark.parametrize("name", ["accountable", "rongcheng", "sesame", "taz-2018"])
def test_every_preset_loads_names_itself_and_shows_citizens_their_score(name):
    policy = load_policy(name)
    assert policy.name == name
    # docs/sources.md#taz-2018: the citizen sees the score in an app, and every point carries a reason for them.
    citizen = policy.grant_for("citizen")
    assert citizen is not None and {"score", "class"} <= set(citizen.fields)
    assert [r.id for r in policy.rules if not r.reason.strip()] == []


def test_taz_2018_reproduces_the_report():
    p = load_policy("taz-2018")
    assert p.start == 1000
    assert p.class_names == ["AAA", "AA", "A", "B", "C", "D"]
    assert p.classes[0].min == 1300 and p.classes[-2].min == 600
    kinds = {r.kind: r for r in p.rules}
    assert REPORTED_DEDUCTIONS <= set(kinds) and REPORTED_REWARDS <= set(kinds)
    assert all(kinds[k].points < 0 for k in REPORTED_DEDUCTIONS)
    assert all(kinds[k].points > 0 for k in REPORTED_REWARDS)
    # The report's prediction: a bot visiting the newspaper daily is rewarded every day, forever.
    newspaper = kinds["online.party_newspaper_visit"]
    assert newspaper.expires_after_days is None and newspaper.max_per_day == 1
    assert {b.class_ for b in p.benefits} == {"AAA"}
    assert {s.class_ for s in p.sanctions} == {"D"}


def test_rongcheng_numbers():
    kinds = {r.kind: r for r in load_policy("rongcheng").rules}
    assert kinds["traffic.violation"].points == -5
    assert kinds["civic.heroic_act"].points == 30
    assert kinds["traffic.drunk_driving"].class_at_most == "C"
    assert kinds["contract.breach"].points == -20
    assert kinds["court.debt_lawsuit_lost"].points == -30
    assert kinds["public.equipment_destroyed"].points == -100


def test_sesame_range_and_perk_thresholds():
    p = load_policy("sesame")
    assert (p.min, p.max) == (350, 950)
    assert {r.dimension for r in p.rules} == {"credit-history", "behaviour-preferences",
                                             "contract-fulfilment", "identity-traits", "relationships"}
    mins = {c.name: c.min for c in p.classes}
    assert {mins[b.class_] for b in p.benefits} == {600, 650, 700}


def test_accountable_drops_speech_and_lifestyle_and_expires_everything():
    p = load_policy("accountable")
    assert p.appeals
    assert not SPEECH_AND_LIFESTYLE & {r.kind for r in p.rules}
    assert all(r.expires_after_days for r in p.rules)
    assert all(r.min_confidence >= 0.99 for r in p.rules if r.sources and "camera" in r.sources)
