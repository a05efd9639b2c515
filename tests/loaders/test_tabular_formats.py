"""CSV / Parquet habits of real exports (fuzz pass 5): ratings without a value, European
prices with dot thousands, ``available`` words, Parquet nulls, CR-only line endings, line
numbers after quoted fields spanning lines, header names in another case or repeated,
Excel serial dates, and the columns a file really had (what a delta's ingest sets)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import loaders
from loaders import tabular
from loaders.report import LoadError, LoadReport
from loaders.tabular import read_delimited


def _write(folder: Path, **files: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = folder / name.replace("__", ".")
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return folder


def _rejects(ds) -> list[tuple]:
    return [(Path(r.file).name, r.line, r.field, r.kind, r.value) for r in ds.report.rejects]


def _balanced(ds) -> bool:
    return all(f.read == f.kept + f.rejected for f in ds.report.files.values())


# ------------------------------------------------------------------ #2 ratings need a value


def test_a_rating_or_review_with_an_empty_value_is_an_error_not_one_star(tmp_path):
    """An empty value is a quantity of 1 for a purchase or cart, but no rating for a rating
    or review event: an error reject naming file, line and field (strict: the load stops)."""
    _write(tmp_path, interactions__csv="user_id,item_id,event,value,timestamp\n"
                                       "u1,i1,rating,5,1700000000\n"
                                       "u1,i2,rating,,1700000001\n"      # line 3
                                       "u2,i1,review, ,1700000002\n"     # line 4
                                       "u2,i2,purchase,,1700000003\n"
                                       "u3,i2,cart,,1700000004\n")
    with pytest.raises(LoadError, match=r"interactions\.csv, line 3: field 'value': missing rating: .*--lenient"):
        loaders.load("csv", tmp_path)
    ds = loaders.load("csv", tmp_path, strict=False)
    assert [r[:4] for r in _rejects(ds)] == [("interactions.csv", 3, "value", "missing rating"),
                                             ("interactions.csv", 4, "value", "missing rating")]
    assert ds.interactions[["event", "value"]].values.tolist() == [["rating", 5.0], ["purchase", 1.0], ["cart", 1.0]]
    assert _balanced(ds)


def test_a_ratings_file_without_a_value_column_is_one_clear_error(tmp_path):
    """MovieLens' ratings.csv read with ``-o event=rating`` but its ``rating`` column not mapped
    to ``value``: one LoadError saying which column to map -- strict or not -- never every
    rating read as 1; mapped, the ratings are read."""
    _write(tmp_path, ratings__csv="userId,movieId,rating,timestamp\n1,10,4.0,964982703\n2,10,3.5,964982224\n")
    mapping = "interactions.user_id=userId,interactions.item_id=movieId"
    for strict in (True, False):
        with pytest.raises(LoadError, match=r"ratings\.csv, line 1: field 'value': no value column, but 2 rows are "
                                            r"rating or review events.*--map interactions\.value=rating \(the "
                                            r"header has: 'userId', 'movieId', 'rating', 'timestamp'\)"):
            loaders.load("csv", tmp_path / "ratings.csv", strict=strict, event="rating", mapping=mapping)
    ds = loaders.load("csv", tmp_path / "ratings.csv", event="rating", mapping=mapping + ",interactions.value=rating")
    assert ds.interactions["value"].tolist() == [4.0, 3.5]
    # purchases without a value column keep their quantity 1
    assert loaders.load("csv", tmp_path / "ratings.csv", mapping=mapping).interactions["value"].tolist() == [1.0, 1.0]


# ------------------------------------------------------------------ #3 dot thousands


def test_dot_thousands_in_a_decimal_comma_column(tmp_path):
    """A ';' export whose prices use decimal commas: 2.500 € and 1.299 are thousands (counted),
    not 2.5 and 1.299."""
    _write(tmp_path, interactions__csv="user_id;item_id\nu1;i1\n",
           items__csv="item_id;title;price\ni1;Sofa;2.500 €\ni2;Tisch;1.299\ni3;Tasse;12,99 €\n"
                      "i4;Lampe;1.299,00 €\ni5;Haus;1.234.567\n")
    ds = loaders.load("csv", tmp_path)
    assert ds.items["price"].tolist() == [2500.0, 1299.0, 12.99, 1299.0, 1234567.0]
    assert ds.report.notes()[tabular.DOT_THOUSANDS_NOTE] == 3


def test_dot_groups_where_the_column_cannot_tell_are_counted(tmp_path):
    """Only values like 1.299 (and whole numbers): read as before (a decimal point), each
    counted as ambiguous; beside decimal points (12.99) the dot is one, nothing counted."""
    _write(tmp_path, interactions__csv="user_id,item_id\nu1,i1\n",
           items__csv="item_id,title,price\ni1,Sofa,2.500\ni2,Tisch,1.299 €\ni3,Tasse,12\n")
    ds = loaders.load("csv", tmp_path)
    assert ds.items["price"].tolist() == [2.5, 1.299, 12.0]
    assert ds.report.notes() == {tabular.DOT_AMBIGUOUS_NOTE: 2}
    (tmp_path / "items.csv").write_text("item_id,title,price\ni1,Sofa,2.500\ni2,Tisch,12.99\n")
    ds = loaders.load("csv", tmp_path)
    assert ds.items["price"].tolist() == [2.5, 12.99] and ds.report.notes() == {}


# ------------------------------------------------------------------ #5 available


def test_available_words_are_read_and_other_values_are_rejects(tmp_path):
    """true/false, yes/no, y/n (any case), 1/0 and 1.0 are read; empty is 1 (on sale); 2, -1
    or "maybe" are error rejects naming file, line and field -- lenient mode goes on."""
    _write(tmp_path, interactions__csv="user_id,item_id\nu1,i1\n",
           items__csv="item_id,title,available\ni1,A,true\ni2,B,FALSE\ni3,C, Yes \ni4,D,no\ni5,E,Y\ni6,F,n\n"
                      "i7,G,0\ni8,H,1.0\ni9,I,\ni10,J,2\ni11,K,-1\ni12,L,maybe\n")
    with pytest.raises(LoadError, match=r"items\.csv, line 11: field 'available': not 1 or 0: .*--lenient"):
        loaders.load("csv", tmp_path)
    ds = loaders.load("csv", tmp_path, strict=False)
    assert ds.items["available"].tolist() == [1, 0, 1, 0, 1, 0, 0, 1, 1]
    assert _rejects(ds) == [("items.csv", 11, "available", "not 1 or 0", "2"),
                            ("items.csv", 12, "available", "not 1 or 0", "-1"),
                            ("items.csv", 13, "available", "not 1 or 0", "maybe")]
    assert _balanced(ds)


# ------------------------------------------------------------------ #6 Parquet nulls


def test_parquet_nulls_are_empty_cells(tmp_path):
    """Nulls in string columns (as pyarrow writes nullable strings and decimals) mean what an
    empty CSV cell means: value 1, time unknown, event the default, price unknown, title
    empty, available 1 -- no reject."""
    pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "c"],
                  "event": pd.Series([None, "view", "purchase"], dtype=object),
                  "value": pd.Series(["2", None, "3"], dtype=object),
                  "timestamp": pd.Series(["2024-01-01T10:00:00Z", None, None], dtype=object)}
                 ).to_parquet(tmp_path / "interactions.parquet")
    pd.DataFrame({"item_id": ["a", "b", "c"], "title": pd.Series(["A", None, "C"], dtype=object),
                  "price": pd.Series(["$9.99", None, "12.50"], dtype=object),
                  "available": pd.Series([True, None, False], dtype="boolean")}).to_parquet(tmp_path / "items.parquet")
    ds = loaders.load("csv", tmp_path)
    assert ds.report.rejects == [] and _balanced(ds)
    assert ds.interactions[["event", "value", "timestamp"]].values.tolist() == [
        ["purchase", 2.0, 1704103200], ["view", 1.0, 0], ["purchase", 3.0, 0]]
    assert ds.items["title"].tolist() == ["A", "", "C"] and ds.items["available"].tolist() == [1, 1, 0]
    assert ds.items["price"].tolist()[::2] == [9.99, 12.5] and math.isnan(ds.items["price"].iloc[1])


def test_a_parquet_rating_with_a_null_value_is_rejected(tmp_path):
    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "b"], "event": ["rating", "rating"],
                  "value": [4.0, np.nan]}).to_parquet(tmp_path / "interactions.parquet")
    ds = loaders.load("csv", tmp_path, strict=False)
    assert [r[:4] for r in _rejects(ds)] == [("interactions.parquet", 2, "value", "missing rating")]


# ------------------------------------------------------------------ #7 CR-only line endings


def test_a_csv_with_cr_only_line_endings_is_read(tmp_path):
    """Classic Mac line endings (Excel's "CSV (Macintosh)"): read, noted, rejects on their lines."""
    _write(tmp_path, interactions__csv=b"user_id,item_id,timestamp\ru1,i1,1700000000\ru2,i2,soon\ru3,i3,1700000002\r")
    with pytest.raises(LoadError, match=r"interactions\.csv, line 3: field 'timestamp'"):
        loaders.load("csv", tmp_path)
    ds = loaders.load("csv", tmp_path, strict=False)
    assert ds.interactions["user_id"].tolist() == ["u1", "u3"]
    assert [r[:3] for r in _rejects(ds)] == [("interactions.csv", 3, "timestamp")]
    assert ds.report.notes() == {tabular.CR_NOTE.format(file="interactions.csv"): 1}
    _write(tmp_path, interactions__csv=b"user_id;item_id\ru1;i1\r")  # the header sniff too
    assert loaders.load("csv", tmp_path).interactions["item_id"].tolist() == ["i1"]


# ------------------------------------------------------------------ #8 line numbers


def test_line_numbers_after_a_quoted_field_spanning_lines(tmp_path):
    """A record is named by the physical line it starts on, also after descriptions spanning
    lines, for a bad value, a line with too many fields and a value past the header."""
    _write(tmp_path, interactions__csv="user_id,item_id\nu1,i1\n",
           items__csv='item_id,title,price,description\n'
                      'i1,A,1,"line1\nline2\nline3"\n'         # lines 2-4
                      'i2,B,2,"x\ny ""quoted"""\n'             # lines 5-6
                      'i3,C,abc,ok\n'                          # line 7: bad price
                      'i4,D,4,"a\nb",extra\n'                  # lines 8-9: a value past the header
                      'i5,E,5,ok\n')                           # line 10
    with pytest.raises(LoadError, match=r"items\.csv, line 8: wrong number of fields"):
        loaders.load("csv", tmp_path)
    ds = loaders.load("csv", tmp_path, strict=False)
    assert [r[:3] for r in _rejects(ds)] == [("items.csv", 8, None)]  # lenient: the price is unknown, counted
    assert ds.items["item_id"].tolist() == ["i1", "i2", "i3", "i5"] and _balanced(ds)
    (tmp_path / "items.csv").write_text((tmp_path / "items.csv").read_text().replace(",extra", ""))
    with pytest.raises(LoadError, match=r"items\.csv, line 7: field 'price': not a price"):
        loaders.load("csv", tmp_path)
    df, lines = read_delimited(tmp_path / "items.csv", LoadReport(strict=False))
    assert lines.tolist() == [2, 5, 7, 8, 10] and df["description"].iloc[1] == 'x\ny "quoted"'


def test_line_numbers_with_a_quote_inside_an_unquoted_field(tmp_path):
    """A ``"`` inside an unquoted field (``12" pizza``) is text: the records after it keep
    their lines (the parser's own reading of the quotes decides, not a count of them)."""
    _write(tmp_path, interactions__csv="user_id,item_id\nu1,i1\n",
           items__csv='item_id,title,price,description\n'
                      'i1,12" pizza,1,"two\nlines"\n'          # lines 2-3
                      'i2,B,x,ok\n'                            # line 4: bad price
                      'i3,C,3,"a\nb"\n')                       # lines 5-6
    df, lines = read_delimited(tmp_path / "items.csv", LoadReport(strict=False))
    assert df["title"].tolist() == ['12" pizza', "B", "C"] and lines.tolist() == [2, 4, 5]
    with pytest.raises(LoadError, match=r"items\.csv, line 4: field 'price'"):
        loaders.load("csv", tmp_path)


def test_a_line_with_too_many_fields_after_a_multiline_record(tmp_path):
    """The parser skips such a line itself (it names it by its record number): named by its line."""
    _write(tmp_path, interactions__csv="user_id,item_id\nu1,i1\n",
           items__csv='item_id,title,description\ni1,A,"x\ny"\ni2,B,C,D,E\ni3,C,"p\nq\nr"\ni4,D,x,y,z\n')
    ds = loaders.load("csv", tmp_path, strict=False)
    assert [r[:2] for r in _rejects(ds)] == [("items.csv", 4), ("items.csv", 8)] and _balanced(ds)
    # a skipped line that itself holds a quoted line break: Python's csv reader finds the lines
    _write(tmp_path, items__csv='item_id,title,description\ni1,A,"x\ny"\ni2,B,"C\nc",D,E\ni3,C,"p\nq\nr"\n'
                                'i4,D,x,y,z\ni5,E,"s\nt"\n')
    ds = loaders.load("csv", tmp_path, strict=False)
    assert [r[:2] for r in _rejects(ds)] == [("items.csv", 4), ("items.csv", 9)] and _balanced(ds)
    assert read_delimited(tmp_path / "items.csv", LoadReport(strict=False))[1].tolist() == [2, 6, 10]


# ------------------------------------------------------------------ #10 header names


@pytest.mark.parametrize("header", [" user_id , item_id ", "User_ID,Item_ID", "USER_ID ,item_id"])
def test_header_names_match_ignoring_case_and_spaces(tmp_path, header):
    _write(tmp_path, interactions__csv=f"{header}\nu1,i1\n")
    ds = loaders.load("csv", tmp_path)
    assert ds.interactions[["user_id", "item_id"]].values.tolist() == [["u1", "i1"]]
    (label,) = ds.report.notes()
    assert label.startswith(tabular.LOOSE_HEADER_NOTE.format(file="interactions.csv", pairs="")[:-1])


def test_a_mapping_matches_ignoring_case_too(tmp_path):
    _write(tmp_path, interactions__csv="Customer ID,SKU\nu1,i1\n")
    ds = loaders.load("csv", tmp_path, mapping="interactions.user_id=customer id,interactions.item_id=sku")
    assert ds.interactions[["user_id", "item_id"]].values.tolist() == [["u1", "i1"]]


def test_a_repeated_or_colliding_header_name_is_an_error(tmp_path):
    _write(tmp_path, interactions__csv="user_id,item_id,event,item_id\nu1,i1,view,i2\n")
    with pytest.raises(LoadError, match=r"line 1: field 'item_id': column 'item_id' appears 2 times in the header "
                                        r"\(columns 2 and 4\)"):
        loaders.load("csv", tmp_path, strict=False)
    _write(tmp_path, interactions__csv="user_id,User_ID,item_id\nu1,u2,i1\n")
    with pytest.raises(LoadError, match=r"columns 1 and 2 of the header, 'user_id', 'User_ID', all match 'user_id'"):
        loaders.load("csv", tmp_path)
    _write(tmp_path, interactions__csv="user_id,item_id,notes,notes\nu1,i1,a,b\n")  # a column not read: fine
    assert len(loaders.load("csv", tmp_path).interactions) == 1


def test_a_missing_column_error_shows_the_header(tmp_path):
    _write(tmp_path, interactions__csv="customer,sku\nu1,i1\n")
    with pytest.raises(LoadError, match=r"missing required column for interactions\.user_id \(the header has: "
                                        r"'customer', 'sku'; name yours with --map interactions\.user_id=COLUMN\)"):
        loaders.load("csv", tmp_path)


# ------------------------------------------------------------------ #11 Excel serial dates


def test_times_in_1970_are_counted(tmp_path):
    """Excel serial dates (45292 = 2024-01-01) read as seconds are January 1970: kept, counted."""
    _write(tmp_path, interactions__csv="user_id,item_id,timestamp\nu1,i1,45292\nu1,i2,45293\nu2,i1,1700000000\n"
                                       "u2,i2,\n")
    ds = loaders.load("csv", tmp_path)
    assert ds.interactions["timestamp"].tolist() == [45292, 45293, 1700000000, 0]
    assert ds.report.notes() == {tabular.EARLY_NOTE: 2}


# ------------------------------------------------------------------ #1 the columns a file had


def test_the_columns_each_file_had_are_recorded(tmp_path):
    """``Dataset.columns``: the canonical columns of each file (after the mapping), so a
    delta's ``item_id,price`` row can be told from a row emptying the title; the ids a
    delta lists id-only (named by its events) are ``Dataset.listed``."""
    _write(tmp_path, items__csv="sku,Price\n0013,12.50\n",
           interactions__csv="user_id,item_id,event,value\nu1,0099,click,1\n")
    ds = loaders.load("csv", tmp_path, delta=True, mapping="items.item_id=sku")
    assert ds.columns == {"items": ("item_id", "price"), "interactions": ("user_id", "item_id", "event", "value")}
    assert ds.listed["items"].tolist() == ["0099"] and "users" not in ds.listed  # no users file: nothing listed
