"""Every citation in the shipped files points to an entry of docs/sources.md, inside the project."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT / "docs" / "sources.md").read_text()
ENTRIES = set(re.findall(r"^## ([a-z0-9-]+)$", SOURCES, re.M))
CITATION = re.compile(r"docs/sources\.md#([A-Za-z0-9_-]+)")
LEGEND_LINE = re.compile(r'^#\s+"([^"]+)"\s+- (.*)$')
PRESETS = sorted([*(ROOT / "src/socialcredit/policy/presets").glob("*.toml"),
                  *(ROOT / "src/socialcredit/simulation/scenarios").glob("*.toml")])
SHIPPED = sorted(p for p in [*(ROOT / "src").rglob("*"), *(ROOT / "tests").rglob("*.py"),
                             ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
                 if p.suffix in {".py", ".toml", ".md"})


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_sources_have_entries():
    assert {"taz-2018", "rongcheng-measures", "census-2020", "nist-frvt-1n-2018",
            "nist-frvt-demographics-2019", "national-blacklist", "sesame-credit"} <= ENTRIES


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_citations_name_an_entry_and_stay_in_the_project(path):
    text = path.read_text()
    if path == Path(__file__):
        return
    assert not re.search(r"\b(MISSION|FACTS)\.md\b|shared/", text), (
        f"{_name(path)} cites a file outside the project; cite docs/sources.md#<entry>")
    unknown = sorted(set(CITATION.findall(text)) - ENTRIES)
    assert not unknown, f"{_name(path)} cites docs/sources.md entries that do not exist: {unknown}"


def _legend(text: str) -> dict[str, str]:
    """The file's legend: each quoted label with what it says it is."""
    return {m.group(1): m.group(2) for line in text.splitlines()
            if (m := LEGEND_LINE.match(line))}


@pytest.mark.parametrize("path", PRESETS, ids=_name)
def test_every_label_of_a_legend_names_its_source(path):
    legend = _legend(path.read_text())
    assert legend, f"{_name(path)} has no legend of its sources"
    for label, says in legend.items():
        if not label.startswith("ASSUMPTION"):
            assert CITATION.search(says), f"{_name(path)}: legend label {label!r} names no entry"


@pytest.mark.parametrize("path", PRESETS, ids=_name)
def test_every_label_a_comment_uses_is_in_its_legend(path):
    text = path.read_text()
    labels = {label for p in PRESETS for label in _legend(p.read_text())
              if not label.startswith("ASSUMPTION")}
    comments = " ".join(line.split("#", 1)[1] for line in text.splitlines()
                        if "#" in line and not LEGEND_LINE.match(line))
    used = {label for label in labels if label in comments}
    assert used <= _legend(text).keys(), (
        f"{_name(path)} cites {sorted(used - _legend(text).keys())} without a legend entry")
