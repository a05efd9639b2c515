"""Amazon Reviews 2023's benchmark files: a category's ratings with the McAuley lab's split.

The lab publishes, beside the raw reviews (:mod:`loaders.amazon2023`), pure-id files for
benchmarking (``benchmark_files/{0core,5core}/…``), read by ``--source amazon2023`` when
``path`` is such a file or a folder holding them (and no ``<Category>.jsonl[.gz]``):

* ``<Category>.train.csv``, ``<Category>.valid.csv``, ``<Category>.test.csv`` (the
  ``last_out``, ``timestamp``, ``last_out_w_his`` and ``timestamp_w_his`` folders): a
  header ``user_id,parent_asin,rating,timestamp`` (milliseconds), and in the ``_w_his``
  variants a ``history`` column (the user's earlier products, which repeats earlier rows:
  not read). Any of the three may be missing (a folder with only train and test parts).
* ``<Category>.csv`` (``rating_only``): the same columns, no split.
* products, optional: ``meta_<Category>.jsonl[.gz]`` beside them (or ``meta=``), read as
  in :mod:`loaders.amazon2023`.

Mapping: interactions -- ``event = "rating"``, ``value`` = rating, ``timestamp`` = the
milliseconds floored to seconds (values below 1e11 are seconds already, as everywhere:
:func:`loaders.tabular.parse_timestamps`), ``split`` = ``train`` / ``valid`` / ``test``
from the file name (``""`` for ``rating_only``): the given split is used as given
(``kgrec train --split auto``); users -- the raters (no names); items -- the meta file's
products plus an id-only item for every rated product without a meta line (counted in
``report.products_without_metadata``, all of them when there is no meta file); no reviews
(the files have no text). Rejects: a missing id or rating, a rating that is not a number
or not a star rating (1 to 5),
a bad timestamp (errors, file and line named); a second row of the same user, product and
time, in any of the files (filtered, the first kept).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from loaders.amazon2018 import ItemParser, Layout, read_links, read_meta
from loaders.dataset import KEYS, Dataset, make_table
from loaders.errors import LoadError
from loaders.report import LoadReport
from loaders.tabular import Checker, parse_timestamps, read_delimited

#: the parts of a split, by the file name's second suffix (``Books.valid.csv``)
PARTS = ("train", "valid", "test")
_PART_FILE = re.compile(rf"^(?P<category>.+)\.(?P<part>{'|'.join(PARTS)})\.csv(?:\.gz)?$")
_ONE_FILE = re.compile(r"^(?!meta_)(?P<category>[^.]+)\.csv(?:\.gz)?$")
COLUMNS = ("user_id", "parent_asin", "rating", "timestamp")


def benchmark_files(path: str | Path | None) -> dict[str, Path]:
    """The benchmark files at ``path`` (a file or a folder): {part (or ``""``): file}; ``{}``
    when there are none, or when the folder holds raw reviews (``*.jsonl[.gz]``) -- those are
    read by :mod:`loaders.amazon2023`. Raises :class:`LoadError` for a folder holding
    several categories."""
    if path is None:
        return {}
    path = Path(path)
    if path.is_file():
        m = _PART_FILE.match(path.name)
        if m:
            folder, wanted = path.parent, m["category"]
        elif _ONE_FILE.match(path.name):
            return {"": path}
        else:
            return {}
    elif path.is_dir():
        if any(p.is_file() and not p.name.startswith("meta_") for p in path.glob("*.jsonl*")):
            return {}
        folder, wanted = path, None
    else:
        return {}
    found: dict[str, dict[str, Path]] = {}
    for p in sorted(folder.iterdir()):
        m = _PART_FILE.match(p.name)
        if m and p.is_file() and wanted in (None, m["category"]):
            found.setdefault(m["category"], {})[m["part"]] = p
    if not found and wanted is None:
        for p in sorted(folder.iterdir()):
            m = _ONE_FILE.match(p.name)
            if m and p.is_file():
                found.setdefault(m["category"], {})[""] = p
    if len(found) > 1:
        raise LoadError(str(folder), None, None, f"benchmark files of several categories ({', '.join(found)}); "
                        "pass one category's file as the path")
    return next(iter(found.values()), {})


def _ratings(file: Path, part: str, report: LoadReport, seen: set) -> pd.DataFrame:
    """One file's kept ratings; ``seen``: the (user, product, time) keys kept from earlier
    files, a repeat of which is filtered (and this file's kept keys are added)."""
    df, lines = read_delimited(file, report)
    chk = Checker(report, file, df, lines)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise LoadError(str(file), 1, missing[0], f"missing column (the header needs {', '.join(COLUMNS)})")
    chk.required("user_id", "parent_asin", "rating")
    chk.ids("user_id", "parent_asin")
    rating = chk.number("rating")
    chk.reject(rating.notna() & ~rating.between(1, 5), "rating", "not a star rating (1 to 5)")  # as the JSON files
    seconds = parse_timestamps(chk, "timestamp")
    chk.df = pd.DataFrame({"user_id": df["user_id"].str.strip(), "item_id": df["parent_asin"].str.strip(),
                           "event": "rating", "value": rating, "timestamp": seconds, "split": part})
    keys = list(zip(chk.df["user_id"], chk.df["item_id"], chk.df["timestamp"]))
    chk.reject([k in seen for k in keys], "parent_asin", "duplicate rating: the same user, product and time "
               "in an earlier file, that one is kept", [f"{u}|{i}|{t}" for u, i, t in keys], error=False)
    chk.duplicates(list(KEYS["interactions"]), "rating")
    seen.update(k for k, alive in zip(keys, chk.alive) if alive)
    return chk.finish()


def read(files: dict[str, Path], layout: Layout, parse_item: ItemParser, strict: bool = True,
         meta: str | Path | None = None) -> Dataset:
    """The ratings of ``files`` (:func:`benchmark_files`) and their products (module
    docstring), the meta file read with ``parse_item`` of ``layout`` (Amazon 2023's)."""
    report = LoadReport(strict=strict)
    first = next(iter(files.values()))
    category = (_PART_FILE.match(first.name) or _ONE_FILE.match(first.name))["category"]
    if meta is None:
        meta = next((p for p in (first.parent / f"meta_{category}.jsonl.gz", first.parent / f"meta_{category}.jsonl")
                     if p.is_file()), None)
    elif not Path(meta).is_file():
        raise LoadError(str(meta), None, None, "no such file")
    items, links = read_meta(Path(meta), report, parse_item, layout) if meta else ([], [])
    seen: set = set()
    parts = [_ratings(files[p], p, report, seen) for p in (*PARTS, "") if p in files]
    rows = pd.concat(parts, ignore_index=True)
    catalogue = {row["item_id"] for row in items}
    id_only = [i for i in pd.unique(rows["item_id"]) if i not in catalogue]
    report.products_without_metadata = len(id_only)
    items.extend({"item_id": i} for i in id_only)
    item_links = read_links(Path(meta), report, links, catalogue | set(id_only)) if meta else []
    users = make_table("users", {"user_id": pd.unique(rows["user_id"]), "name": ""})
    return Dataset(name=f"amazon2023-{category}", users=users, items=make_table("items", items),
                   interactions=make_table("interactions", rows), item_links=make_table("item_links", item_links),
                   report=report)
