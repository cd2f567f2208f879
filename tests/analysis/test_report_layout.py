"""The report on every screen: real generated reports measured in Chromium at a phone's, a tablet's
and a laptop's width, and what their charts show."""

import re

import polars as pl
import pytest

from socialcredit.analysis import write_report
from socialcredit.analysis._report import distinct_colours, interval, number
from socialcredit.simulation import simulate

WIDTHS = (390, 768, 1280)
RENDERED = "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('svg.main-svg'))"


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    """The pilot regions: twelve scored regions under two policies (rongcheng, taz-2018) and one unscored."""
    folder = tmp_path_factory.mktemp("pilot")
    run = simulate(population=6000, days=60, seed=1, out=folder / "run", scenario="pilot-regions-2018", events="all")
    return write_report(run.path, out=folder / "report.html")


@pytest.fixture(scope="module")
def reports(pilot, runs, tmp_path_factory):
    """The pilot report, and a one-town report beside another run (the widest tables)."""
    taz, accountable = runs
    return {"pilot": pilot,
            "compared": write_report(taz, out=tmp_path_factory.mktemp("wide") / "r.html", compare=accountable)}


@pytest.fixture(scope="module")
def opened(reports, browser):
    """Each report opened once on a phone's screen (tests resize the window as a user turns or changes
    their device: the plots follow, being responsive)."""
    pages = {}
    for name, path in reports.items():
        context = browser.new_context(viewport={"width": WIDTHS[0], "height": 900})
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc, page=page: page.errors.append(str(exc)))
        page.goto(path.as_uri())
        page.wait_for_function(RENDERED, timeout=30_000)
        pages[name] = page
    yield pages
    for page in pages.values():
        page.context.close()


def _at(page, width: int):
    """The page with the window `width` wide, once every plot has been redrawn to its card."""
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_function("""w => [...document.querySelectorAll('.plotly-graph-div')].every(d => {
        const svg = d.querySelector('svg.main-svg');
        return svg && Math.abs(svg.getBoundingClientRect().width - d.getBoundingClientRect().width) < 2; })""",
                           arg=width, timeout=30_000)
    return page


@pytest.mark.parametrize("name", ["pilot", "compared"])
def test_nothing_is_wider_than_the_screen(opened, name):
    page = opened[name]
    assert page.locator("nav").bounding_box()["height"] > 60  # the section list wraps to lines on a phone
    for width in WIDTHS:
        _at(page, width)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, (name, width)
        # Every plot fits its section, every link of the section list the screen.
        overflowing = page.evaluate("""() => [...document.querySelectorAll('.plotly-graph-div, nav a')]
            .filter(e => e.getBoundingClientRect().right > (e.closest('section') || document.body)
                         .getBoundingClientRect().right + 1).map(e => e.id || e.textContent)""")
        assert overflowing == [], (name, width)
    # A table wider than the screen scrolls in a box of its own.
    loose = page.evaluate("""() => [...document.querySelectorAll('table')]
        .filter(t => !t.parentElement.classList.contains('table-wrap')
                     || getComputedStyle(t.parentElement).overflowX !== 'auto').length""")
    assert loose == 0
    assert page.errors == []


def test_twelve_regions_get_twelve_colours_and_the_thresholds_do_not_collide(opened):
    page = _at(opened["pilot"], 1280)
    plot = page.locator("#distribution .plotly-graph-div").first
    traces = plot.evaluate("d => d.data.map(t => [t.name, t.line && t.line.color])")
    regions = [(n, c) for n, c in traces if n != "all regions" and "thresholds" not in n]
    assert len(regions) == 12
    assert len({c for _, c in regions}) == 12
    assert [n for n, _ in traces if "thresholds" in n] == ["rongcheng class thresholds", "taz-2018 class thresholds"]
    # Two policies' labels on the lines would overlap (A from 960 beside A from 950): the table says them.
    assert plot.evaluate("d => (d.layout.annotations || []).length") == 0
    table = page.locator("#distribution table").inner_text()
    assert "rongcheng\tfrom 1,050\tfrom 1,030\tfrom 960\tfrom 850\tfrom 600\tunder 600" in table
    assert "taz-2018\tfrom 1,300\tfrom 1,150\tfrom 950\tfrom 850\tfrom 600\tunder 600" in table


def test_small_classes_show_hover_labels_say_what_they_are_and_headers_are_words(opened, runs):
    page = _at(opened["compared"], 1280)
    over_time, at_end = page.locator("#overview .plotly-graph-div").all()
    assert over_time.evaluate("d => d.layout.yaxis.type") == "log"
    bars = at_end.evaluate("d => d.data[0]")
    assert at_end.evaluate("d => d.layout.yaxis.type") == "log"
    # Every class has its value written on its bar, the smallest included.
    assert bars["text"] == [number(y, "share") for y in bars["y"]]
    assert min(y for y in bars["y"] if y) < 0.001
    bare = page.evaluate("""() => [...document.querySelectorAll('.plotly-graph-div')].flatMap(
        d => d.data.filter(t => !t.hovertemplate && t.hoverinfo !== 'skip').map(t => d.id + ' ' + t.name))""")
    assert bare == []
    headers = page.locator("th").all_inner_texts()
    assert headers and not [h for h in headers if re.search(r"[a-z]_[a-z]", h)]
    # Notes that inform are not dressed as warnings.
    events = pl.scan_parquet(runs[0] / "events.parquet").select(pl.len()).collect().item()
    assert page.locator("#overview .note-info").first.inner_text() == f"Note: All {events:,} events were recorded."
    assert page.locator(".note-caveat").count() == 0  # every event was recorded, and the runs agree in size


def test_one_number_format():
    assert [number(x, "share") for x in (0.9572, 0.005424, 0.5, 1.0, 0.0, None)] == [
        "95.7%", "0.542%", "50.0%", "100%", "0%", "-"]
    assert [number(x, "count") for x in (1234567, 3.0)] == ["1,234,567", "3"]
    assert [number(x, "ratio") for x in (31.01, 0.8)] == ["x31.0", "x0.800"]
    assert number(-5, "points") == "-5" and number(730, "points") == "+730"
    assert number(1923456.7) == "1,923,457" and number(0.1234) == "0.123"
    assert interval(0.005424, 0.00498, 0.0059) == "0.542% (0.498-0.590%)"
    assert interval(10.2, 8.1, 12.9, "ratio") == "x10.2 (8.10-12.9)"
    assert interval(5.0, 1.2, float("inf"), "ratio") == "x5.00 (at least 1.20)"
    assert interval(float("inf"), 1.2, float("inf"), "ratio") == "at least x1.20"


def test_the_palette_tells_any_number_of_series_apart():
    for n in (3, 12, 30):
        colours = distinct_colours(n)
        assert len(set(colours)) == n
        rgb = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in colours]
        # Neighbours (drawn next to each other in a legend) differ clearly.
        assert min(sum((a - b) ** 2 for a, b in zip(x, y, strict=True)) ** 0.5
                   for x, y in zip(rgb, rgb[1:], strict=False)) > 60
