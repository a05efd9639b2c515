"""KGAT / KGIN data folders (e.g. ``Data/amazon-book`` of the KGAT repository).

RAW_FILES (in the folder ``path``):

* ``train.txt``, ``test.txt`` -- one line per user: ``user item item …`` (remapped
  integer ids, separated by spaces). A line with only a user has no interactions.
* ``user_list.txt``, ``item_list.txt`` (optional) -- a header row, then
  ``org_id remap_id [freebase_id]``.
* ``kg_final.txt`` (optional) -- ``h r t`` integer triples (entity / relation ids).
* ``relation_list.txt`` (optional) -- a header row, then ``org_id remap_id``.
  ``entity_list.txt`` is not needed (entities keep their KGAT ids).

Ids: the remapped integers as strings (``"123"``) -- users and items each in their own
table. KG entities are ``"e<id>"`` and relations ``"r<id>"`` (or the relation's
``org_id`` from ``relation_list.txt`` without the ``http://rdf.freebase.com/ns/``
prefix). In KGAT the first ``n_items`` entity ids *are* the items, so when
``kg_final.txt`` exists every item gets an item_entities row ``item -> "e<item>"``.

Mapping: interactions -- event ``purchase``, value 1, timestamp 0, split
``train``/``test``; items -- ``title`` = ``org_id`` (the ASIN/ISBN); users -- ``name`` =
``org_id`` (the Amazon reviewer id, kept so that it is not lost). Without the list files
users/items come from the interaction ids.

Records and rejects: every (user, item) pair and every triple is one record, every list
row one record. Errors: a non-integer token; an id absent from an existing list file.
Filtered: a pair repeated within a file or present in both files (the ``train`` copy is
kept), a repeated triple or list id. Line numbers are 1-based physical lines. Bytes that
are not UTF-8 make a token that is not an integer (an error for that pair or triple); in
a list file, the row is an error reject ("not valid UTF-8").
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd

from loaders.dataset import Dataset, make_table
from loaders.errors import LoadError
from loaders.files import bad_utf8_lines
from loaders.report import LoadReport
from loaders.tabular import Checker, read_delimited

RAW_FILES = ("train.txt", "test.txt", "user_list.txt", "item_list.txt", "kg_final.txt",
             "relation_list.txt")
FREEBASE_PREFIX = "http://rdf.freebase.com/ns/"


def _pairs(file: Path, report: LoadReport, split: str) -> Checker:
    """Parse ``user item item …`` lines into a Checker of (user, item, split) rows.

    All tokens are converted in one numpy call; only when that fails are the bad tokens
    found (vectorised) and rejected -- a bad user token rejects every pair of its line.
    """
    with file.open(encoding="utf-8", errors="replace") as fh:  # bad bytes -> U+FFFD -> not an int
        per_line = [line.split() for line in fh]
    counts = np.fromiter(map(len, per_line), dtype=np.int64, count=len(per_line))
    flat = list(chain.from_iterable(per_line))
    try:
        values = np.array(flat, dtype=np.int64)
        ok = np.ones(len(flat), dtype=bool)
    except (ValueError, OverflowError):
        num = pd.to_numeric(pd.Series(flat, dtype=object), errors="coerce")
        ok = (num.notna() & (num % 1 == 0)).to_numpy()
        values = num.fillna(-1).to_numpy().astype(np.int64)
    line_of = np.repeat(np.arange(1, len(per_line) + 1), counts)
    per_user = counts[counts > 0]                   # tokens on each non-blank line
    is_user = np.zeros(len(flat), dtype=bool)       # the first token of each line
    is_user[np.cumsum(per_user) - per_user] = True
    user_of = np.repeat(values[is_user], per_user)  # the line's user, for every token
    user_ok = np.repeat(ok[is_user], per_user)
    pair = ~is_user
    df = pd.DataFrame({"user": user_of[pair], "item": values[pair]})
    df["split"] = split
    report.read(file, len(df))
    chk = Checker(report, file, df, line_of[pair])
    if not ok.all():
        tokens = np.asarray(flat, dtype=object)
        user_tokens = np.repeat(tokens[is_user], per_user)[pair]
        chk.reject(~user_ok[pair], "user", "not an integer id", user_tokens)
        chk.reject(~ok[pair], "item", "not an integer id", tokens[pair])
    return chk


def _id_list(file: Path, report: LoadReport) -> pd.DataFrame:
    """``org_id remap_id [freebase_id]`` rows (header skipped) -> DataFrame(org, remap)."""
    with file.open(encoding="utf-8", errors="replace") as fh:
        rows = [(n, line.split()) for n, line in enumerate(fh, 1) if line.strip()]
    rows = rows[1:]  # header
    df = pd.DataFrame({"org": [r[1][0] for r in rows],
                       "remap": [r[1][1] if len(r[1]) > 1 else "" for r in rows]})
    report.read(file, len(df))
    chk = Checker(report, file, df, np.array([r[0] for r in rows], dtype=np.int64))
    bad = bad_utf8_lines(file.read_bytes())
    if bad:
        chk.reject(np.isin(chk.lines, bad), "org_id", "not valid UTF-8: bytes that are not UTF-8 text")
    num = pd.to_numeric(df["remap"], errors="coerce")
    chk.reject((num.isna() | (num % 1 != 0)).to_numpy(), "remap_id", "not an integer id")
    chk.df["remap"] = num.fillna(-1).astype(np.int64)
    chk.duplicates(["remap"], "remap_id")
    return chk.finish()


def _triples(file: Path, report: LoadReport, relations: dict[int, str]) -> pd.DataFrame:
    raw, lines = read_delimited(file, report, sep=r"\s+", names=["h", "r", "t"])
    chk = Checker(report, file, raw, lines)
    num = {}
    for col, field in (("h", "head"), ("r", "relation"), ("t", "tail")):
        v = pd.to_numeric(raw[col], errors="coerce")
        chk.reject((v.isna() | (v % 1 != 0)).to_numpy(), field, "not an integer id", raw[col])
        num[col] = v.fillna(-1).astype(np.int64).astype(str)
    rel = "r" + num["r"]
    if relations:
        rel = num["r"].astype(np.int64).map(relations).fillna(rel)
    chk.df = pd.DataFrame({"head": "e" + num["h"], "relation": rel, "tail": "e" + num["t"]})
    chk.duplicates(["head", "relation", "tail"], "triple")
    return make_table("triples", chk.finish())


def read(path: str | Path, *, strict: bool = True) -> Dataset:
    """Read a KGAT/KGIN folder (see module docstring) into a Dataset."""
    folder = Path(path)
    if not (folder / "train.txt").is_file():
        raise LoadError(str(folder / "train.txt"), None, None, "no such file (a KGAT folder needs train.txt)")
    report = LoadReport(strict=strict)
    user_list = _id_list(folder / "user_list.txt", report) if (folder / "user_list.txt").is_file() else None
    item_list = _id_list(folder / "item_list.txt", report) if (folder / "item_list.txt").is_file() else None

    checkers = [_pairs(folder / f"{s}.txt", report, s) for s in ("train", "test")
                if (folder / f"{s}.txt").is_file()]
    kept = []
    for chk in checkers:
        if user_list is not None:
            chk.unknown("user", user_list["remap"], "user (not in user_list.txt)", field="user")
        if item_list is not None:
            chk.unknown("item", item_list["remap"], "item (not in item_list.txt)", field="item")
        chk.duplicates(["user", "item"], "pair")
        df = chk.df[chk.alive]
        if kept:  # a test pair already in train
            seen = pd.MultiIndex.from_frame(pd.concat(kept)[["user", "item"]])
            again = np.zeros(len(chk.df), dtype=bool)
            again[np.flatnonzero(chk.alive)] = pd.MultiIndex.from_frame(df[["user", "item"]]).isin(seen)
            chk.reject(again, "item", "pair already in train.txt", chk.df["item"], error=False)
        kept.append(chk.finish())
    pairs = pd.concat(kept, ignore_index=True)
    interactions = make_table("interactions", {
        "user_id": pairs["user"].astype(str), "item_id": pairs["item"].astype(str),
        "event": "purchase", "value": 1.0, "timestamp": 0, "split": pairs["split"]})

    if user_list is not None:
        users = make_table("users", {"user_id": user_list["remap"].astype(str), "name": user_list["org"]})
    else:
        users = make_table("users", {"user_id": pd.unique(interactions["user_id"])})
    if item_list is not None:
        items = make_table("items", {"item_id": item_list["remap"].astype(str), "title": item_list["org"]})
    else:
        items = make_table("items", {"item_id": pd.unique(interactions["item_id"])})

    triples, item_entities = make_table("triples"), make_table("item_entities")
    if (folder / "kg_final.txt").is_file():
        relations = {}
        if (folder / "relation_list.txt").is_file():
            rl = _id_list(folder / "relation_list.txt", report)
            relations = dict(zip(rl["remap"], rl["org"].str.removeprefix(FREEBASE_PREFIX)))
        triples = _triples(folder / "kg_final.txt", report, relations)
        item_entities = make_table("item_entities", {"item_id": items["item_id"],
                                                     "entity_id": "e" + items["item_id"]})
    report.check()
    return Dataset(name=folder.name, users=users, items=items, interactions=interactions,
                   triples=triples, item_entities=item_entities, report=report)
