"""Amazon Reviews 2023 loader, on a small generated category in the 2023 JSONL layout."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import pytest

import loaders
from loaders.report import LoadError


def _meta(parent: str, rng: random.Random, **over) -> dict:
    """A product line shaped like meta_<Category>.jsonl of the 2023 release."""
    rec = {
        "main_category": "All Beauty",
        "title": f"Howard LC0008 Leather Conditioner, 8-Ounce ({parent})",
        "average_rating": round(rng.uniform(1, 5), 1),
        "rating_number": rng.randint(1, 500),
        "features": ["Restores &amp; protects leather", "8 oz bottle"],
        "description": ["<p>Conditions leather.</p>", "Made in USA"],
        "price": round(rng.uniform(3, 40), 2),
        "images": [{"thumb": "https://m.media-amazon.com/images/I/41.jpg", "variant": "MAIN"}],
        "videos": [],
        "store": "Howard Products",
        "categories": ["Beauty & Personal Care", "Skin Care", "Body", "Moisturizers"],
        "details": {"Item Form": "Liquid", "Brand": "Howard", "Package Dimensions": "7 x 3 x 2 inches"},
        "parent_asin": parent,
        "bought_together": None,
    }
    rec.update(over)
    return rec


def _review(user: str, parent: str, ts_ms: int, rng: random.Random, **over) -> dict:
    """A review line shaped like <Category>.jsonl of the 2023 release."""
    rec = {
        "rating": float(rng.randint(1, 5)),
        "title": "Such a lovely scent but not overpowering.",
        "text": "This spray is really nice. It smells really good.<br />Recommend!",
        "images": [],
        "asin": parent.replace("P", "V"),  # a variant of the parent product
        "parent_asin": parent,
        "user_id": user,
        "timestamp": ts_ms,
        "helpful_vote": rng.randint(0, 10),
        "verified_purchase": rng.random() < 0.9,
    }
    rec.update(over)
    return rec


def write_category(folder: Path, *, name: str = "All_Beauty", gz: bool = True, n_items: int = 20,
                   n_users: int = 30, seed: int = 0, extra_meta: list | None = None,
                   extra_reviews: list | None = None) -> tuple[Path, Path]:
    """Generate a small, realistic 2023 category: every user reviews 2-5 distinct products."""
    rng = random.Random(seed)
    parents = [f"B0P{i:07d}" for i in range(n_items)]
    meta = [_meta(p, rng) for p in parents]
    meta[1].update(store=None)                             # brand falls back to details["Brand"]
    meta[2].update(categories=[], main_category="Tools")   # categories fall back to main_category
    meta[3].update(price=None)
    meta[4].update(price="$12.50")
    meta[5].update(bought_together=[parents[6], parents[5], "B0NOTHERE0"])
    reviews = []
    for u in range(n_users):
        for p in rng.sample(parents, rng.randint(2, 5)):
            reviews.append(_review(f"AG{u:026d}", p, 1_588_687_728_923 + rng.randint(0, 10**9), rng))
    meta += extra_meta or []
    reviews += extra_reviews or []
    ext = ".jsonl.gz" if gz else ".jsonl"
    paths = folder / f"{name}{ext}", folder / f"meta_{name}{ext}"
    for path, recs in zip(paths, (reviews, meta)):
        text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in recs)
        if gz:
            with gzip.open(path, "wt", encoding="utf-8") as fh:
                fh.write(text)
        else:
            path.write_text(text, encoding="utf-8")
    return paths


@pytest.mark.parametrize("gz", [True, False])
def test_generated_category(tmp_path, gz):
    reviews_file, meta_file = write_category(tmp_path, gz=gz)
    ds = loaders.load("amazon2023", tmp_path)
    assert ds.name == "amazon2023-All_Beauty"
    n_reviews = sum(1 for _ in (gzip.open if gz else open)(reviews_file, "rt"))
    assert len(ds.items) == 20 and len(ds.users) == 30
    assert len(ds.reviews) == len(ds.interactions) == n_reviews
    assert set(ds.interactions["event"]) == {"review"}
    assert (ds.interactions["timestamp"] // 10**9 == 1).all()  # seconds, not ms
    assert ds.reviews["item_id"].str.startswith("B0P").all()   # parent_asin, not the variant
    assert set(ds.users["name"]) == {""}
    rep = ds.report
    assert rep.total_read == rep.total_kept + rep.total_rejected
    assert rep.files[str(reviews_file)].kept == n_reviews


def test_item_mapping(tmp_path):
    write_category(tmp_path)
    items = loaders.load("amazon2023", tmp_path).items.set_index("item_id")
    first = items.loc["B0P0000000"]
    assert first["brand"] == "Howard Products"
    assert first["categories"] == ["Beauty & Personal Care > Skin Care > Body > Moisturizers"]
    assert first["features"] == ["Restores & protects leather", "8 oz bottle"]
    assert first["description"] == "Conditions leather.\nMade in USA"
    assert first["title"].startswith("Howard LC0008 Leather Conditioner")
    assert items.loc["B0P0000001", "brand"] == "Howard"
    assert items.loc["B0P0000002", "categories"] == ["Tools"]
    assert math.isnan(items.loc["B0P0000003", "price"])
    assert items.loc["B0P0000004", "price"] == 12.5
    assert 3 <= items.loc["B0P0000000", "price"] <= 40


def test_bought_together_links(tmp_path):
    write_category(tmp_path)
    ds = loaders.load("amazon2023", tmp_path)
    assert ds.item_links.to_dict("records") == [
        {"src_item": "B0P0000005", "dst_item": "B0P0000006", "relation": "bought_together"}]
    reasons = ds.report.reasons()
    assert reasons == {"self-link": 1, "link target not in the catalogue": 1}
    assert not any(r.error for r in ds.report.rejects)


def test_review_fields(tmp_path):
    rng = random.Random(1)
    extra = [
        _review("U_FALLBACK", "B0P0000001", 1_600_000_000_999, rng, parent_asin=None, asin="B0P0000001"),
        _review("U_STRRATING", "B0P0000002", 1_600_000_001_000, rng, rating="4"),
    ]
    write_category(tmp_path, extra_reviews=extra)
    ds = loaders.load("amazon2023", tmp_path)
    rev = ds.reviews.set_index("user_id")
    assert rev.loc["U_FALLBACK", "item_id"] == "B0P0000001"
    assert rev.loc["U_FALLBACK", "timestamp"] == 1_600_000_000
    assert rev.loc["U_FALLBACK", "review_id"] == "U_FALLBACK|B0P0000001|1600000000"
    assert rev.loc["U_STRRATING", "rating"] == 4.0
    assert rev.loc["U_STRRATING", "summary"] == "Such a lovely scent but not overpowering."


def test_rejects_strict_and_lenient(tmp_path):
    rng = random.Random(2)
    first = _review("U1", "B0P0000001", 1_600_000_000_000, rng)
    extra_reviews = [
        first,
        {**first, "timestamp": 1_600_000_000_500},                        # same review again -> duplicate
        _review("U2", "B0UNKNOWN1", 1_600_000_000_000, rng),              # not in meta -> id-only item
        _review("U3", "B0P0000001", 1_600_000_000_000, rng, rating="five"),  # error
    ]
    extra_meta = [_meta("B0P0000003", rng, title="dup")]                 # duplicate parent_asin
    reviews_file, meta_file = write_category(tmp_path, extra_reviews=extra_reviews, extra_meta=extra_meta)
    n = sum(1 for _ in gzip.open(reviews_file, "rt"))
    with pytest.raises(LoadError) as exc:
        loaders.load("amazon2023", tmp_path)
    assert exc.value.line == n and exc.value.field == "rating"
    assert "All_Beauty.jsonl.gz" in str(exc.value) and "not a number" in str(exc.value)
    assert "--lenient" in str(exc.value)

    ds = loaders.load("amazon2023", tmp_path, strict=False)
    got = {(Path(r.file).name, r.line, r.field, r.error) for r in ds.report.rejects}
    assert ("All_Beauty.jsonl.gz", n - 2, "review_id", False) in got
    assert ("All_Beauty.jsonl.gz", n, "rating", True) in got
    assert ("meta_All_Beauty.jsonl.gz", 21, "parent_asin", False) in got
    assert not [r for r in ds.report.rejects if r.line == n - 1 and r.file == str(reviews_file)]
    assert ds.items.set_index("item_id").loc["B0P0000003", "title"] != "dup"
    rep = ds.report
    assert rep.total_read == rep.total_kept + rep.total_rejected
    # the review of a product without metadata is kept, the product an id-only item
    assert (rep.products_without_metadata, rep.reviews_without_metadata) == (1, 1)
    unknown = ds.items.set_index("item_id").loc["B0UNKNOWN1"]
    assert (unknown["title"], unknown["brand"], unknown["categories"]) == ("", "", [])
    assert "B0UNKNOWN1" in set(ds.reviews["item_id"]) and "B0UNKNOWN1" in set(ds.interactions["item_id"])


def test_products_without_metadata_strict(tmp_path):
    rng = random.Random(3)
    extra = [_review("U9", "B0NOMETA01", 1_600_000_000_000, rng), _review("U8", "B0NOMETA01", 1_600_000_100_000, rng),
             _review("U9", "B0NOMETA02", 1_600_000_200_000, rng)]
    write_category(tmp_path, extra_reviews=extra)
    ds = loaders.load("amazon2023", tmp_path)  # strict: not an error
    rep = ds.report
    assert (rep.products_without_metadata, rep.reviews_without_metadata) == (2, 3)
    assert len(ds.items) == 22 and set(ds.items["item_id"].iloc[-2:]) == {"B0NOMETA01", "B0NOMETA02"}
    assert "products without metadata (kept as id-only items): 2" in rep.summary()
    assert not rep.rejects or not any(r.error for r in rep.rejects)


@pytest.mark.parametrize("ms, reason", [(10**23, "timestamp out of range"), (-5000, "timestamp out of range"),
                                        ("soon", "not an integer"), (1.6e12 + 0.5, "not an integer")])
def test_bad_timestamps(tmp_path, ms, reason):
    rng = random.Random(4)
    reviews_file, _ = write_category(tmp_path, extra_reviews=[_review("U7", "B0P0000001", ms, rng)])
    n = sum(1 for _ in gzip.open(reviews_file, "rt"))
    with pytest.raises(LoadError, match=rf"All_Beauty\.jsonl\.gz, line {n}: field 'timestamp': {reason}"):
        loaders.load("amazon2023", tmp_path)
    ds = loaders.load("amazon2023", tmp_path, strict=False)
    (bad,) = [r for r in ds.report.rejects if r.error]
    assert (bad.line, bad.field, bad.kind) == (n, "timestamp", reason)
    assert len(ds.reviews) == n - 1 and "U7" not in set(ds.reviews["user_id"])


def test_prices_never_infinite(tmp_path):
    rng = random.Random(5)
    write_category(tmp_path, extra_meta=[_meta("B0PINF0001", rng, price="$" + "9" * 400),
                                         _meta("B0PINF0002", rng, price=float("inf"))])
    items = loaders.load("amazon2023", tmp_path).items.set_index("item_id")
    assert math.isnan(items.loc["B0PINF0001", "price"]) and math.isnan(items.loc["B0PINF0002", "price"])


def test_timestamps_in_seconds(tmp_path):
    """Re-exported copies hold seconds: a value below 1e11 (as ms, before March 1973) is seconds."""
    rng = random.Random(6)
    extra = [_review("U_SEC", "B0P0000001", 1_600_000_000, rng),
             _review("U_SEC", "B0P0000002", 1_600_000_123, rng),
             _review("U_MS", "B0P0000001", 1_600_000_000_999, rng),
             _review("U_ZERO", "B0P0000001", 0, rng)]
    write_category(tmp_path, extra_reviews=extra)
    ds = loaders.load("amazon2023", tmp_path)
    ts = ds.reviews.groupby("user_id")["timestamp"].apply(list)
    assert ts["U_SEC"] == [1_600_000_000, 1_600_000_123]
    assert ts["U_MS"] == [1_600_000_000] and ts["U_ZERO"] == [0]
    assert ds.report.notes() == {"timestamps read as seconds (the 2023 format has milliseconds)": 2}


def test_details_as_json_string(tmp_path):
    """The Hugging Face ``datasets`` export stores ``details`` as JSON text; the brand comes from it."""
    rng = random.Random(7)
    extra = [_meta("B0PHF00001", rng, store=None, details=json.dumps({"Brand": "Acme", "UPC": "1"})),
             _meta("B0PHF00002", rng, store=None, details="{Brand: Acme"),   # not JSON: counted, ignored
             _meta("B0PHF00003", rng, store=None, details=""),
             _meta("B0PHF00004", rng, store=None, details="[1, 2]")]
    write_category(tmp_path, extra_meta=extra)
    ds = loaders.load("amazon2023", tmp_path)
    brands = ds.items.set_index("item_id")["brand"]
    assert brands["B0PHF00001"] == "Acme"
    assert brands[["B0PHF00002", "B0PHF00003", "B0PHF00004"]].tolist() == ["", "", ""]
    assert ds.report.notes() == {"details that are not JSON (read as empty)": 1}


def test_prices_not_understood_are_counted(tmp_path):
    rng = random.Random(8)
    extra = [_meta("B0PPR00001", rng, price=".a-box-inner{background-color:#fff}"),
             _meta("B0PPR00002", rng, price="None"), _meta("B0PPR00003", rng, price=""),
             _meta("B0PPR00004", rng, price="$14.99")]
    write_category(tmp_path, extra_meta=extra)
    ds = loaders.load("amazon2023", tmp_path)
    prices = ds.items.set_index("item_id")["price"]
    assert prices[["B0PPR00001", "B0PPR00002", "B0PPR00003"]].isna().all() and prices["B0PPR00004"] == 14.99
    assert ds.report.notes() == {"prices not understood (kept as unknown)": 1}


def test_a_review_without_a_time_is_counted(tmp_path):
    rng = random.Random(0)
    review = _review("U1", "P1", 1529193600000, rng)
    del review["timestamp"]
    with gzip.open(tmp_path / "All_Beauty.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(review) + "\n")
        fh.write(json.dumps(_review("U2", "P1", 1529193600000, rng)) + "\n")
    with gzip.open(tmp_path / "meta_All_Beauty.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(_meta("P1", rng)) + "\n")
    ds = loaders.load("amazon2023", tmp_path)
    assert sorted(ds.reviews["timestamp"]) == [0, 1529193600]
    assert ds.report.notes() == {"reviews without a time (kept with timestamp 0)": 1}


def test_ratings_outside_1_to_5_and_numbers_as_text(tmp_path):
    """As in 2018: ``rating`` is documented 1.0 to 5.0 (a 0 or a 6 is an error reject naming
    file, line and field); a numeric ``store`` or review ``text`` is read as its text."""
    rng = random.Random(1)
    write_category(tmp_path, gz=False, n_items=8, n_users=2, extra_meta=[_meta("B0NUM", rng, store=3,
                                                                               categories=[["Toys", "Trains"]]),
                                                                         _meta("B0ODD", rng, categories={"a": 1})],
                   extra_reviews=[_review("U1", "B0NUM", 1_588_687_728_923, rng, rating=0.0),
                                  _review("U2", "B0NUM", 1_588_687_728_923, rng, rating=6),
                                  _review("U3", "B0NUM", 1_588_687_728_923, rng, rating=1, text=42)])
    with pytest.raises(LoadError, match=r"All_Beauty\.jsonl, line \d+: field 'rating': not a star rating "
                                        r"\(1 to 5\): 0\.0"):
        loaders.load("amazon2023", tmp_path)
    ds = loaders.load("amazon2023", tmp_path, strict=False)
    stars = [r for r in ds.report.rejects if r.kind == "not a star rating (1 to 5)"]
    assert [(r.field, r.value, r.error) for r in stars] == [("rating", "0.0", True), ("rating", "6", True)]
    assert ds.reviews["rating"].between(1, 5).all()
    assert ds.reviews.set_index("user_id").loc["U3", "text"] == "42"
    num = ds.items.set_index("item_id").loc["B0NUM"]
    assert (num["brand"], num["categories"]) == ("3", ["Toys > Trains"])
    assert ds.report.notes()["numbers read as text (a brand, title, review text … written as a number)"] == 2
    # a category not understood: counted, and main_category stands in, as for an empty one
    assert ds.items.set_index("item_id").loc["B0ODD", "categories"] == ["All Beauty"]
    assert ds.report.notes()["categories not understood (product kept without them)"] == 1
    rep = ds.report
    assert rep.total_read == rep.total_kept + rep.total_rejected
