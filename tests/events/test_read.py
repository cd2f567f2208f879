"""Event files in three formats, and the errors that name row and column."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from socialcredit.events import EVENT_SCHEMA, EventError, read_events, validate_events

ROWS = [
    {"event_id": "e1", "citizen_id": "c1", "kind": "k", "day": 0, "source": "camera",
     "source_ref": "cam-1", "confidence": 0.93},
    {"event_id": "e2", "citizen_id": "c2", "kind": "k", "day": 4, "source": None,
     "source_ref": None, "confidence": None},
]


def write(tmp_path, fmt, rows=ROWS):
    path = tmp_path / f"events.{fmt}"
    if fmt == "csv":
        pl.DataFrame(rows).write_csv(path)
    elif fmt == "parquet":
        pl.DataFrame(rows).write_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("fmt", ["csv", "parquet", "ndjson"])
def test_every_format_reads_to_the_same_table(tmp_path, fmt):
    frame = read_events(write(tmp_path, fmt))
    assert frame.schema == pl.Schema(EVENT_SCHEMA)
    assert frame.to_dicts() == ROWS


def test_optional_columns_may_be_absent_and_ids_may_be_numbers(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("event_id,citizen_id,kind,day\n1,42,k,3\n")
    frame = read_events(path)
    assert frame.row(0, named=True) == {"event_id": "1", "citizen_id": "42", "kind": "k", "day": 3,
                                        "source": None, "source_ref": None, "confidence": None}


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("event_id,citizen_id,day\n1,42,3\n")
    with pytest.raises(EventError, match="missing column.*kind"):
        read_events(path)


@pytest.mark.parametrize(("rows", "words"), [
    ("e1,c1,k,0\ne2,c2,k,1,camera\n", "row 2 (line 3) has 5 fields, more than the header's 4"),
    ("e1,c1,k,0\ne2,c2,k\n", "row 2 (line 3) has 3 fields, fewer than the header's 4"),
    # A quoted newline and a blank line: rows count records, lines count lines.
    ('e1,"c\n1",k,0\n\ne2,c2\n', "row 2 (line 5) has 2 fields, fewer than the header's 4"),
])
def test_a_ragged_csv_row_is_named_with_its_count_of_fields(tmp_path, rows, words):
    path = tmp_path / "e.csv"
    path.write_text("event_id,citizen_id,kind,day\n" + rows)
    with pytest.raises(EventError) as info:
        read_events(path)
    assert str(info.value) == f"{path}: {words}" and info.value.row == 2


def test_a_csv_row_may_leave_its_last_fields_empty(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("event_id,citizen_id,kind,day,source,confidence\ne1,c1,k,0,,\ne2,c2,k,1,camera,\n")
    assert read_events(path)["confidence"].to_list() == [None, None]


@pytest.mark.parametrize(("delimiter", "named"), [(";", "';'"), ("\t", "a tab"), ("|", "'|'")])
def test_a_csv_file_with_another_delimiter_says_which(tmp_path, delimiter, named):
    path = tmp_path / "e.csv"
    path.write_text(delimiter.join(["event_id", "citizen_id", "kind", "day"]) + "\n"
                    + delimiter.join(["e1", "c1", "k", "0,5"]) + "\n")  # a decimal comma in the data
    with pytest.raises(EventError, match=f"the delimiter seems to be {re.escape(named)}; event files are "
                                         "comma-separated"):
        read_events(path)


@pytest.mark.parametrize(("line", "column", "fragment"), [
    ("e3,c3,k,tomorrow,,,", "day", "whole number"),
    ("e3,c3,k,-1,,,", "day", ">= 0"),
    ("e3,c3,k,2,,,1.5", "confidence", "within [0, 1]"),
    ("e3,c3,k,2,,,high", "confidence", "a number"),
    ("e3,,k,2,,,", "citizen_id", "empty"),
])
def test_bad_value_names_row_and_column(tmp_path, line, column, fragment):
    path = tmp_path / "e.csv"
    header = "event_id,citizen_id,kind,day,source,source_ref,confidence"
    path.write_text(f"{header}\ne1,c1,k,0,,,\ne2,c2,k,1,,,\n{line}\n")
    with pytest.raises(EventError) as info:
        read_events(path)
    assert (info.value.row, info.value.column) == (3, column)
    assert f"row 3, column {column}" in str(info.value) and fragment in str(info.value)


def test_duplicate_event_ids_are_refused_with_their_rows():
    frame = pl.DataFrame({"event_id": ["a", "b", "a"], "citizen_id": ["x"] * 3, "kind": ["k"] * 3,
                          "day": [0, 0, 0]})
    with pytest.raises(EventError, match="duplicate event_id 'a' at rows 1, 3"):
        validate_events(frame)


def test_bad_json_line_is_named(tmp_path):
    path = tmp_path / "e.ndjson"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(EventError, match="line 2: not valid JSON"):
        read_events(path)


def test_unknown_file_type_and_missing_file(tmp_path):
    with pytest.raises(EventError, match="unknown event file type"):
        read_events(write(tmp_path, "csv").rename(tmp_path / "e.xlsx"))
    with pytest.raises(EventError, match="no such file"):
        read_events(tmp_path / "nope.csv")


def test_jsonl_is_ndjson_whatever_the_case_of_the_suffix(tmp_path):
    for name in ("events.jsonl", "EVENTS.JSONL", "events.NDJSON"):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
        assert read_events(path).to_dicts() == ROWS, name


def test_csv_ids_stay_text_with_their_leading_zeros(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("event_id,citizen_id,kind,day,confidence\n007,0042,k,3,1\n")
    assert read_events(path).select("event_id", "citizen_id", "confidence").row(0) == ("007", "0042", 1.0)


def test_ndjson_skips_blank_lines_and_keeps_keys_first_seen_late(tmp_path):
    rows = [{"event_id": f"e{i}", "citizen_id": "c", "kind": "k", "day": 1} for i in range(150)]
    rows[-1]["source_ref"] = "mall"  # a key only the 150th row has
    path = tmp_path / "e.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in rows[:75]) + "\n\n   \n"
                    + "\n".join(json.dumps(r) for r in rows[75:]) + "\n")
    frame = read_events(path)
    assert frame.height == 150 and frame["source_ref"].to_list() == [None] * 149 + ["mall"]


def test_an_empty_ndjson_file_is_an_empty_ledger(tmp_path):
    path = tmp_path / "e.ndjson"
    path.write_text("\n")
    frame = read_events(path)
    assert frame.height == 0 and frame.schema == pl.Schema(EVENT_SCHEMA)


@pytest.mark.parametrize(("text", "line", "words"), [
    (json.dumps(ROWS[0]) + "\n\n{not json\n", 3, "not valid JSON"),
    (json.dumps(ROWS[0]) + "\n[1, 2]\n", 2, "expected a JSON object"),
])
def test_a_bad_ndjson_line_is_named_by_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "e.ndjson"
    path.write_text(text)
    with pytest.raises(EventError) as info:
        read_events(path)
    assert info.value.row == line
    assert str(info.value).startswith(f"{path}: line {line}: {words}")


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("event_id,citizen_id,kind,day\ne1,c1,k,soon\n")
    with pytest.raises(EventError, match="^" + str(path) + ": row 1, column day: expected a whole number"):
        read_events(path)
    broken = tmp_path / "e.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(EventError, match="^" + str(broken) + ": cannot be read: "):
        read_events(broken)
    with pytest.raises(EventError) as info:
        read_events(write(tmp_path, "csv").rename(tmp_path / "e.xlsx"))
    assert str(info.value) == (f"{tmp_path / 'e.xlsx'}: unknown event file type '.xlsx' "
                               "(use .csv, .parquet, .ndjson, .jsonl)")


def test_event_files_are_read_as_utf8_whatever_the_locale(tmp_path):
    """A sender's NDJSON with non-ASCII text reads the same under an ASCII locale (no UTF-8 mode)."""
    path = tmp_path / "events.ndjson"
    path.write_text(json.dumps({"event_id": "e1", "citizen_id": "Zhāng Wěi", "kind": "civic.heroic_act",
                                "day": 3, "source": "community", "source_ref": "街道"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    import socialcredit

    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0",
           "PYTHONPATH": str(Path(socialcredit.__file__).parent.parent),  # this very package (or its mutant)
           **{k: v for k, v in os.environ.items() if k == "MUTANT_UNDER_TEST"}}
    code = ("import sys, json; from socialcredit.events import read_events; "
            "print(json.dumps(read_events(sys.argv[1]).row(0, named=True)))")
    done = subprocess.run([sys.executable, "-X", "utf8=0", "-c", code, str(path)], env=env,
                          capture_output=True, text=True, encoding="utf-8", check=False)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert (row["citizen_id"], row["source_ref"]) == ("Zhāng Wěi", "街道")
