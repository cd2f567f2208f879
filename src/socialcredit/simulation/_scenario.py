"""Scenarios: regions with their policies, and the population, sensor, behaviour and consequence
parameters of a run, in TOML, validated on load with errors that name the field."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from socialcredit._validation import location
from socialcredit.errors import SocialCreditError
from socialcredit.policy import PolicyError, load_policy
from socialcredit.simulation._kinds import KIND_NAMES, KINDS

PRESET_PACKAGE = "socialcredit.simulation.scenarios"
_STRICT = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
Share = Annotated[float, Field(ge=0.0, le=1.0)]


class SimulationError(SocialCreditError, ValueError):
    """A scenario (or a run argument) that cannot be used; the message names the field."""


class Coverage(BaseModel):
    """Share of acts at each place type that a face-recognition camera sees."""

    model_config = _STRICT
    street: Share
    mall: Share
    subway: Share


class Change(BaseModel):
    """A roll-out step of a region on a date: it joins a scheme (`policy`), its cameras change, or both."""

    model_config = _STRICT
    date: dt.date
    policy: str | None = None
    coverage: Coverage | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Change:
        if self.policy is None and self.coverage is None:
            raise ValueError("a change needs a policy (the region joins a scheme) or a coverage")
        return self


class Region(BaseModel):
    """A region: its share of the represented population, its policy (none: unscored), its cameras,
    and how they change on given dates (`[[region.change]]`, in date order)."""

    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    share: float = Field(gt=0.0, le=1.0)
    policy: str | None = None
    urban: float = Field(default=0.64, ge=0.0, le=1.0)
    coverage: Coverage = Coverage(street=0.05, mall=0.2, subway=0.3)
    changes: list[Change] = Field(default_factory=list, alias="change")

    @model_validator(mode="after")
    def _check(self) -> Region:
        dates = [c.date for c in self.changes]
        if dates != sorted(set(dates)):
            raise ValueError("change: dates must be distinct and in order")
        joins = [i for i, c in enumerate(self.changes) if c.policy is not None]
        if joins and (self.policy is not None or len(joins) > 1):
            raise ValueError(f"change[{joins[-1]}].policy: a region joins a scheme once, and only if it "
                             "has none (points do not carry over from one scheme to another)")
        return self

    @property
    def scheme(self) -> str | None:
        """The policy the region is scored with, from the start or from the day it joins."""
        return self.policy or next((c.policy for c in self.changes if c.policy is not None), None)

    def joins(self) -> dt.date | None:
        """The date the region joins its scheme; None when scored from the start (or never)."""
        return next((c.date for c in self.changes if c.policy is not None), None)


class Group(BaseModel):
    """A demographic group of the face-recognition error model."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    share: float = Field(gt=0.0, le=1.0)
    fmr_multiplier: float = Field(ge=0.0)


class Population(BaseModel):
    """Who lives there (7th national census 2020 unless marked ASSUMPTION)."""

    model_config = _STRICT
    male_share: float = Field(default=105 / 205, ge=0.0, le=1.0)
    age_0_14: float = Field(default=0.18, ge=0.0, le=1.0)
    age_15_59: float = Field(default=0.63, ge=0.0, le=1.0)
    platform_share: float = Field(default=800 / 1410, ge=0.0, le=1.0)
    employment: float = Field(default=0.85, ge=0.0, le=1.0)
    # Share of adults (18+) on the judgment-defaulter list when the run starts (0: an empty list).
    listed_share: float = Field(default=0.0, ge=0.0, le=1.0)
    groups: list[Group] = Field(min_length=1, max_length=15, default_factory=lambda: [
        Group(name="reference", share=0.90, fmr_multiplier=1.0),
        Group(name="ten-fold", share=0.08, fmr_multiplier=10.0),
        Group(name="hundred-fold", share=0.02, fmr_multiplier=100.0),
    ])

    @model_validator(mode="after")
    def _check(self) -> Population:
        if self.age_0_14 + self.age_15_59 > 1.0:
            raise ValueError("age_0_14 + age_15_59 must not exceed 1")
        total = sum(g.share for g in self.groups)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"groups: shares must add up to 1 (got {total:g})")
        return self


class Platforms(BaseModel):
    """Share of citizens each platform sees (e-commerce and payments: `platform_share`)."""

    model_config = _STRICT
    browsing: float = Field(default=0.70, ge=0.0, le=1.0)
    games: float = Field(default=0.50, ge=0.0, le=1.0)
    social_media: float = Field(default=0.75, alias="social-media", ge=0.0, le=1.0)


class Sensors(BaseModel):
    """Face recognition and platforms: what is seen, and how often it is pinned on the wrong person."""

    model_config = _STRICT
    fnmr: float = Field(default=0.002, ge=0.0, le=1.0)
    fmr: float = Field(default=0.001, ge=0.0, le=1.0)
    reference_gallery: int = Field(default=12_000_000, ge=1)
    gallery_exponent: float = Field(default=1.0, ge=0.0)
    max_fmr: float = Field(default=0.5, ge=0.0, le=1.0)
    # The match-score model: a camera reports a match whose confidence reaches `threshold`; `fnmr`
    # and `fmr` are its miss and false-match rates there. Above it, the share of false matches
    # reaching x is ((1 - x) / (1 - threshold)) ** false_tail, and the mates missed at x are
    # fnmr * ((1 - threshold) / (1 - x)) ** true_tail: a policy's min_confidence trades one for the other.
    threshold: float = Field(default=0.8, ge=0.0, lt=1.0)
    false_tail: float = Field(default=1.0, gt=0.0)
    true_tail: float = Field(default=0.5, gt=0.0)
    age_noise_years: float = Field(default=4.0, ge=0.0)
    passive_sightings: float = Field(default=0.02, ge=0.0, lt=1.0)
    instore_clothes: float = Field(default=0.3, ge=0.0, le=1.0)
    # Tailored offers: each in-store record entering a profile makes an online offer for the item to
    # the profile's owner with chance `offer_rate`, taken with chance `offer_take` when the record is
    # truly theirs and `offer_take_mismatch` when it came from a look-alike (someone else's interest).
    # ASSUMPTIONS (no published figure): the profile exists to feed offers (1.0); e-commerce
    # conversion rates are a few per cent (0.03); a stranger's interest rarely matches, ten times less.
    offer_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    offer_take: float = Field(default=0.03, ge=0.0, le=1.0)
    offer_take_mismatch: float = Field(default=0.003, ge=0.0, le=1.0)
    rural_coverage: float = Field(default=0.2, ge=0.0, le=1.0)
    platforms: Platforms = Platforms()


class Behaviour(BaseModel):
    """How citizens act, and how they react to being scored."""

    model_config = _STRICT
    deterrence: float = Field(default=0.3, ge=0.0, le=1.0)
    self_censorship: float = Field(default=0.3, ge=0.0, le=1.0)
    peer_censorship: float = Field(default=2.0, ge=0.0)
    conformity: float = Field(default=0.2, ge=0.0)
    gaming: float = Field(default=0.3, ge=0.0, le=1.0)
    savvy_share: float = Field(default=0.10, ge=0.0, le=1.0)
    # Dedicated volunteers: a share of everyone who, besides their civic trait's occasional
    # volunteering, do a shift at `volunteer_rate` a day while of the kind's ages (ASSUMPTION: 1%
    # serve weekly; no published figure). The honest route to the top class, beside heroic acts.
    volunteer_share: float = Field(default=0.01, ge=0.0, le=1.0)
    volunteer_rate: float = Field(default=1 / 7, ge=0.0, lt=1.0)
    rates: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Behaviour:
        for kind, rate in self.rates.items():
            if kind not in KIND_NAMES:
                raise ValueError(f"rates: unknown kind '{kind}' (kinds: {', '.join(KIND_NAMES)})")
            if not 0.0 <= rate <= 0.5:
                raise ValueError(f"rates.{kind}: a daily rate must lie within [0, 0.5] (got {rate})")
        return self


class Consequences(BaseModel):
    """How often people meet what a class does to them (fly, apply for loans, pass a gate); what a
    consequence does is the policy's (its benefits' and sanctions' effects), never the scenario's."""

    model_config = _STRICT
    income_drop: int = Field(default=2, ge=0, le=9)
    flight: float = Field(default=0.002, ge=0.0, lt=1.0)
    train: float = Field(default=0.01, ge=0.0, lt=1.0)
    # How much travel grows with income: 0 everyone alike, 1 in proportion to (income decile + 1).
    travel_income: float = Field(default=1.0, ge=0.0, le=1.0)
    # Share of train trips in the classes a ban covers (1: every train trip).
    train_banned_share: float = Field(default=1.0, ge=0.0, le=1.0)
    # A traveller refused a ticket tries again at this fraction of their rate (1: undeterred).
    retry: float = Field(default=1.0, ge=0.0, le=1.0)
    # Share of citizens whose class-based flight (train) ban reaches the airlines' (railways') lists;
    # the defaulter list (blacklist_bans) always does. Fixed per citizen for the run (1: every ban).
    flight_ban_reach: float = Field(default=1.0, ge=0.0, le=1.0)
    train_ban_reach: float = Field(default=1.0, ge=0.0, le=1.0)
    subway: float = Field(default=0.5, ge=0.0, le=1.0)
    loan: float = Field(default=0.0005, ge=0.0, lt=1.0)
    admission_day: int = Field(default=160, ge=0, le=364)
    admission_base: float = Field(default=0.4, ge=0.0, le=1.0)
    blacklist_bans: bool = True
    # Daily chance a listed defaulter leaves the list by complying (0: listings are permanent).
    delisting: float = Field(default=0.0, ge=0.0, lt=1.0)


class Scenario(BaseModel):
    """A whole simulated country or town."""

    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    title: str = Field(min_length=1)
    description: str | None = None
    block_size: int = Field(default=32_768, ge=64, le=65_535)
    # The people the scenario stands for: a run of N citizens is a sample in which each stands for
    # represents / N people, and everything that depends on how many people there are (the face
    # gallery a camera searches, per-capita figures) uses these sizes, never N.
    represents: int = Field(default=1_410_000_000, ge=1)
    # Day 0 of the run: flows per year and stocks at a date (`socialcredit validate`) count from it.
    start_date: dt.date = dt.date(2018, 1, 1)
    commercial_policy: str | None = "sesame"
    regions: list[Region] = Field(alias="region", min_length=1, max_length=255)
    population: Population = Population()
    sensors: Sensors = Sensors()
    behaviour: Behaviour = Behaviour()
    consequences: Consequences = Consequences()

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        total = sum(r.share for r in self.regions)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"region shares must add up to 1 (got {total:g})")
        names = [r.name for r in self.regions]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"region[{i}].name: '{name}' is used twice")
        for i, region in enumerate(self.regions):
            for j, change in enumerate(region.changes):
                if change.date <= self.start_date:
                    raise ValueError(f"region[{i}].change[{j}].date: {change.date} is not after the "
                                     f"start_date ({self.start_date}); say it in the region itself")
        return self


def list_scenarios() -> list[str]:
    """Names of the scenario presets shipped in the package."""
    files = resources.files(PRESET_PACKAGE).iterdir()
    return sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml"))


def load_scenario(name_or_file: str | Path, *, overrides: dict[str, Any] | None = None,
                  policy: str | None = None) -> Scenario:
    """Load a preset or a TOML file, apply `section.field=value` overrides and check policies.

    A file may start from another scenario: `extends = "pilot-regions-2018"` (a preset, or a file
    beside it) takes that scenario's values, then the file's own values and its `[set]` table
    (`"section.field" = value`, the same paths as `--set`) apply on top.
    """
    data, source = _scenario_data(name_or_file, seen=())
    for dotted, value in (overrides or {}).items():
        _set(data, dotted, value, source)
    if policy is not None:  # one policy everywhere: a region joining a scheme later joins this one
        for region in data.get("region", []):
            if isinstance(region, dict):
                joins = [c for c in region.get("change", []) if isinstance(c, dict) and "policy" in c]
                for change in joins:
                    change["policy"] = policy
                if not joins:
                    region["policy"] = policy
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise SimulationError(f"invalid scenario {source}:\n  " + "\n  ".join(
            f"{location(e['loc'], {'regions': 'region'}) or 'scenario'}: {e['msg']}" for e in exc.errors())) from None
    for i, region in enumerate(scenario.regions):
        _check_policy(region.policy, f"region[{i}].policy", source)
        for j, change in enumerate(region.changes):
            _check_policy(change.policy, f"region[{i}].change[{j}].policy", source)
    _check_policy(scenario.commercial_policy, "commercial_policy", source)
    return scenario


def _scenario_data(name_or_file: str | Path, *, seen: tuple[str, ...],
                   beside: Path | None = None) -> tuple[dict, str]:
    """The raw TOML table of a scenario, with what it `extends` merged under it; and its source."""
    path = Path(name_or_file)
    if beside is not None and not path.is_absolute() and (beside / path).is_file():
        path = beside / path
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SimulationError(f"scenario {path}: no such file")
        text, source = path.read_text(encoding="utf-8"), str(path)
        folder: Path | None = path.parent
    else:
        name = str(name_or_file)
        if name not in list_scenarios():
            raise SimulationError(f"no scenario preset or file named '{name}' "
                                  f"(presets: {', '.join(list_scenarios())})")
        text = resources.files(PRESET_PACKAGE).joinpath(f"{name}.toml").read_text(encoding="utf-8")
        source, folder = f"preset '{name}'", None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SimulationError(f"scenario {source}: TOML syntax error: {exc}") from None
    settings = data.pop("set", {})
    if not isinstance(settings, dict):
        raise SimulationError(f"scenario {source}: set: must be a table of \"section.field\" = value")
    if (base := data.pop("extends", None)) is not None:
        if not isinstance(base, str):
            raise SimulationError(f"scenario {source}: extends: must be a scenario name or file")
        if source in seen:
            raise SimulationError(f"scenario {source}: extends itself (through {' -> '.join(seen)})")
        merged, _ = _scenario_data(base, seen=(*seen, source), beside=folder)
        _merge(merged, data)
        data = merged
    for dotted, value in settings.items():
        _set(data, dotted, value, source)
    return data, source


def _merge(into: dict, data: dict) -> None:
    """Deep-merge `data` into `into`: tables merge key by key, anything else replaces."""
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn `section.field=value` strings into a dict of typed values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SimulationError(f"--set '{item}': expected section.field=value")
        out[key.strip()] = parse_value(raw.strip())
    return out


def parse_value(raw: str) -> Any:
    """A TOML value (number, boolean, array, quoted string), or the bare text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def split_path(dotted: str) -> list[str]:
    """The keys of a `--set` path (kind names contain dots: behaviour.rates.traffic.red_light)."""
    parts = dotted.split(".")
    if "rates" in parts[:-1]:
        cut = parts.index("rates") + 1
        parts = [*parts[:cut], ".".join(parts[cut:])]
    return parts


def current_value(scenario: Scenario, dotted: str) -> Any:
    """The scenario's value at a `--set` path: its own, or the simulator's default (None: no such
    value)."""
    parts = split_path(dotted)
    node: Any = scenario.model_dump(by_alias=True)
    for i, part in enumerate(parts):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif parts[:i] == ["behaviour", "rates"] and part in KIND_NAMES and i == len(parts) - 1:
            return KINDS[KIND_NAMES.index(part)][3]  # a kind's default daily rate
        else:
            return None
    return node


def _set(data: dict, dotted: str, value: Any, source: str) -> None:
    parts = split_path(dotted)
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SimulationError(f"scenario {source}: --set {dotted}: no item '{part}'")
            if last:
                node[int(part)] = value
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise SimulationError(f"scenario {source}: --set {dotted}: '{parts[i - 1]}' is not a table")


def _check_policy(name: str | None, where: str, source: str) -> None:
    if name is None:
        return
    try:
        load_policy(name)
    except PolicyError as exc:
        raise SimulationError(f"invalid scenario {source}:\n  {where}: {exc}") from None
