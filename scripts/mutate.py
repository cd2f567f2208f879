"""`make mutate`: run mutmut (configured in pyproject.toml), then score the mutants and explain survivors.

Every surviving mutant must either be killed by a test or be listed in scripts/mutation-equivalents.toml
with a one-line reason why it is equivalent (it cannot change behaviour). A survivor listed there is
matched by its function and the line the mutation wrote, not by mutmut's number, so the list keeps
working when mutants are renumbered. Exits 1 while any survivor is unexplained, and writes the
summary to mutants/summary.md.

    python scripts/mutate.py                 # run every mutant (reuses mutmut's cache)
    python scripts/mutate.py --report-only   # only score the last run
    python scripts/mutate.py NAME...         # run some mutants again (mutmut's names, globs allowed)
"""

from __future__ import annotations

import codecs
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = [sys.executable, "-m", "mutmut"]
EQUIVALENTS = ROOT / "scripts" / "mutation-equivalents.toml"
RESULT = re.compile(r"^\s*(\S+__mutmut_\d+): (.+)$")
KILLED = {"killed", "timeout", "segfault"}  # a timeout or crash is a detected change too


def main(argv: list[str]) -> int:
    """Run (unless --report-only), score, write the summary; 1 while a survivor is unexplained."""
    report_only = "--report-only" in argv
    names = [a for a in argv if a != "--report-only"]
    if not report_only:
        # Each mutant's tests run in a fresh process: the simulated runs the service tests load
        # (the simulator is not mutated) are made once for the whole mutation run.
        with tempfile.TemporaryDirectory(prefix="sc-mutate-runs-") as runs:
            env = {**os.environ, "SOCIALCREDIT_TEST_RUN_CACHE": runs, "HYPOTHESIS_PROFILE": "mutate"}
            subprocess.run([*MUTMUT, "run", *names], cwd=ROOT, check=False, env=env)
    results = _results()
    if not results:
        print("mutate: no mutmut results; run without --report-only first", file=sys.stderr)
        return 1
    equivalents = _equivalents()
    survivors = sorted(name for name, status in results.items() if status == "survived")
    explained, unexplained = {}, {}
    for name in survivors:
        diff = _show(name)
        reason = _reason(name, diff, equivalents)
        (explained if reason else unexplained)[name] = (reason, diff)
    counts = Counter(results.values())
    tried = sum(n for status, n in counts.items() if status != "not checked")
    if tried == 0:
        print("mutate: no mutant was tried (see mutmut's output above: its clean test run must pass)",
              file=sys.stderr)
        return 1
    killed = sum(counts[s] for s in KILLED)
    score = killed / max(tried - len(explained), 1)
    lines = [f"# Mutation score: {killed} of {tried - len(explained)} non-equivalent mutants killed "
             f"({score:.1%}); {len(explained)} equivalent, {len(unexplained)} unexplained survivors",
             "", "| status | mutants |", "| --- | --- |"]
    lines += [f"| {status} | {n} |" for status, n in sorted(counts.items())]
    per_file = Counter(name.split(".x")[0] for name in survivors)
    if per_file:
        lines += ["", "Survivors per module: " + ", ".join(f"{m} {n}" for m, n in sorted(per_file.items()))]
    if explained:
        lines += ["", "## Equivalent survivors", ""]
        lines += [f"- `{name}`: {reason}" for name, (reason, _) in explained.items()]
    if unexplained:
        lines += ["", "## Unexplained survivors (add a test, or a reason to scripts/mutation-equivalents.toml)", ""]
        for name, (_, diff) in unexplained.items():
            lines += [f"### {name}", "```diff", diff.strip(), "```"]
    text = "\n".join(lines) + "\n"
    (ROOT / "mutants").mkdir(exist_ok=True)
    (ROOT / "mutants" / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    return 1 if unexplained else 0


def _results() -> dict[str, str]:
    done = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    return {m.group(1): m.group(2).strip() for line in done.stdout.splitlines() if (m := RESULT.match(line))}


def _show(name: str) -> str:
    return subprocess.run([*MUTMUT, "show", name], cwd=ROOT, capture_output=True, text=True,
                          check=False).stdout


def _function(name: str) -> str:
    """`socialcredit.engine._batch.x_score_ledger__mutmut_3` -> `socialcredit.engine._batch.score_ledger`."""
    module, _, rest = name.partition(".x")
    # `x_name`, `x__private` or `xǁClassǁmethod`: drop the one character after the x.
    return f"{module}.{rest.rsplit('__mutmut_', 1)[0][1:].replace('ǁ', '.')}"


def _lines(diff: str, sign: str) -> str:
    """Return the diff's lines starting with `sign` ("+": written, "-": replaced), whitespace-normalised."""
    picked = [line[1:] for line in diff.splitlines() if line.startswith(sign) and not line.startswith(sign * 3)]
    return " ".join(" ".join(picked).split())


def _equivalents() -> list[dict]:
    if not EQUIVALENTS.is_file():
        return []
    return tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8")).get("equivalent", [])


def _reason(name: str, diff: str, equivalents: list[dict]) -> str | None:
    function, written = _function(name), _lines(diff, "+")
    for entry in equivalents:
        if entry["function"] == function and " ".join(entry["mutant"].split()) == written:
            return entry["reason"]
    before = _lines(diff, "-")
    for rule in _RULES:
        if reason := rule(before, written):
            return reason
    return None


# Kinds of mutation that cannot change behaviour wherever they occur, recognised from the lines:
# each rule gets the replaced and the written line and returns its reason, or None.
_STRING = re.compile(r"""(?<![\w])[rbfu]*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""", re.IGNORECASE)
# SQL text: a statement, or a piece of a conflict clause continued on the next line.
_SQL_START = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|WITH|BEGIN|ON CONFLICT\b|\w+ = excluded\.)",
                        re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z_]+$")
_SQL_QUOTED = re.compile(r"'[^']*'")


def _changed_strings(before: str, after: str) -> list[tuple[str, str]] | None:
    """Return the string literals that differ, pairwise, when nothing else on the line does; else None."""
    a, b = _STRING.findall(before), _STRING.findall(after)
    if len(a) != len(b) or _STRING.sub('""', before) != _STRING.sub('""', after):
        return None
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


def _sql_case(before: str, after: str) -> str | None:
    changed = _changed_strings(before, after)
    if changed and all(x.lower() == y.lower() and _SQL_START.match(x[1:])
                       and _SQL_QUOTED.findall(x) == _SQL_QUOTED.findall(y) for x, y in changed):
        return "SQL keywords and unquoted names are case-insensitive (its quoted values are unchanged)"
    return None


def _table_case(before: str, after: str) -> str | None:
    """`db.insert_frame(cur, "scores", ...)` with the table's name in capitals: SQL names it unquoted."""
    changed = _changed_strings(before, after)
    if changed and ".insert_frame(" in before and all(x.lower() == y.lower() and _NAME.match(x[1:-1])
                                                       for x, y in changed):
        return "insert_frame puts the table's name unquoted into SQL, where names are case-insensitive"
    return None


def _codec_case(before: str, after: str) -> str | None:
    changed = _changed_strings(before, after)
    if changed and all(x.lower() == y.lower() and _codec(x[1:-1]) and _codec(x[1:-1]) == _codec(y[1:-1])
                       for x, y in changed):
        return "codec names are case-insensitive: the same codec"
    return None


def _codec(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


# Database's statements, and the service's helpers that only pass their cursor on to them.
_CURSOR_CALL = re.compile(r"(\.execute|\.frame|\.get_meta|\.set_meta|\._bump|\b_bump_keys)\(")


def _transaction_cursor(before: str, after: str) -> str | None:
    """`db.execute(..., cur)` with `cur` dropped or None: the same connection, the same transaction."""
    if not _CURSOR_CALL.search(before) or "cur" not in before:
        return None
    squeeze = "".join
    b, a = squeeze(before.split()), squeeze(after.split())
    variants = {b.replace(",cur)", ",None)"), b.replace(",cur)", ",)"), b.replace(",cur)", ")"),
                b.replace("(cur,", "(None,"), b.replace("(cur)", "(None)"), b.replace("(cur)", "()"),
                b.replace("cur=cur", "cur=None")}
    if a in variants - {b}:
        return ("without a cursor Database runs the statement on this thread's connection, the one "
                "holding the transaction (SQLite and psycopg alike)")
    return None


_RULES = (_sql_case, _table_case, _codec_case, _transaction_cursor)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
