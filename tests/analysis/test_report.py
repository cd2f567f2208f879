"""The HTML report: self-contained, every section and plot rendered in a real browser, a CLI adapter."""

import html
import re
import shutil

import pytest
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from socialcredit import analysis
from socialcredit.analysis import ReportError, write_report
from socialcredit.analysis._report import interval, number
from socialcredit.cli import app

SECTIONS = ["Overview", "Score distribution at the end", "Who falls into D and why", "Rewards and sanctions over time",
            "Wrongful penalties", "Behaviour change", "Lives", "Inequality", "Policy audit", "Policies side by side",
            "How this run compares with the published record", "Method"]


@pytest.fixture(scope="module")
def compared(runs, tmp_path_factory):
    taz, accountable = runs
    return write_report(taz, out=tmp_path_factory.mktemp("report") / "compared.html", compare=accountable)


def test_all_is_sorted_and_keeps_the_audit():
    assert analysis.__all__ == sorted(analysis.__all__)
    assert {"FLAGS", "Audit", "audit_policy", "write_report"} <= set(analysis.__all__)


def test_report_is_one_self_contained_file(compared):
    text = compared.read_text(encoding="utf-8")
    assert text.count(get_plotlyjs()) == 1
    outside = text.replace(get_plotlyjs(), "")  # plotly.js itself names a CDN for map data we never use
    assert "cdn.plot.ly" not in outside and "<script src=" not in outside and "http" not in outside
    assert compared.stat().st_size < 8_000_000


def test_report_defaults_to_the_run_folder_and_says_when_events_are_missing(runs):
    _, accountable = runs
    path = write_report(accountable)
    assert path == accountable / "report.html"
    text = path.read_text(encoding="utf-8")
    assert "No event table in this run" in text
    assert "Run the report with --compare" in text


def test_a_sampled_or_absent_events_table_is_fine(runs, tmp_path):
    taz, _ = runs
    copy = tmp_path / "run"
    shutil.copytree(taz, copy)
    (copy / "events.parquet").unlink()
    assert "No event table in this run" in write_report(copy).read_text(encoding="utf-8")


def test_not_a_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="not a run folder"):
        write_report(tmp_path)


def test_cli_writes_the_report_and_prints_its_path(runs, tmp_path):
    taz, accountable = runs
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(taz), "--compare", str(accountable), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    assert out.is_file()
    bad = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert bad.exit_code == 1
    assert "not a run folder" in bad.output


def test_every_section_and_plot_renders_in_chromium(compared, page, tmp_path):
    remote = []  # the report must open offline: any request beyond the file itself is refused and noted
    page.route("http*://**", lambda route: (remote.append(route.request.url), route.abort()))
    page.goto(compared.as_uri())
    page.wait_for_function(
        "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('svg.main-svg'))",
        timeout=30_000)
    headings = page.locator("section > h2").all_inner_texts()
    assert headings == [f"{i}. {title}" for i, title in enumerate(SECTIONS, start=1)]
    plots = page.locator(".plotly-graph-div")
    rendered = page.locator(".js-plotly-plot:has(svg.main-svg)")
    assert plots.count() >= 18
    assert rendered.count() == plots.count()
    for section in page.locator("section").all()[:8]:  # every data section has at least one plot
        assert section.locator(".js-plotly-plot").count() >= 1
    assert page.errors == []
    assert remote == []
    page.screenshot(path=tmp_path / "report.png", full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_the_same_run_gives_the_same_bytes(runs, compared, tmp_path):
    taz, accountable = runs
    again = write_report(taz, out=tmp_path / "again.html", compare=accountable)
    assert again.read_bytes() == compared.read_bytes()


def _paragraphs(path) -> str:
    """The report's prose, tags stripped and entities decoded, on one line."""
    import html
    import re

    text = path.read_text(encoding="utf-8").replace(get_plotlyjs(), "")
    text = re.sub(r"<script.*?</script>", " ", text, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def _share(k: int, n: int) -> str:
    """k of n as the report shows it: the share and its 95% Wilson interval (scipy's, worked out here)."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return interval(k / n, ci.low, ci.high)


def test_the_report_states_the_numbers_of_its_own_run(runs, compared):
    """Each headline number, worked out here from the run's tables (not by the report's metrics code)."""
    import polars as pl

    taz, _ = runs
    text = _paragraphs(compared)
    citizens = pl.read_parquet(taz / "citizens.parquet")
    daily = pl.read_parquet(taz / "daily.parquet")
    events = pl.read_parquet(taz / "events.parquet")
    scored = citizens.filter(pl.col("class").is_not_null())
    assert scored.height == 20_000

    in_d = int((scored["class"] == "D").sum())
    assert (f"At the end, {_share(in_d, scored.height)} of the scored citizens are in the bottom class (D); "
            f"the lowest class anyone holds is D ({_share(in_d, scored.height)})") in text
    median, low, high = scored["score"].median(), scored["score"].min(), scored["score"].max()
    assert f"Median {median}, range {low} to {high}." in text

    totals = daily.select(pl.col("jobs_lost", "flights_blocked", "trains_blocked", "gate_stops",
                                 "loans_discounted").sum()).row(0, named=True)
    assert (f"Over the run: {totals['jobs_lost']:,} jobs lost, {totals['flights_blocked']:,} flights and "
            f"{totals['trains_blocked']:,} train tickets blocked, {totals['gate_stops']:,} gate stops, "
            f"{totals['loans_discounted']:,} cheaper loans.") in text

    # Every event was recorded (events=all): the wrongful ones are those whose actor is someone else.
    wrongful = events.filter(pl.col("citizen_id") != pl.col("actor_id"))
    assert wrongful.height > 0
    assert (f"In scored regions, {wrongful.height:,} of {events.height:,} observed events "
            f"({_share(wrongful.height, events.height)}) were attributed to someone who did not do it") in text
    lost = wrongful.group_by("citizen_id").agg(pl.col("state_points").sum()).filter(pl.col("state_points") < 0)
    assert (f"{lost.height:,} innocent citizens lost {-lost['state_points'].sum():,} points") in text

    top = scored.filter(pl.col("class") == "AAA")
    everyone = number(scored["bot"].mean(), "share")
    if top.height:
        assert f"Bot users are {_share(int(top['bot'].sum()), top.height)} of the top class" in text
        assert f"against {everyone} of everyone" in text
    else:  # nobody may reach it in 60 days: the report says so, and gives no share of nobody
        assert (f"Nobody reached the top class (AAA) by the end, so it holds no bot users; they are {everyone} "
                "of everyone.") in text


def test_the_record_section_sets_the_run_beside_the_published_figures(runs, compared):
    """A flow, worked out here: the run's blocked trains over its 60 days, per year, for 1.41 billion."""
    import re

    import polars as pl

    taz, _ = runs
    page = compared.read_text(encoding="utf-8")
    section = page[page.index('<section id="record">'):page.index('<section id="method">')]
    trains = pl.read_parquet(taz / "daily.parquet")["trains_blocked"].sum()
    simulated = trains * 365 / 60 * 1_410_000_000 / 20_000
    row = re.search(r"<tr[^>]*><td>Train purchases blocked, 2018 \(derived\)</td>(.*?)</tr>", section, re.S)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells[:3] == ["purchases a year", "1,600,000", f"{simulated:,.0f}"]
    # The run ends in March: the year-end stocks are not covered, and say so.
    stock = re.search(r"<td>People on the judgment-defaulter list, end of 2018</td>(.*?)</tr>", section, re.S)
    assert "not covered" in stock.group(1) and "does not reach 2018-12-31" in stock.group(1)


def test_a_rollout_run_reports_its_phases(tmp_path):
    import polars as pl

    from socialcredit.simulation import simulate

    run = simulate(population=3000, days=1096, seed=3, out=tmp_path / "run", scenario="rollout-2018-2020")
    text = _paragraphs(write_report(run.path))
    assert "Roll-out: the phases" in text
    assert ("2020-01-01 730 rest-of-china joins taz-2018; cameras: street 0.15, mall 0.4, subway 0.6 "
            "nationwide roll-out") in text
    assert "2019-01-01 365 rongcheng cameras: street 0.4, mall 0.6, subway 0.95" in text
    # Each phase's scored share, worked out here from daily.parquet.
    daily = run.daily
    classes = [c for c in daily.columns if c.startswith("class.")]
    scored = daily.group_by("day").agg(pl.sum_horizontal(classes).sum().alias("n")).sort("day")["n"].to_numpy()
    for first, last, start, end in ((0, 365, "2018-01-01", "2018-12-31"), (365, 730, "2019-01-01", "2019-12-31"),
                                    (730, 1096, "2020-01-01", "2020-12-31")):
        share = number(scored[first:last].mean() / 3000, "share")
        assert f"{start} {end} {share}" in text, (start, share)
    assert scored[729] < 0.1 * 3000 < 0.9 * 3000 < scored[730]  # the pilots, then the nation


def test_a_sweep_of_the_gaming_settings_gives_the_sensitivity_table(runs, tmp_path):
    import polars as pl

    from socialcredit.simulation import sweep

    folder = tmp_path / "sweep"
    outcomes = sweep(scenario="one-town", grid={"behaviour.gaming": [0.0, 0.3], "behaviour.savvy_share": [0.1, 0.3]},
                     seeds=[1, 2], out=folder, population=20000, days=240)
    # Worked out here from the runs' citizens: the top class (AAA) and its bots.
    for row in outcomes.iter_rows(named=True):
        citizens = pl.read_parquet(folder / row["run"] / "citizens.parquet").filter(pl.col("class").is_not_null())
        top = citizens.filter(pl.col("class") == "AAA")
        assert row["top_share"] == top.height / citizens.height
        assert row["top_bot_share"] == (top["bot"].mean() if top.height else None)
        assert row["top_volunteer_share"] == (top["volunteer"].mean() if top.height else None)
    no_gaming = outcomes.filter(pl.col("behaviour.gaming") == 0.0)
    assert (no_gaming["top_share"] == 0).all()  # without the bots nobody reaches AAA (one-town, 240 days)
    gamed = outcomes.filter(pl.col("behaviour.gaming") == 0.3)
    assert (gamed["top_share"] > 0).all() and (gamed["top_bot_share"] == 1.0).all()
    text = _paragraphs(write_report(runs[0], out=tmp_path / "r.html", sweep=folder))
    assert "Sensitivity: the top class and its bots" in text
    mean = gamed.filter(pl.col("behaviour.savvy_share") == 0.3)["top_share"].to_numpy()
    volunteers = gamed.filter(pl.col("behaviour.savvy_share") == 0.3)["top_volunteer_share"].mean()
    assert (f"0.3 0.3 2 {number(mean.mean(), 'share')} ({number(mean.min(), 'share')} to "
            f"{number(mean.max(), 'share')}) 100% {number(volunteers, 'share')} ") in text
    assert "0.0 0.1 2 0% (0% to 0%) nobody at the top nobody at the top 0 " in text
    result = CliRunner().invoke(app, ["report", str(runs[0]), "--out", str(tmp_path / "x.html"),
                                      "--sweep", str(tmp_path)])
    assert result.exit_code == 1 and "not a sweep folder" in result.output


def test_a_run_moved_elsewhere_without_its_policy_file_reports_the_same_bytes(tmp_path):
    """The run folder is the contract: it keeps copies of its policies, so neither moving it nor
    deleting (or editing) the policy file it was simulated with changes its report."""
    from importlib import resources

    from socialcredit.simulation import simulate

    policy = tmp_path / "scheme.toml"
    text = resources.files("socialcredit.policy.presets").joinpath("rongcheng.toml").read_text(encoding="utf-8")
    policy.write_text(text.replace('name = "rongcheng"', 'name = "scheme"', 1), encoding="utf-8")
    run = simulate(population=3000, days=30, seed=3, out=tmp_path / "here" / "run", policy=str(policy))
    before = write_report(run.path, out=tmp_path / "before.html").read_bytes()
    policy.write_text(policy.read_text(encoding="utf-8").replace("points = 30", "points = 300"), encoding="utf-8")
    moved = tmp_path / "there" / "moved"
    shutil.move(run.path, moved)
    assert write_report(moved, out=tmp_path / "after.html").read_bytes() == before
    policy.unlink()
    assert write_report(moved, out=tmp_path / "again.html").read_bytes() == before


def test_the_report_says_what_each_consequence_does_from_the_run_policies(runs, compared):
    """The consequences section lists every benefit and sanction of the run's policies (its own copies)
    with the classes it covers, its effect, parameters and held days, as the engine compiles them."""
    from socialcredit.simulation import Run

    text = _paragraphs(compared)
    policies = Run.open(runs[0]).policies
    assert set(policies) == {"taz-2018", "sesame"}
    rows = 0
    for policy in policies.values():
        names = policy.class_names
        for kind, items in (("benefit", policy.benefits), ("sanction", policy.sanctions)):
            for c in items:
                level = names.index(c.class_)
                covers = ", ".join(names[: level + 1] if kind == "benefit" else names[level:])
                params = ", ".join(f"{k} {v}" for k, v in c.params.model_dump().items()) or "-"
                assert f"{policy.name} {c.name} {kind} {covers} {c.effect} {params} {c.held_days}" in text, c.name
                rows += 1
    assert rows == 13  # taz-2018's 4 benefits and 5 sanctions, sesame's 4 perks


def test_intervals_wilson_for_a_share_exact_conditional_for_a_ratio_of_rates():
    import math

    from scipy.stats import beta

    from socialcredit.analysis._metrics import rate_ratio_interval, share_interval

    # Wilson's closed form, at k = 3 of n = 40.
    z, k, n = 1.959963984540054, 3, 40
    centre, half = (k + z * z / 2) / (n + z * z), z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    assert share_interval(k, n) == pytest.approx((centre - half, centre + half))
    assert share_interval(0, 10)[0] == 0 and share_interval(0, 10)[1] > 0
    # 2 of 3 against 1 of 1,000: the first group's part of the 3 events, Clopper-Pearson, mapped to the ratio.
    low, high = beta.ppf(0.025, 2, 2), beta.ppf(0.975, 3, 1)
    assert rate_ratio_interval(2, 3, 1, 1000) == pytest.approx(
        (low / (1 - low) * 1000 / 3, high / (1 - high) * 1000 / 3))
    assert math.isinf(rate_ratio_interval(4, 100, 0, 100)[1])
    assert all(map(math.isnan, rate_ratio_interval(0, 100, 0, 100)))


def test_ratios_between_groups_carry_their_intervals(runs, compared):
    """The wrongful-penalty ratios, worked out here from citizens.parquet: innocents hit per group,
    against the reference group, with the exact conditional interval."""
    import polars as pl
    from scipy.stats import binomtest

    taz, _ = runs
    text = _paragraphs(compared)
    groups = (pl.read_parquet(taz / "citizens.parquet").group_by("group")
              .agg(n=pl.len(), k=(pl.col("wrongful_points") < 0).sum()).sort("group"))
    (_, n0, k0), *others = groups.rows()
    assert k0 > 0
    parts = []
    for name, n, k in others:
        ci = binomtest(k, k + k0).proportion_ci(0.95, method="exact")
        limits = [p / (1 - p) * n0 / n if p < 1 else float("inf") for p in (ci.low, ci.high)]
        parts.append(f"{interval((k / n) / (k0 / n0), *limits, 'ratio')} in '{name}'")
    assert f"Against the reference group 'reference', innocents were hit {', '.join(parts)} as often." in text
    assert "n/a" not in text


def test_the_wrongful_notes_say_what_happened_not_what_a_sample_might_miss(tmp_path):
    """With every event recorded and no false match, the report says there was none; it does not blame
    a sample. Neutral notes are not styled as caveats."""
    from socialcredit.simulation import simulate

    run = simulate(population=3000, days=20, seed=3, out=tmp_path / "run", events="all", overrides={"sensors.fmr": 0.0})
    page = write_report(run.path).read_text(encoding="utf-8")
    section = page[page.index('<section id="wrongful">'):page.index('<section id="behaviour">')]
    assert ('<p class="note note-info"><span class="note-kind">Note:</span> No camera match in this run named the '
            "wrong person") in section
    assert "sample" not in section and "note-caveat" not in section


def test_the_commercial_profile_part_states_the_offers_of_its_run(runs, compared, tmp_path):
    """The in-store records and the offers they fed, worked out here from daily.parquet: counts, their
    scaled totals, the shares taken by whose record it was and the share built on a look-alike's record."""
    import polars as pl

    taz, _ = runs
    page = compared.read_text(encoding="utf-8")
    part = page[page.index('<div class="life" id="offers">'):page.index('<section id="behaviour">')]
    assert '<section id="wrongful">' in page[:page.index('<div class="life" id="offers">')]
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", part)).split())
    s = pl.read_parquet(taz / "daily.parquet").select(pl.col(
        "instore_records", "instore_wrongful", "offers_made", "offers_taken", "offers_wrongful",
        "offers_wrongful_taken").sum()).row(0, named=True)
    made, wrong = s["offers_made"], s["offers_wrongful"]
    assert made == s["instore_records"] > 0 and wrong > 0  # offer_rate 1: one offer per record
    per_citizen = 738_600 / 20_000  # one-town stands for 738,600 people
    assert "The commercial profile and its offers" in text
    assert (f"recorded {s['instore_records']:,} clothes that platform customers stopped at or tried on (about "
            f"{round(s['instore_records'] * per_citizen):,} for the 738,600 people the run stands for)") in text
    records, records_w = s["instore_records"], s["instore_wrongful"]
    assert f"{records_w:,} of them, {_share(records_w, records)}, went into a look-alike's profile." in text
    own = _share(s["offers_taken"] - s["offers_wrongful_taken"], made - wrong)
    assert (f"The profiles fed {made:,} tailored offers online (about {round(made * per_citizen):,} for the people "
            f"the run stands for), and {s['offers_taken']:,} were taken: {own} of those built on the customer's own "
            f"record, {_share(s['offers_wrongful_taken'], wrong)} of those built on a look-alike's.") in text
    assert (f"{_share(wrong, made)} of the offers were built on someone else's behaviour: a look-alike's in-store "
            "record.") in text
    # A run written before offers were counted has no such part, and its report still renders.
    old = tmp_path / "old"
    shutil.copytree(taz, old)
    daily = pl.read_parquet(old / "daily.parquet")
    daily.drop([c for c in daily.columns if c.startswith("offers_")]).write_parquet(old / "daily.parquet")
    assert 'id="offers"' not in write_report(old).read_text(encoding="utf-8")
