"""Loading policies from TOML files or shipped presets, with errors that say where."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from socialcredit._validation import location
from socialcredit.errors import SocialCreditError
from socialcredit.policy._model import Policy, PolicyConsistencyError

PRESET_PACKAGE = "socialcredit.policy.presets"


class PolicyError(SocialCreditError, ValueError):
    """A policy that cannot be loaded; `problems` lists (location, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{where}: {msg}" if where else msg for where, msg in problems]
        super().__init__(f"invalid policy {source}:\n  " + "\n  ".join(lines))


def list_presets() -> list[str]:
    """Names of the presets shipped in the package."""
    files = resources.files(PRESET_PACKAGE).iterdir()
    return sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml"))


def load_policy(name_or_file: str | Path) -> Policy:
    """Load a preset by name, or a policy from a TOML file."""
    text, source = policy_source(name_or_file)
    return parse_policy(text, source=source)


def policy_source(name_or_file: str | Path) -> tuple[str, str]:
    """The TOML text of a preset (by name) or a policy file, and how to name it in errors."""
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise PolicyError(str(path), [("", "no such file")])
        return path.read_text(encoding="utf-8"), str(path)
    name = str(name_or_file)
    if name not in list_presets():
        known = ", ".join(list_presets())
        raise PolicyError(name, [("", f"no preset or file named '{name}' (presets: {known})")])
    return resources.files(PRESET_PACKAGE).joinpath(f"{name}.toml").read_text(encoding="utf-8"), f"preset '{name}'"


def parse_policy(text: str, *, source: str = "<string>") -> Policy:
    """Parse and validate policy TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, [("", f"TOML syntax error: {_describe_toml_error(exc)}")]) from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, _problems(exc)) from None


def _describe_toml_error(exc: tomllib.TOMLDecodeError) -> str:
    lineno = getattr(exc, "lineno", None)
    msg = getattr(exc, "msg", str(exc))
    if lineno is None:
        return str(exc)
    return f"line {lineno}, column {exc.colno}: {msg}"


_ALIASES = {"classes": "class", "rules": "rule", "benefits": "benefit", "sanctions": "sanction",
            "grants": "grant", "sources": "source", "class_": "class"}


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for err in exc.errors():
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, PolicyConsistencyError):
            problems += inner.problems
            continue
        where = location(err["loc"], _ALIASES)
        problems.append((where, _message(err)))
    return problems


def _message(err: dict) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling against the policy format)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    if err["type"] != "missing" and "input" in err and not isinstance(err["input"], dict | list):
        msg += f" (got {err['input']!r})"
    return msg
