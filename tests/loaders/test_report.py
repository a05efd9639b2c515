"""LoadReport (kinds of reasons, notes, summary, reject CSV), the strict-mode hint, the
shared file handling and the value ranges of the canonical tables."""

from __future__ import annotations

import csv
import gzip
import math

import numpy as np
import pytest

import loaders
from loaders.dataset import MAX_TIMESTAMP, MIN_TIMESTAMP, Dataset, make_table, prices_ok, timestamps_ok
from loaders.errors import LENIENT_HINT, DatasetError, LoadError
from loaders.report import LoadReport, Reject, reason_kind


def test_reason_kind():
    assert reason_kind("duplicate review: same as line 1234, that one is kept") == "duplicate review"
    assert reason_kind("not a number: 'five'") == "not a number"
    assert reason_kind("unknown item (not in the items file)") == "unknown item (not in the items file)"
    assert Reject("f", 3, "x", "malformed JSON: Expecting value at column 1").kind == "malformed JSON"


def _report(strict: bool = False) -> LoadReport:
    rep = LoadReport(strict=strict)
    rep.read("a.json", 6)
    rep.keep("a.json", 2)
    for line in (3, 4, 5):
        rep.reject("a.json", line, "review_id", f"duplicate review: same as line {line - 2}, that one is kept",
                   error=False)
    rep.reject("a.json", 6, "overall", "not a number: 'five'", "five")
    return rep


def test_reasons_and_summary_count_kinds():
    rep = _report()
    assert rep.reasons() == {"duplicate review": 3, "not a number": 1}
    assert list(rep.reasons()) == ["duplicate review", "not a number"]  # most frequent first
    lines = rep.summary().splitlines()
    assert lines[2:] == ["  rejected 3: duplicate review (filtered)", "  rejected 1: not a number",
                         "  each rejected row, with its line, field and value, is in the reject CSV "
                         "(LoadReport.write_rejects)"]
    assert rep.summary(rejects_path="r.csv").endswith("is in r.csv")
    empty = LoadReport()
    empty.read("b.csv", 2)
    empty.keep("b.csv", 2)
    assert len(empty.summary().splitlines()) == 2  # no rejects: no reject lines, no hint


def test_write_rejects_keeps_the_detail(tmp_path):
    rep = _report()
    rep.reject("a.json", 7, "text", "not valid UTF-8: bytes", "love \ud83d")  # a lone surrogate
    rep.read("a.json")
    rows = list(csv.DictReader(rep.write_rejects(tmp_path / "r.csv").open(encoding="utf-8")))
    assert [r["line"] for r in rows] == ["3", "4", "5", "6", "7"]
    assert rows[1]["reason"] == "duplicate review: same as line 2, that one is kept"
    assert rows[1]["kind"] == "duplicate review" and rows[1]["error"] == "0"
    assert rows[4]["value"] == "love \\ud83d"


def test_notes_and_merge():
    a, b = LoadReport(), LoadReport()
    a.products_without_metadata, a.reviews_without_metadata = 2, 5
    b.titles_cleaned, b.titles_fallback = 3, 1
    a.merge(b)
    assert a.notes() == {"products without metadata (kept as id-only items)": 2,
                         "reviews of products without metadata (kept)": 5,
                         "titles cleaned of HTML markup": 3,
                         "titles replaced by a fallback name (brand — category, description or id)": 1}
    assert "  titles cleaned of HTML markup: 3" in a.summary()


def test_other_notes_count_and_merge():
    a, b = LoadReport(), LoadReport()
    a.note("prices not understood (kept as unknown)", 2)
    a.note("nothing", 0)
    b.note("prices not understood (kept as unknown)")
    b.note("timestamps read as seconds", 4)
    a.merge(b)
    assert a.notes() == {"prices not understood (kept as unknown)": 3, "timestamps read as seconds": 4}
    assert "  timestamps read as seconds: 4" in a.summary()


def test_strict_error_says_lenient_would_skip():
    with pytest.raises(LoadError) as exc:
        _report(strict=True)
    err = exc.value
    assert err.reason == "duplicate review: same as line 1, that one is kept" or err.reason == "not a number: 'five'"
    assert str(err) == f"a.json, line 6: field 'overall': not a number: 'five' ({LENIENT_HINT})"
    assert err.hint == LENIENT_HINT and "--lenient" in LENIENT_HINT
    # errors a lenient load would not survive carry no hint
    assert str(LoadError("x.csv", None, None, "no such file")) == "x.csv: no such file"


# ------------------------------------------------------------------ files


def test_plain_text_named_gz_is_counted_apart(tmp_path):
    (tmp_path / "interactions.csv.gz").write_text("user_id,item_id\nu1,i1\nu2,i1\n", encoding="utf-8")
    with pytest.raises(LoadError, match=r"interactions\.csv\.gz, line 1: not gzip-compressed although the name "
                                        r"ends in \.gz"):
        loaders.load("csv", tmp_path)
    ds = loaders.load("csv", tmp_path, strict=False)
    assert len(ds.interactions) == 2
    file = str(tmp_path / "interactions.csv.gz")
    f, pseudo = ds.report.files[file], ds.report.files[file + "#gzip"]
    assert (f.read, f.kept, f.rejected) == (2, 2, 0)
    assert (pseudo.read, pseudo.kept, pseudo.rejected) == (1, 0, 1)
    (reject,) = ds.report.rejects
    assert (reject.file, reject.line, reject.field, reject.kind) == (file, 1, None, "not gzip-compressed although "
                                                                                     "the name ends in .gz")


def test_truncated_csv_gzip_keeps_the_good_lines(tmp_path):
    text = "user_id,item_id,timestamp\n" + "".join(f"u{i},i{i % 7},{1614592800 + i}\n" for i in range(5000))
    data = gzip.compress(text.encode())
    (tmp_path / "interactions.csv.gz").write_bytes(data[: len(data) * 2 // 3])
    ds = loaders.load("csv", tmp_path, strict=False)
    (reject,) = ds.report.rejects
    good = reject.line - 1  # physical lines before the break, the header included
    assert 1000 < good < 5001 and len(ds.interactions) == good - 1
    assert f"everything after line {good} (the last good line) is lost" in reject.reason
    assert ds.interactions["user_id"].iloc[-1] == f"u{good - 2}"


def test_csv_header_not_utf8(tmp_path):
    (tmp_path / "interactions.csv").write_bytes(b"user_id,item\xff_id\nu1,i1\n")
    with pytest.raises(LoadError, match=r"interactions\.csv, line 1: the header line is not valid UTF-8"):
        loaders.load("csv", tmp_path, strict=False)


def test_bad_utf8_many_rows_lenient(tmp_path):
    rows = [f"u{i},i1,{1614592800 + i}".encode() for i in range(10)]
    rows[3] = b"u3,i\xe91,1614592803"
    rows[7] = b"u\xc3,i1,1614592807"
    (tmp_path / "interactions.csv").write_bytes(b"user_id,item_id,timestamp\n" + b"\n".join(rows) + b"\n")
    ds = loaders.load("csv", tmp_path, strict=False)
    got = [(r.line, r.field, r.kind) for r in ds.report.rejects]
    assert got == [(5, "item_id", "not valid UTF-8"), (9, "user_id", "not valid UTF-8")]
    assert len(ds.interactions) == 8 and "\ufffd" not in "".join(ds.interactions["user_id"])
    f = ds.report.files[str(tmp_path / "interactions.csv")]
    assert (f.read, f.kept, f.rejected) == (10, 8, 2)


# ------------------------------------------------------------------ value ranges


def test_value_ranges():
    assert MIN_TIMESTAMP == 0 and MAX_TIMESTAMP == 7_258_118_400  # 2200-01-01 00:00 UTC
    assert timestamps_ok([0, 1_600_000_000, MAX_TIMESTAMP - 1]).all()
    assert not timestamps_ok([-1, MAX_TIMESTAMP, 1e20, math.inf, math.nan]).any()
    assert prices_ok([0.0, 12.5, math.nan]).all()
    assert not prices_ok([-0.01, math.inf, -math.inf]).any()


@pytest.mark.parametrize("table, column, value, what", [
    ("interactions", "timestamp", -1, "timestamp out of range"),
    ("interactions", "timestamp", MAX_TIMESTAMP, "timestamp out of range"),
    ("items", "price", np.inf, "price not finite and >= 0"),
    ("items", "price", -2.0, "price not finite and >= 0"),
])
def test_validate_checks_ranges(table, column, value, what):
    ds = Dataset(name="t", users=make_table("users", {"user_id": ["u1"]}),
                 items=make_table("items", {"item_id": ["i1"]}),
                 interactions=make_table("interactions", {"user_id": ["u1"], "item_id": ["i1"], "event": ["view"],
                                                          "value": [1.0], "timestamp": [1_600_000_000]}))
    getattr(ds, table)[column] = np.array([value], dtype=getattr(ds, table)[column].dtype)
    with pytest.raises(DatasetError, match=rf"table '{table}', column '{column}', row 0: {what}"):
        ds.validate()

