"""The policy schema: one TOML file describes a whole scoring scheme."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    "offers",  # the commercial profile (in-store records, purchases) and the offers built from it
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


# What a benefit or sanction does, from a fixed vocabulary, each with its typed parameters. The
# engine compiles them once (engine.CompiledConsequences); the simulator, the service's decisions
# and the report read that, so an effect means the same everywhere. The vocabulary is EFFECTS below.
class _Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParameters(_Parameters):
    """An effect that takes no parameters (a refusal, a ban)."""


class LoanPrice(_Parameters):
    """The loan rate moves by `rate_change` (a fraction: -0.005 is half a point off)."""

    rate_change: float = Field(ge=-0.2, le=0.2)


class InsuranceTier(_Parameters):
    """Health insurance at the named tier."""

    tier: str = Field(min_length=1)


class FlightPrice(_Parameters):
    """Airline tickets at `discount` (a fraction) off."""

    discount: float = Field(gt=0.0, le=1.0)


class TrainBan(_Parameters):
    """No tickets for the named class of train."""

    train_class: str = Field(default="high-speed", min_length=1)


class GateStop(_Parameters):
    """Cameras at subway gates flag the citizen, who is stopped at a passage with this chance."""

    stop_probability: float = Field(ge=0.0, le=1.0)


class JobLoss(_Parameters):
    """Employers see the class: the daily chance of losing one's job."""

    risk_per_day: float = Field(ge=0.0, lt=1.0)


class Admission(_Parameters):
    """A parent's class moves their child's chance of university admission by `chance_change` (a
    fraction of the chance: 0.25 is a quarter more; positive for a benefit, negative for a sanction)."""

    chance_change: float = Field(ge=-1.0, le=1.0)
    applies_to: Literal["children"] = "children"


class Perk(_Parameters):
    """A service on better terms: a discount (a fraction) and or no deposit."""

    discount: float = Field(default=0.0, ge=0.0, le=1.0)
    deposit_waived: bool = False


class Obligation(_Parameters):
    """Something the citizen must (or is asked to) do: a course, a meeting, inspections."""

    hours: int = Field(default=0, ge=0)
    fee: float = Field(default=0.0, ge=0.0)
    mandatory: bool = False
    inspections_per_year: int = Field(default=0, ge=0)


class EligibilityLoss(_Parameters):
    """What the citizen may no longer apply for."""

    subsidies: bool = False
    public_posts: bool = False
    honours: bool = False


# Per effect: its parameters and whether a benefit, a sanction or either may bring it.
EFFECTS: dict[str, tuple[type[_Parameters], str]] = {
    "loan_price": (LoanPrice, "either"),
    "loan_refusal": (NoParameters, "sanction"),
    "insurance_tier": (InsuranceTier, "benefit"),
    "flight_price": (FlightPrice, "benefit"),
    "flight_ban": (NoParameters, "sanction"),
    "train_ban": (TrainBan, "sanction"),
    "gate_stop": (GateStop, "sanction"),
    "job_loss": (JobLoss, "sanction"),
    "admission": (Admission, "either"),
    "perk": (Perk, "benefit"),
    "obligation": (Obligation, "sanction"),
    "eligibility_loss": (EligibilityLoss, "sanction"),
}
Effect = Literal[tuple(EFFECTS)]  # the vocabulary's names, for the schema and its error messages
# Effects that decide something in the simulator or the service (a price, a ban, a stop): a policy
# holds at most one benefit and one sanction of each, so that what applies is never ambiguous.
DECIDING_EFFECTS = ("loan_price", "loan_refusal", "insurance_tier", "flight_price", "flight_ban",
                    "train_ban", "gate_stop", "job_loss", "admission")


class Consequence(BaseModel):
    """A benefit or sanction attached to a rating class: what it does (`effect`, `parameters`)."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    class_: str = Field(alias="class", min_length=1)
    effect: Effect
    held_days: int = Field(default=0, ge=0)
    context: Context = "general"
    # Rule ids: when set, the consequence reaches only citizens with a counted, unexpired event of one
    # of these rules, so that a sanction can stay in the context of the acts that caused it.
    triggered_by: list[str] | None = Field(default=None, min_length=1)
    description: str | None = None
    parameters: dict[str, float | int | str | bool] = Field(default_factory=dict)
    note: str | None = None

    @property
    def params(self) -> _Parameters:
        """The parameters, typed by the effect (checked when the policy loads)."""
        return EFFECTS[self.effect][0].model_validate(self.parameters)


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
            deciding: dict[str, int] = {}
            for i, item in enumerate(items):
                if item.class_ not in class_names:
                    problems.append((f"{label}[{i}].class", _unknown("class", item.class_)))
                for j, rule_id in enumerate(item.triggered_by or []):
                    if rule_id not in seen_ids:
                        problems.append((f"{label}[{i}].triggered_by[{j}]", _unknown("rule", rule_id)))
                problems += _check_effect(f"{label}[{i}]", label, item)
                if item.effect in DECIDING_EFFECTS:
                    if item.effect in deciding:
                        problems.append((f"{label}[{i}].effect", f"'{item.effect}' is also {label}"
                                         f"[{deciding[item.effect]}]; a policy has at most one {label} "
                                         "of each deciding effect"))
                    deciding.setdefault(item.effect, i)
        problems += _check_bands(self)
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


def _check_effect(where: str, label: str, item: Consequence) -> list[tuple[str, str]]:
    """The effect fits the list it is in, and its parameters fit the effect."""
    model, allowed = EFFECTS[item.effect]
    if allowed not in ("either", label):
        return [(f"{where}.effect", f"'{item.effect}' is a {allowed}'s effect, not a {label}'s")]
    try:
        params = model.model_validate(item.parameters)
    except ValidationError as exc:
        return [(f"{where}.parameters" + "".join(f".{p}" for p in err["loc"]),
                 _parameter_message(item.effect, err)) for err in exc.errors()]
    if item.effect in _SIGNED:
        name, benefit_sign = _SIGNED[item.effect]
        value = getattr(params, name)
        want = benefit_sign if label == "benefit" else -benefit_sign
        if value * want <= 0:
            return [(f"{where}.parameters.{name}",
                     f"a {label}'s {name} must be {'above' if want > 0 else 'below'} 0 (got {value})")]
    return []


# Effects whose parameter's sign says benefit or sanction: (parameter, its sign in a benefit).
_SIGNED = {"admission": ("chance_change", 1), "loan_price": ("rate_change", -1)}


def _parameter_message(effect: str, err: dict) -> str:
    if err["type"] == "extra_forbidden":
        known = ", ".join(EFFECTS[effect][0].model_fields) or "none"
        return f"unknown parameter of effect '{effect}' (its parameters: {known})"
    if err["type"] == "missing":
        return f"required by effect '{effect}'"
    return f"{err['msg']} (got {err['input']!r})"


def _check_bands(policy: Policy) -> list[tuple[str, str]]:
    """Benefit classes lie above sanction classes, and held days count from entering the band.

    A benefit covers its class and every better one, a sanction its class and every worse one; the
    benefit band is the classes some benefit covers, the sanction band likewise. A citizen's held
    days count from the day they entered the band, so a consequence with held days must sit at
    the band's edge (its lowest benefit class, its highest sanction class), where that day is the
    day they reached its class.
    """
    names = policy.class_names
    index = {n: i for i, n in enumerate(names)}
    ben = [(i, index[b.class_]) for i, b in enumerate(policy.benefits) if b.class_ in index]
    san = [(i, index[s.class_]) for i, s in enumerate(policy.sanctions) if s.class_ in index]
    problems: list[tuple[str, str]] = []
    if ben and san and max(c for _, c in ben) >= min(c for _, c in san):
        i, c = min(san, key=lambda x: x[1])
        problems.append((f"sanction[{i}].class", f"'{names[c]}' is also under a benefit; benefit classes "
                         "must lie above sanction classes"))
    for label, items, found, edge in (("benefit", policy.benefits, ben, max),
                                      ("sanction", policy.sanctions, san, min)):
        if not found:
            continue
        boundary = edge(c for _, c in found)
        for i, c in found:
            if items[i].held_days > 0 and c != boundary:
                problems.append((f"{label}[{i}].held_days", f"held days count from entering the {label} "
                                 f"classes, so only a {label} at their edge ({names[boundary]}) may have them"))
    return problems


def _unknown(what: str, name: str) -> str:
    return f"unknown {what} '{name}'"


class PolicyConsistencyError(ValueError):
    """Cross-field problems found after the fields themselves validated."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{where}: {msg}" for where, msg in problems))
