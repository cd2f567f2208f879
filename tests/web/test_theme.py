import pytest

from socialcredit.policy import list_presets, load_policy
from socialcredit.web import __all__ as public
from socialcredit.web import page_routes, run_demo
from socialcredit.web._theme import class_styles, contrast, gauge


def test_contrast_of_known_pairs():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#777777") == pytest.approx(1.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the WCAG AA grey


@pytest.mark.parametrize("name", list_presets())
def test_every_class_colour_has_text_with_contrast_at_least_4_5(name):
    policy = load_policy(name)
    styles = class_styles(policy)
    assert [s.name for s in styles] == policy.class_names
    for s in styles:
        assert contrast(s.background, s.text) >= 4.5, (name, s)


def test_gauge_bands_cover_the_range_and_the_needle_moves():
    policy = load_policy("taz-2018")
    low, high = gauge(policy, policy.min)["needle"], gauge(policy, policy.max)["needle"]
    assert low[0] < 100 < high[0]
    assert len(gauge(policy, 1000)["arcs"]) == len(policy.classes)


def test_public_surface_is_sorted():
    assert public == sorted(public) and page_routes and run_demo
