"""Amazon Reviews 2023's benchmark files (ratings with the lab's split), read by --source amazon2023."""

from __future__ import annotations

import gzip
import json

import pytest

import loaders
from loaders.errors import LoadError

HEADER = "user_id,parent_asin,rating,timestamp"
HEADER_HIS = HEADER + ",history"


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")


def _last_out(folder, history=False):
    """A 5core/last_out(_w_his) folder of one category, as the lab's scripts write it."""
    folder.mkdir(parents=True, exist_ok=True)
    head = HEADER_HIS if history else HEADER
    his = (lambda h: f",{h}") if history else (lambda h: "")
    _write(folder / "Toys.train.csv", [head, f"U1,P1,3.0,1452647382000{his('')}",
                                       f"U1,P2,4.0,1454675785000{his('P1')}", f"U2,P1,5.0,1454676014000{his('')}"])
    _write(folder / "Toys.valid.csv", [head, f"U1,P3,3.0,1471541996000{his('P1 P2')}",
                                       f"U2,P2,2.0,1471542588000{his('P1')}"])
    _write(folder / "Toys.test.csv", [head, f"U1,P4,5.0,1471542999000{his('P1 P2 P3')}",
                                      f"U2,P3,1.0,1471543000000{his('P1 P2')}"])
    return folder


@pytest.mark.parametrize("history", [False, True])
def test_last_out_split_is_given(tmp_path, history):
    folder = _last_out(tmp_path / "last_out", history)
    ds = loaders.load("amazon2023", folder)
    inter = ds.interactions.sort_values(["user_id", "timestamp"])
    assert inter["split"].tolist() == ["train", "train", "valid", "test", "train", "valid", "test"]
    assert set(inter["event"]) == {"rating"} and inter["value"].tolist()[:3] == [3.0, 4.0, 3.0]
    assert inter["timestamp"].iloc[0] == 1452647382  # ms -> s
    assert sorted(ds.items["item_id"]) == ["P1", "P2", "P3", "P4"]  # id-only: no meta file
    assert ds.report.products_without_metadata == 4 and len(ds.reviews) == 0
    assert ds.name == "amazon2023-Toys"
    # one of the files as the path reads the same category's three parts
    again = loaders.load("amazon2023", folder / "Toys.valid.csv")
    assert len(again.interactions) == 7


def test_meta_beside_the_ratings_and_rejects(tmp_path):
    folder = _last_out(tmp_path / "b")
    with gzip.open(folder / "meta_Toys.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"parent_asin": "P1", "title": "Wooden train", "store": "Brio", "price": "$12.99",
                             "categories": ["Toys & Games", "Trains"], "bought_together": ["P2"]}) + "\n")
    with open(folder / "Toys.test.csv", "a") as fh:
        fh.write("U3,P1,five,1471543001000\n")      # line 4: not a number
        fh.write("U1,P4,5.0,1471542999000\n")       # line 5: the same rating again
    with pytest.raises(LoadError, match=r"Toys\.test\.csv, line 4: field 'rating': not a number"):
        loaders.load("amazon2023", folder)
    ds = loaders.load("amazon2023", folder, strict=False)
    items = ds.items.set_index("item_id")
    assert (items.loc["P1", "title"], items.loc["P1", "brand"], items.loc["P1", "price"]) == \
        ("Wooden train", "Brio", 12.99)
    assert ds.report.products_without_metadata == 3
    assert ds.item_links[["src_item", "dst_item"]].values.tolist() == [["P1", "P2"]]
    assert sorted((r.line, r.error) for r in ds.report.rejects) == [(4, True), (5, False)]
    assert len(ds.interactions) == 7
    counts = ds.report.files[str(folder / "Toys.test.csv")]
    assert (counts.read, counts.kept, counts.rejected) == (4, 2, 2)


def test_rating_only_file_has_no_split(tmp_path):
    folder = tmp_path / "rating_only"
    folder.mkdir()
    _write(folder / "Toys.csv", [HEADER, "U1,P1,3.0,1452647382000", "U2,P1,4.0,1454675785000"])
    ds = loaders.load("amazon2023", folder)
    assert ds.interactions["split"].tolist() == ["", ""]


def test_several_categories_and_a_missing_column_are_errors(tmp_path):
    folder = _last_out(tmp_path / "c")
    _write(folder / "Books.train.csv", [HEADER, "U1,B1,3.0,1452647382000"])
    with pytest.raises(LoadError, match="benchmark files of several categories"):
        loaders.load("amazon2023", folder)
    assert len(loaders.load("amazon2023", folder / "Books.train.csv").interactions) == 1
    _write(folder / "Books.train.csv", ["user_id,parent_asin,timestamp", "U1,B1,1452647382000"])
    with pytest.raises(LoadError, match="Books.train.csv, line 1: field 'rating': missing column"):
        loaders.load("amazon2023", folder / "Books.train.csv")


def test_an_id_with_a_control_character_is_an_error_reject(tmp_path):
    folder = _last_out(tmp_path / "c")
    with open(folder / "Toys.test.csv", "a") as fh:
        fh.write("U\x003,P1,4.0,1471543001000\n")      # line 4: a NUL in the user id
        fh.write("U3,P\x1b2,4.0,1471543002000\n")      # line 5: an escape in the product id
    with pytest.raises(LoadError, match=r"Toys\.test\.csv, line 4: field 'user_id': control character in an id"):
        loaders.load("amazon2023", folder)
    ds = loaders.load("amazon2023", folder, strict=False)
    assert sorted((r.line, r.field, r.error) for r in ds.report.rejects) == [(4, "user_id", True),
                                                                             (5, "parent_asin", True)]
    counts = ds.report.files[str(folder / "Toys.test.csv")]
    assert (counts.read, counts.kept, counts.rejected) == (4, 2, 2)
    assert "U3" not in set(ds.users["user_id"]) and len(ds.interactions) == 7


def test_a_delta_of_benchmark_ratings_says_no_product_is_id_only(tmp_path):
    """Read for ``kgrec ingest`` (``delta=True``): the rated products without a meta line are
    counted in the notes, not as products "kept as id-only items" (the store may hold them)."""
    folder = _last_out(tmp_path / "d")
    ds = loaders.load("amazon2023", folder, delta=True)
    assert ds.report.products_without_metadata == 0
    assert ds.report.notes() == {
        "reviewed products without a metadata line in this delta (ingest keeps a stored one as it is and rejects "
        "the reviews of one the store lacks)": 4}
    assert sorted(ds.items["item_id"]) == ["P1", "P2", "P3", "P4"]


def test_a_rating_outside_one_to_five_stars_is_an_error_reject(tmp_path):
    """As in the JSON files: a rating of 0 or 6 stars is no star rating, never kept."""
    folder = _last_out(tmp_path / "r")
    with open(folder / "Toys.test.csv", "a") as fh:
        fh.write("U3,P1,6.0,1471543001000\n")      # line 4
        fh.write("U3,P2,0,1471543002000\n")        # line 5
    with pytest.raises(LoadError, match=r"Toys\.test\.csv, line 4: field 'rating': not a star rating \(1 to 5\)"):
        loaders.load("amazon2023", folder)
    ds = loaders.load("amazon2023", folder, strict=False)
    assert sorted((r.line, r.field) for r in ds.report.rejects) == [(4, "rating"), (5, "rating")]
    counts = ds.report.files[str(folder / "Toys.test.csv")]
    assert (counts.read, counts.kept, counts.rejected) == (4, 2, 2)
