import inspect

import pytest

from socialcredit.demo import run_demo
from socialcredit.policy import list_presets, load_policy
from socialcredit.web import __all__ as public
from socialcredit.web import page_routes
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


def test_public_surface_is_sorted_and_page_routes_serve_the_three_areas(tmp_path):
    import socialcredit.web as web
    from socialcredit.service import Service

    assert public == sorted(public) == ["page_routes"]
    assert all(callable(getattr(web, name)) for name in public)
    assert inspect.signature(run_demo).parameters["population"].default == 100_000  # what README says make run runs
    service = Service.open(f"sqlite:///{tmp_path}/pages.db")
    try:
        paths = {route.path for route in page_routes(service).routes}
    finally:
        service.close()
    assert {"/", "/app", "/portal", "/dashboard", "/portal/check", "/app/signin"} <= paths
