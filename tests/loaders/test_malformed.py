"""Malformed input for every loader, in strict mode (LoadError) and lenient mode (reject report).

Each case writes a few lines of the real format into ``tmp_path`` (inline, so these
tests need no shared data) with one defect, and states where the defect is: the file,
the 1-based line, the field and a piece of the reason. Strict mode must raise a
:class:`LoadError` naming them and saying that a lenient load would skip the record (or,
for a *filtered* reject such as a duplicate id, load fine and still report it); lenient
mode must list the reject, keep the counts balanced, keep the good rows (``keeps``) and
write it to the reject CSV.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

import loaders
from loaders.dataset import MAX_TIMESTAMP
from loaders.report import LoadError

# ------------------------------------------------------------------ real-format lines

META_2018 = [
    {"category": ["Gift Cards", "Gift Cards"], "tech1": "", "description": ["Gift card for the purchase of goods or services at Serendipity 3 in New York City only."], "fit": "", "title": "Serendipity 3 $100.00 Gift Card", "also_buy": [], "image": [], "tech2": "", "brand": "Serendipity 3", "feature": [], "rank": [], "also_view": [], "details": {"Shipping Weight:": "3 ounces"}, "main_cat": "Grocery", "similar_item": "", "date": "", "price": "", "asin": "B001BKEWF2"},
    {"category": ["Gift Cards", "Gift Cards"], "tech1": "", "description": ["Amazon.com Gift Cards are the perfect way to give them exactly what they're hoping for."], "fit": "", "title": "Amazon.com Gift Cards", "also_buy": [], "image": [], "tech2": "", "brand": "Amazon", "feature": ["Amazon.com Gift cards never expire and carry no fees Gift cards ship for free"], "rank": [], "also_view": ["BT00DC6QU4", "B001BKEWF2"], "details": {}, "main_cat": "Gift Cards", "similar_item": "", "date": "", "price": "", "asin": "B004LLIKVU"},
]
REVIEWS_2018 = [
    {"overall": 5.0, "verified": True, "reviewTime": "06 17, 2018", "reviewerID": "A31UBHTUUIFJUT", "asin": "B004LLIKVU", "style": {"Gift Amount:": " 50"}, "reviewerName": "john stoiber", "reviewText": "Another great gift.", "summary": "Five Stars", "unixReviewTime": 1529193600},
    {"overall": 4.0, "verified": True, "reviewTime": "06 14, 2018", "reviewerID": "A2MN5JQMIY0FQ2", "asin": "B004LLIKVU", "style": {"Gift Amount:": " 50"}, "reviewerName": "Amazon Customer", "reviewText": "Gift card for my daughter", "summary": "Ease of use", "unixReviewTime": 1528934400},
    {"overall": 5.0, "verified": True, "reviewTime": "06 2, 2018", "reviewerID": "A25POI5IGGENPM", "asin": "B001BKEWF2", "reviewerName": "Kindle Customer", "reviewText": "Nice present", "summary": "Five Stars", "unixReviewTime": 1527897600},
]
META_2023 = [
    {"main_category": "All Beauty", "title": "Howard LC0008 Leather Conditioner, 8-Ounce (4-Pack)", "average_rating": 4.8, "rating_number": 10, "features": [], "description": [], "price": None, "images": [], "videos": [], "store": "Howard Products", "categories": [], "details": {"Package Dimensions": "7.1 x 5.5 x 3 inches; 2.38 Pounds", "UPC": "617390882781"}, "parent_asin": "B01CUPMQZE", "bought_together": None},
    {"main_category": "All Beauty", "title": "Yes to Tomatoes Detoxifying Charcoal Cleanser", "average_rating": 4.5, "rating_number": 3, "features": [], "description": [], "price": 12.99, "images": [], "videos": [], "store": "Yes To", "categories": [], "details": {}, "parent_asin": "B076WQZGPM", "bought_together": None},
]
REVIEWS_2023 = [
    {"rating": 5.0, "title": "Such a lovely scent but not overpowering.", "text": "This spray is really nice.", "images": [], "asin": "B00YQ6X8EO", "parent_asin": "B01CUPMQZE", "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ", "timestamp": 1588687728923, "helpful_vote": 0, "verified_purchase": True},
    {"rating": 4.0, "title": "Works great", "text": "Pretty good.", "images": [], "asin": "B076WQZGPM", "parent_asin": "B076WQZGPM", "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ", "timestamp": 1588615855070, "helpful_vote": 1, "verified_purchase": True},
    {"rating": 1.0, "title": "Meh", "text": "Smells like nothing.", "images": [], "asin": "B076WQZGPM", "parent_asin": "B076WQZGPM", "user_id": "AE74DYR3QUGVPZJ3P7RFWBGIX7XQ", "timestamp": 1589665266052, "helpful_vote": 0, "verified_purchase": False},
]
RB_INTER = ["user_id:token\titem_id:token\trating:float\ttimestamp:float",
            "196\t242\t3\t881250949", "186\t302\t3\t891717742", "22\t242\t1\t878887116"]
RB_ITEM = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
           "242\tKolya\t1996\tComedy", "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller"]
RB_USER = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token",
           "196\t49\tM\twriter\t55105", "186\t39\tF\texecutive\t00000", "22\t25\tM\twriter\t40206"]
KG_USERS = ["org_id remap_id", "A3RTKL9KB8KLID 0", "A38LAIK2N83NH0 1"]
KG_ITEMS = ["org_id remap_id freebase_id", "0553092626 0 m.045wq1q", "0393316041 1 m.03_28m", "038548254X 2 m.0b6fj"]
CSV_INTER = ["user_id,item_id,event,value,timestamp", "u1,i1,purchase,1,2021-03-01T10:00:00Z",
             "u2,i2,rating,4,1614592800", "u2,i1,view,1,1614592801"]
CSV_ITEMS = ["item_id,title,price", "i1,Mug,$12.99", "i2,Tea,4.5"]


def _lines(path: Path, lines: list, *, gz: bool = False) -> Path:
    """Write ``lines`` (str, bytes or a record to dump as JSON), one per line."""
    data = b"".join((x if isinstance(x, bytes) else (x if isinstance(x, str) else json.dumps(x)).encode("utf-8"))
                    + b"\n" for x in lines)
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


def _truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@dataclass
class Case:
    source: str
    path: Path
    file: str                 # base name of the file the reject is in
    line: int | None          # None: checked separately (truncation)
    field: str | None
    reason: str               # a piece of the reason
    error: bool = True        # False: a filtered reject (strict mode does not raise)
    options: dict = field(default_factory=dict)
    keeps: tuple[str, int] | None = None  # lenient: (table, rows) -- the good rows are kept


def _amazon2018(tmp, reviews=REVIEWS_2018, meta=META_2018, gz=True) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    ext = ".json.gz" if gz else ".json"
    _lines(tmp / f"Gift_Cards_5{ext}", reviews, gz=gz)
    _lines(tmp / f"meta_Gift_Cards{ext}", meta, gz=gz)
    return tmp


def _amazon2023(tmp, reviews=REVIEWS_2023, meta=META_2023, gz=False) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    ext = ".jsonl.gz" if gz else ".jsonl"
    _lines(tmp / f"All_Beauty{ext}", reviews, gz=gz)
    _lines(tmp / f"meta_All_Beauty{ext}", meta, gz=gz)
    return tmp


def _recbole(tmp, inter=RB_INTER, item=RB_ITEM, user=RB_USER) -> Path:
    for ext, lines in (("inter", inter), ("item", item), ("user", user)):
        _lines(tmp / f"ml-100k.{ext}", lines)
    return tmp


def _recbole_link(tmp, link: list) -> Path:
    _recbole(tmp)
    _lines(tmp / "ml-100k.link", link)
    return tmp


def _kgat(tmp, train=("0 0 1", "1 2"), test=("0 2", "1 0")) -> Path:
    for name, lines in (("train", train), ("test", test), ("user_list", KG_USERS), ("item_list", KG_ITEMS)):
        _lines(tmp / f"{name}.txt", list(lines))
    return tmp


def _csv(tmp, inter=CSV_INTER, items=CSV_ITEMS, ext=".csv") -> Path:
    _lines(tmp / f"interactions{ext}", inter)
    _lines(tmp / "items.csv", items)
    return tmp


def _parquet(tmp, **columns) -> Path:
    """interactions.parquet of three good rows, the last one changed by ``columns``."""
    df = pd.DataFrame({"user_id": ["u1", "u2", "u2"], "item_id": ["i1", "i2", "i1"],
                       "timestamp": [1614592800.0, 1614592801.0, 1614592802.0]})
    for col, value in columns.items():
        df.loc[2, col] = value
    df.to_parquet(tmp / "interactions.parquet")
    return tmp


def _deep(depth: int = 200_000) -> str:
    """One JSON line nested ``depth`` levels deep (valid JSON, too deep for Python)."""
    return '{"overall": 5.0, "reviewerID": "A1", "asin": "B004LLIKVU", "style": ' + "[" * depth + "]" * depth + "}"


def _with(records: list, i: int, **change) -> list:
    out = [dict(r) for r in records]
    for k, v in change.items():
        if v is None:
            out[i].pop(k, None)
        else:
            out[i][k] = v
    return out


def _long_reviews(n: int = 400) -> list:
    return [dict(REVIEWS_2018[0], reviewerID=f"A{i:013d}", unixReviewTime=1529193600 + i,
                 reviewText="Another great gift. " * 20) for i in range(n)]


CASES = {
    # an id holding a control character (NUL, tab, escape, C1 …): an error reject naming the field
    "amazon2018-control-in-reviewer": lambda t: Case(
        "amazon2018", _amazon2018(t, reviews=_with(REVIEWS_2018, 1, reviewerID="A2MN\u0000X")),
        "Gift_Cards_5.json.gz", 2, "reviewerID", "control character in an id", keeps=("reviews", 2)),
    "amazon2018-control-in-meta-asin": lambda t: Case(
        "amazon2018", _amazon2018(t, meta=_with(META_2018, 1, asin="B004\tLLIKVU")),
        "meta_Gift_Cards.json.gz", 2, "asin", "control character in an id"),
    "amazon2023-control-in-user": lambda t: Case(
        "amazon2023", _amazon2023(t, reviews=_with(REVIEWS_2023, 2, user_id="AE74\u0085DYR")),
        "All_Beauty.jsonl", 3, "user_id", "control character in an id", keeps=("reviews", 2)),
    "amazon2023-control-in-parent-asin": lambda t: Case(
        "amazon2023", _amazon2023(t, reviews=_with(REVIEWS_2023, 0, parent_asin="B01\u001b[31mCUP")),
        "All_Beauty.jsonl", 1, "parent_asin", "control character in an id", keeps=("reviews", 2)),
    "recbole-control-in-user": lambda t: Case(
        "recbole", _recbole(t, inter=RB_INTER[:2] + ["18\x016\t302\t3\t891717742"] + RB_INTER[3:]),
        "ml-100k.inter", 3, "user_id", "control character in an id", keeps=("interactions", 2)),
    "csv-control-in-user": lambda t: Case(
        "csv", _csv(t, inter=CSV_INTER + ["u\x003,i2,view,1,1614592801"]), "interactions.csv", 5, "user_id",
        "control character in an id", keeps=("interactions", 3)),
    "csv-control-in-item-file": lambda t: Case(
        "csv", _csv(t, items=CSV_ITEMS + ['"i\n3",Kettle,1']), "items.csv", 4, "item_id",
        "control character in an id", keeps=("items", 2)),
    "parquet-control-in-user": lambda t: Case(
        "csv", _parquet(t, user_id="u\x7f3"), "interactions.parquet", 3, "user_id", "control character in an id",
        keeps=("interactions", 2)),
    # truncated gzip
    "amazon2018-truncated-gzip": lambda t: Case(
        "amazon2018", _truncate(_amazon2018(t, reviews=_long_reviews()) / "Gift_Cards_5.json.gz", 0.6).parent,
        "Gift_Cards_5.json.gz", None, None, "truncated or corrupt gzip"),
    "amazon2023-truncated-gzip": lambda t: Case(
        "amazon2023", _truncate(_amazon2023(t, gz=True) / "meta_All_Beauty.jsonl.gz", 0.8).parent,
        "meta_All_Beauty.jsonl.gz", None, None, "truncated or corrupt gzip"),
    # bad JSON line
    "amazon2018-bad-json": lambda t: Case(
        "amazon2018", _amazon2018(t, reviews=[REVIEWS_2018[0], '{"overall": 4.0, "verified": true, "reviewerID": "A2MN', REVIEWS_2018[2]]),
        "Gift_Cards_5.json.gz", 2, None, "malformed JSON"),
    "amazon2018-bad-python-literal": lambda t: Case(  # the 2014 format, but not a literal either
        "amazon2018", _amazon2018(t, meta=[META_2018[0], "{'asin': 'B004LLIKVU', 'title': Amazon}", META_2018[1]]),
        "meta_Gift_Cards.json.gz", 2, None, "malformed JSON", keeps=("items", 2)),
    "amazon2023-bad-json": lambda t: Case(
        "amazon2023", _amazon2023(t, meta=[META_2023[0], "[1, 2]", META_2023[1]]),
        "meta_All_Beauty.jsonl", 2, None, "not a JSON object"),
    # missing required field
    "amazon2018-missing-overall": lambda t: Case(
        "amazon2018", _amazon2018(t, reviews=_with(REVIEWS_2018, 1, overall=None)),
        "Gift_Cards_5.json.gz", 2, "overall", "missing required field"),
    "amazon2018-missing-meta-asin": lambda t: Case(
        "amazon2018", _amazon2018(t, meta=_with(META_2018, 0, asin="")),
        "meta_Gift_Cards.json.gz", 1, "asin", "missing required field"),
    "amazon2023-missing-user": lambda t: Case(
        "amazon2023", _amazon2023(t, reviews=_with(REVIEWS_2023, 2, user_id=None)),
        "All_Beauty.jsonl", 3, "user_id", "missing required field"),
    "recbole-missing-item": lambda t: Case(
        "recbole", _recbole(t, inter=RB_INTER[:2] + ["186\t\t3\t891717742"] + RB_INTER[3:]),
        "ml-100k.inter", 3, "item_id", "missing required value"),
    "csv-missing-user": lambda t: Case(
        "csv", _csv(t, inter=CSV_INTER + [",i2,purchase,1,0"]), "interactions.csv", 5, "user_id",
        "missing required value"),
    # non-numeric rating
    "amazon2018-rating": lambda t: Case(
        "amazon2018", _amazon2018(t, reviews=_with(REVIEWS_2018, 2, overall="five stars")),
        "Gift_Cards_5.json.gz", 3, "overall", "not a number"),
    "amazon2023-rating": lambda t: Case(
        "amazon2023", _amazon2023(t, reviews=_with(REVIEWS_2023, 0, rating=[5])),
        "All_Beauty.jsonl", 1, "rating", "not a number"),
    "recbole-rating": lambda t: Case(
        "recbole", _recbole(t, inter=RB_INTER[:3] + ["22\t242\tone\t878887116"]),
        "ml-100k.inter", 4, "rating", "not a number"),
    "csv-rating": lambda t: Case(
        "csv", _csv(t, inter=CSV_INTER[:2] + ["u2,i2,rating,4 stars,1614592800"]),
        "interactions.csv", 3, "value", "not a number"),
    # duplicate ids (filtered: the first copy is kept, strict mode does not raise)
    "amazon2018-duplicate-asin": lambda t: Case(
        "amazon2018", _amazon2018(t, meta=META_2018 + [_with(META_2018, 0, title="again")[0]]),
        "meta_Gift_Cards.json.gz", 3, "asin", "first seen on line 1", error=False),
    "amazon2023-duplicate-review": lambda t: Case(
        "amazon2023", _amazon2023(t, reviews=REVIEWS_2023 + [REVIEWS_2023[1]]),
        "All_Beauty.jsonl", 4, "review_id", "same as line 2", error=False),
    "recbole-duplicate-item": lambda t: Case(
        "recbole", _recbole(t, item=RB_ITEM + ["242\tKolya (again)\t1996\tComedy"]),
        "ml-100k.item", 4, "item_id", "first seen on line 2", error=False),
    "kgat-duplicate-pair": lambda t: Case(
        "kgat", _kgat(t, train=("0 0 1 0", "1 2")), "train.txt", 1, "user,item", "duplicate pair", error=False),
    "csv-duplicate-item": lambda t: Case(
        "csv", _csv(t, items=CSV_ITEMS + ["i1,Mug again,1"]), "items.csv", 4, "item_id", "first seen on line 2",
        error=False),
    # unknown item id in an interaction (Amazon: a product without metadata is kept, see below)
    "recbole-unknown-item": lambda t: Case(
        "recbole", _recbole(t, inter=RB_INTER + ["196\t999\t2\t881250950"]),
        "ml-100k.inter", 5, "item_id", "unknown item"),
    "recbole-link-unknown-item": lambda t: Case(  # RecBole ignores such links: filtered
        "recbole", _recbole_link(t, ["item_id:token\tentity_id:token", "242\tm.1", "999\tm.9"]),
        "ml-100k.link", 3, "item_id", "unknown item", error=False, keeps=("item_entities", 1)),
    "kgat-unknown-item": lambda t: Case(
        "kgat", _kgat(t, test=("0 2", "1 0 3")), "test.txt", 2, "item", "unknown item"),
    "csv-unknown-item": lambda t: Case(
        "csv", _csv(t, inter=CSV_INTER[:3] + ["u2,i3,view,1,1614592801"]),
        "interactions.csv", 4, "item_id", "unknown item"),
    # a .gz that is plain text: strict stops; lenient reads the text (every row kept)
    "csv-gz-plain-text": lambda t: Case(
        "csv", _csv(t, ext=".csv.gz"), "interactions.csv.gz", 1, None, "not gzip-compressed",
        keeps=("interactions", 3)),
    "amazon2018-gz-plain-text": lambda t: Case(
        "amazon2018", _amazon2018(t, gz=False).joinpath("Gift_Cards_5.json").rename(t / "Gift_Cards_5.json.gz").parent,
        "Gift_Cards_5.json.gz", 1, None, "not gzip-compressed", keeps=("reviews", 3)),
    "csv-truncated-gzip": lambda t: Case(
        "csv", _truncate(_lines(t / "interactions.csv.gz", CSV_INTER[:1] + [f"u{i},i{i},view,1,{1614592800 + i}" for i in range(3000)],
                                gz=True), 0.5).parent,
        "interactions.csv.gz", None, None, "truncated or corrupt gzip"),
    # JSON nested 200,000 levels deep (Python's parser would raise RecursionError)
    "amazon2018-deep-json": lambda t: Case(
        "amazon2018", _amazon2018(t, reviews=[REVIEWS_2018[0], _deep(), REVIEWS_2018[2]]),
        "Gift_Cards_5.json.gz", 2, None, "nested too deeply", keeps=("reviews", 2)),
    "amazon2023-deep-json": lambda t: Case(
        "amazon2023", _amazon2023(t, meta=[META_2023[0], "[" * 200_000 + "]" * 200_000, META_2023[1]]),
        "meta_All_Beauty.jsonl", 2, None, "nested too deeply", keeps=("items", 2)),
    "amazon2018-huge-int": lambda t: Case(
        "amazon2018", _amazon2018(t, reviews=[REVIEWS_2018[0], '{"overall": ' + "9" * 5000 + "}"]),
        "Gift_Cards_5.json.gz", 2, None, "malformed JSON", keeps=("reviews", 1)),
    # timestamps out of range / not integral
    "amazon2018-time-1e20": lambda t: Case(
        "amazon2018", _amazon2018(t, reviews=_with(REVIEWS_2018, 1, unixReviewTime=1e20)),
        "Gift_Cards_5.json.gz", 2, "unixReviewTime", "timestamp out of range", keeps=("reviews", 2)),
    "amazon2018-time-1e19": lambda t: Case(
        "amazon2018", _amazon2018(t, reviews=_with(REVIEWS_2018, 2, unixReviewTime=10**19)),
        "Gift_Cards_5.json.gz", 3, "unixReviewTime", "timestamp out of range", keeps=("reviews", 2)),
    "amazon2018-time-negative": lambda t: Case(
        "amazon2018", _amazon2018(t, reviews=_with(REVIEWS_2018, 0, unixReviewTime=-86400)),
        "Gift_Cards_5.json.gz", 1, "unixReviewTime", "timestamp out of range", keeps=("reviews", 2)),
    "amazon2018-time-fraction": lambda t: Case(
        "amazon2018", _amazon2018(t, reviews=_with(REVIEWS_2018, 0, unixReviewTime=1529193600.5)),
        "Gift_Cards_5.json.gz", 1, "unixReviewTime", "not an integer", keeps=("reviews", 2)),
    "amazon2018-review-time-1968": lambda t: Case(  # no unixReviewTime: reviewTime is read
        "amazon2018", _amazon2018(t, reviews=_with(REVIEWS_2018, 1, unixReviewTime=None, reviewTime="06 14, 1968")),
        "Gift_Cards_5.json.gz", 2, "reviewTime", "timestamp out of range", keeps=("reviews", 2)),
    "amazon2023-time-1e20": lambda t: Case(
        "amazon2023", _amazon2023(t, reviews=_with(REVIEWS_2023, 1, timestamp=1e20 * 1000)),
        "All_Beauty.jsonl", 2, "timestamp", "timestamp out of range", keeps=("reviews", 2)),
    "csv-timestamp-1e300": lambda t: Case(
        "csv", _csv(t, inter=CSV_INTER[:2] + ["u2,i2,rating,4,1e300"] + CSV_INTER[3:]),
        "interactions.csv", 3, "timestamp", "timestamp out of range", keeps=("interactions", 2)),
    "csv-timestamp-9.2e21": lambda t: Case(
        "csv", _csv(t, inter=CSV_INTER[:2] + ["u2,i2,rating,4,9.2e21"] + CSV_INTER[3:]),
        "interactions.csv", 3, "timestamp", "timestamp out of range", keeps=("interactions", 2)),
    "csv-timestamp-inf": lambda t: Case(
        "csv", _csv(t, inter=CSV_INTER[:2] + ["u2,i2,rating,4,inf"] + CSV_INTER[3:]),
        "interactions.csv", 3, "timestamp", "not a finite number", keeps=("interactions", 2)),
    "csv-timestamp-1.5": lambda t: Case(
        "csv", _csv(t, inter=CSV_INTER[:2] + ["u2,i2,rating,4,1.5"] + CSV_INTER[3:]),
        "interactions.csv", 3, "timestamp", "not an integer", keeps=("interactions", 2)),
    "csv-timestamp-1e13-ms": lambda t: Case(  # milliseconds in the year 2286
        "csv", _csv(t, inter=CSV_INTER[:3] + ["u2,i1,view,1,10000000000000"]),
        "interactions.csv", 4, "timestamp", "timestamp out of range", keeps=("interactions", 2)),
    "csv-timestamp-1900": lambda t: Case(
        "csv", _csv(t, inter=CSV_INTER[:3] + ["u2,i1,view,1,1900-01-01"]),
        "interactions.csv", 4, "timestamp", "timestamp out of range", keeps=("interactions", 2)),
    "csv-timestamp-mapped": lambda t: Case(  # the field is named as in the source file
        "csv", _csv(t, inter=["user_id,item_id,ts"] + ["u1,i1,1614592800", "u2,i2,1e300", "u2,i1,1614592801"]),
        "interactions.csv", 3, "ts", "timestamp out of range", options={"mapping": "timestamp=ts"},
        keeps=("interactions", 2)),
    "parquet-timestamp-1e300": lambda t: Case(
        "csv", _parquet(t, timestamp=1e300), "interactions.parquet", 3, "timestamp", "timestamp out of range",
        keeps=("interactions", 2)),
    "parquet-timestamp-inf": lambda t: Case(
        "csv", _parquet(t, timestamp=math.inf), "interactions.parquet", 3, "timestamp", "not a finite number",
        keeps=("interactions", 2)),
    "parquet-timestamp-1.5": lambda t: Case(
        "csv", _parquet(t, timestamp=1.5), "interactions.parquet", 3, "timestamp", "not an integer",
        keeps=("interactions", 2)),
    "recbole-timestamp-1e300": lambda t: Case(
        "recbole", _recbole(t, inter=RB_INTER[:2] + ["186\t302\t3\t1e300"] + RB_INTER[3:]),
        "ml-100k.inter", 3, "timestamp", "timestamp out of range", keeps=("interactions", 2)),
    "recbole-timestamp-1e13-ms": lambda t: Case(  # milliseconds in the year 2286
        "recbole", _recbole(t, inter=RB_INTER[:2] + ["186\t302\t3\t10000000000000"] + RB_INTER[3:]),
        "ml-100k.inter", 3, "timestamp", "timestamp out of range", keeps=("interactions", 2)),
    "recbole-timestamp-inf": lambda t: Case(
        "recbole", _recbole(t, inter=RB_INTER[:2] + ["186\t302\t3\tinf"] + RB_INTER[3:]),
        "ml-100k.inter", 3, "timestamp", "not a number", keeps=("interactions", 2)),
    # prices: never infinite, never negative
    "csv-price-inf": lambda t: Case(
        "csv", _csv(t, items=CSV_ITEMS + ["i3,Pot,inf"]), "items.csv", 4, "price", "price out of range",
        keeps=("items", 2)),
    "csv-price-1e309": lambda t: Case(
        "csv", _csv(t, items=CSV_ITEMS + ["i3,Pot,1e309"]), "items.csv", 4, "price", "price out of range",
        keeps=("items", 2)),
    "csv-price-negative": lambda t: Case(
        "csv", _csv(t, items=CSV_ITEMS + ["i3,Pot,-4.5"]), "items.csv", 4, "price", "price out of range",
        keeps=("items", 2)),
    "recbole-price-negative": lambda t: Case(
        "recbole", _recbole(t, item=[RB_ITEM[0] + "\tprice:float", RB_ITEM[1] + "\t9.5", RB_ITEM[2] + "\t-1"]),
        "ml-100k.item", 3, "price", "price out of range"),
    # bytes that are not UTF-8: the row (strict: the error) names its line
    "csv-bad-utf8": lambda t: Case(
        "csv", _csv(t, items=CSV_ITEMS + [b"i3,Caf\xe9 cup,3"]), "items.csv", 4, "title", "not valid UTF-8",
        keeps=("items", 2)),
    "csv-bad-utf8-interactions": lambda t: Case(
        "csv", _csv(t, inter=CSV_INTER[:2] + [b"u\xff2,i2,rating,4,1614592800"] + CSV_INTER[3:]),
        "interactions.csv", 3, "user_id", "not valid UTF-8", keeps=("interactions", 2)),
    "recbole-bad-utf8": lambda t: Case(
        "recbole", _recbole(t, item=RB_ITEM + [b"303\tCaf\xe9\t1997\tDrama"]), "ml-100k.item", 4,
        "movie_title:token_seq", "not valid UTF-8", keeps=("items", 2)),  # the header's column name
    "kgat-bad-utf8": lambda t: Case(
        "kgat", _kgat_bad_utf8(t), "item_list.txt", 4, "org_id",
        "not valid UTF-8", keeps=("items", 2)),
    "amazon2018-bad-utf8": lambda t: Case(
        "amazon2018", _amazon2018(t, reviews=[REVIEWS_2018[0], json.dumps(REVIEWS_2018[1]).encode().replace(b"daughter", b"daught\xe9r"),
                                              REVIEWS_2018[2]]),
        "Gift_Cards_5.json.gz", 2, None, "not valid UTF-8", keeps=("reviews", 2)),
}


def _kgat_bad_utf8(tmp) -> Path:
    _kgat(tmp, train=("0 0 1",), test=("1 0",))
    _lines(tmp / "item_list.txt", KG_ITEMS[:3] + [b"03855\xff254X 2 m.0b6fj"])
    return tmp


@pytest.fixture(params=sorted(CASES))
def case(request, tmp_path) -> Case:
    return CASES[request.param](tmp_path)


def _matching(ds, c: Case):
    return [r for r in ds.report.rejects
            if Path(r.file).name == c.file and (c.line is None or r.line == c.line)
            and r.field == c.field and c.reason in r.reason]


def test_strict(case: Case):
    if not case.error:  # a filtered reject: the load succeeds and still reports it
        ds = loaders.load(case.source, case.path, **case.options)
        assert len(_matching(ds, case)) == 1
        return
    with pytest.raises(LoadError) as exc:
        loaders.load(case.source, case.path, **case.options)
    err, msg = exc.value, str(exc.value)
    assert Path(err.file).name == case.file and case.file in msg
    assert err.field == case.field and case.reason in msg
    if case.field:
        assert f"field '{case.field}'" in msg
    if case.line is not None:
        assert err.line == case.line and f", line {case.line}:" in msg
    else:  # truncation: the reject is the line after the last good one, named in the message
        assert f"everything after line {err.line - 1} (the last good line)" in msg
    assert msg.endswith("(run with --lenient (strict=False) to skip such records and get a reject report)")


def test_lenient(case: Case, tmp_path):
    ds = loaders.load(case.source, case.path, strict=False, **case.options)
    found = _matching(ds, case)
    assert len(found) == 1, ds.report.rejects
    assert found[0].error is case.error
    rep = ds.report
    assert rep.total_read == rep.total_kept + rep.total_rejected
    for f in rep.files.values():
        assert f.read == f.kept + f.rejected
    out = rep.write_rejects(tmp_path / "r.csv")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == len(rep.rejects)
    assert any(Path(r["file"]).name == case.file and r["field"] == (case.field or "")
               and case.reason in r["reason"] and r["error"] == str(int(case.error)) for r in rows)
    if case.keeps:
        table, n = case.keeps
        assert len(getattr(ds, table)) == n


def test_truncated_gzip_keeps_the_good_lines(tmp_path):
    c = CASES["amazon2018-truncated-gzip"](tmp_path)
    ds = loaders.load("amazon2018", c.path, strict=False)
    (reject,) = [r for r in ds.report.rejects if "gzip" in r.reason]
    good = reject.line - 1
    assert 0 < good < 400
    assert len(ds.reviews) == good  # every line before the break is kept
    f = ds.report.files[reject.file]
    assert (f.read, f.kept, f.rejected) == (good + 1, good, 1)


def test_not_gzip_at_all(tmp_path):
    path = _amazon2018(tmp_path)
    (path / "Gift_Cards_5.json.gz").write_bytes(b"\x1f\x8bthis is not gzip data")
    with pytest.raises(LoadError, match=r"Gift_Cards_5\.json\.gz, line 1: truncated or corrupt gzip"):
        loaders.load("amazon2018", path)


@pytest.mark.parametrize("strict", [True, False])
def test_amazon_products_without_metadata_are_kept(tmp_path, strict):
    """Not a reject, not an error: the review is kept and the product becomes an id-only item."""
    for source, path, item in [
        ("amazon2018", _amazon2018(tmp_path / "a", reviews=_with(REVIEWS_2018, 1, asin="B0NOTINMETA")), "B0NOTINMETA"),
        ("amazon2023", _amazon2023(tmp_path / "b", reviews=_with(REVIEWS_2023, 2, parent_asin="B0NOTINMETA")),
         "B0NOTINMETA"),
    ]:
        ds = loaders.load(source, path, strict=strict)
        rep = ds.report
        assert (rep.products_without_metadata, rep.reviews_without_metadata) == (1, 1)
        assert ds.items["item_id"].iloc[-1] == item and ds.items["title"].iloc[-1] == ""
        assert len(ds.reviews) == 3 and (ds.reviews["item_id"] == item).sum() == 1
        assert not any(r.error for r in rep.rejects)
        assert rep.total_read == rep.total_kept + rep.total_rejected


def test_timestamp_bounds_are_exclusive_at_the_top(tmp_path):
    inter = ["user_id,item_id,timestamp", "u1,i1,0", f"u1,i2,{MAX_TIMESTAMP - 1}", f"u2,i1,{MAX_TIMESTAMP}"]
    ds = loaders.load("csv", _csv(tmp_path, inter=inter), strict=False)
    assert ds.interactions["timestamp"].tolist() == [0, MAX_TIMESTAMP - 1]
    assert [(r.line, r.kind) for r in ds.report.rejects] == [(4, "timestamp out of range")]


def test_an_id_with_a_control_character_is_named_escaped_and_never_stored(tmp_path):
    """A NUL in a user id was kept, and later printed raw (``kgrec value``): the row is an error
    reject -- the reason and the reject CSV show the character escaped -- the counts add up, and
    a Dataset made some other way (the Python API) with such an id fails validation."""
    from loaders.dataset import Dataset, make_table
    from loaders.errors import DatasetError

    inter = CSV_INTER + ["u\x00x,i1,click,1,1614592802", "u3,\x1bi2 ,click,1,1614592803"]
    with pytest.raises(LoadError, match=r"interactions\.csv, line 5: field 'user_id': control character in an id: "
                                        r"'u\\x00x'"):
        loaders.load("csv", _csv(tmp_path, inter=inter))
    ds = loaders.load("csv", _csv(tmp_path, inter=inter), strict=False)
    assert [(r.line, r.field, r.reason, r.value) for r in ds.report.rejects] == [
        (5, "user_id", "control character in an id: 'u\\x00x'", "u\\x00x"),
        (6, "item_id", "control character in an id: '\\x1bi2'", "\\x1bi2")]
    f = ds.report.files[str(tmp_path / "interactions.csv")]
    assert (f.read, f.kept, f.rejected) == (5, 3, 2)
    assert not ds.interactions["user_id"].str.contains("\x00").any() and "u3" not in set(ds.users["user_id"])
    text = ds.report.write_rejects(tmp_path / "r.csv").read_text(encoding="utf-8")
    assert "\x00" not in text and "\x1b" not in text and "u\\x00x" in text
    bad = Dataset(name="api", users=make_table("users", {"user_id": ["u1", "u\x00x"]}))
    with pytest.raises(DatasetError, match=r"table 'users', column 'user_id', row 1: control character in an id"):
        bad.validate()
