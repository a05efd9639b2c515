"""Train / validation / test splits of user–item interactions.

Positives are the (user, product) pairs of the chosen interaction types, one per
pair (the earliest time). Three ways to split them:

* ``leave_last_out`` -- per user, by time: the last item is test, the one before
  validation (users with fewer than 3 items keep everything in train); items tied in time
  (one day's reviews, one basket) are ordered at random (``seed``), not by their index;
* ``time`` -- a global cut: the last ``test_fraction`` of the timeline is test,
  the ``valid_fraction`` before it validation;
* ``given`` -- the source's own split (the interactions' ``split`` column: KGAT
  ``train``/``test``, or any source's ``train``/``valid``/``test``). A given validation
  part is used as given; only when the source has none does a random ``valid_fraction``
  of train become validation (seeded).

A split can also come from a **split file** (:func:`read_split_file`,
:func:`split_from_file`; ``kgrec train --split-file PATH``): the (user, item) pairs of
each part by their raw ids, for any source -- e.g. RecBole's own benchmark split
(``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter``). Then the file is the whole
truth: its pairs keep their parts, graph positives it does not list are left out of
every part (counted in :attr:`Split.left_out`), and ranking is over the items it names
(:attr:`Split.items`, RecBole's protocol: items outside the data set are not candidates).

:func:`cold_start` turns any split into an **item cold-start** protocol: a seeded random
fraction of the ranked items leaves train and valid (as if listed after training), and every
pair of those items is what the models must find, ranked among them only.

All vectorised (numpy lexsort), fine for millions of interactions.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kg.arrays import contains
from kg.errors import ConfigError, DataError, LoadError

POSITIVE_TYPES = ("purchased", "rated", "reviewed")  # default positives
SPLIT_TEST, SPLIT_VALID = 2, 3  # codes of the export's ``split`` edge attribute (kg.export.SPLIT_CODES)
PARTS = ("train", "valid", "test")
FALLBACK_TYPES = ("added_to_cart", "clicked", "viewed")  # used when none of the above exist


@dataclass(frozen=True)
class Split:
    """Index pairs (users [N], items [N], int64) per part, plus the catalogue sizes.

    ``items``: the candidate items of the ranking (sorted item indices), ``None`` = all
    ``num_items``; ``left_out``: positives of the graph in no part (a split file's).
    """

    num_users: int
    num_items: int
    train: tuple[np.ndarray, np.ndarray]
    valid: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    items: np.ndarray | None = None
    left_out: int = 0

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train[0]), "valid": len(self.valid[0]), "test": len(self.test[0])}


@dataclass(frozen=True)
class ColdStart:
    """An item cold-start protocol (:func:`cold_start`).

    ``warm``: the split without the cold items -- train and valid, no test, the warm items
    ranked (train on it, draw negatives from ``warm.items``, stop early on its valid part);
    ``items``: the cold item indices (sorted); ``pairs``: every (user, item) pair of a cold
    item in the original train, valid and test -- the truth, ranked among ``items`` only.
    """

    warm: Split
    items: np.ndarray
    pairs: tuple[np.ndarray, np.ndarray]


def cold_start(split: Split, fraction: float, seed: int = 0) -> ColdStart:
    """A seeded random ``fraction`` (0 < fraction < 1) of ``split``'s ranked items as cold items."""
    if not 0 < fraction < 1:
        raise ConfigError(f"cold-start fraction must be in (0, 1), got {fraction}")
    items = split.items if split.items is not None else np.arange(split.num_items)
    n = max(1, int(round(len(items) * fraction)))
    if n >= len(items):
        raise ConfigError(f"a cold-start fraction of {fraction} leaves no warm item of {len(items)}")
    cold = np.sort(np.random.default_rng(seed).choice(items, size=n, replace=False))
    is_cold = np.zeros(split.num_items, dtype=bool)
    is_cold[cold] = True

    def warm(pairs):
        keep = ~is_cold[pairs[1]]
        return pairs[0][keep], pairs[1][keep]

    users, items_ = (np.concatenate([p[k] for p in (split.train, split.valid, split.test)]) for k in (0, 1))
    empty = (split.test[0][:0], split.test[1][:0])
    warm_split = Split(split.num_users, split.num_items, warm(split.train), warm(split.valid), empty,
                       items=np.setdiff1d(items, cold), left_out=split.left_out)
    return ColdStart(warm_split, cold, (users[is_cold[items_]], items_[is_cold[items_]]))


def positives(data, types: tuple[str, ...] | None = None):
    """(users, items, time, split) of the distinct positive pairs, earliest time per pair."""
    present = [t for (s, t, d) in data.edge_types if s == "user" and d == "product"]
    chosen = [t for t in (types or POSITIVE_TYPES) if t in present]
    if not chosen and types is None:
        chosen = [t for t in FALLBACK_TYPES if t in present]
    if not chosen:
        raise DataError(f"no interactions of types {types or POSITIVE_TYPES} in the graph (it has {present})")
    parts = [data["user", t, "product"] for t in chosen]
    users = np.concatenate([p.edge_index[0].numpy() for p in parts])
    items = np.concatenate([p.edge_index[1].numpy() for p in parts])
    time = np.concatenate([p.time.numpy() for p in parts])
    split = np.concatenate([p.split.numpy() for p in parts])
    order = np.lexsort((time, items, users))  # by pair, earliest first
    users, items, time, split = users[order], items[order], time[order], split[order]
    first = np.ones(len(users), dtype=bool)
    first[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    return users[first], items[first], time[first], split[first]


def split_interactions(data, method: str = "leave_last_out", types: tuple[str, ...] | None = None,
                       valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> Split:
    """Split the positives of a ``HeteroData`` export (see module docstring)."""
    users, items, time, given = positives(data, types)
    n_users, n_items = data["user"].num_nodes, data["product"].num_nodes
    part = np.zeros(len(users), dtype=np.int8)  # 0 train, 1 valid, 2 test
    if method == "leave_last_out":
        # per user by time; ties in time (a day's reviews, a basket, an export without
        # times) in a seeded random order -- by item index they made every user's held-out
        # item the highest-index one among those tied, so low-index items were never held out
        ties = np.random.default_rng(seed).random(len(users))
        order = np.lexsort((ties, time, users))
        u = users[order]
        last = np.ones(len(u), dtype=bool)
        last[:-1] = u[1:] != u[:-1]
        start = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
        count = np.diff(np.r_[start, len(u)])
        enough = np.repeat(count >= 3, count)
        second = np.zeros(len(u), dtype=bool)
        second[:-1] = last[1:] & ~last[:-1]
        part[order[last & enough]] = 2
        part[order[second & enough]] = 1
    elif method == "time":
        cut_test = np.quantile(time, 1 - test_fraction)
        cut_valid = np.quantile(time, 1 - test_fraction - valid_fraction)
        part[time > cut_valid] = 1
        part[time > cut_test] = 2
    elif method == "given":
        if not (given == SPLIT_TEST).any():
            raise DataError("method 'given' needs a source split (interactions with split='test')")
        part[given == SPLIT_TEST] = 2
        if (given == SPLIT_VALID).any():  # the source's own validation part, as given
            part[given == SPLIT_VALID] = 1
        else:
            train = np.flatnonzero(part == 0)
            rng = np.random.default_rng(seed)
            part[rng.choice(train, size=int(len(train) * valid_fraction), replace=False)] = 1
    else:
        raise ConfigError(f"unknown split method {method!r} (leave_last_out, time, given)")
    pick = lambda k: (users[part == k], items[part == k])  # noqa: E731
    return Split(n_users, n_items, pick(0), pick(1), pick(2))


def _split_files(path: Path) -> list[tuple[Path, str | None]]:
    """(file, part) of a split folder (one file per part, the part a dot-separated word of
    its name: ``x.train.tsv.gz``, ``ml.valid.inter``) or of one file (part from a column)."""
    if path.is_file():
        return [(path, None)]
    if not path.is_dir():
        raise LoadError(str(path), None, None, "no such split file or folder")
    found: dict[str, list[Path]] = {p: [] for p in PARTS}
    for f in sorted(path.iterdir()):
        words = set(f.name.lower().split("."))
        for p in PARTS:
            if p in words or (p == "valid" and "validation" in words):
                found[p].append(f)
    for p, files in found.items():
        if len(files) > 1:
            raise LoadError(str(path), None, None, f"more than one {p} file: {', '.join(f.name for f in files)}")
    if not found["train"] or not found["test"]:
        raise LoadError(str(path), None, None, "a split folder needs a train and a test file "
                                                "(names with '.train.' and '.test.'; '.valid.' optional)")
    return [(files[0], p) for p, files in found.items() if files]


def read_split_file(path: str | Path, user_field: str = "user_id", item_field: str = "item_id",
                    part_field: str = "split"):
    """The (user, item) pairs of a given split: a DataFrame ``user_id``, ``item_id``, ``part``
    (``train`` / ``valid`` / ``test``), ``file``, ``line`` (strings; lines 1-based, header = 1).

    ``path``: a folder with one delimited file per part (see :func:`_split_files`; RecBole's
    ``<name>.train.inter`` style or ``x.train.tsv.gz``), or one file with a ``split``
    column (``validation`` is read as ``valid``). Tab- or comma-separated (the header line
    decides), gzip when the name ends in ``.gz``, RecBole's ``:type`` header suffixes
    dropped; extra columns are ignored. A missing column, an empty id, an unknown part or a
    pair listed twice is a :class:`kg.errors.LoadError` naming the file and line.
    """
    import pandas as pd

    frames = []
    for file, part in _split_files(Path(path)):
        opener = gzip.open if file.name.endswith(".gz") else open
        with opener(file, "rt", encoding="utf-8", newline="") as fh:
            header = fh.readline()
            sep = "\t" if "\t" in header else ","
            names = [c.split(":")[0].strip() for c in next(csv.reader([header], delimiter=sep))]
            df = pd.read_csv(fh, sep=sep, header=None, names=names, dtype=str, keep_default_na=False,
                             quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL, index_col=False)
        for col in (user_field, item_field) + (() if part else (part_field,)):
            if col not in names:
                raise LoadError(str(file), 1, col, f"missing column (header has {', '.join(names)})")
        out = pd.DataFrame({"user_id": df[user_field].str.strip(), "item_id": df[item_field].str.strip(),
                            "part": part if part else df[part_field].str.strip().str.lower()})
        out["part"] = out["part"].replace({"validation": "valid"})
        out["file"], out["line"] = str(file), np.arange(2, len(df) + 2)
        for col, what in (("user_id", user_field), ("item_id", item_field)):
            bad = np.flatnonzero((out[col] == "").to_numpy())
            if len(bad):
                raise LoadError(str(file), int(out["line"].iloc[bad[0]]), what, "empty id")
        bad = np.flatnonzero(~out["part"].isin(PARTS).to_numpy())
        if len(bad):
            raise LoadError(str(file), int(out["line"].iloc[bad[0]]), part_field,
                            f"unknown part {out['part'].iloc[bad[0]]!r} (train, valid, test)")
        frames.append(out)
    table = pd.concat(frames, ignore_index=True)
    dup = table.duplicated(["user_id", "item_id"], keep="first").to_numpy()
    if dup.any():
        row = table.iloc[int(np.flatnonzero(dup)[0])]
        first = table[(table["user_id"] == row["user_id"]) & (table["item_id"] == row["item_id"])].iloc[0]
        raise LoadError(row["file"], int(row["line"]), None,
                        f"pair ({row['user_id']}, {row['item_id']}) is listed twice (first at "
                        f"{Path(first['file']).name} line {first['line']})")
    return table


def split_from_file(data, id_maps: dict, path: str | Path, types: tuple[str, ...] | None = None) -> Split:
    """The :class:`Split` a split file gives (see the module docstring) over the graph
    ``data`` (a ``HeteroData`` export) with its ``id_maps`` (:class:`kg.export.GraphExport`).

    Every listed pair must be a positive of the graph (a :class:`kg.errors.LoadError`
    names the first that is not: unknown user, unknown item, or no such interaction); graph
    positives the file does not list are in no part (``Split.left_out`` counts them);
    the ranking candidates are the items the file names.
    """
    table = read_split_file(path)
    users, items, _, _ = positives(data, types)
    n_users, n_items = data["user"].num_nodes, data["product"].num_nodes
    user_ids = np.asarray(id_maps["user"]).astype(str)
    item_ids = np.asarray(id_maps["product"]).astype(str)

    def index(ids: np.ndarray, raw, what: str, col: str) -> np.ndarray:
        order = np.argsort(ids, kind="stable")
        pos = np.searchsorted(ids, raw.to_numpy().astype(str), sorter=order).clip(max=len(ids) - 1)
        idx = order[pos] if len(ids) else pos
        bad = np.flatnonzero(~(ids[idx] == raw.to_numpy().astype(str)) if len(ids) else np.ones(len(raw), bool))
        if len(bad):
            row = table.iloc[bad[0]]
            raise LoadError(row["file"], int(row["line"]), col,
                            f"{what} {row[col]!r} is not in the graph ({len(bad):,} such rows)")
        return idx.astype(np.int64)

    fu = index(user_ids, table["user_id"], "user", "user_id")
    fi = index(item_ids, table["item_id"], "item", "item_id")
    graph_keys = users * n_items + items  # sorted by (user, item): positives() orders them so
    file_keys = fu * n_items + fi
    found = contains(file_keys, graph_keys)
    if not found.all():
        row = table.iloc[int(np.flatnonzero(~found)[0])]
        raise LoadError(row["file"], int(row["line"]), None,
                        f"pair ({row['user_id']}, {row['item_id']}) is not a positive interaction of the graph "
                        f"({int((~found).sum()):,} such rows)")
    part = table["part"].to_numpy()
    pick = lambda p: (fu[part == p], fi[part == p])  # noqa: E731
    return Split(n_users, n_items, pick("train"), pick("valid"), pick("test"),
                 items=np.unique(fi), left_out=int(len(graph_keys) - len(file_keys)))
