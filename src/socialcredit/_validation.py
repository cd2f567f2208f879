"""Where a pydantic error is, written the way the TOML file reads: `rule[3].points`."""

from __future__ import annotations


def location(loc: tuple, aliases: dict[str, str]) -> str:
    """A pydantic error location as a TOML path, with field names mapped back to their TOML keys."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = aliases.get(part, part)
            out += f".{part}" if out else str(part)
    return out
