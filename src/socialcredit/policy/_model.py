"""The policy schema: one TOML file describes a whole scoring scheme."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal[
    "citizen",
    "agency",
    "security",
    "bank",
    "employer",
    "landlord",
    "platform",
    "travel",
    "airline",
    "analyst",
]
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]

Field_ = Literal[
    "score",
    "class",
    "benefits",
    "sanctions",
    "history",
    "reasons",
    "profile",
    "lookups",
    "blacklist",
]
GRANT_FIELDS: tuple[str, ...] = Field_.__args__  # type: ignore[attr-defined]

# What part of life an act or a consequence belongs to; lets an audit find sanctions that land in
# a context unrelated to the act (EU AI Act Art. 5(1)(c)).
Context = Literal[
    "traffic",
    "public-order",
    "civic",
    "speech",
    "lifestyle",
    "commerce",
    "finance",
    "contracts",
    "courts",
    "health",
    "travel",
    "housing",
    "employment",
    "education",
    "identity",
    "relationships",
    "general",
]

_STRICT = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class RatingClass(BaseModel):
    """A rating class: the citizens whose score is at least `min`."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    min: int | None = None
    colour: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$")


class Rule(BaseModel):
    """How one kind of event turns into points."""

    model_config = _STRICT
    id: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    points: int
    reason: str = Field(min_length=1)
    context: Context = "general"
    dimension: str | None = None
    sources: list[str] | None = Field(default=None, min_length=1)
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    max_per_day: int | None = Field(default=None, ge=1)
    expires_after_days: int | None = Field(default=None, ge=1)
    class_at_most: str | None = None
    note: str | None = None


class Consequence(BaseModel):
    """A benefit or sanction attached to a rating class."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    class_: str = Field(alias="class", min_length=1)
    held_days: int = Field(default=0, ge=0)
    context: Context = "general"
    # Rule ids: when set, the consequence reaches only citizens with a counted, unexpired event of one
    # of these rules, so that a sanction can stay in the context of the acts that caused it.
    triggered_by: list[str] | None = Field(default=None, min_length=1)
    description: str | None = None
    parameters: dict[str, float | int | str | bool] = Field(default_factory=dict)
    note: str | None = None


class Grant(BaseModel):
    """What one role may see of a citizen, and whether it must state a purpose."""

    model_config = _STRICT
    role: Role
    fields: list[Field_]
    purpose_required: bool = True


class Source(BaseModel):
    """A data source that feeds the policy (an agency, a platform, a camera network)."""

    model_config = _STRICT
    id: str = Field(min_length=1)
    type: Literal["agency", "platform", "camera", "court", "self-report"] = "agency"
    description: str | None = None


class Policy(BaseModel):
    """A whole scoring scheme, validated as it is loaded."""

    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    title: str = Field(min_length=1)
    description: str | None = None
    start: int
    min: int
    max: int
    appeals: bool = False
    # Citizens younger than this (whole years) are not scored: their events do not count, and they
    # hold no score or class until they come of age.
    min_age: int = Field(default=0, ge=0, le=120)
    classes: list[RatingClass] = Field(alias="class", min_length=1)
    rules: list[Rule] = Field(default_factory=list, alias="rule")
    benefits: list[Consequence] = Field(default_factory=list, alias="benefit")
    sanctions: list[Consequence] = Field(default_factory=list, alias="sanction")
    grants: list[Grant] = Field(default_factory=list, alias="grant")
    sources: list[Source] = Field(default_factory=list, alias="source")

    @model_validator(mode="after")
    def _check_consistency(self) -> Policy:
        problems: list[tuple[str, str]] = []
        if not self.min < self.max:
            problems.append(("max", f"must be greater than min ({self.min})"))
        if not self.min <= self.start <= self.max:
            problems.append(("start", f"must lie within [min, max] = [{self.min}, {self.max}]"))
        problems += _check_classes(self.classes)
        class_names = {c.name for c in self.classes}
        source_ids = {s.id for s in self.sources}
        seen_ids: dict[str, int] = {}
        seen_kinds: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            if rule.id in seen_ids:
                problems.append((f"rule[{i}].id", f"'{rule.id}' is also rule[{seen_ids[rule.id]}]"))
            seen_ids.setdefault(rule.id, i)
            if rule.kind in seen_kinds:
                problems.append(
                    (f"rule[{i}].kind", f"kind '{rule.kind}' is already scored by "
                     f"rule[{seen_kinds[rule.kind]}]; a kind appears in at most one rule")
                )
            seen_kinds.setdefault(rule.kind, i)
            if rule.class_at_most is not None and rule.class_at_most not in class_names:
                problems.append((f"rule[{i}].class_at_most", _unknown("class", rule.class_at_most)))
            if source_ids and rule.sources:
                for j, src in enumerate(rule.sources):
                    if src not in source_ids:
                        problems.append((f"rule[{i}].sources[{j}]", _unknown("source", src)))
        for label, items in (("benefit", self.benefits), ("sanction", self.sanctions)):
            for i, item in enumerate(items):
                if item.class_ not in class_names:
                    problems.append((f"{label}[{i}].class", _unknown("class", item.class_)))
                for j, rule_id in enumerate(item.triggered_by or []):
                    if rule_id not in seen_ids:
                        problems.append((f"{label}[{i}].triggered_by[{j}]", _unknown("rule", rule_id)))
        roles: dict[str, int] = {}
        for i, grant in enumerate(self.grants):
            if grant.role in roles:
                problems.append((f"grant[{i}].role", f"'{grant.role}' already has grant[{roles[grant.role]}]"))
            roles.setdefault(grant.role, i)
        if problems:
            raise PolicyConsistencyError(problems)
        return self

    @property
    def class_names(self) -> list[str]:
        """Class names from top to bottom."""
        return [c.name for c in self.classes]

    def rule_for(self, kind: str) -> Rule | None:
        """The rule scoring `kind`, if any."""
        return next((r for r in self.rules if r.kind == kind), None)

    def grant_for(self, role: str) -> Grant | None:
        """The grant of `role`, if any."""
        return next((g for g in self.grants if g.role == role), None)


def _check_classes(classes: list[RatingClass]) -> list[tuple[str, str]]:
    problems = []
    names: dict[str, int] = {}
    for i, cls in enumerate(classes):
        if cls.name in names:
            problems.append((f"class[{i}].name", f"'{cls.name}' is also class[{names[cls.name]}]"))
        names.setdefault(cls.name, i)
        last = i == len(classes) - 1
        if last and cls.min is not None:
            problems.append((f"class[{i}].min", "the last (bottom) class takes every lower score and has no min"))
        if not last and cls.min is None:
            problems.append((f"class[{i}].min", "required for every class but the last"))
        if i > 0 and not last:
            prev = classes[i - 1].min
            if prev is not None and cls.min is not None and cls.min >= prev:
                problems.append((f"class[{i}].min",
                                 f"must be below class[{i - 1}].min ({prev}): classes go from top to bottom"))
    return problems


def _unknown(what: str, name: str) -> str:
    return f"unknown {what} '{name}'"


class PolicyConsistencyError(ValueError):
    """Cross-field problems found after the fields themselves validated."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{where}: {msg}" for where, msg in problems))
