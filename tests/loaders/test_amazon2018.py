"""Amazon Reviews 2018 loader: the real Gift Cards category, small inline files, text helpers."""

from __future__ import annotations

import gzip
import json
import math
import shutil
from pathlib import Path

import pytest

import loaders
from loaders.report import LoadError
from loaders.text import category_path, clean_lines, clean_text, parse_price

_CACHE: dict[str, loaders.Dataset] = {}


@pytest.fixture
def gift_cards(gift_cards_dir: Path) -> loaders.Dataset:
    """The real Gift Cards data, loaded once per test session."""
    key = str(gift_cards_dir)
    if key not in _CACHE:
        _CACHE[key] = loaders.load("amazon2018", gift_cards_dir)
    return _CACHE[key]


# ------------------------------------------------------------------ real data (Gift Cards)


def test_gift_cards_counts(gift_cards, gift_cards_dir):
    ds = gift_cards
    assert ds.name == "amazon2018-Gift_Cards"
    assert len(ds.items) == 1547
    assert len(ds.users) == 458
    assert ds.reviews["item_id"].nunique() == 148
    rep = ds.report
    reviews_file = str(gift_cards_dir / "Gift_Cards_5.json.gz")
    meta_file = str(gift_cards_dir / "meta_Gift_Cards.json.gz")
    assert rep.files[reviews_file].read == 2972
    assert rep.files[meta_file].read == rep.files[meta_file].kept == 1547
    # three reviewer/asin/day keys occur twice with different texts: both reviews are kept
    # (the second as "…#2"), and they make one interaction each pair
    assert rep.files[reviews_file].kept == 2972
    assert not [r for r in rep.rejects if r.file == reviews_file]
    assert len(ds.reviews) == 2972 and len(ds.interactions) == 2969
    second = ds.reviews[ds.reviews["review_id"].str.endswith("#2")]
    assert len(second) == 3 and second["review_id"].str.startswith("A1Z1JLCLHI6T5E|B00KV30IHG|").sum() == 1
    assert rep.total_read == rep.total_kept + rep.total_rejected
    assert not any(r.error for r in rep.rejects)


def test_gift_cards_interactions_and_reviews(gift_cards):
    ds = gift_cards
    assert set(ds.interactions["event"]) == {"review"}
    assert set(ds.interactions["split"]) == {""}
    firsts = ds.reviews[~ds.reviews["review_id"].str.contains("#")].reset_index(drop=True)
    assert (ds.interactions["value"] == firsts["rating"]).all()
    assert ds.interactions["value"].between(1, 5).all()
    first = ds.reviews.iloc[0]
    assert first["review_id"] == "A31UBHTUUIFJUT|B004LLIKVU|1529193600"
    assert (first["user_id"], first["item_id"], first["rating"]) == ("A31UBHTUUIFJUT", "B004LLIKVU", 5.0)
    assert (first["summary"], first["text"], first["timestamp"]) == ("Five Stars", "Another great gift.", 1529193600)
    names = ds.users.set_index("user_id")["name"]
    assert names["A31UBHTUUIFJUT"] == "john stoiber"


def test_gift_cards_items(gift_cards):
    items = gift_cards.items.set_index("item_id")
    pack = items.loc["B001H53QE4"]
    assert pack["title"] == "Amazon.com Gift Cards, Pack of 50 (Old Version) (Classic White Card Design)"
    assert pack["brand"] == "Amazon"
    assert pack["price"] == 1250.0
    assert pack["categories"] == ["Gift Cards"]
    assert "<" not in pack["description"] and "individual gift cards." in pack["description"]
    assert pack["features"][0] == "Contains 50 Gift Cards"
    # entities decoded: the raw title is " Maggiano&#39;s Gift Card"
    assert "Maggiano's Gift Card" in set(items["title"])
    assert not items["title"].str.contains("&#39;|&amp;|&gt;", regex=True).any()
    assert not items["description"].str.contains("<br", regex=False).any()
    # a category list polluted with feature bullets is cut to its real path
    assert set(map(tuple, items["categories"])) == {("Gift Cards",), ("Gift Cards > Gift Card Accessories",), ()}
    assert items["price"].notna().sum() == 358 and (items["price"].dropna() > 0).all()
    assert math.isnan(items.loc["B001BKEWF2", "price"])  # price "" -> NaN


def test_gift_cards_links(gift_cards, gift_cards_dir):
    links = gift_cards.item_links
    counts = links["relation"].value_counts().to_dict()
    assert counts == {"also_view": 6675, "also_buy": 5993}
    assert links["dst_item"].isin(gift_cards.items["item_id"]).all()
    assert (links["src_item"] != links["dst_item"]).all()
    rep = gift_cards.report
    buy = rep.files[str(gift_cards_dir / "meta_Gift_Cards.json.gz") + "#also_buy"]
    assert (buy.read, buy.kept, buy.rejected) == (21681, 5993, 15688)
    assert rep.reasons()["link target not in the catalogue"] == 15688 + 27423


def test_explicit_files_and_file_path(gift_cards_dir, tmp_path):
    a = loaders.load("amazon2018", None, reviews=gift_cards_dir / "Gift_Cards_5.json.gz",
                     meta=gift_cards_dir / "meta_Gift_Cards.json.gz")
    b = loaders.load("amazon2018", gift_cards_dir / "Gift_Cards_5.json.gz")
    assert a.sizes() == b.sizes()
    # the same data with the reviews uncompressed
    with gzip.open(gift_cards_dir / "Gift_Cards_5.json.gz") as src, (tmp_path / "Gift_Cards_5.json").open("wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(gift_cards_dir / "meta_Gift_Cards.json.gz", tmp_path)
    c = loaders.load("amazon2018", tmp_path)
    assert c.sizes() == a.sizes()


# ------------------------------------------------------------------ small inline files


def _write(path: Path, records: list) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


META = [
    {"category": ["Gift Cards", "Gift Cards"], "description": ["<div>Good at <b>Dave &amp; Buster&#39;s</b><br>all locations.</div>", ""],
     "title": " Dave &amp; Buster&#39;s Gift Card", "also_buy": ["B2", "B9", "B1"], "brand": "Dave &amp; Buster's",
     "feature": ["No fees", "  "], "also_view": ["B2", "B2"], "main_cat": "Gift Cards", "price": "$10.00 - $20.00", "asin": "B1"},
    {"category": [], "description": "one string", "title": "Second", "also_buy": [], "brand": "",
     "feature": [], "also_view": ["B1"], "main_cat": "Grocery", "price": "", "asin": "B2"},
    {"category": ["Gift Cards"], "title": "Second again", "price": "$5.00", "asin": "B2"},
]
REVIEWS = [
    {"overall": 5.0, "verified": True, "reviewerID": "U1", "asin": "B1", "reviewerName": "Ann",
     "reviewText": "Great &amp; fun", "summary": "Five Stars", "unixReviewTime": 1529193600},
    {"overall": 4, "reviewerID": "U2", "asin": "B2", "summary": "ok", "unixReviewTime": 1529193601},
    {"overall": "3", "reviewerID": "U1", "asin": "B2", "reviewerName": "", "unixReviewTime": 1529193602},
]


def test_small_files_mapping(tmp_path):
    _write(tmp_path / "meta_Toy.json.gz", META)
    _write(tmp_path / "Toy_5.json.gz", REVIEWS)
    ds = loaders.load("amazon2018", tmp_path)
    items = ds.items.set_index("item_id")
    assert list(items.index) == ["B1", "B2"]
    b1 = items.loc["B1"]
    assert b1["title"] == "Dave & Buster's Gift Card"
    assert b1["brand"] == "Dave & Buster's"
    assert b1["description"] == "Good at Dave & Buster's\nall locations."
    assert b1["categories"] == ["Gift Cards"] and b1["features"] == ["No fees"]
    assert b1["price"] == 10.0
    b2 = items.loc["B2"]
    assert (b2["title"], b2["description"], b2["categories"]) == ("Second", "one string", [])
    assert math.isnan(b2["price"])
    links = {tuple(r) for r in ds.item_links.itertuples(index=False)}
    assert links == {("B1", "B2", "also_buy"), ("B1", "B2", "also_view"), ("B2", "B1", "also_view")}
    reasons = ds.report.reasons()
    assert reasons["link target not in the catalogue"] == 1
    assert reasons["self-link"] == 1 and reasons["duplicate link"] == 1
    dup = [r for r in ds.report.rejects if r.file.endswith("meta_Toy.json.gz")]
    assert [(r.line, r.field, r.error) for r in dup] == [(3, "asin", False)]
    assert "first seen on line 2" in dup[0].reason
    assert ds.users.set_index("user_id")["name"].to_dict() == {"U1": "Ann", "U2": ""}
    assert ds.reviews["rating"].tolist() == [5.0, 4.0, 3.0]
    assert ds.reviews["text"].iloc[0] == "Great &amp; fun"  # review text is kept as written


def test_missing_meta_file_is_an_error(tmp_path):
    _write(tmp_path / "Toy_5.json", REVIEWS)
    with pytest.raises(LoadError, match="no meta file"):
        loaders.load("amazon2018", tmp_path)


# ------------------------------------------------------------------ text helpers


@pytest.mark.parametrize("raw, price", [
    ("$12.99", 12.99), ("$1,250.00", 1250.0), ("$10.00 - $20.00", 10.0), ("12", 12.0), (7, 7.0),
    (3.5, 3.5), ("", math.nan), (None, math.nan), ("free", math.nan), (-1, math.nan),
    ("<div class=\"a-section\">", math.nan), (True, math.nan),
])
def test_parse_price(raw, price):
    got = parse_price(raw)
    assert (math.isnan(got) and math.isnan(price)) or got == price


@pytest.mark.parametrize("levels, path", [
    (["Gift Cards", "Gift Cards"], "Gift Cards"),
    (["Electronics", "Audio", "Audio", "Headphones"], "Electronics > Audio > Headphones"),
    (["Gift Cards", "Gift Cards", "No expiration, no fees.", "Variety of designs"], "Gift Cards"),
    (["Gift Cards", "Gift Cards", "</span></span></span>", "Starbucks"], "Gift Cards"),
    (["Home &amp; Kitchen"], "Home & Kitchen"), ([], ""), (None, ""), ("Books", "Books"),
])
def test_category_path(levels, path):
    assert category_path(levels) == path


def test_clean_text():
    assert clean_text("  A &lt;b&gt; <i>c</i>\n d ") == "A <b> c d"
    assert clean_text(None) == "" and clean_text(3) == ""
    assert clean_text("Size < 5 and > 2") == "Size < 5 and > 2"
    assert clean_text("<p>one</p><p>two</p>", multiline=True) == "one\ntwo"
    assert clean_lines(["a", "", None, "<br>"]) == ["a"]
