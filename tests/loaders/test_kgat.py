"""KGAT/KGIN folder loader: the real amazon-book split and small inline folders."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import loaders
from loaders.report import LoadError


def test_amazon_book(amazon_book_dir):
    start = time.perf_counter()
    ds = loaders.load("kgat", amazon_book_dir)
    elapsed = time.perf_counter() - start
    assert ds.name == "amazon-book-kgat"
    assert len(ds.users) == 70_679 and len(ds.items) == 24_915
    split = ds.interactions["split"].value_counts().to_dict()
    assert split == {"train": 652_514, "test": 193_920}
    assert set(ds.interactions["event"]) == {"purchase"}
    assert set(ds.interactions["value"]) == {1.0} and set(ds.interactions["timestamp"]) == {0}
    first = ds.interactions.iloc[:2][["user_id", "item_id"]].to_numpy().tolist()
    assert first == [["0", "0"], ["0", "1"]]
    assert ds.items.iloc[0][["item_id", "title"]].tolist() == ["0", "0553092626"]
    assert ds.users.iloc[0].tolist() == ["0", "A3RTKL9KB8KLID"]
    assert len(ds.triples) == 0 and len(ds.item_entities) == 0  # no kg_final.txt here
    rep = ds.report
    assert rep.rejects == [] and rep.total_read == rep.total_kept == 70_679 + 24_915 + 846_434
    assert elapsed < 10, f"amazon-book took {elapsed:.1f} s"  # ~3-4 s here, incl. validate()


def _folder(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / f"{name}.txt").write_text(text, encoding="utf-8")
    return tmp_path


USERS = "org_id remap_id\nA3RTKL9KB8KLID 0\nA38LAIK2N83NH0 1\nA3PPXVR5J6U2JD 2\n"
ITEMS = "org_id remap_id freebase_id\n0553092626 0 m.045wq1q\n0393316041 1 m.03_28m\n038548254X 2 m.0b6fj\n"


def test_with_kg(tmp_path):
    path = _folder(tmp_path, user_list=USERS, item_list=ITEMS,
                   train="0 0 1 2\n1 1\n2 \n", test="0\n1 2 0\n",
                   kg_final="0 0 3\n1 1 4\n0 0 3\n3 1 2\n",
                   relation_list="org_id remap_id\nhttp://rdf.freebase.com/ns/book.written_work.subjects 0\n")
    ds = loaders.load("kgat", path)
    assert ds.interactions[["user_id", "item_id", "split"]].values.tolist() == [
        ["0", "0", "train"], ["0", "1", "train"], ["0", "2", "train"], ["1", "1", "train"],
        ["1", "2", "test"], ["1", "0", "test"]]
    assert ds.triples.values.tolist() == [
        ["e0", "book.written_work.subjects", "e3"], ["e1", "r1", "e4"], ["e3", "r1", "e2"]]
    assert ds.item_entities.values.tolist() == [["0", "e0"], ["1", "e1"], ["2", "e2"]]
    dup = ds.report.rejects
    assert [(Path(r.file).name, r.line, r.error) for r in dup] == [("kg_final.txt", 3, False)]


def test_without_list_files(tmp_path):
    path = _folder(tmp_path, train="5 7 8\n6 8\n", test="5 9\n")
    ds = loaders.load("kgat", path)
    assert sorted(ds.users["user_id"]) == ["5", "6"] and sorted(ds.items["item_id"]) == ["7", "8", "9"]
    assert set(ds.items["title"]) == {""}


def test_test_pair_already_in_train_is_filtered(tmp_path):
    path = _folder(tmp_path, train="0 0 1\n0 1\n", test="0 1 2\n")
    ds = loaders.load("kgat", path)
    assert len(ds.interactions) == 3
    got = [(Path(r.file).name, r.line, r.reason, r.error) for r in ds.report.rejects]
    assert got[0][:2] == ("train.txt", 2) and "duplicate pair" in got[0][2]
    assert got[1] == ("test.txt", 1, "pair already in train.txt", False)


def test_unknown_and_bad_ids(tmp_path):
    path = _folder(tmp_path, user_list=USERS, item_list=ITEMS, train="0 0 1\n1 7\nx 1 2\n2 1 y\n")
    with pytest.raises(LoadError, match=r"train\.txt, line 3: field 'user': not an integer id"):
        loaders.load("kgat", path)
    ds = loaders.load("kgat", path, strict=False)
    got = sorted((r.line, r.field, r.value) for r in ds.report.rejects)
    assert got == [(2, "item", "7"), (3, "user", "x"), (3, "user", "x"), (4, "item", "y")]
    assert ds.interactions[["user_id", "item_id"]].values.tolist() == [["0", "0"], ["0", "1"], ["2", "1"]]
    f = ds.report.files[str(path / "train.txt")]
    assert (f.read, f.kept, f.rejected) == (7, 3, 4)


def test_missing_train(tmp_path):
    with pytest.raises(LoadError, match="train.txt"):
        loaders.load("kgat", tmp_path)
