"""Amazon Reviews 2018 loader: the real Gift Cards category, small inline files, text helpers."""

from __future__ import annotations

import csv
import gzip
import json
import math
import shutil
from pathlib import Path

import pytest

import loaders
from loaders.report import LoadError
from loaders.text import category_path, clean_lines, clean_text, fallback_title, has_markup, is_meaningful, parse_price

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


# ------------------------------------------------------------------ a category nobody here wrote

CAT_META = [
    {"asin": "M1", "title": "Acme Restaurant Gift Card", "brand": "Acme", "category": ["Gift Cards", "Restaurants"],
     "description": ["Good at every Acme."], "also_buy": ["NOMETA1", "B0GONE"], "price": "$25.00"},
    {"asin": "M2", "title": 'Starbucks Card <span class="a-size-medium a-color-secondary"',
     "brand": "Starbucks", "category": ["Gift Cards"]},
    {"asin": "M3", "title": '<div class="a-row"><span class="a-size-base a-color-secondary"></span></div>',
     "brand": "Acme", "category": ["Gift Cards", "Gift Cards"]},
    {"asin": "M4", "title": '<span class="a-size-medium a-color-secondary"', "brand": "", "category": [],
     "description": ["<p>A lovely card for every occasion, with free shipping and no fees at all.</p>"]},
    {"asin": "M5", "brand": "", "category": []},
    {"asin": "M1", "title": "Acme again"},  # a second meta line for M1 (filtered)
]


def _cat_reviews(n_duplicates: int) -> list:
    base = {"overall": 5.0, "verified": True, "reviewText": "Nice", "summary": "Five Stars"}
    reviews = [
        {**base, "reviewerID": "U1", "asin": "M1", "unixReviewTime": 1529193600, "reviewerName": "Ann"},
        {**base, "reviewerID": "U2", "asin": "M2", "unixReviewTime": 1529193601},
        {**base, "reviewerID": "U1", "asin": "NOMETA1", "unixReviewTime": 1529193602},
        {**base, "reviewerID": "U2", "asin": "NOMETA1", "unixReviewTime": 1529193603},
        {**base, "reviewerID": "U3", "asin": "NOMETA2", "unixReviewTime": 1529193604},
        {**base, "reviewerID": "U3", "asin": "M4", "unixReviewTime": 1529193605},
    ]
    return reviews + [dict(reviews[0]) for _ in range(n_duplicates)] + [dict(reviews[4])]


def test_real_world_category(tmp_path):
    _write(tmp_path / "meta_Toys_and_Games.json.gz", CAT_META)
    _write(tmp_path / "Toys_and_Games_5.json.gz", _cat_reviews(40))
    ds = loaders.load("amazon2018", tmp_path)  # strict: nothing here is an error
    rep = ds.report
    assert not any(r.error for r in rep.rejects)
    assert rep.total_read == rep.total_kept + rep.total_rejected

    # reviews of products without metadata are kept; the products are id-only items
    items = ds.items.set_index("item_id")
    assert list(items.index) == ["M1", "M2", "M3", "M4", "M5", "NOMETA1", "NOMETA2"]
    assert (rep.products_without_metadata, rep.reviews_without_metadata) == (2, 3)
    for iid in ("NOMETA1", "NOMETA2"):
        row = items.loc[iid]
        assert (row["title"], row["brand"], row["description"], row["categories"]) == ("", "", "", [])
        assert math.isnan(row["price"])
    assert (ds.reviews["item_id"] == "NOMETA1").sum() == 2 and (ds.interactions["item_id"] == "NOMETA2").sum() == 1
    # a link to a product known only from its reviews is kept; one to an unknown product is not
    assert ds.item_links.values.tolist() == [["M1", "NOMETA1", "also_buy"]]

    # titles: markup cleaned, meaningless ones fall back
    titles = items["title"].to_dict()
    assert titles["M1"] == "Acme Restaurant Gift Card"
    assert titles["M2"] == "Starbucks Card"                                # unclosed tag fragment removed
    assert titles["M3"] == "Acme — Gift Cards"                             # only markup: brand — leaf category
    assert titles["M4"] == "A lovely card for every occasion, with free…"  # only markup: the description's words
    assert titles["M5"] == "M5"                                            # nothing at all: the id
    assert (rep.titles_cleaned, rep.titles_fallback) == (3, 3)

    # rejects: full detail per record, one summary line per kind
    assert rep.reasons() == {"duplicate review": 41, "duplicate asin": 1, "link target not in the catalogue": 1}
    dups = [r for r in rep.rejects if r.kind == "duplicate review"]
    assert [r.line for r in dups] == list(range(7, 48))
    assert all(r.reason == "duplicate review: same as line 1, that one is kept" for r in dups[:-1])
    assert dups[-1].reason == "duplicate review: same as line 5, that one is kept"
    summary = rep.summary()
    reject_lines = [line for line in summary.splitlines() if line.strip().startswith("rejected")]
    assert reject_lines == ["  rejected 41: duplicate review (filtered)", "  rejected 1: duplicate asin (filtered)",
                            "  rejected 1: link target not in the catalogue (filtered)"]
    assert "  products without metadata (kept as id-only items): 2" in summary
    assert "  reviews of products without metadata (kept): 3" in summary
    assert "  titles cleaned of HTML markup: 3" in summary
    assert "titles replaced by a fallback name (brand — category, description or id): 3" in summary
    assert "is in the reject CSV" in summary
    assert "is in out/rejects.csv" in rep.summary(rejects_path="out/rejects.csv")
    assert len(summary.splitlines()) == 1 + 3 + 3 + 4 + 1  # header, 3 files, kinds, notes, hint
    rows = list(csv.DictReader(rep.write_rejects(tmp_path / "rejects.csv").open(encoding="utf-8")))
    last_dup = [r for r in rows if r["kind"] == "duplicate review"][-1]
    assert len(rows) == 43 and last_dup["line"] == "47" and "same as line 5" in last_dup["reason"]

    lenient = loaders.load("amazon2018", tmp_path, strict=False)
    assert lenient.sizes() == ds.sizes() and lenient.report.reasons() == rep.reasons()


def test_gift_cards_report_notes(gift_cards):
    rep = gift_cards.report
    # every reviewed product has metadata; no title is markup or meaningless
    assert (rep.products_without_metadata, rep.reviews_without_metadata) == (0, 0)
    assert (rep.titles_cleaned, rep.titles_fallback) == (0, 0)
    # four prices are scraped page markup (a <div>, CSS): unknown, and counted
    assert rep.notes() == {"prices not understood (kept as unknown)": 4}
    assert rep.summary().splitlines()[-3:] == [
        "  rejected 43,111: link target not in the catalogue (filtered)",
        "  prices not understood (kept as unknown): 4",
        "  each rejected row, with its line, field and value, is in the reject CSV (LoadReport.write_rejects)"]
    # <style> and <script> elements scraped into three features are dropped with their content
    features = gift_cards.items["features"].explode().dropna()
    assert not features.str.contains("text-decoration|P.when\\(", regex=True).any()
    assert (features == "Average Customer Review:\n4.6 out of 5 stars\n9 customer reviews").sum() == 1


def test_lone_surrogate_becomes_replacement_character(tmp_path):
    _write(tmp_path / "meta_Toy.json", [{"asin": "B1", "title": "Card"}])
    (tmp_path / "Toy_5.json").write_text(
        '{"overall": 5, "reviewerID": "U1", "asin": "B1", "reviewText": "love it \\ud83d", "summary": "ok \\ud83d\\ude00"}\n',
        encoding="utf-8")
    ds = loaders.load("amazon2018", tmp_path)
    assert ds.reviews["text"].iloc[0] == "love it \ufffd"
    assert ds.reviews["summary"].iloc[0] == "ok \U0001f600"  # a proper pair stays the emoji


@pytest.mark.parametrize("raw, clean, markup", [
    ('<span class="a-size-medium a-color-secondary"', "", True),
    ('Starbucks Card <span class="a-size-medium a-color-secondary"', "Starbucks Card", True),
    ('<div class="a"><span>Amazon Gift</span></div>', "Amazon Gift", True),
    ('class="a-size-medium">Real Title', "Real Title", True),
    ("<style>.a{color:red}</style>Title<script>var x = 1;</script>", "Title", True),
    ("<span", "", True),
    ("Size < 5 and > 2", "Size < 5 and > 2", False),
    ("I love it <3", "I love it <3", False),
    ('12" > 10"', '12" > 10"', False),
    ("Dave &amp; Buster&#39;s", "Dave & Buster's", False),
])
def test_clean_text_markup(raw, clean, markup):
    assert clean_text(raw) == clean
    assert has_markup(raw) is markup


def test_fallback_title():
    assert fallback_title("B1", "Acme", ["Gift Cards > Restaurants"], "ignored") == "Acme — Restaurants"
    assert fallback_title("B1", "Acme", [], "A card") == "Acme"
    assert fallback_title("B1", "", [], "one two three four five six seven eight nine") == \
        "one two three four five six seven eight…"
    assert fallback_title("B1", "", [], "short text") == "short text"
    assert fallback_title("B1", "", ["Gift Cards"], "") == "Gift Cards"
    assert fallback_title("B1", "--", [], " . ") == "B1"
    assert is_meaningful("Ü") and not is_meaningful(" - … ")


def test_parse_price_never_infinite():
    assert math.isnan(parse_price("9" * 400)) and math.isnan(parse_price(float("inf")))
    assert math.isnan(parse_price(1e309)) and math.isnan(parse_price(-0.5))


# ------------------------------------------------------------------ older and trimmed copies


def test_review_time_when_no_unix_review_time(tmp_path):
    """Trimmed or 2014-style copies have only ``reviewTime``: read as midnight UTC, counted."""
    _write(tmp_path / "meta_Toy.json.gz", [{"asin": "B1", "title": "Card"}])
    base = {"overall": 5.0, "reviewerID": "U1", "asin": "B1", "summary": "ok"}
    _write(tmp_path / "Toy_5.json.gz", [
        {**base, "reviewTime": "06 17, 2018", "unixReviewTime": 1529193600},
        {**base, "reviewTime": "06 17, 2018", "summary": "again"},   # same day: same key, a second review
        {**base, "reviewTime": "6 7, 2018"},
        {**base, "reviewTime": "yesterday", "reviewerID": "U2"},
        {**base, "reviewerID": "U3"},
    ])
    ds = loaders.load("amazon2018", tmp_path)
    assert ds.reviews["timestamp"].tolist() == [1529193600, 1529193600, 1528329600, 0, 0]
    assert ds.reviews["review_id"].tolist()[:3] == ["U1|B1|1529193600", "U1|B1|1529193600#2", "U1|B1|1528329600"]
    assert len(ds.interactions) == 4
    assert ds.report.notes() == {"review times read from reviewTime (no unixReviewTime)": 2,
                                 "reviews without a time (kept with timestamp 0)": 2}
    assert not ds.report.rejects


def test_review_time_out_of_range_is_an_error(tmp_path):
    _write(tmp_path / "meta_Toy.json", [{"asin": "B1", "title": "Card"}])
    _write(tmp_path / "Toy_5.json", [{"overall": 5.0, "reviewerID": "U1", "asin": "B1", "reviewTime": "06 17, 1968"}])
    with pytest.raises(LoadError, match=r"Toy_5\.json, line 1: field 'reviewTime': timestamp out of range"):
        loaders.load("amazon2018", tmp_path)


def test_prices_not_understood_are_counted(tmp_path):
    css = ".a-box-inner{background-color:#fff}#alohaBuyBoxWidget .selected{background-color:#fffbf3}"
    _write(tmp_path / "meta_Toy.json.gz", [{"asin": "B1", "title": "A", "price": css},
                                           {"asin": "B2", "title": "B", "price": ""},
                                           {"asin": "B3", "title": "C", "price": "$1.00 - $5.00"},
                                           {"asin": "B4", "title": "D"},
                                           {"asin": "B1", "title": "again", "price": css}])  # filtered
    _write(tmp_path / "Toy_5.json.gz",
           [{"overall": 5.0, "reviewerID": "U1", "asin": "B3", "unixReviewTime": 1529193600}])
    ds = loaders.load("amazon2018", tmp_path)
    prices = ds.items.set_index("item_id")["price"]
    assert prices.isna().tolist() == [True, True, False, True] and prices["B3"] == 1.0
    assert ds.report.notes() == {"prices not understood (kept as unknown)": 1}


def test_2014_meta_written_as_python_literals(tmp_path):
    """McAuley's 2014 metadata is Python's repr of a dict, not JSON: read as a literal, counted."""
    _write(tmp_path / "meta_Gift_Cards.json.gz", [
        "{'asin': 'B004LLIKVU', 'title': ' Amazon eGift Card', 'categories': [['Gift Cards', 'Gift Cards']], "
        "'related': {'also_bought': []}}",
        "{'asin': 'B004Q7CK9M', 'title': \"Amazon.com Gift Card in a Greeting Card (Mom's Design)\", 'price': 40.0, "
        "'brand': 'Amazon', 'categories': [['Gift Cards', 'Gift Cards']]}",
        "{'asin': 'B00BROKEN1', 'title': oops}",   # still not a record
    ])
    _write(tmp_path / "reviews_Gift_Cards_5.json.gz", [
        REVIEWS[0] | {"asin": "B004LLIKVU"},
        "{'overall': 4.0, 'reviewerID': 'U2', 'asin': 'B004Q7CK9M', 'unixReviewTime': 1529193601, 'summary': 'ok'}",
    ])
    with pytest.raises(LoadError, match=r"meta_Gift_Cards\.json\.gz, line 3: malformed JSON"):
        loaders.load("amazon2018", tmp_path)
    ds = loaders.load("amazon2018", tmp_path, strict=False)
    items = ds.items.set_index("item_id")
    assert list(items.index) == ["B004LLIKVU", "B004Q7CK9M"]
    assert items.loc["B004Q7CK9M", "title"] == "Amazon.com Gift Card in a Greeting Card (Mom's Design)"
    assert (items.loc["B004Q7CK9M", "brand"], items.loc["B004Q7CK9M", "price"]) == ("Amazon", 40.0)
    assert ds.reviews["rating"].tolist() == [5.0, 4.0]
    assert ds.report.notes() == {"lines read as Python literals (the 2014 format)": 3}
    assert [(r.line, r.kind) for r in ds.report.rejects] == [(3, "malformed JSON")]


def test_2014_categories_and_related_links(tmp_path):
    """The 2014 release keeps several category paths in ``categories`` and the links in
    ``related``: each path is one category, also_bought / also_viewed / bought_together links."""
    _write(tmp_path / "meta_Books.json.gz", [
        "{'asin': 'A1', 'title': 'One', 'categories': [['Books', 'Mystery'], ['Books', 'Mystery'], "
        "['Kindle Store', 'Thrillers']], 'related': {'also_bought': ['A2', 'ZZ'], 'also_viewed': ['A2'], "
        "'bought_together': ['A2'], 'buy_after_viewing': ['A2']}}",
        "{'asin': 'A2', 'title': 'Two', 'categories': [[]], 'salesRank': {'Books': 5}}",
    ])
    _write(tmp_path / "reviews_Books_5.json.gz", [REVIEWS[0] | {"asin": "A1"}, REVIEWS[0] | {"asin": "A2"}])
    ds = loaders.load("amazon2018", tmp_path, strict=False)
    items = ds.items.set_index("item_id")
    assert items.loc["A1", "categories"] == ["Books > Mystery", "Kindle Store > Thrillers"]
    assert items.loc["A2", "categories"] == []
    links = sorted(map(tuple, ds.item_links[["src_item", "relation", "dst_item"]].to_numpy().tolist()))
    assert links == [("A1", "also_buy", "A2"), ("A1", "also_view", "A2"), ("A1", "bought_together", "A2")]
    assert [r.value for r in ds.report.rejects] == ["ZZ"]  # outside the catalogue: filtered


def test_several_reviews_files_names_both_spellings(tmp_path):
    _write(tmp_path / "meta_Gift_Cards.json.gz", META)
    _write(tmp_path / "All_Beauty_5.json.gz", REVIEWS)
    _write(tmp_path / "Gift_Cards_5.json.gz", REVIEWS)
    with pytest.raises(LoadError) as exc:
        loaders.load("amazon2018", tmp_path)
    msg = str(exc.value)
    assert "several reviews files (All_Beauty_5.json.gz, Gift_Cards_5.json.gz)" in msg
    assert "-o reviews=PATH on the command line" in msg and "reviews=PATH from Python" in msg
    ds = loaders.load("amazon2018", tmp_path, reviews=tmp_path / "Gift_Cards_5.json.gz")
    assert len(ds.reviews) == 3


# ------------------------------------------------------------------ odd field types, ratings, deltas


def test_numbers_where_text_belongs_are_read_as_text(tmp_path):
    """A numeric brand, title or review text has a clear meaning: its text (it used to become
    "" without a word); counted in the notes."""
    _write(tmp_path / "meta_Toy.json", [
        {"asin": "B1", "title": 1984, "brand": 123, "category": ["Books"], "description": ["Orwell", 2.5],
         "feature": 7},
        {"asin": "B2", "title": "Plain", "brand": "Acme", "category": ["Books"]},
    ])
    _write(tmp_path / "Toy_5.json", [
        {"overall": 5, "reviewerID": "U1", "asin": "B1", "reviewText": 123, "summary": 4.0,
         "reviewerName": "Ann", "unixReviewTime": 1529193600},
        {"overall": 4, "reviewerID": "U2", "asin": "B2", "reviewText": "fine", "unixReviewTime": 1529193601},
    ])
    ds = loaders.load("amazon2018", tmp_path)
    b1 = ds.items.set_index("item_id").loc["B1"]
    assert (b1["title"], b1["brand"], b1["description"], b1["features"]) == ("1984", "123", "Orwell\n2.5", ["7"])
    first = ds.reviews.iloc[0]
    assert (first["text"], first["summary"]) == ("123", "4")
    assert ds.report.notes() == {"numbers read as text (a brand, title, review text … written as a number)": 2}


@pytest.mark.parametrize("category, paths", [
    ([["Gift Cards", "Nested"]], ["Gift Cards > Nested"]),             # one level deeper than the format
    ([[["Gift Cards", "Deeper"]]], ["Gift Cards > Deeper"]),
    ([["Books", "Mystery"], ["Books", "Mystery"], ["Kindle Store"]], ["Books > Mystery", "Kindle Store"]),
    ([["Books", "Mystery"], []], ["Books > Mystery"]),
    ([[]], []),
    (["Gift Cards", 2018], ["Gift Cards > 2018"]),
])
def test_category_nested_deeper_is_flattened(tmp_path, category, paths):
    _write(tmp_path / "meta_Toy.json", [{"asin": "B1", "title": "Card", "category": category}])
    _write(tmp_path / "Toy_5.json", [REVIEWS[0] | {"asin": "B1"}])
    ds = loaders.load("amazon2018", tmp_path)
    assert ds.items.set_index("item_id").loc["B1", "categories"] == paths
    assert "categories not understood (product kept without them)" not in ds.report.notes()


@pytest.mark.parametrize("category", [{"main": "Gift Cards"}, ["Gift Cards", ["Nested"]], True,
                                      [["Gift Cards"], {"x": 1}]])
def test_category_not_understood_is_counted(tmp_path, category):
    _write(tmp_path / "meta_Toy.json", [{"asin": "B1", "title": "Card", "category": category}])
    _write(tmp_path / "Toy_5.json", [REVIEWS[0] | {"asin": "B1"}])
    ds = loaders.load("amazon2018", tmp_path)
    assert ds.items.set_index("item_id").loc["B1", "categories"] == []
    assert ds.report.notes() == {"categories not understood (product kept without them)": 1}


def test_ratings_outside_1_to_5_are_errors(tmp_path):
    """``overall`` is 1 to 5 stars: a 6, a 0 or a -1 is no rating the release holds (it was
    kept as given, a 0 below every real rating)."""
    _write(tmp_path / "meta_Toy.json", [{"asin": "B1", "title": "Card"}])
    _write(tmp_path / "Toy_5.json", [
        {"overall": 1, "reviewerID": "U1", "asin": "B1", "unixReviewTime": 1529193600},
        {"overall": 6, "reviewerID": "U2", "asin": "B1", "unixReviewTime": 1529193600},
        {"overall": 4.5, "reviewerID": "U3", "asin": "B1", "unixReviewTime": 1529193600},
        {"overall": "0", "reviewerID": "U4", "asin": "B1", "unixReviewTime": 1529193600},
        {"overall": -1.0, "reviewerID": "U5", "asin": "B1", "unixReviewTime": 1529193600},
        {"overall": 5.0, "reviewerID": "U6", "asin": "B1", "unixReviewTime": 1529193600},
    ])
    with pytest.raises(LoadError, match=r"Toy_5\.json, line 2: field 'overall': not a star rating \(1 to 5\): 6"):
        loaders.load("amazon2018", tmp_path)
    ds = loaders.load("amazon2018", tmp_path, strict=False)
    assert ds.reviews["rating"].tolist() == [1.0, 4.5, 5.0]
    assert ds.interactions["value"].between(1, 5).all()
    assert [(r.line, r.field, r.value) for r in ds.report.rejects] == [(2, "overall", "6"), (4, "overall", "0"),
                                                                       (5, "overall", "-1.0")]
    f = ds.report.files[str(tmp_path / "Toy_5.json")]
    assert (f.read, f.kept, f.rejected) == (6, 3, 3)
    assert ds.report.reasons() == {"not a star rating (1 to 5)": 3}


def test_a_delta_does_not_call_stored_products_id_only(tmp_path):
    """Read for ``kgrec ingest`` (``delta=True``), reviews of products without a metadata line
    are not "kept as id-only items": ingest keeps a product the store holds as it is and
    rejects the reviews of one it lacks. The tables are the same either way."""
    _write(tmp_path / "meta_Toy.json", [{"asin": "NEW1", "title": "New card"}])
    _write(tmp_path / "Toy_5.json", [REVIEWS[0] | {"asin": "OLD1"}, REVIEWS[1] | {"asin": "OLD2"},
                                     REVIEWS[2] | {"asin": "OLD1"}, REVIEWS[0] | {"asin": "NEW1"}])
    build = loaders.load("amazon2018", tmp_path)
    assert (build.report.products_without_metadata, build.report.reviews_without_metadata) == (2, 3)
    delta = loaders.load("amazon2018", tmp_path, delta=True)
    assert (delta.report.products_without_metadata, delta.report.reviews_without_metadata) == (0, 0)
    assert delta.report.notes() == {
        "reviewed products without a metadata line in this delta (ingest keeps a stored one as it is and rejects "
        "the reviews of one the store lacks)": 2}
    assert "kept as id-only items" not in delta.report.summary()
    assert delta.sizes() == build.sizes()
