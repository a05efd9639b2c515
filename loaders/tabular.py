"""Generic CSV / TSV / Parquet tables with a column mapping (source name ``csv``).

RAW_FILES: a folder holding ``interactions.<ext>`` (required) and optionally
``items``, ``users``, ``reviews``, ``item_links``, ``triples``, ``item_entities``,
``judgements`` with the same extensions (``.csv``, ``.csv.gz``, ``.tsv``, ``.parquet``);
or a single interactions file; or ``tables={"items": path, …}`` naming files directly.

Columns are the canonical ones (:data:`loaders.dataset.TABLES`) unless ``mapping``
renames them: ``{"interactions": {"user_id": "customer", "item_id": "sku"}}`` (canonical
-> source). :func:`parse_mapping` builds it from ``"interactions.user_id=customer,…"``.
Header names are matched ignoring case and surrounding spaces (``" user_id "``, ``User_ID``;
counted in the notes); two header names matching one column (``item_id`` written twice,
or ``user_id`` and ``User_ID``) are an error naming them, as is a missing required column
(the message shows the header read). Other columns are ignored. The columns a file really
had are recorded (``Dataset.columns``): a delta's row sets only those (:mod:`kg.ingest`).
Field rules (all vectorised):

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
  return, a negative quantity, is an error); for ``rating`` and ``review`` events the
  rating: empty -> error ("missing rating", never a 1-star rating), and a file holding such
  events without a value column is a LoadError naming the column to map
  (``--map interactions.value=rating``); bad -> error. ``reviews.rating`` -- number, empty -> NaN.
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
  Times before 1971 (other than 0) are kept but counted in the notes (:data:`EARLY_NOTE`):
  an Excel serial date (``45292`` = 2024-01-01) or a row number would be read as 1970.
* ``price`` -- a number or text :func:`loaders.text.parse_price` reads: ``"$12.99"``,
  ``"$10 - $20"`` (low end), ``"1,234.56"``, decimal commas ``"12,99"`` / ``"1.299,00"``, a
  currency before or after (``"€12.99"``, ``"12,99 €"``, ``"12.99 USD"``; dropped: one shop
  has one currency); empty -> NaN. Not a price (``"call us"``, an ambiguous ``"1,2,3"``):
  strict -> error; lenient -> kept as NaN (unknown) and counted in the notes ("prices not
  understood (kept as unknown)"). Infinite (``inf``, ``1e309``) or negative -> error.
  ``"2.500"`` / ``"1.299 €"`` (a dot then groups of three digits) is decided per column
  (:func:`_prices`): thousands (2500) when the column's other prices use decimal commas and
  none a decimal point; else a decimal point (2.5), counted in the notes as ambiguous
  unless the column's other prices use decimal points.
* ``available`` -- ``1``/``0``, ``true``/``false``, ``yes``/``no``, ``y``/``n`` (any case; a
  Parquet bool); empty -> 1 (on sale); anything else -> error ("not 1 or 0").
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
once would lose it silently, where the note shows the merge. Line numbers: a CSV record's
physical line in the file (header is line 1; a record whose quoted field spans lines is
named by the line it starts on: :func:`_record_starts`); Parquet: row index + 1. A Parquet
null is an empty cell (the defaults above), in a text column too.

A *delta* (``read(..., delta=True)``, what ``kgrec ingest --source csv`` reads: rows new or
changed since a store was built, :func:`kg.ingest.ingest`): interactions, reviews and
item links may name items and users outside the delta's own items / users files (the
store may hold them); those ids are listed id-only in ``items`` / ``users`` (as without
the file), and the ingest decides against the store (an id-only item the store does not
hold is no catalogue row: its events are rejected there). The interactions file is
optional (an empty table) when some other table is present: ``items.csv`` alone is a
catalogue delta (new products, price changes, ``available = 0`` withdrawals); a delta's
items file may have only some columns (``item_id,price``): the ingest changes only those
(``Dataset.columns``; the listed id-only ids are ``Dataset.listed``).

A ``.csv`` file whose header, read with commas, is one column holding ``;`` or a tab
(``item_id;title;price``: Excel's "CSV (semicolon)") is read with that separator, counted
in the notes (``"items.csv: read as ';'-separated"``). A file whose lines end in CR alone
(classic Mac, Excel's "CSV (Macintosh)") is read with those as line breaks (noted).

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
import pyarrow as pa
import pyarrow.compute as pc

from loaders.dataset import (CONTROL_IN_ID, EVENTS, ID_COLUMNS, KEYS, LINK_RELATIONS, PRICE_RANGE, SPLITS, TABLES,
                             TIMESTAMP_RANGE, Dataset, control_problem, escaped, ids_ok, isin, make_table, prices_ok,
                             timestamps_ok)
from loaders.errors import ConfigError, LoadError
from loaders.files import GZIP_ERRORS, bad_utf8_lines, open_binary, read_bytes, reject_lost_tail
from loaders.report import LoadReport
from loaders.text import DECIMAL_COMMA, DECIMAL_POINT, DOT_GROUPS, parse_price

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
#: known timestamps before this (1971-01-01 UTC) are kept but counted in the notes: no shop
#: sold anything in 1970, so they are most likely Excel serial dates or row numbers
EARLY_TIMESTAMP = 31_536_000
#: the note counting timestamps before :data:`EARLY_TIMESTAMP`
EARLY_NOTE = ("timestamps before 1971 (kept: Excel serial dates such as 45292 = 2024-01-01, or row numbers, "
              "read as seconds after 1970?)")
#: the note of a file read with CR-only line endings
CR_NOTE = "{file}: lines end in CR alone (classic Mac): read as line breaks"
#: the note counting prices whose dots were read as thousands separators (the column's other
#: prices use decimal commas)
DOT_THOUSANDS_NOTE = "prices with '.' read as thousands (the column's other prices use decimal commas: 2.500 = 2500)"
#: the note counting prices like 1.299 read with a decimal point although the column does not tell
DOT_AMBIGUOUS_NOTE = ("prices like 1.299 read with '.' as the decimal point (the column shows no decimal "
                      "comma or point elsewhere to tell; 1.299 may mean 1299)")
#: events whose value is their rating: an empty value is no rating (an error), never 1
RATED_EVENTS = ("rating", "review")
#: ``items.available`` as written (stripped, case-folded) -> 1 / 0; ``""`` -> 1 (on sale)
AVAILABLE_WORDS: dict[str, int] = {"": 1, "1": 1, "true": 1, "yes": 1, "y": 1, "0": 0, "false": 0, "no": 0, "n": 0}
#: the note of a header whose names were matched to the mapping ignoring case and spaces
LOOSE_HEADER_NOTE = "{file}: header names matched ignoring case and surrounding spaces ({pairs})"

# ----------------------------------------------------------------------------- shared


def read_delimited(file: str | Path, report: LoadReport, *, sep: str = ",",
                   quoting: int = csv.QUOTE_MINIMAL,
                   names: list[str] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a delimited text file (plain or gzip), every cell a string (``""`` if empty).

    The first line is the header unless ``names`` are given. Returns the rows and the
    1-based physical line each starts on (a quoted field spanning lines makes a record
    longer than one line: :func:`_record_starts`). Counts every non-blank data line as read;
    lines with too many fields and rows with bytes that are not UTF-8 become error rejects
    here; blank lines are skipped; a broken gzip stream is read up to its last complete line
    and the lost tail is one error reject. When the first data row has more fields than the
    header (a trailing delimiter), the columns stay aligned (:func:`_undo_implicit_index`):
    the extra fields are dropped when empty and a row with a value there is an error reject.
    A file whose lines end in a carriage return alone (classic Mac OS, Excel's "CSV
    (Macintosh)") is read with those as line breaks, counted in the notes.
    """
    data, broken = read_bytes(file, report)
    if b"\r" in data and b"\n" not in data:  # CR-only line endings: the line breaks every count below sees
        data = data.replace(b"\r", b"\n")
        report.note(CR_NOTE.format(file=Path(file).name), 1)
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
    lines = candidates[~np.isin(candidates, skipped)][: len(df)]  # record numbers (pandas' too)
    starts = _record_starts(data, df, lines, start - 1 + len(df) + len(skipped), not names, sep, quoting)
    if starts is not None:  # a quoted field spans lines: record number -> the physical line it starts on
        lines = starts[lines - 1]
        bad = [(int(starts[n - 1]), why) for n, why in bad]
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


def _record_starts(data: bytes, df: pd.DataFrame, rows: np.ndarray, records: int, header: bool, sep: str,
                   quoting: int) -> np.ndarray | None:
    """The physical line (1-based) each of the ``records`` records of ``data`` starts on
    (index ``n - 1``: record ``n``, the header included when ``header``), or None when every
    record is one line -- the usual case, told by counting line breaks; nothing else is done.

    ``df``: the rows the parser read, record numbers ``rows``. A record spans one line plus
    the line breaks inside its fields (quoted fields spanning lines), counted in the cells
    as the parser read them -- so its reading of the quotes decides (a ``"`` inside an
    unquoted field, ``12" pizza``, is text). The records the parser skipped (too many fields)
    are taken as one line each; when the spans then do not add up to the file's lines (such a
    record had a quoted line break), one pass of Python's csv reader gives each record's first
    line (slower); when that disagrees too (or ``sep`` is no single character): None, and
    records are counted as lines."""
    lines = data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
    if lines == records or records == 0:
        return None
    spans = np.ones(records, dtype=np.int64)
    if header:
        spans[0] += sum(str(c).count("\n") for c in df.columns)
    if len(df.columns) and len(rows):
        for c in df.columns:  # Arrow's substring count: a few ms per column of 100k cells
            spans[rows - 1] += pc.count_substring(pa.array(df[c], type=pa.string(), from_pandas=True), "\n") \
                .fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if int(spans.sum()) == lines:
        return np.concatenate([[1], 1 + np.cumsum(spans)[:-1]]).astype(np.int64)
    if len(sep) != 1:
        return None
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""), delimiter=sep,
                        quoting=quoting)
    found, last = [], 0
    try:
        for _ in reader:
            found.append(last + 1)
            last = reader.line_num
    except csv.Error:
        return None
    return np.asarray(found, dtype=np.int64) if len(found) == records else None


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
    Rejected rows get 0 (they are dropped by :meth:`Checker.finish`). Numbers read as times
    before 1971 (:data:`EARLY_TIMESTAMP`, not 0 = unknown) are kept and counted in the notes
    (:data:`EARLY_NOTE`): Excel's serial dates (``45292`` = 2024-01-01) or row numbers
    written where a time belongs would otherwise pass as January 1970 unseen.
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
    with np.errstate(invalid="ignore"):
        early = chk.alive & (secs > 0) & (secs < EARLY_TIMESTAMP)
    if early.any():  # kept (a valid time), but 1970 is no shop's: most likely Excel serial dates
        chk.report.note(EARLY_NOTE, int(early.sum()))
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


def _read_file(file: Path, report: LoadReport) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The rows of ``file``, their line numbers, and its header's column names as written
    (position by position; pandas renames a repeated name ``item_id.1``, this does not).

    Parquet: a null in a text (object or string) column is ``""``, as an empty CSV cell is
    (pyarrow writes nullable strings and decimals with nulls: read as ``"None"``/``"nan"``
    they were rejected as not a number, where the empty CSV cell means the default)."""
    if not file.is_file():
        raise LoadError(str(file), None, None, "no such file")
    if file.suffix in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(file)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise LoadError(str(file), None, None, f"unreadable Parquet file: {exc}") from None
        for col in df.columns:
            s = df[col]
            if (s.dtype == object or pd.api.types.is_string_dtype(s)) and s.isna().any():
                df[col] = s.astype(object).where(s.notna(), "")
        report.read(file, len(df))
        return df, np.arange(1, len(df) + 1), [str(c) for c in df.columns]
    first = _header_line(file)
    sep = "\t" if ".tsv" in file.suffixes else _header_sep(first)
    if sep != "," and ".tsv" not in file.suffixes:
        report.note(f"{file.name}: read as {'tab' if sep == chr(9) else repr(sep)}-separated", 1)
    df, lines = read_delimited(file, report, sep=sep)
    try:
        written = next(csv.reader([first], delimiter=sep), [])
    except csv.Error:
        written = []
    if len(written) != len(df.columns):  # a header pandas reads otherwise (a quoted name spanning lines)
        written = [str(c) for c in df.columns]
    return df, lines, written


def _header_line(file: Path) -> str:
    """The first line of ``file`` (decompressed, without a UTF-8 BOM and its line break; it
    may end in CR LF, LF or CR alone), at most 1 MiB; ``""`` when it cannot be read."""
    try:
        with open_binary(file) as fh:
            head = fh.read(1 << 20).decode("utf-8-sig", errors="replace")
    except GZIP_ERRORS:
        return ""
    return re.split(r"\r\n|\r|\n", head, maxsplit=1)[0]


def _header_sep(first: str) -> str:
    """``","``, unless the header line ``first`` read with commas is a single column whose
    name holds ``";"`` or a tab that split it into several names: then that character (Excel's
    "CSV (semicolon)" in European locales, or a tab-separated file named ``.csv``)."""
    try:
        names = next(csv.reader([first]), [])
    except csv.Error:
        return ","
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


def _shown(header: list[str]) -> str:
    """A header's names for a message: each ``repr``-quoted (so spaces show), the first 20."""
    return ", ".join(map(repr, header[:20])) + (f" … ({len(header)} columns)" if len(header) > 20 else "")


def _match_columns(table: str, file: Path, header: list[str], mapping: dict[str, str],
                   report: LoadReport) -> dict[str, int]:
    """The position in ``header`` of each canonical column of ``table`` the file has.

    A canonical column is read from the header name ``mapping`` gives it, else its own name,
    matched ignoring case and surrounding spaces (``" user_id "``, ``User_ID``; counted in
    the notes when not written exactly). Errors (LoadError at line 1): a mapped name not in
    the header, two header names that match the same column (a name written twice, or
    ``user_id`` and ``User_ID``), a required id column missing -- each message shows the header."""
    folded = [h.strip().casefold() for h in header]
    found: dict[str, int] = {}
    loose: list[str] = []
    for canon in (c.name for c in TABLES[table]):
        source = mapping.get(canon, canon)
        hits = [i for i, h in enumerate(folded) if h == source.strip().casefold()]
        if len(hits) > 1:
            at = ", ".join(str(i + 1) for i in hits[:-1]) + f" and {hits[-1] + 1}"
            what = (f"column {header[hits[0]]!r} appears {len(hits)} times in the header (columns {at})"
                    if len({header[i] for i in hits}) == 1 else
                    f"columns {at} of the header, {', '.join(repr(header[i]) for i in hits)}, all match "
                    f"{source!r} (names are matched ignoring case and surrounding spaces)")
            raise LoadError(str(file), 1, source, f"{what}: {table}.{canon} must come from one column; "
                            f"rename or remove all but one")
        if hits:
            found[canon] = hits[0]
            if header[hits[0]] != source:
                loose.append(f"{header[hits[0]]!r} → {canon}")
        elif canon in mapping:
            raise LoadError(str(file), 1, source, f"mapped column for {table}.{canon} not in the header "
                            f"(the header has: {_shown(header)})")
    for col in _IDS[table]:
        if col not in found:
            raise LoadError(str(file), 1, mapping.get(col, col), f"missing required column for {table}.{col} "
                            f"(the header has: {_shown(header)}; name yours with --map {table}.{col}=COLUMN)")
    if loose:
        report.note(LOOSE_HEADER_NOTE.format(file=file.name, pairs=", ".join(loose[:4])
                                             + (" …" if len(loose) > 4 else "")), 1)
    return found


def _table(table: str, file: Path, report: LoadReport, mapping: dict[str, str],
           known: dict[str, pd.Index | None], default_event: str = "purchase",
           delta: bool = False) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Table ``table`` read from ``file`` (module docstring), and the canonical columns the
    file really had (the others hold their empty value)."""
    raw, lines, header = _read_file(file, report)
    found = _match_columns(table, file, header, mapping, report)
    names = {canon: header[i] for canon, i in found.items()}
    df = raw.iloc[:, list(found.values())].set_axis(list(found), axis=1)
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
        out["value"] = _values(chk, table, file, header, mapping, f("value", "value"))
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
        if "available" in out:
            out["available"] = _available(chk, f("available", "available"))
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
    return make_table(table, chk.finish()), tuple(c.name for c in TABLES[table] if c.name in found)


def _values(chk: Checker, table: str, file: Path, header: list[str], mapping: dict[str, str],
            field: str) -> pd.Series:
    """``interactions.value``: a number; empty -> 1 (a quantity or a click), but a ``rating``
    or ``review`` event (:data:`RATED_EVENTS`) needs its rating: empty there is an error reject
    ("missing rating"), never a 1-star rating. A file without a value column holding such
    events is a LoadError naming the column to map (``--map interactions.value=rating``)."""
    rated = chk.df["event"].isin(RATED_EVENTS).to_numpy()
    if "value" not in chk.df:
        if (rated & chk.alive).any():
            guess = next((h for h in header if h.strip().casefold() in ("rating", "ratings", "stars", "score",
                                                                         "overall")), "COLUMN")
            raise LoadError(str(file), 1, mapping.get("value", "value"),
                            f"no value column, but {int((rated & chk.alive).sum()):,} rows are rating or review "
                            f"events, whose value is the rating: map the column holding it, e.g. --map "
                            f"{table}.value={guess} (the header has: {_shown(header)})")
        return pd.Series(1.0, index=chk.df.index)
    value = chk.number("value", field=field)
    chk.reject(rated & value.isna().to_numpy(), field,
               "missing rating: a rating or review event needs its value (the rating); an empty one is no rating")
    return value.fillna(1.0)


def _available(chk: Checker, field: str) -> pd.Series:
    """``items.available`` as 1 (on sale) or 0 (withdrawn): ``1``/``0`` (``1.0`` too), the
    words ``true``/``false``, ``yes``/``no``, ``y``/``n`` (any case; a Parquet bool column);
    empty or null -> 1. Anything else is an error reject naming file, line and field."""
    s = chk.df["available"]
    text = s.astype(object).where(s.notna(), "").astype(str).str.strip().str.casefold()
    out = text.map(AVAILABLE_WORDS)
    num = pd.to_numeric(text.where(out.isna(), ""), errors="coerce")
    out = out.where(out.notna(), num.where(num.isin([0, 1])))
    chk.reject(out.isna().to_numpy(), field, "not 1 or 0: available is 1 (on sale) or 0 (withdrawn); "
               "true/false, yes/no and y/n are read too", s)
    return out.fillna(1).astype("int64")


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

    A dot then groups of exactly three digits (``"2.500 €"``, ``"1.299"``,
    :data:`loaders.text.DOT_GROUPS`) is decided by the column (one file's prices follow one
    convention): when some of its prices have a decimal comma (``"12,99"``, ``"1.299,00"``:
    :data:`loaders.text.DECIMAL_COMMA`) and none a decimal point or comma thousands (``"12.99"``,
    ``"1,299"``: :data:`loaders.text.DECIMAL_POINT`), the dots are thousands separators
    (2500.0, 1299.0; counted in the notes); when it has decimal points and no decimal comma, a
    decimal point (2.5); when it shows neither (or both), a decimal point as well, each such
    price counted in the notes as ambiguous.

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
        groups = np.zeros(len(text), dtype=bool)
        maybe = text.str.contains(r"\d\.\d{3}", regex=True).to_numpy()  # a cheap pass first: no lookaround
        if maybe.any():
            groups[maybe] = text[maybe].str.contains(DOT_GROUPS, regex=True).to_numpy()
        if groups.any():  # 2.500 / 1.299: the column's other prices tell what the dot is
            commas = text.str.contains(DECIMAL_COMMA, regex=True).to_numpy()
            groups = groups & ~commas
            comma, point = commas.any(), text.str.contains(DECIMAL_POINT, regex=True).any()
            if comma and not point:  # a decimal-comma column: 2.500 is two thousand five hundred
                num[groups] = text[groups].map(lambda v: parse_price(v, dot_thousands=True))
                other &= ~groups
                chk.report.note(DOT_THOUSANDS_NOTE, int((groups & chk.alive).sum()))
            elif comma or not point:
                chk.report.note(DOT_AMBIGUOUS_NOTE, int((groups & chk.alive).sum()))
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
    columns: dict[str, tuple[str, ...]] = {}
    listed: dict[str, np.ndarray] = {}
    for table in _ORDER:
        if table in files:
            out[table], columns[table] = _table(table, files[table], report, mapping.get(table, {}), known,
                                                event, delta)
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
            listed[table] = extra.to_numpy(dtype=object)
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
    return Dataset(name=name, report=report, columns=columns, listed=listed, **out)
