"""A given split is used as given: a source's ``split`` column (train / valid / test) and a
split file (``--split-file``, e.g. RecBole's own split), from the API and the CLI."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from fusion.cli import main
from kg.errors import LoadError
from kg.run_dir import RunDir
from kg.split import read_split_file

USERS, PER_USER = 30, 8
GNN = ["--stage", "gnn", "--epochs", "1", "--dim", "8", "--layers", "1", "--no-progress"]


def pairs():
    """(user, item, part): user u buys 8 of 20 items; 5 train, 1 valid, 2 test."""
    rows = []
    for u in range(USERS):
        items = [(u * 3 + 7 * j) % 20 for j in range(PER_USER)]
        for j, i in enumerate(items):
            rows.append((f"u{u}", f"i{i}", "train" if j < 5 else "valid" if j == 5 else "test"))
    return rows


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A CSV shop whose interactions carry their own split; built into an embedded store."""
    folder = tmp_path_factory.mktemp("shop")
    lines = ["user_id,item_id,event,timestamp,split"]
    for n, (u, i, part) in enumerate(pairs()):
        lines.append(f"{u},{i},purchase,{1_600_000_000 + n},{'validation' if part == 'valid' and n % 2 else part}")
    (folder / "interactions.csv").write_text("\n".join(lines) + "\n")
    db = str(folder / "graph")
    assert main(["build", "--source", "csv", "--path", str(folder), "--db", db, "--no-progress"]) == 0
    return folder, db


def split_ids(run: str) -> dict[str, set[tuple[str, str]]]:
    rd = RunDir(run)
    split = rd.load_split()
    import json

    ids = json.loads((rd.graph / "id_maps.json").read_text())["id_maps"]
    users, items = np.array(ids["user"]), np.array(ids["product"])
    return {part: set(zip(users[u], items[i])) for part, (u, i) in
            (("train", split.train), ("valid", split.valid), ("test", split.test))}


def given(part: str) -> set[tuple[str, str]]:
    return {(u, i) for u, i, p in pairs() if p == part}


@pytest.mark.parametrize("split", ["given", None])  # None: the default "auto" finds the source's split
def test_the_sources_validation_part_is_used_as_given_from_the_cli(shop, tmp_path, split, capsys):
    _, db = shop
    run = str(tmp_path / "run")
    assert main(["train", *GNN, "--db", db, "--run", run, *(["--split", split] if split else [])]) == 0
    got = split_ids(run)
    for part in ("train", "valid", "test"):
        assert got[part] == given(part), part  # not a random 10% of train drawn for validation
    assert "train + valid items masked for test" in (RunDir(run).report).read_text()


def write_split_folder(folder, leave_out=1):
    """RecBole-style part files (typed headers, one gzip); the first `leave_out` train pairs unlisted."""
    folder.mkdir()
    rows = pairs()
    out = {"train": [], "valid": [], "test": []}
    for u, i, part in rows:
        out["test" if part == "valid" else "valid" if part == "test" else "train"].append((u, i))  # swapped
    out["train"] = out["train"][leave_out:]
    for part, prs in out.items():
        text = "user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in prs)
        if part == "test":
            with gzip.open(folder / f"shop.{part}.tsv.gz", "wt") as f:
                f.write(text)
        else:
            (folder / f"shop.{part}.inter").write_text(text)
    return out


def test_a_split_file_is_used_as_given_from_the_cli(shop, tmp_path, capsys):
    _, db = shop
    expected = write_split_folder(tmp_path / "split")
    run = str(tmp_path / "run")
    assert main(["train", *GNN, "--db", db, "--run", run, "--split-file", str(tmp_path / "split")]) == 0
    got = split_ids(run)
    for part in ("train", "valid", "test"):
        assert got[part] == set(expected[part]), part
    split = RunDir(run).load_split()
    assert split.left_out == 1  # the unlisted positive is in no part
    assert split.items is not None and len(split.items) == len({i for p in expected.values() for _, i in p})
    capsys.readouterr()
    assert main(["evaluate", "--run", run]) == 0
    out = capsys.readouterr().out
    assert f"split file {tmp_path / 'split'}" in out and "1 positives in no part" in out
    assert f"{len(split.items):,} items ranked (the split's)" in out


def test_split_files_that_do_not_fit_are_errors_naming_file_and_line(shop, tmp_path, capsys):
    _, db = shop
    folder = tmp_path / "bad"
    write_split_folder(folder)
    with open(folder / "shop.valid.inter", "a") as f:
        f.write("u0\ti19\n")  # u0 never bought i19
    n = len((folder / "shop.valid.inter").read_text().splitlines())
    assert main(["train", *GNN, "--db", db, "--run", str(tmp_path / "r"), "--split-file", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"shop.valid.inter, line {n}" in err and "not a positive interaction of the graph" in err

    one = tmp_path / "one.csv"
    one.write_text("user_id,item_id,split\nu0,i7,train\nu1,i3,holdout\n")
    with pytest.raises(LoadError, match=r"one.csv, line 3: field 'split': unknown part 'holdout'"):
        read_split_file(one)
    one.write_text("user_id,item_id,split\nu0,i7,train\nu1,i3,test\nu0,i7,test\n")
    with pytest.raises(LoadError, match=r"line 4.*listed twice \(first at one.csv line 2\)"):
        read_split_file(one)
    one.write_text("user,item_id,split\nu0,i7,train\n")
    with pytest.raises(LoadError, match=r"line 1: field 'user_id': missing column"):
        read_split_file(one)
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "x.train.tsv").write_text("user_id\titem_id\n")
    with pytest.raises(LoadError, match="needs a train and a test file"):
        read_split_file(tmp_path / "parts")


def test_an_unknown_split_value_is_rejected_by_the_loader(tmp_path):
    from loaders import load

    (tmp_path / "interactions.csv").write_text("user_id,item_id,split\nu1,i1,train\nu1,i2,holdout\n")
    with pytest.raises(LoadError, match=r"line 3: field 'split': unknown split"):
        load("csv", tmp_path)
