"""Generic CSV / TSV / Parquet tables with a column mapping (source name ``csv``).

RAW_FILES: a folder holding ``interactions.<ext>`` (required) and optionally
``items``, ``users``, ``reviews``, ``item_links``, ``triples``, ``item_entities``,
``judgements`` with the same extensions (``.csv``, ``.csv.gz``, ``.tsv``, ``.parquet``);
or a single interactions file; or ``tables={"items": path, …}`` naming files directly.

Columns are the canonical ones (:data:`loaders.dataset.TABLES`) unless ``mapping``
renames them: ``{"interactions": {"user_id": "customer", "item_id": "sku"}}`` (canonical
-> source). :func:`parse_mapping` builds it from ``"interactions.user_id=customer,…"``.
Other columns are ignored. Field rules (all vectorised):

* ids (``user_id``, ``item_id``, ``head`` …, ``query``) -- required, stripped; empty -> error;
  an id holding a control character (NUL, tab, newline …: :data:`loaders.dataset.CONTROL_CHARACTERS`;
  ``query`` is text, not an id) -> error ("control character in an id").
* ``interactions.event`` -- stripped and lower-cased; other vocabularies' names are mapped
  by :data:`EVENT_SYNONYMS` (``addtocart``/``add_to_cart``/``basket`` … -> ``cart``,
  ``transaction``/``order``/``buy``/``checkout``/``sale`` -> ``purchase``,
  ``pageview``/``detail``/``product_view`` … -> ``view``, ``impressions``/``shown`` ->
  ``impression``, ``rate`` -> ``rating``; counted in the notes); empty or absent ->
  ``"purchase"``, or the ``event`` option (``-o event=rating``: a file of ratings);
  anything else -> error naming the value and the accepted names.
* ``value`` -- number, empty -> 1; for ``purchase`` and ``cart`` a quantity, so > 0 (a
  return, a negative quantity, is an error); ``rating`` -- number, empty -> NaN; bad -> error.
* ``timestamp`` -- whole Unix seconds (numbers >= 1e11 are taken as milliseconds and
  floored to the second) or an ISO date/datetime (UTC unless an offset is given; a
  fraction of a second is dropped); a Parquet datetime column likewise; empty -> 0.
  A date written day first with dots (``17.06.2018``, ``17.06.2018 14:05``: Excel in much
  of Europe) is read as that day (counted in the notes).
  When *every* non-empty value of the column is an 8-digit YYYYMMDD date from 1900-01-01
  to 2199-12-31 (``20180617``, as in Tmall/IJCAI and JD logs), the column is read as dates
  (midnight UTC) and counted in the notes ("timestamps read as YYYYMMDD dates").
  Errors: unparsable, not finite (``inf``), a non-integral number (``1.5``: "not an
  integer"), or outside [MIN_TIMESTAMP, MAX_TIMESTAMP) (:mod:`loaders.dataset`:
  1970-01-01 to before 2200-01-01 UTC -- so ``1e300`` or ``9.2e21`` are rejected).
* ``price`` -- a number or text :func:`loaders.text.parse_price` reads: ``"$12.99"``,
  ``"$10 - $20"`` (low end), ``"1,234.56"``, decimal commas ``"12,99"`` / ``"1.299,00"``, a
  currency before or after (``"€12.99"``, ``"12,99 €"``, ``"12.99 USD"``; dropped: one shop
  has one currency); empty -> NaN. Not a price (``"call us"``, an ambiguous ``"1,2,3"``):
  strict -> error; lenient -> kept as NaN (unknown) and counted in the notes ("prices not
  understood (kept as unknown)"). Infinite (``inf``, ``1e309``) or negative -> error.
* ``categories`` -- paths separated by ``"|"``, each already ``" > "``-joined;
  ``features`` -- separated by ``"|"``; in Parquet a list column is taken as is.
* ``reviews.review_id`` -- when absent or empty: ``f"{user_id}|{item_id}|{timestamp}"``.
* ``item_links.relation`` must be in LINK_RELATIONS; ``judgements.relevance`` an int >= 0.

References: when an items (users) file exists, an unknown item (user) id in
interactions, reviews, item_entities or judgements is an error; an ``item_links``
endpoint outside the items is a filtered reject. Without the file the table is built
from the ids used elsewhere. Rows repeating a key (:data:`loaders.dataset.KEYS`) are
filtered rejects (the first is kept) -- but for ``purchase`` and ``cart`` interactions,
whose value is a quantity: rows of the same customer, product, event and time (repeat
purchases on one day of a day-granular export, or with no time) are merged into the first,
their quantities summed, counted in the notes (kept, not rejected: read = kept + rejected
still holds, with kept counting the rows merged). Two identical rows are summed too: a
second order of the same quantity is as likely as a line listed twice, and counting it
once would lose it silently, where the note shows the merge. Line numbers: CSV line = row
index + 2 (header is line 1; quoted fields spanning lines are not accounted for); Parquet:
row index + 1.

A *delta* (``read(..., delta=True)``, what ``kgrec ingest --source csv`` reads: rows new or
changed since a store was built, :func:`kg.ingest.ingest`): interactions, reviews and
item links may name items and users outside the delta's own items / users files (the
store may hold them); those ids are listed id-only in ``items`` / ``users`` (as without
the file), and the ingest decides against the store (an id-only item the store does not
hold is no catalogue row: its events are rejected there). The interactions file is
optional (an empty table) when some other table is present: ``items.csv`` alone is a
catalogue delta (new products, price changes, ``available = 0`` withdrawals).

A ``.csv`` file whose header, read with commas, is one column holding ``;`` or a tab
(``item_id;title;price``: Excel's "CSV (semicolon)") is read with that separator, counted
in the notes (``"items.csv: read as ';'-separated"``).

A trailing delimiter on each data row (one more field than the header, empty; common in
exports) is ignored; a row with a *value* in a field past the header's is an error reject
("wrong number of fields: line N has a value in field K, the header has M fields"), as is a
row with more fields than the first data row. This holds for RecBole files too.

Files (:mod:`loaders.files`): compression is decided by content, so a ``.csv.gz`` that
is plain text is an error reject (strict: LoadError; lenient: read as plain text); a
broken gzip stream keeps the complete lines before the break and rejects the lost tail.
A row holding bytes that are not UTF-8 is an error reject naming its line and field
(its cells would hold U+FFFD); the other rows are read as usual.

:class:`Checker` and :func:`read_delimited` are shared with :mod:`loaders.recbole`.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from loaders.dataset import (CONTROL_IN_ID, EVENTS, ID_COLUMNS, KEYS, LINK_RELATIONS, PRICE_RANGE, SPLITS, TABLES,
                             TIMESTAMP_RANGE, Dataset, control_problem, escaped, ids_ok, isin, make_table, prices_ok,
                             timestamps_ok)
from loaders.errors import ConfigError, LoadError
from loaders.files import GZIP_ERRORS, bad_utf8_lines, open_binary, read_bytes, reject_lost_tail
from loaders.report import LoadReport
from loaders.text import parse_price

RAW_FILES = ("interactions.csv", "items.csv", "users.csv", "reviews.csv", "item_links.csv",
             "triples.csv", "item_entities.csv", "judgements.csv")
EXTENSIONS = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")
LIST_SEP = "|"
_SKIPPED = re.compile(r"Skipping line (\d+): (.*)")
#: what a decoder puts for bytes that are not UTF-8
REPLACEMENT = "\ufffd"
#: the name (then 1, 2 …) of a field past the header's, while :func:`read_delimited` checks it
EXTRA_FIELD = "\0extra"
#: other vocabularies' event names (matched stripped and lower-cased) -> kgrec's (EVENTS)
EVENT_SYNONYMS: dict[str, str] = {
    **dict.fromkeys(("addtocart", "add_to_cart", "add-to-cart", "add to cart", "cart_add", "basket"), "cart"),
    **dict.fromkeys(("transaction", "order", "buy", "checkout", "sale"), "purchase"),
    **dict.fromkeys(("pageview", "page_view", "page view", "detail", "detail_view", "product_view"), "view"),
    **dict.fromkeys(("impressions", "shown"), "impression"),
    "rate": "rating",
}
#: events whose value is a quantity (must be > 0)
QUANTITY_EVENTS = ("purchase", "cart")
#: the note counting quantity events merged into an earlier row of the same key (their
#: quantities summed there): repeat purchases on one day of a day-granular export
QUANTITIES_SUMMED_NOTE = "same customer, product, event and time: quantities summed (rows merged into the first)"
#: the note (lenient mode) counting kept items whose price could not be read
PRICES_NOT_UNDERSTOOD = "prices not understood (kept as unknown)"
#: a day-first date with dots, as Excel writes dates in much of Europe: 17.06.2018[ 14:05[:09]]
_DOTTED_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})((?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?)")
#: the note counting timestamps read from day-first dotted dates
DOTTED_NOTE = "timestamps read as day-first dates (17.06.2018)"
#: the note counting timestamps read as YYYYMMDD dates (every value of the column is one)
YYYYMMDD_NOTE = "timestamps read as YYYYMMDD dates"
#: numbers at least this large (in absolute value) are milliseconds, not seconds
MS_THRESHOLD = 1e11

# ----------------------------------------------------------------------------- shared


def read_delimited(file: str | Path, report: LoadReport, *, sep: str = ",",
                   quoting: int = csv.QUOTE_MINIMAL,
                   names: list[str] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a delimited text file (plain or gzip), every cell a string (``""`` if empty).

    The first line is the header unless ``names`` are given. Returns the rows and their
    1-based line numbers. Counts every non-blank data line as read; lines with too many
    fields and rows with bytes that are not UTF-8 become error rejects here; blank lines
    are skipped; a broken gzip stream is read up to its last complete line and the lost
    tail is one error reject. When the first data row has more fields than the header
    (a trailing delimiter), the columns stay aligned (:func:`_undo_implicit_index`): the
    extra fields are dropped when empty and a row with a value there is an error reject.
    """
    data, broken = read_bytes(file, report)
    bad_lines = bad_utf8_lines(data)
    if bad_lines and bad_lines[0] == 1 and not names:
        raise LoadError(str(file), 1, None, "the header line is not valid UTF-8")
    if broken is not None and not data.strip():
        raise LoadError(str(file), 1, None, f"truncated or corrupt gzip stream: nothing could be read "
                        f"({type(broken).__name__}: {broken})")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = pd.read_csv(io.BytesIO(data), sep=sep, dtype=str, quoting=quoting, keep_default_na=False,
                             skip_blank_lines=False, on_bad_lines="warn", encoding="utf-8",
                             encoding_errors="replace", header=None if names else "infer", names=names)
    except pd.errors.EmptyDataError:
        raise LoadError(str(file), None, None, "empty file (no header line)") from None
    except pd.errors.ParserError as exc:
        raise LoadError(str(file), None, None, f"unreadable: {exc}") from None
    width = len(df.columns)
    df = _undo_implicit_index(df)
    bad: list[tuple[int, str]] = []
    for w in caught:
        bad += [(int(n), why) for n, why in _SKIPPED.findall(str(w.message))]
    skipped = np.array(sorted(n for n, _ in bad), dtype=np.int64)
    start = 1 if names else 2
    candidates = np.arange(start, start + len(df) + len(skipped), dtype=np.int64)
    lines = candidates[~np.isin(candidates, skipped)][: len(df)]
    blank = (df == "").all(axis=1).to_numpy() if len(df.columns) else np.zeros(len(df), bool)
    df, lines = df[~blank].reset_index(drop=True), lines[~blank]
    report.read(file, len(df) + len(bad))
    for n, why in sorted(bad):
        report.reject(file, n, None, f"wrong number of fields: {why}")
    if len(df.columns) > width:
        df, lines = _reject_extra_fields(file, report, df, lines, width)
    if bad_lines:
        df, lines = _reject_bad_utf8(file, report, df, lines)
    if broken is not None:
        reject_lost_tail(report, file, data.count(b"\n"), broken)
    return df, lines


def _undo_implicit_index(df: pd.DataFrame) -> pd.DataFrame:
    """Put back the fields pandas took as the index, and name the extra fields.

    When the first data row has k more fields than the header (a trailing delimiter on
    each row gives k = 1), pandas makes the first k fields the index, shifting every
    column. Here every row is realigned: the header's names for its first fields, then
    k columns named :data:`EXTRA_FIELD` + ``"1"`` … for the fields past the header.
    """
    if isinstance(df.index, pd.RangeIndex):
        return df
    front = df.index.to_frame(index=False)
    out = pd.concat([front, df.reset_index(drop=True)], axis=1, ignore_index=True)
    out.columns = list(df.columns) + [f"{EXTRA_FIELD}{i + 1}" for i in range(front.shape[1])]
    return out


def _reject_extra_fields(file: str | Path, report: LoadReport, df: pd.DataFrame, lines: np.ndarray,
                         width: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Reject the rows with a value in a field past the header's ``width`` fields; drop those
    fields (empty or blank in every other row: a trailing delimiter, ignored)."""
    extra = df.iloc[:, width:].fillna("").apply(lambda s: s.str.strip())
    filled = (extra != "").to_numpy()
    rows = np.flatnonzero(filled.any(axis=1))
    for i in rows:
        last = width + int(np.flatnonzero(filled[i])[-1]) + 1
        report.reject(file, int(lines[i]), None, f"wrong number of fields: line {lines[i]} has a value in "
                      f"field {last}, the header has {width} fields", " ".join(extra.iloc[i][filled[i]]))
    keep = np.ones(len(df), dtype=bool)
    keep[rows] = False
    return df.iloc[keep, :width].reset_index(drop=True), lines[keep]


def _reject_bad_utf8(file: str | Path, report: LoadReport, df: pd.DataFrame,
                     lines: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Reject (and drop) the rows with a cell holding U+FFFD, i.e. bytes that were not UTF-8."""
    hit = pd.DataFrame({c: df[c].str.contains(REPLACEMENT, regex=False) for c in df.columns})
    rows = np.flatnonzero(hit.any(axis=1).to_numpy())
    for i in rows:
        col = hit.columns[int(np.argmax(hit.iloc[i].to_numpy()))]
        report.reject(file, int(lines[i]), str(col), "not valid UTF-8: bytes that are not UTF-8 text",
                      df.iloc[i][col])
    keep = np.ones(len(df), dtype=bool)
    keep[rows] = False
    return df[keep].reset_index(drop=True), lines[keep]


class Checker:
    """Vectorised validation of one source table, with every dropped row reported.

    ``alive`` marks the rows still kept; each ``reject_*`` method reports the offending
    live rows (loop over rejects only) and clears them. :meth:`finish` counts the kept
    rows and returns them.
    """

    def __init__(self, report: LoadReport, file: str | Path, df: pd.DataFrame, lines: np.ndarray):
        self.report, self.file = report, str(file)
        self.df = df.reset_index(drop=True)
        self.lines = np.asarray(lines, dtype=np.int64)
        self.alive = np.ones(len(self.df), dtype=bool)

    def reject(self, mask, field: str | None, reason: str, values=None, *, error: bool = True) -> None:
        mask = np.asarray(mask, dtype=bool) & self.alive
        if not mask.any():
            return
        if values is None and field is not None and field in self.df.columns:
            values = self.df[field]
        vals = None if values is None else np.asarray(values, dtype=object)
        for i in np.flatnonzero(mask):
            self.report.reject(self.file, int(self.lines[i]), field, reason,
                               "" if vals is None else vals[i], error=error)
        self.alive &= ~mask

    def required(self, *cols: str, names: dict[str, str] | None = None) -> None:
        """Reject rows where any of ``cols`` is empty (field named by its source name)."""
        for col in cols:
            self.reject(self.df[col].str.strip() == "", (names or {}).get(col, col),
                        "missing required value")

    def ids(self, *cols: str, names: dict[str, str] | None = None) -> None:
        """Reject rows where any of the id columns ``cols`` holds a control character once
        stripped, as ids are stored (an error: :data:`loaders.dataset.CONTROL_IN_ID`, with the
        id's ``repr``; the value column shows them escaped). Field named by its source name."""
        for col in cols:
            stripped = self.df[col].astype(str).str.strip()
            bad = np.flatnonzero(~ids_ok(stripped) & self.alive)
            for i in bad:
                value = stripped.iloc[i]
                self.report.reject(self.file, int(self.lines[i]), (names or {}).get(col, col),
                                   control_problem(value) or CONTROL_IN_ID, escaped(value))
            self.alive[bad] = False

    def number(self, col: str, *, default: float = np.nan, field: str | None = None) -> pd.Series:
        """``col`` as floats; empty -> ``default``; non-numeric -> error reject."""
        s = self.df[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            out = s.astype("float64")
            self.reject(~np.isfinite(out.to_numpy()) & out.notna().to_numpy(),
                        field or col, "not a finite number")
            return out.fillna(default)
        text = s.astype(str).str.strip()
        out = pd.to_numeric(text, errors="coerce")
        empty = (text == "").to_numpy()
        bad = (out.isna().to_numpy() | ~np.isfinite(out.fillna(0).to_numpy())) & ~empty
        self.reject(bad, field or col, "not a number")
        out = out.where(~empty, default)
        return out.where(~bad, np.nan).astype("float64")

    def duplicates(self, cols: list[str], what: str) -> None:
        """Filtered reject of live rows repeating the key ``cols`` (the first is kept)."""
        live = np.flatnonzero(self.alive)
        key = self.df.loc[live, cols]
        dup = key.duplicated(keep="first").to_numpy()
        if not dup.any():
            return
        values = key.to_numpy()
        first_line = dict(zip(map(tuple, values[~dup]), self.lines[live][~dup]))
        mask = np.zeros(len(self.df), dtype=bool)
        for j in np.flatnonzero(dup):
            i = live[j]
            mask[i] = True
            k = tuple(values[j])
            self.report.reject(self.file, int(self.lines[i]), ",".join(cols),
                               f"duplicate {what}: first seen on line {first_line[k]}, that one is kept",
                               "|".join(map(str, k)), error=False)
        self.alive &= ~mask

    def sum_repeats(self, cols: list[str], rows: np.ndarray, value: str, note: str) -> None:
        """Merge the live ``rows`` (a mask) repeating the key ``cols`` into the first of them:
        its ``value`` becomes the sum of theirs. The rows merged are no rejects -- their
        quantity is kept, in the first -- so they count as kept and under ``note``."""
        live = np.flatnonzero(self.alive & np.asarray(rows, dtype=bool))
        key = self.df.loc[live, cols]
        dup = key.duplicated(keep="first").to_numpy()
        if not dup.any():
            return
        group = key.groupby(cols, sort=False, dropna=False).ngroup().to_numpy()
        totals = np.bincount(group, weights=self.df.loc[live, value].to_numpy(dtype="float64"))
        self.df.loc[live[~dup], value] = totals[group[~dup]]
        self.alive[live[dup]] = False
        self.report.keep(self.file, int(dup.sum()))
        self.report.note(note, int(dup.sum()))

    def unknown(self, col: str, universe, what: str, *, field: str | None = None,
                error: bool = True) -> None:
        """Reject live rows whose ``col`` is not in ``universe``."""
        ok = isin(self.df[col], universe)
        self.reject(~ok, field or col, f"unknown {what}", self.df[col], error=error)

    def finish(self) -> pd.DataFrame:
        self.report.keep(self.file, int(self.alive.sum()))
        return self.df[self.alive].reset_index(drop=True)


def parse_timestamps(chk: Checker, col: str, field: str | None = None) -> pd.Series:
    """Unix seconds from numbers (>= 1e11 -> ms) or ISO datetimes; empty -> 0. A column
    of YYYYMMDD dates only (:func:`_yyyymmdd`) is read as dates, counted in the notes.

    Error rejects: not a number or ISO date, not finite, not an integer (a number of
    seconds or milliseconds with a fraction), or outside [MIN_TIMESTAMP, MAX_TIMESTAMP).
    Rejected rows get 0 (they are dropped by :meth:`Checker.finish`).
    """
    s = chk.df[col]
    name = field or col
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s):
        dt = s.dt.tz_localize("UTC") if getattr(s.dt, "tz", None) is None else s
        secs = ((dt - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype("float64")
        chk.reject(secs.notna().to_numpy() & ~timestamps_ok(secs), name, TIMESTAMP_RANGE, s)
        return secs.where(chk.alive, 0).fillna(0).astype("int64")
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        num, text = s.astype("float64"), None
        iso = np.zeros(len(s), dtype=bool)
        chk.reject(num.notna().to_numpy() & ~np.isfinite(num.to_numpy()), name, "not a finite number", s)
    else:
        text = s.astype(str).str.strip()
        num = pd.to_numeric(text, errors="coerce").astype("float64")
        iso = (num.isna() & (text != "")).to_numpy()
        if iso.any():
            written = text[iso]
            dotted = written.str.fullmatch(_DOTTED_DATE.pattern)
            if dotted.any():  # 17.06.2018 (Excel in Europe): day first, read as its ISO spelling
                written = written.where(~dotted, written[dotted].str.replace(
                    _DOTTED_DATE, lambda m: f"{m[3]}-{int(m[2]):02d}-{int(m[1]):02d}{m[4] or ''}", regex=True))
            dt = pd.to_datetime(written, utc=True, errors="coerce", format="ISO8601")
            chk.report.note(DOTTED_NOTE, int((dotted & dt.notna()).to_numpy()[chk.alive[iso]].sum()))
            num[iso] = ((dt - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype("float64")
            chk.reject(num.isna().to_numpy() & iso, name, "not a Unix time or ISO date", s)
        chk.reject(~np.isfinite(num.fillna(0).to_numpy()), name, "not a finite number", s)
    dates = None if iso.any() else _yyyymmdd(num, text)
    if dates is not None:
        chk.report.note(YYYYMMDD_NOTE, int((num.notna().to_numpy() & chk.alive).sum()))
        num = dates
    values = num.fillna(0).to_numpy()
    with np.errstate(invalid="ignore"):
        chk.reject(~iso & np.isfinite(values) & (values % 1 != 0), name,
                   "not an integer: Unix seconds (or milliseconds) must be whole", s)
        ms = np.abs(values) >= MS_THRESHOLD
        secs = np.where(ms, np.floor(values / 1000), values)
    chk.reject(~timestamps_ok(secs), name, TIMESTAMP_RANGE, s)
    return pd.Series(np.where(chk.alive, secs, 0).astype("int64"), index=s.index)


def _yyyymmdd(num: pd.Series, text: pd.Series | None) -> pd.Series | None:
    """Unix seconds (midnight UTC) when every present value of ``num`` is a YYYYMMDD date
    (``20180617``) from 1900-01-01 to 2199-12-31 -- and, given ``text``, written as 8 digits;
    else None (the values are Unix seconds or milliseconds)."""
    present = num.notna()
    v = num[present]
    with np.errstate(invalid="ignore"):
        if not len(v) or not ((v >= 19000101) & (v <= 21991231) & (v % 1 == 0)).all():
            return None
    if text is not None and not text[present].str.fullmatch(r"\d{8}").all():
        return None
    dt = pd.to_datetime(v.astype("int64").astype(str), format="%Y%m%d", errors="coerce", utc=True)
    if dt.isna().any():
        return None
    out = num.copy()
    out[present] = ((dt - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype("float64")
    return out


# ----------------------------------------------------------------------------- mapping


def parse_mapping(text: str) -> dict[str, dict[str, str]]:
    """``"interactions.user_id=customer,items.title=name"`` -> nested mapping.

    A column without a table prefix belongs to ``interactions``. Raises ConfigError (a ValueError) for
    malformed pairs, unknown tables or unknown canonical columns.
    """
    out: dict[str, dict[str, str]] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        if "=" not in part:
            raise ConfigError(f"mapping {part!r}: expected table.column=source_column")
        target, source = (x.strip() for x in part.split("=", 1))
        table, _, column = target.rpartition(".")
        table = table or "interactions"
        if table not in TABLES:
            raise ConfigError(f"mapping {part!r}: unknown table {table!r}")
        if column not in {c.name for c in TABLES[table]}:
            raise ConfigError(f"mapping {part!r}: table {table!r} has no column {column!r}")
        if not source:
            raise ConfigError(f"mapping {part!r}: empty source column")
        out.setdefault(table, {})[column] = source
    return out


# ----------------------------------------------------------------------------- reader

_IDS = {"interactions": ("user_id", "item_id"), "items": ("item_id",), "users": ("user_id",),
        "reviews": ("user_id", "item_id"), "item_links": ("src_item", "dst_item", "relation"),
        "triples": ("head", "relation", "tail"), "item_entities": ("item_id", "entity_id"),
        "judgements": ("query", "item_id")}
_ORDER = ("items", "users", "interactions", "reviews", "item_links", "triples",
          "item_entities", "judgements")
#: the (table, column)s whose items / users a delta may take from the store (not checked
#: against its own items / users files: listed id-only instead, :func:`read`)
_DELTA_REFS = {"items": (("interactions", "item_id"), ("reviews", "item_id"),
                         ("item_links", "src_item"), ("item_links", "dst_item")),
               "users": (("interactions", "user_id"), ("reviews", "user_id"))}


def find_tables(path: str | Path | None, tables: dict | None, *, delta: bool = False) -> dict[str, Path]:
    """The table files at ``path`` (a folder, or one interactions file) and in ``tables``.
    An interactions file is required, unless ``delta`` and some other table is found."""
    files: dict[str, Path] = {}
    if path is not None:
        path = Path(path)
        if path.is_file():
            files["interactions"] = path
        elif path.is_dir():
            for table in TABLES:
                for ext in EXTENSIONS:
                    if (path / f"{table}{ext}").is_file():
                        files[table] = path / f"{table}{ext}"
                        break
        else:
            raise LoadError(str(path), None, None, "no such file or folder")
    for table, file in (tables or {}).items():
        if table not in TABLES:
            raise ConfigError(f"tables: unknown table {table!r}")
        files[table] = Path(file)
    if "interactions" not in files and not (delta and files):
        raise LoadError(str(path), None, None,
                        f"no interactions file (interactions{{{','.join(EXTENSIONS)}}})"
                        + (" and no other table file" if delta else ""))
    return files


def _read_file(file: Path, report: LoadReport) -> tuple[pd.DataFrame, np.ndarray]:
    if not file.is_file():
        raise LoadError(str(file), None, None, "no such file")
    if file.suffix in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(file)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise LoadError(str(file), None, None, f"unreadable Parquet file: {exc}") from None
        report.read(file, len(df))
        return df, np.arange(1, len(df) + 1)
    if ".tsv" in file.suffixes:
        return read_delimited(file, report, sep="\t")
    sep = _header_sep(file)
    if sep != ",":
        report.note(f"{file.name}: read as {'tab' if sep == chr(9) else repr(sep)}-separated", 1)
    return read_delimited(file, report, sep=sep)


def _header_sep(file: Path) -> str:
    """``","``, unless the header line read with commas is a single column whose name holds
    ``";"`` or a tab that split it into several names: then that character (Excel's
    "CSV (semicolon)" in European locales, or a tab-separated file named ``.csv``)."""
    try:
        with open_binary(file) as fh:
            first = fh.readline(1 << 20).decode("utf-8-sig", errors="replace")
    except GZIP_ERRORS:
        return ","
    names = next(csv.reader([first.rstrip("\r\n")]), [])
    if len(names) != 1:
        return ","
    sep = max(";\t", key=names[0].count)
    return sep if len([n for n in names[0].split(sep) if n.strip()]) > 1 else ","


def _text(s: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(s) and s.dropna().map(float.is_integer).all():
        s = s.astype("Int64")
    return s.astype(object).where(s.notna(), "").astype(str).str.strip()


def _split_list(s: pd.Series) -> pd.Series:
    def one(v):
        if isinstance(v, (list, tuple, np.ndarray)):
            return [str(x) for x in v if str(x).strip()]
        v = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
        return [p.strip() for p in v.split(LIST_SEP) if p.strip()]
    return s.map(one)


def _table(table: str, file: Path, report: LoadReport, mapping: dict[str, str],
           known: dict[str, pd.Index | None], default_event: str = "purchase", delta: bool = False) -> pd.DataFrame:
    raw, lines = _read_file(file, report)
    rename = {}
    for canon in (c.name for c in TABLES[table]):
        source = mapping.get(canon, canon)
        if source in raw.columns:
            rename[source] = canon
        elif canon in mapping:
            raise LoadError(str(file), 1, source, f"mapped column for {table}.{canon} not in the header")
    names = {canon: source for source, canon in rename.items()}
    df = raw[list(rename)].rename(columns=rename)
    for col in _IDS[table]:
        if col not in df.columns:
            raise LoadError(str(file), 1, mapping.get(col, col), f"missing required column for {table}.{col}")
    chk = Checker(report, file, df, lines)
    for col in df.columns:
        if TABLES[table][[c.name for c in TABLES[table]].index(col)].dtype == "str":
            chk.df[col] = _text(df[col])
    chk.required(*(c for c in _IDS[table] if c in df.columns), names=names)
    chk.ids(*(c for c in ID_COLUMNS[table] if c in df.columns), names=names)
    out = chk.df
    f = names.get
    if table == "interactions":
        out["event"] = _events(chk, f("event", "event"), default_event)
        out["value"] = chk.number("value", default=1.0, field=f("value")) if "value" in out else 1.0
        # a purchase or a cart's value is a quantity: a return (negative) or nothing bought is no purchase
        value = pd.Series(out["value"], index=out.index)
        returned = out["event"].isin(QUANTITY_EVENTS).to_numpy() & (value <= 0).to_numpy()
        chk.reject(returned, f("value", "value"), "not a quantity: a purchase or cart event needs value > 0 "
                   "(a return is not a purchase)")
        if "split" in out:  # a given split: train / valid (validation, val) / test, else an error
            sp = out["split"].str.lower().replace({"validation": "valid", "val": "valid"})
            chk.reject(~sp.isin(SPLITS).to_numpy(), f("split", "split"),
                       "unknown split (not train, valid or test)")
            out["split"] = sp
    if table == "reviews" and "rating" in out:
        out["rating"] = chk.number("rating", field=f("rating"))
    if "timestamp" in out:
        out["timestamp"] = parse_timestamps(chk, "timestamp", f("timestamp"))
    if table == "reviews":
        ts = out["timestamp"].astype(str) if "timestamp" in out else "0"
        made = out["user_id"] + "|" + out["item_id"] + "|" + ts
        out["review_id"] = out["review_id"].where(out["review_id"] != "", made) \
            if "review_id" in out else made
    if table == "items":
        if "price" in out:
            out["price"] = _prices(chk, f("price", "price"))
        for col in ("categories", "features"):
            if col in out:
                out[col] = _split_list(out[col])
    if table == "item_links":
        chk.reject(~out["relation"].isin(LINK_RELATIONS).to_numpy(), f("relation", "relation"),
                   f"unknown relation (not one of {', '.join(LINK_RELATIONS)})")
    if table == "judgements":
        rel = chk.number("relevance", default=0.0, field=f("relevance")) if "relevance" in out else 0.0
        rel = pd.Series(rel, index=out.index, dtype="float64")
        chk.reject(((rel < 0) | (rel.fillna(0) % 1 != 0)).to_numpy(), f("relevance", "relevance"),
                   "relevance must be an integer >= 0")
        out["relevance"] = rel.fillna(0).where(chk.alive, 0).astype("int64")
    for col, ref in (("item_id", "items"), ("user_id", "users"), ("src_item", "items"),
                     ("dst_item", "items")):
        if col in out and table != ref and known.get(ref) is not None \
                and not (delta and (table, col) in _DELTA_REFS[ref]):
            chk.unknown(col, known[ref], f"{ref[:-1]} (not in the {ref} file)", field=f(col, col),
                        error=table != "item_links")
    for col in KEYS[table]:
        if col not in out:
            out[col] = 0 if col == "timestamp" else ""
    if table == "interactions":  # repeat purchases at one time (a day-granular date): one row, summed
        chk.sum_repeats(list(KEYS[table]), out["event"].isin(QUANTITY_EVENTS).to_numpy(), "value",
                        QUANTITIES_SUMMED_NOTE)
    chk.duplicates(list(KEYS[table]), "key")
    return make_table(table, chk.finish())


def _events(chk: Checker, field: str, default: str = "purchase") -> pd.Series:
    """``event`` stripped and lower-cased, other vocabularies' names mapped to kgrec's
    (:data:`EVENT_SYNONYMS`, counted in the notes), empty or absent -> ``default``.
    Any other name is an error reject naming the value and the accepted names."""
    raw = chk.df["event"] if "event" in chk.df else pd.Series("", index=chk.df.index, dtype=str)
    ev = raw.str.strip().str.lower()
    mapped = ev.map(EVENT_SYNONYMS)
    hit = mapped.notna().to_numpy() & chk.alive
    if hit.any():
        pairs = sorted(set(zip(ev[hit], mapped[hit])))
        shown = ", ".join(f"{a} → {b}" for a, b in pairs[:3]) + (" …" if len(pairs) > 3 else "")
        chk.report.note(f"event names mapped to kgrec's ({shown})", int(hit.sum()))
    ev = ev.where(mapped.isna(), mapped)
    ev = ev.where(ev != "", default)
    bad = np.flatnonzero(~ev.isin(EVENTS).to_numpy() & chk.alive)
    for i in bad:
        chk.report.reject(chk.file, int(chk.lines[i]), field, f"unknown event: {raw.iloc[i]!r} (not one of "
                          f"{', '.join(EVENTS)}, nor {', '.join(EVENT_SYNONYMS)})", raw.iloc[i])
    chk.alive[bad] = False
    return ev


def _prices(chk: Checker, field: str) -> pd.Series:
    """``price`` as floats: numbers, or text :func:`loaders.text.parse_price` reads
    (``"$12.99"``, ``"12,99 €"``, a range's low end); empty -> NaN.

    A price that cannot be read is an error reject in strict mode ("not a price"); in
    lenient mode the row is kept with price NaN (unknown) and counted in the notes.
    Error rejects in both modes: infinite (``inf``, ``1e309``) or negative
    (:func:`loaders.dataset.prices_ok`)."""
    s = chk.df["price"]
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        num = s.astype("float64")
    else:
        text = s.astype(str).str.strip()
        num = pd.to_numeric(text, errors="coerce").astype("float64")
        other = num.isna() & (text != "")
        if other.any():
            num[other] = text[other].map(parse_price)
            unread = (num.isna() & other).to_numpy()
            if chk.report.strict:
                chk.reject(unread, field, "not a price", s)
            else:
                chk.report.note(PRICES_NOT_UNDERSTOOD, int((unread & chk.alive).sum()))
    chk.reject(~prices_ok(num), field, PRICE_RANGE, s)
    return num.where(chk.alive, np.nan).astype("float64")


def read(path: str | Path | None = None, *, strict: bool = True,
         mapping: dict | str | None = None, tables: dict | None = None, event: str = "purchase",
         delta: bool = False) -> Dataset:
    """Read canonical-ish CSV/Parquet tables (see module docstring) into a Dataset.
    ``event``: the event of an interaction without one (no ``event`` column, or an empty
    cell), one of :data:`loaders.dataset.EVENTS`. ``delta``: the tables are a delta for
    :func:`kg.ingest.ingest` (module docstring): their rows may name items and users outside
    the items / users files, and the interactions file is optional."""
    if event not in EVENTS:
        raise ConfigError(f"event={event!r}: not one of {', '.join(EVENTS)}")
    if isinstance(mapping, str):
        mapping = parse_mapping(mapping)
    mapping = mapping or {}
    for table in mapping:
        if table not in TABLES:
            raise ConfigError(f"mapping: unknown table {table!r}")
    files = find_tables(path, tables, delta=delta)
    report = LoadReport(strict=strict)
    known: dict[str, pd.Index | None] = {"items": None, "users": None}
    out: dict[str, pd.DataFrame] = {}
    for table in _ORDER:
        if table in files:
            out[table] = _table(table, files[table], report, mapping.get(table, {}), known, event, delta)
            if table in known:
                known[table] = pd.Index(out[table][f"{table[:-1]}_id"])
    if "interactions" not in out:  # a delta without events (find_tables)
        out["interactions"] = make_table("interactions")
    for table, refs in _DELTA_REFS.items() if delta else ():
        if table in out:  # ids outside the file, which the store may hold: listed id-only (kg.ingest decides)
            col = f"{table[:-1]}_id"
            ids = pd.Series(pd.unique(pd.concat([out[t][c] for t, c in refs if t in out], ignore_index=True)),
                            dtype=out[table][col].dtype)
            extra = ids[~isin(ids, out[table][col])]
            if len(extra):
                out[table] = make_table(table, pd.concat([out[table], make_table(table, {col: extra.to_numpy()})],
                                                         ignore_index=True))
    if "items" not in out:
        ids = [out[t][c] for t, cols in (("interactions", ["item_id"]), ("reviews", ["item_id"]),
                                         ("item_links", ["src_item", "dst_item"]),
                                         ("item_entities", ["item_id"]), ("judgements", ["item_id"]))
               if t in out for c in cols]
        out["items"] = make_table("items", {"item_id": pd.unique(pd.concat(ids, ignore_index=True))})
    if "users" not in out:
        ids = [out[t]["user_id"] for t in ("interactions", "reviews") if t in out]
        out["users"] = make_table("users", {"user_id": pd.unique(pd.concat(ids, ignore_index=True))})
    report.check()
    first = files.get("interactions") or next(iter(files.values()))
    name = first.parent.name if path is not None and Path(path).is_dir() else first.name.split(".")[0]
    return Dataset(name=name, report=report, **out)
