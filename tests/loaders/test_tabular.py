"""Generic CSV/Parquet loader with a column mapping."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

import loaders
from loaders.errors import ConfigError
from loaders.report import LoadError
from loaders import tabular
from loaders.tabular import parse_mapping


def _write(folder: Path, **files: str) -> Path:
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text, encoding="utf-8")
    return folder


def test_parse_mapping():
    assert parse_mapping("interactions.user_id=customer, interactions.item_id=sku,items.title=name") == {
        "interactions": {"user_id": "customer", "item_id": "sku"}, "items": {"title": "name"}}
    assert parse_mapping("timestamp=ts") == {"interactions": {"timestamp": "ts"}}
    assert parse_mapping("") == {}
    for bad in ("interactions.user_id", "nosuch.user_id=x", "items.colour=x", "items.title="):
        with pytest.raises(ValueError):
            parse_mapping(bad)


def test_folder_with_mapping(tmp_path):
    _write(tmp_path,
           interactions__csv="customer,sku,ts,qty,kind\n"
                             "c1,A,2021-01-02T03:04:05Z,2,purchase\n"
                             "c1,B,1609556645,,VIEW\n"
                             "c2,A,1609556645000,1,\n"
                             "c2,B,,3,cart\n",
           items__csv='sku,name,price,categories,features,brand\n'
                      'A,"Mug, large",$12.99,Home > Kitchen|Gifts,dishwasher safe|400 ml,Acme &amp; Co\n'
                      'B,Tea,,,,\n',
           users__csv="user_id,name\nc1,Ann\nc2,Bob\n")
    mapping = "interactions.user_id=customer,interactions.item_id=sku,interactions.timestamp=ts," \
              "interactions.value=qty,interactions.event=kind,items.item_id=sku,items.title=name"
    ds = loaders.load("csv", tmp_path, mapping=mapping)
    assert ds.name == tmp_path.name
    inter = ds.interactions
    assert inter["event"].tolist() == ["purchase", "view", "purchase", "cart"]
    assert inter["value"].tolist() == [2.0, 1.0, 1.0, 3.0]
    assert inter["timestamp"].tolist() == [1609556645, 1609556645, 1609556645, 0]
    a = ds.items.set_index("item_id").loc["A"]
    assert a["title"] == "Mug, large" and a["price"] == 12.99
    assert a["categories"] == ["Home > Kitchen", "Gifts"] and a["features"] == ["dishwasher safe", "400 ml"]
    assert math.isnan(ds.items.set_index("item_id").loc["B", "price"])
    assert ds.users["name"].tolist() == ["Ann", "Bob"]
    assert ds.report.rejects == []


def test_single_file_and_defaults(tmp_path):
    f = tmp_path / "events.csv"
    f.write_text("user_id,item_id\nu1,i1\nu2,i1\nu2,i2\n", encoding="utf-8")
    ds = loaders.load("csv", f)
    assert ds.name == "events"
    assert set(ds.interactions["event"]) == {"purchase"} and set(ds.interactions["value"]) == {1.0}
    assert sorted(ds.items["item_id"]) == ["i1", "i2"] and len(ds.users) == 2


def test_parquet_and_all_tables(tmp_path):
    pd.DataFrame({"user_id": [1, 2, 2], "item_id": ["a", "a", "b"],
                  "timestamp": pd.to_datetime(["2021-01-02 03:04:05"] * 3),
                  "event": ["rating"] * 3, "value": [4.0, 5.0, 3.0]}).to_parquet(tmp_path / "interactions.parquet")
    pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", None],
                  "categories": [["X > Y"], [], None]}).to_parquet(tmp_path / "items.parquet")
    _write(tmp_path,
           reviews__csv="user_id,item_id,rating,summary,text,timestamp\n1,a,4,ok,fine,1609556645\n",
           item_links__csv="src_item,dst_item,relation\na,b,also_buy\na,zzz,also_view\n",
           triples__tsv="head\trelation\ttail\ne1\tr\te2\n",
           item_entities__csv="item_id,entity_id\na,e1\n",
           judgements__csv="query,item_id,relevance\nmug,a,2\nmug,b,0\n")
    ds = loaders.load("csv", tmp_path)
    assert ds.interactions["user_id"].tolist() == ["1", "2", "2"]
    assert set(ds.interactions["timestamp"]) == {1609556645}
    assert ds.items["categories"].tolist() == [["X > Y"], [], []]
    assert ds.reviews.iloc[0]["review_id"] == "1|a|1609556645"
    assert ds.item_links.values.tolist() == [["a", "b", "also_buy"]]
    assert [(r.field, r.reason, r.error) for r in ds.report.rejects] == [
        ("dst_item", "unknown item (not in the items file)", False)]
    assert ds.triples.values.tolist() == [["e1", "r", "e2"]]
    assert ds.judgements["relevance"].tolist() == [2, 0]
    assert len(ds.item_entities) == 1


def test_explicit_tables_option(tmp_path):
    _write(tmp_path, a__csv="user_id,item_id\nu1,i1\n", b__csv="item_id,title\ni1,One\n")
    ds = loaders.load("csv", None, tables={"interactions": tmp_path / "a.csv", "items": tmp_path / "b.csv"})
    assert ds.items["title"].tolist() == ["One"]


def test_missing_columns(tmp_path):
    _write(tmp_path, interactions__csv="customer,item_id\nu1,i1\n")
    with pytest.raises(LoadError, match=r"interactions\.csv, line 1: field 'user_id': missing required column"):
        loaders.load("csv", tmp_path)
    with pytest.raises(LoadError, match=r"line 1: field 'buyer': mapped column"):
        loaders.load("csv", tmp_path, mapping={"interactions": {"user_id": "buyer"}})
    with pytest.raises(LoadError, match="no interactions file"):
        loaders.load("csv", _empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def test_bad_values_lenient(tmp_path):
    _write(tmp_path,
           interactions__csv="user_id,item_id,event,value,timestamp\n"
                             "u1,i1,click,1,2021-01-01\n"
                             ",i1,click,1,0\n"             # line 3: missing user
                             "u1,i1,clack,1,0\n"           # line 4: bad event
                             "u1,i1,click,many,0\n"        # line 5: bad value
                             "u1,i1,click,1,yesterday\n"   # line 6: bad timestamp
                             "u1,i9,click,1,0\n"           # line 7: unknown item
                             "u1,i1,click,2,2021-01-01\n", # line 8: duplicate key of line 2
           items__csv="item_id,title,price\ni1,One,cheap\ni1,Again,3\n")
    with pytest.raises(LoadError, match=r"items\.csv, line 2: field 'price': not a price"):
        loaders.load("csv", tmp_path)
    (tmp_path / "items.csv").write_text("item_id,title,price\ni1,One,2\ni1,Again,3\n")
    ds = loaders.load("csv", tmp_path, strict=False)
    got = [(Path(r.file).name, r.line, r.field, r.error) for r in ds.report.rejects]
    assert got == [("items.csv", 3, "item_id", False),
                   ("interactions.csv", 3, "user_id", True), ("interactions.csv", 4, "event", True),
                   ("interactions.csv", 5, "value", True), ("interactions.csv", 6, "timestamp", True),
                   ("interactions.csv", 7, "item_id", True), ("interactions.csv", 8, "user_id,item_id,event,timestamp", False)]
    assert len(ds.interactions) == 1 and ds.items["title"].tolist() == ["One"]
    rep = ds.report
    assert rep.total_read == rep.total_kept + rep.total_rejected == 9


def test_review_ids_generated_when_empty(tmp_path):
    _write(tmp_path, interactions__csv="user_id,item_id\nu1,i1\n",
           reviews__csv="review_id,user_id,item_id,rating,timestamp\nr1,u1,i1,5,10\n,u1,i1,,20\n")
    ds = loaders.load("csv", tmp_path)
    assert ds.reviews["review_id"].tolist() == ["r1", "u1|i1|20"]
    assert ds.reviews["rating"].tolist()[0] == 5.0 and math.isnan(ds.reviews["rating"].tolist()[1])


# ------------------------------------------------------------------ real-world variants


def _rows(ds) -> list[list]:
    return ds.interactions.sort_values(["user_id", "item_id"]).values.tolist()


@pytest.mark.parametrize("sep", [",", "\t"])
def test_trailing_delimiter_is_ignored(tmp_path, sep):
    rows = ["user_id,item_id,value,timestamp", "u1,i1,5,1529193600", "u2,i1,4,1528934400", "u2,i2,3,1527897600"]
    plain = "\n".join(rows).replace(",", sep) + "\n"
    trailing = "\n".join(r + ("," if n else "") for n, r in enumerate(rows)).replace(",", sep) + "\n"
    name = "interactions.csv" if sep == "," else "interactions.tsv"
    _write(_empty(tmp_path), **{name.replace(".", "__"): plain})
    (tmp_path / "trailing").mkdir()
    _write(tmp_path / "trailing", **{name.replace(".", "__"): trailing})
    want, got = loaders.load("csv", tmp_path / "empty"), loaders.load("csv", tmp_path / "trailing")
    assert _rows(got) == _rows(want) and got.report.rejects == []
    assert got.interactions["user_id"].tolist() == ["u1", "u2", "u2"]
    assert got.interactions["timestamp"].tolist() == [1529193600, 1528934400, 1527897600]


def test_trailing_tab_in_recbole_like_file(tmp_path):
    import csv

    from loaders.report import LoadReport
    from loaders.tabular import read_delimited
    f = tmp_path / "ml.inter"
    f.write_bytes(b"user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n"
                  b"22\t377\t1\t878887116\t\r\n6\t86\t3\t883603013\t\r\n")
    df, lines = read_delimited(f, LoadReport(), sep="\t", quoting=csv.QUOTE_NONE)
    assert list(df.columns) == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    assert df.values.tolist() == [["22", "377", "1", "878887116"], ["6", "86", "3", "883603013"]]
    assert lines.tolist() == [2, 3]


@pytest.mark.parametrize("sep", [",", "\t"])
def test_value_past_the_header_is_rejected(tmp_path, sep):
    text = ("user_id,item_id,value\n" "u1,i1,5,\n" "u2,i1,4,oops\n" "u3,i2,3,\n").replace(",", sep)
    name = "interactions.csv" if sep == "," else "interactions.tsv"
    _write(tmp_path, **{name.replace(".", "__"): text})
    with pytest.raises(LoadError, match=rf"{name}, line 3: wrong number of fields: line 3 has a value in "
                                        r"field 4, the header has 3 fields"):
        loaders.load("csv", tmp_path)
    ds = loaders.load("csv", tmp_path, strict=False)
    assert ds.interactions["user_id"].tolist() == ["u1", "u3"]
    assert [(r.line, r.field, r.value, r.kind) for r in ds.report.rejects] == [
        (3, None, "oops", "wrong number of fields")]
    assert ds.report.total_read == ds.report.total_kept + ds.report.total_rejected == 3


def test_unreadable_price_keeps_the_product_when_lenient(tmp_path):
    _write(tmp_path,
           interactions__csv="user_id,item_id\nu1,A\nu1,B\nu2,B\nu2,C\n",
           items__csv='item_id,price\nA,€12.99\nB,call us\nC,"5,99"\n')
    with pytest.raises(LoadError, match=r"items\.csv, line 3: field 'price': not a price"):
        loaders.load("csv", tmp_path)
    ds = loaders.load("csv", tmp_path, strict=False)
    prices = ds.items.set_index("item_id")["price"]
    assert prices["A"] == 12.99 and prices["C"] == 5.99 and math.isnan(prices["B"])
    assert len(ds.interactions) == 4 and ds.report.rejects == []
    assert ds.report.notes() == {"prices not understood (kept as unknown)": 1}


def test_negative_price_still_rejected_when_lenient(tmp_path):
    _write(tmp_path, interactions__csv="user_id,item_id\nu1,A\n", items__csv="item_id,price\nA,-3\n")
    ds = loaders.load("csv", tmp_path, strict=False)
    assert [r.kind for r in ds.report.rejects] == ["price out of range", "unknown item (not in the items file)"]


def test_yyyymmdd_timestamps(tmp_path):
    _write(tmp_path, interactions__csv="user_id,item_id,timestamp\nu1,i1,20180617\nu1,i2,19991231\nu2,i1,\n")
    ds = loaders.load("csv", tmp_path)
    assert ds.interactions["timestamp"].tolist() == [1529193600, 946598400, 0]
    assert ds.report.notes() == {"timestamps read as YYYYMMDD dates": 2}


@pytest.mark.parametrize("values, want", [
    (["1529194000", "1528934400"], [1529194000, 1528934400]),           # seconds
    (["1529194000123", "1528934400000"], [1529194000, 1528934400]),     # milliseconds
    (["20180617", "20181332"], [20180617, 20181332]),                   # not all valid dates: seconds
    (["20180617", "1529194000"], [20180617, 1529194000]),               # mixed: seconds
])
def test_other_numeric_timestamps_unchanged(tmp_path, values, want):
    """Read as seconds as written; the ones in 1970 (20180617 s: August 1970) are counted."""
    _write(tmp_path, interactions__csv="user_id,item_id,timestamp\n" + "".join(
        f"u{n},i1,{v}\n" for n, v in enumerate(values)))
    ds = loaders.load("csv", tmp_path)
    early = sum(w < 31_536_000 for w in want)  # before 1971
    assert ds.interactions["timestamp"].tolist() == want
    assert ds.report.notes() == ({tabular.EARLY_NOTE: early} if early else {})


def test_event_synonyms(tmp_path):
    _write(tmp_path, interactions__csv="user_id,item_id,event,value\n"
                                       "u1,i1,view,\nu1,i2, AddToCart ,\nu1,i3,transaction,\n"
                                       "u2,i1,page_view,\nu2,i2,Basket,\nu2,i3,rate,4\nu2,i4,VIEW,\n")
    ds = loaders.load("csv", tmp_path)
    assert ds.interactions["event"].tolist() == ["view", "cart", "purchase", "view", "cart", "rating", "view"]
    assert ds.interactions["value"].tolist() == [1, 1, 1, 1, 1, 4, 1]
    assert ds.report.notes() == {
        "event names mapped to kgrec's (addtocart → cart, basket → cart, page_view → view …)": 5}


def test_unknown_event_names_the_value(tmp_path):
    _write(tmp_path, interactions__csv="user_id,item_id,event\nu1,i1,view\nu1,i2,wishlist\n")
    with pytest.raises(LoadError, match=r"line 3: field 'event': unknown event: 'wishlist' \(not one of "
                                        r"impression, view, .*addtocart.*transaction"):
        loaders.load("csv", tmp_path)
    ds = loaders.load("csv", tmp_path, strict=False)
    assert [(r.line, r.kind, r.value) for r in ds.report.rejects] == [(3, "unknown event", "wishlist")]


@pytest.mark.parametrize("sep, label", [(";", "';'"), ("\t", "tab")])
def test_semicolon_csv_is_detected(tmp_path, sep, label):
    _write(tmp_path,
           interactions__csv="\ufeffuser_id;item_id;value\r\nu1;A;1\r\nu2;B;2\r\n".replace(";", sep),
           items__csv='\ufeffitem_id;title;price\r\nA;"Card; large";0,99\r\nB;Mug, blue;1,99\r\n'.replace(";", sep))
    ds = loaders.load("csv", tmp_path)
    assert ds.items["title"].tolist() == ["Card; large" if sep == ";" else "Card\t large".replace("\t", sep),
                                          "Mug, blue"]
    assert ds.items["price"].tolist() == [0.99, 1.99]
    assert ds.interactions["value"].tolist() == [1.0, 2.0]
    assert ds.report.notes() == {f"interactions.csv: read as {label}-separated": 1,
                                 f"items.csv: read as {label}-separated": 1}


def test_comma_csv_with_semicolons_in_a_column_is_not_resplit(tmp_path):
    _write(tmp_path, interactions__csv="user_id,item_id\nu1;x,i1\n")
    ds = loaders.load("csv", tmp_path)
    assert ds.interactions["user_id"].tolist() == ["u1;x"] and ds.report.notes() == {}


def test_default_event_option(tmp_path):
    """A ratings file without an event column: ``event="rating"`` (``-o event=rating``) makes its
    rows ratings with the rating as value, not purchases of that quantity; an empty cell of an
    event column takes it too; an unknown name is a configuration error."""
    (tmp_path / "interactions.csv").write_text("user_id,item_id,value\nu1,i1,5\nu2,i1,3\n")
    ds = loaders.load("csv", tmp_path, event="rating")
    assert ds.interactions["event"].tolist() == ["rating", "rating"]
    assert ds.interactions["value"].tolist() == [5.0, 3.0]
    assert loaders.load("csv", tmp_path).interactions["event"].tolist() == ["purchase", "purchase"]
    (tmp_path / "interactions.csv").write_text("user_id,item_id,event\nu1,i1,\nu2,i1,click\n")
    assert loaders.load("csv", tmp_path, event="view").interactions["event"].tolist() == ["view", "click"]
    with pytest.raises(ConfigError, match="event='stars': not one of"):
        loaders.load("csv", tmp_path, event="stars")


def test_a_delta_may_name_items_and_users_outside_its_files(tmp_path):
    """``delta=True`` (``kgrec ingest --source csv``): events, reviews and item links may name
    products and users the store holds -- listed id-only after the files' rows, for the ingest
    to decide -- where a full read rejects them against the items / users files."""
    _write(tmp_path,
           interactions__csv="user_id,item_id,event\nnewbie,NEW1,purchase\nnewbie,00002,click\nann,GHOST,purchase\n",
           items__csv="item_id,title,price\nNEW1,Red mug,14.5\n00001,Rake,999\n",
           users__csv="user_id,name\nnewbie,New Bie\n",
           reviews__csv="user_id,item_id,rating\nbob,00003,4\n",
           item_links__csv="src_item,dst_item,relation\nNEW1,00004,also_buy\n")
    with pytest.raises(LoadError, match="unknown item"):
        loaders.load("csv", tmp_path)
    ds = loaders.load("csv", tmp_path, delta=True)
    assert ds.report.rejects == [] and len(ds.interactions) == 3 and len(ds.reviews) == 1 and len(ds.item_links) == 1
    items = ds.items.set_index("item_id")
    assert items.index.tolist() == ["NEW1", "00001", "00002", "GHOST", "00003", "00004"]
    assert items.loc["00001", "price"] == 999 and items.loc["NEW1", "title"] == "Red mug"
    assert items.loc["00002", "title"] == "" and math.isnan(items.loc["GHOST", "price"])  # id-only
    assert ds.users["user_id"].tolist() == ["newbie", "ann", "bob"] and ds.users["name"].tolist()[0] == "New Bie"


def test_a_catalogue_only_delta_needs_no_interactions_file(tmp_path):
    """A delta of catalogue rows alone (a price change, a withdrawal) is read with an empty
    interactions table; a full read still requires the interactions file, and a delta needs
    some table."""
    _write(tmp_path, items__csv="item_id,title,price,available\n26,Item 26 mug,61.42,0\n")
    with pytest.raises(LoadError, match="no interactions file"):
        loaders.load("csv", tmp_path)
    ds = loaders.load("csv", tmp_path, delta=True)
    assert ds.name == tmp_path.name and len(ds.interactions) == 0 and len(ds.users) == 0
    assert ds.items[["item_id", "available"]].values.tolist() == [["26", 0]]
    with pytest.raises(LoadError, match="no interactions file"):
        loaders.load("csv", _empty(tmp_path), delta=True)


def test_a_purchase_needs_a_positive_quantity(tmp_path):
    """A purchase (or cart) of quantity 0 or below -- a return -- is not a purchase: an error
    naming the line; a rating of 0 is a value like any other."""
    (tmp_path / "interactions.csv").write_text(
        "user_id,item_id,event,value\nu1,i1,purchase,2\nu2,i1,purchase,-1\nu3,i1,cart,0\nu4,i1,rating,0\n")
    with pytest.raises(LoadError, match=r"line 3: field 'value': not a quantity"):
        loaders.load("csv", tmp_path)
    ds = loaders.load("csv", tmp_path, strict=False)
    assert ds.interactions["user_id"].tolist() == ["u1", "u4"]
    assert [r.line for r in ds.report.rejects] == [3, 4]


def test_day_first_dotted_dates(tmp_path):
    """``17.06.2018`` (Excel's date in much of Europe) is the 17th of June, counted; a date
    that is no day (``31.02.2018``) is rejected like any unreadable time."""
    (tmp_path / "interactions.csv").write_text(
        "user_id,item_id,timestamp\nu1,i1,17.06.2018\nu2,i1,1.2.2019 14:05\nu3,i1,2018-06-17T00:00:00Z\n"
        "u4,i1,31.02.2018\n")
    ds = loaders.load("csv", tmp_path, strict=False)
    assert ds.interactions["timestamp"].tolist() == [1529193600, 1549029900, 1529193600]
    assert ds.report.notes()["timestamps read as day-first dates (17.06.2018)"] == 2
    assert [r.line for r in ds.report.rejects] == [5]


def test_repeat_purchases_at_one_time_are_summed(tmp_path):
    """Day-granular dates: c1 bought A twice on one day (1 then 3 units) and twice more as
    identical rows (cart 2, 2): each pair is one row, the quantities summed, counted in the notes
    and as kept; repeated clicks stay filtered duplicates. read = kept + rejected."""
    from loaders.tabular import QUANTITIES_SUMMED_NOTE

    _write(tmp_path, interactions__csv="user_id,item_id,event,value,timestamp\n"
                                       "c1,A,purchase,1,20240105\nc1,A,purchase,3,20240105\n"
                                       "c1,B,purchase,1,20240107\nc2,A,purchase,2,20240105\n"
                                       "c1,A,cart,2,20240105\nc1,A,cart,2,20240105\n"
                                       "c1,A,click,1,20240105\nc1,A,click,1,20240105\n")
    ds = loaders.load("csv", tmp_path)
    got = {(r.user_id, r.item_id, r.event): r.value for r in ds.interactions.itertuples()}
    assert got == {("c1", "A", "purchase"): 4.0, ("c1", "B", "purchase"): 1.0, ("c2", "A", "purchase"): 2.0,
                   ("c1", "A", "cart"): 4.0, ("c1", "A", "click"): 1.0}
    rep = ds.report
    assert rep.notes()[QUANTITIES_SUMMED_NOTE] == 2 and [(r.line, r.error) for r in rep.rejects] == [(9, False)]
    assert (rep.total_read, rep.total_kept, rep.total_rejected) == (8, 7, 1)
    assert QUANTITIES_SUMMED_NOTE in rep.summary()
