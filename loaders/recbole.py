"""RecBole atomic files: ``<name>.inter`` plus optional ``.item``, ``.user``, ``.kg``, ``.link``.

RAW_FILES (in the folder ``path``, or ``path`` = the ``.inter`` file): tab-separated,
one header line of typed fields (``user_id:token``, ``rating:float``,
``movie_title:token_seq`` …; the ``:type`` suffix is dropped), no quoting. Read with
pandas (every cell a string); validation is vectorised; line number = row index + 2.

Mapping (field names are RecBole's defaults, ``USER_ID_FIELD`` … ``LABEL_FIELD``; override
with ``user_field=``, ``item_field=``, ``rating_field=``, ``time_field=``, ``label_field=``;
a field named this way that the header lacks is an error, and ``""`` reads none):

* ``.inter`` columns: the rating is ``rating``, else the first of
  :data:`RATING_ALIASES` (Yelp's ``stars``); the time is ``timestamp``, else the first of
  :data:`TIME_ALIASES` (Yelp's ``date``, Ta-Feng's ``transaction_date``); the label is
  ``label`` (MIND, Avazu, Criteo). An alias is read only when the header types it
  ``float``, as RecBole needs these fields typed. Which columns were read under another
  name, which were not used at all, and what a file without a rating, label or time
  column was read as are said in the notes, one line each (counted in rows kept):
  ``yelp.inter: stars read as the rating (another column: rating_field=…)``,
  ``yelp.inter: columns not used: review_id, useful, funny, cool``, ``x.inter: no time
  column (…; time_field=…): events kept at time 0``, ``x.inter: no rating or label column
  (…): every row read as a click``. A column named by an option is not noted.
* ``.inter`` -> interactions: ``user_id``, ``item_id``; with a rating column the
  event is ``rating`` and ``value`` = rating, else the event is ``click`` and value 1.
  With a label column (RecBole's ``LABEL_FIELD``: 1 positive, 0 negative; any other value
  is an error), a label-0 row is an ``impression`` -- shown, not clicked, never a positive
  (the split's positives are purchases, ratings and reviews, else clicks), and what the
  fusion stage learns click rates and P(shown) from -- and a label-1 row is an
  ``impression`` *and* its ``rating`` / ``click`` at the same time (an impression source's
  click must follow an impression of it; the row counts once as kept, its two events are
  counted in the notes). Empty labels and ratings are errors.
  ``timestamp`` = floor of the number (RecBole types it ``float``, so a fraction of a
  second is accepted and dropped; 0 when absent/empty); a value of at least
  :data:`loaders.tabular.MS_THRESHOLD` (1e11) is milliseconds, as RecBole's Retailrocket
  conversion writes them, and is divided by 1000 (counted in the notes, "timestamps read
  as milliseconds"). Empty ids, ids holding a control character, non-numeric ratings
  or timestamps, non-finite numbers and timestamps outside [MIN_TIMESTAMP, MAX_TIMESTAMP)
  (:mod:`loaders.dataset`) are errors; an id missing from an *existing* ``.item`` /
  ``.user`` file is an error (when the file is absent, items/users are made from the ids
  in ``.inter``).
* ``.item`` -> items: ``title`` = the first of ``movie_title``, ``title``, ``item_name``,
  else the first other ``token_seq`` column; a title cell with no letter or digit (empty)
  falls back to ``"<brand> — <leaf category>"``, else the brand, else the first category,
  else the id (:func:`loaders.text.fallback_title`, as in the Amazon loaders; counted in
  ``report.titles_fallback``); ``categories`` = the ``class`` / ``genre`` /
  ``genres`` / ``categories`` / ``category`` tokens split on ``seq_sep`` (a space), each
  token a one-level path (ml-100k: ``"Animation Children's Comedy"`` -> three paths;
  its ``unknown`` genre flag and ml-20m's ``(no genres listed)`` are dropped, leaving
  ``[]``). When any cell of that column holds a comma, the column is a comma-separated
  list instead (RecBole's Amazon conversions: ``'Books', 'Literature & Fiction'``; Yelp:
  ``Restaurants, Pizza, Italian``): its cells are split on the commas outside quotes,
  each part stripped of whitespace and of one pair of surrounding quotes (counted in the
  notes, "category lists split on commas");
  ``brand`` and ``price`` from columns of those names (a price must be finite and
  ``>= 0``, else an error); ``release_year`` (or ``year``) goes
  into ``description`` as ``"Released 1995"`` so that text search can use it. Other
  columns are ignored.
* ``.user`` -> users: ``user_id``; ``name`` from a ``name``/``user_name`` column, else ""
  (ml-100k's age, gender, occupation and zip code have no canonical column).
* ``.kg`` -> triples: ``head_id``, ``relation_id``, ``tail_id`` (else the first three columns).
* ``.link`` -> item_entities: ``item_id``, ``entity_id``; a row naming an item that is not
  among the items is a *filtered* reject (RecBole ignores such links: a link file for the
  full KG beside a filtered ``.inter`` is the usual case).

Repeated keys (:data:`loaders.dataset.KEYS`) are filtered rejects; the first row is kept.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from loaders.dataset import KEYS, PRICE_RANGE, TIMESTAMP_RANGE, Dataset, make_table, prices_ok, timestamps_ok
from loaders.errors import LoadError
from loaders.report import LoadReport
from loaders.tabular import MS_THRESHOLD, Checker, read_delimited
from loaders.text import fallback_title, is_meaningful

RAW_FILES = ("<name>.inter", "<name>.item", "<name>.user", "<name>.kg", "<name>.link")
TITLE_COLUMNS = ("movie_title", "title", "item_name")
CATEGORY_COLUMNS = ("class", "genre", "genres", "categories", "category")
YEAR_COLUMNS = ("release_year", "year")
#: "no genre" flags, not categories: ml-100k's ``unknown``, ml-20m's ``(no genres listed)``
NO_CATEGORY = ("unknown", "(no genres listed)")
#: rating columns of RecBole's own data sets besides ``rating`` (RATING_FIELD's default):
#: Yelp's ``stars``; read when typed ``float`` and no ``rating`` column is there
RATING_ALIASES = ("stars",)
#: time columns besides ``timestamp`` (TIME_FIELD's default): Yelp's ``date``, Ta-Feng's
#: ``transaction_date`` (both Unix seconds, typed ``float``)
TIME_ALIASES = ("date", "transaction_date")
#: RecBole's LABEL_FIELD default: 1 a positive, 0 a negative (MIND's clicks, Avazu, Criteo)
LABEL_FIELD = "label"
#: the values a label may take
LABELS = (0.0, 1.0)
#: one part of a comma-separated list: a quoted string (``'Books'``, ``"Children's"``) or
#: anything up to the next comma, then the comma or the end
_LIST_PART = re.compile(r"""\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)""")
_QUOTED = re.compile(r"""^(['"])(.*)\1$""", re.DOTALL)
_ESCAPE = re.compile(r"""\\(['"\\])""")


def _atomic(file: Path, report: LoadReport) -> tuple[Checker, dict[str, str]]:
    """Read one atomic file; returns its Checker (bare column names) and column types."""
    df, lines = read_delimited(file, report, sep="\t", quoting=csv.QUOTE_NONE)
    types = {}
    for col in df.columns:
        name, _, kind = col.partition(":")
        types[name.strip()] = kind.strip()
    df.columns = list(types)
    df = df.apply(lambda s: s.str.strip())
    return Checker(report, file, df, lines), types


def _need(chk: Checker, *cols: str, options: dict[str, str] | None = None) -> None:
    """The id columns ``cols``: present, each row's value given and free of control characters.
    ``options``: the option naming each column (for the message when it is absent)."""
    for col in cols:
        if col not in chk.df.columns:
            option = (options or {}).get(col)
            hint = f"; name the column with {option}=…" if option else ""
            raise LoadError(chk.file, 1, col, f"missing column (header has {', '.join(chk.df.columns)}{hint})")
    chk.required(*cols)
    chk.ids(*cols)


def _items(file: Path, report: LoadReport, item_field: str, seq_sep: str) -> pd.DataFrame:
    chk, types = _atomic(file, report)
    _need(chk, item_field, options={item_field: "item_field"})
    df = chk.df
    cats = next((c for c in CATEGORY_COLUMNS if c in df), None)
    title = next((c for c in TITLE_COLUMNS if c in df), None) or next(
        (c for c, t in types.items() if t == "token_seq" and c != cats), None)
    year = next((c for c in YEAR_COLUMNS if c in df), None)
    out = pd.DataFrame({"item_id": df[item_field]})
    if title:
        out["title"] = df[title]
    by_comma = pd.Series(False, index=df.index)
    if cats:
        out["categories"], by_comma = _categories(df[cats], seq_sep)
    if year:
        out["description"] = ("Released " + df[year]).where(df[year] != "", "")
    if "brand" in df:
        out["brand"] = df["brand"]
    if "price" in df:
        price = chk.number("price")
        chk.reject(~prices_ok(price), "price", PRICE_RANGE)
        out["price"] = price
    chk.df = out
    chk.duplicates(["item_id"], "item id")
    kept = chk.finish()
    if seq_sep != ",":
        report.note(f"category lists split on commas ({file.name}: {cats})", int(by_comma[chk.alive].sum()))
    if title:
        kept["title"] = _titles(kept, report)
    return make_table("items", kept)


def _categories(cells: pd.Series, seq_sep: str) -> tuple[pd.Series, pd.Series]:
    """Each cell's category tokens (no "no genre" flag), and which cells were split on commas.

    A column is split on ``seq_sep`` unless one of its cells holds a comma: then all of
    its non-empty cells are comma-separated lists (:func:`_comma_list`).
    """
    cells = cells.where(~cells.str.lower().isin(NO_CATEGORY), "")
    by_comma = cells.str.contains(",", regex=False).any()
    parts = cells.map(_comma_list) if by_comma else cells.str.split(seq_sep)
    tokens = parts.map(lambda toks: [t for t in toks if t and t.lower() not in NO_CATEGORY])
    return tokens, (cells != "") & by_comma


def _comma_list(cell: str) -> list[str]:
    """``"'Books', 'Arts, Crafts & Sewing'"`` -> ``["Books", "Arts, Crafts & Sewing"]``:
    split on the commas outside quotes; each part stripped of whitespace and of one pair
    of surrounding quotes (a backslash-escaped quote inside them unescaped)."""
    out = []
    for part in _LIST_PART.findall(cell):
        quoted = _QUOTED.match(part)
        out.append(_ESCAPE.sub(r"\1", quoted.group(2)).strip() if quoted else part.strip())
    return out


def _titles(items: pd.DataFrame, report: LoadReport) -> pd.Series:
    """Titles, with a fallback name (:func:`loaders.text.fallback_title`) for those with no
    letter or digit, counted in ``report.titles_fallback``. The description is not offered:
    here it is only the release year."""
    titles = items["title"].copy()
    for i in np.flatnonzero(~titles.map(is_meaningful).to_numpy()):
        row = items.iloc[i]
        titles.iat[i] = fallback_title(row["item_id"], row.get("brand", ""), row.get("categories", []))
        report.titles_fallback += 1
    return titles


def _users(file: Path, report: LoadReport, user_field: str) -> pd.DataFrame:
    chk, _ = _atomic(file, report)
    _need(chk, user_field, options={user_field: "user_field"})
    name = next((c for c in ("name", "user_name") if c in chk.df), None)
    chk.df = pd.DataFrame({"user_id": chk.df[user_field],
                           "name": chk.df[name] if name else ""})
    chk.duplicates(["user_id"], "user id")
    return make_table("users", chk.finish())


def _column(types: dict[str, str], given: str | None, default: str, aliases: tuple[str, ...],
            file: Path, what: str, option: str) -> str | None:
    """The column of ``types`` (the header) read as ``what``: ``given`` when the caller named
    one (``""``: none; a name the header lacks is an error), else ``default`` when present,
    else the first of ``aliases`` typed ``float``; ``None`` when there is none."""
    if given is not None:
        if given and given not in types:
            raise LoadError(str(file), 1, given, f"no such column for the {what} ({option}={given}; header has "
                                                 f"{', '.join(types)})")
        return given or None
    if default in types:
        return default
    return next((a for a in aliases if types.get(a) == "float"), None)


def _interactions(file: Path, report: LoadReport, fields: dict[str, str | None],
                  items: pd.DataFrame | None, users: pd.DataFrame | None) -> pd.DataFrame:
    chk, types = _atomic(file, report)
    uf, itf = fields["user"], fields["item"]
    _need(chk, uf, itf, options={uf: "user_field", itf: "item_field"})
    rf = _column(types, fields["rating"], "rating", RATING_ALIASES, file, "rating", "rating_field")
    tf = _column(types, fields["time"], "timestamp", TIME_ALIASES, file, "time", "time_field")
    lf = _column(types, fields["label"], LABEL_FIELD, (), file, "label", "label_field")
    df = chk.df
    out = pd.DataFrame({"user_id": df[uf], "item_id": df[itf]})
    if rf:
        chk.required(rf)
        out["event"], out["value"] = "rating", chk.number(rf)
    else:
        out["event"], out["value"] = "click", 1.0
    label = None
    if lf:
        chk.required(lf)
        label = chk.number(lf)
        chk.reject(~label.isin(LABELS).to_numpy(), lf, "not a label: RecBole's labels are 0 (negative) or 1")
        # a negative: shown, not clicked (its rating, if any, is no engagement)
        out.loc[(label == 0).to_numpy(), ["event", "value"]] = ["impression", 1.0]
    ts = chk.number(tf, default=0.0).fillna(0) if tf else pd.Series(0.0, index=df.index)
    ms = ts.abs() >= MS_THRESHOLD  # milliseconds (RecBole's Retailrocket conversion)
    ts = np.floor(ts.where(~ms, ts / 1000))
    if tf:
        chk.reject(~timestamps_ok(ts), tf, TIMESTAMP_RANGE)
    out["timestamp"] = ts.where(chk.alive, 0).astype("int64")
    if items is not None:
        chk.unknown(itf, items["item_id"], "item (not in the .item file)")
    if users is not None:
        chk.unknown(uf, users["user_id"], "user (not in the .user file)")
    chk.df = out
    chk.duplicates(["user_id", "item_id", "event", "timestamp"], "interaction")
    positive = None if label is None else (label == 1).to_numpy()[chk.alive]
    kept = chk.finish()
    report.note("timestamps read as milliseconds", int(ms[chk.alive].sum()))
    _note_columns(report, file, types, {"rating": rf, "time": tf, "label": lf}, fields, len(kept))
    if positive is not None:
        report.note(f"{file.name}: label 0 rows read as impressions (shown, not clicked)", int((~positive).sum()))
        event = "rating" if rf else "click"
        report.note(f"{file.name}: label 1 rows read as an impression and a {event} at its time", int(positive.sum()))
        shown = kept[positive].assign(event="impression", value=1.0)
        # a label-0 row of the same user, product and time is that impression already
        kept = pd.concat([kept, shown], ignore_index=True).drop_duplicates(KEYS["interactions"])
    return make_table("interactions", kept.reset_index(drop=True))


def _note_columns(report: LoadReport, file: Path, types: dict[str, str], read: dict[str, str | None],
                  fields: dict[str, str | None], kept: int) -> None:
    """The notes saying how the ``.inter`` columns were read (module docstring), each
    counting the ``kept`` rows: a rating / time read under an alias (not one the caller
    named), the columns not used, and a missing time or rating-and-label column."""
    defaults = {"rating": "rating", "time": "timestamp", "label": LABEL_FIELD}
    for role, col in read.items():
        if col and col != defaults[role] and fields[role] is None:
            report.note(f"{file.name}: {col} read as the {role} (another column: {role}_field=…)", kept)
    unused = [c for c in types if c not in (fields["user"], fields["item"], *read.values())]
    if unused:
        report.note(f"{file.name}: columns not used: {', '.join(unused)}", kept)
    if not read["time"]:
        report.note(f"{file.name}: no time column (timestamp, {', '.join(TIME_ALIASES)}; time_field=…): "
                    "events kept at time 0", kept)
    if not read["rating"] and not read["label"]:
        report.note(f"{file.name}: no rating or label column (rating, {', '.join(RATING_ALIASES)}, "
                    f"{LABEL_FIELD}; rating_field=…, label_field=…): every row read as a click", kept)


def _triples(file: Path, report: LoadReport) -> pd.DataFrame:
    chk, _ = _atomic(file, report)
    cols = ["head_id", "relation_id", "tail_id"]
    if not set(cols) <= set(chk.df.columns):
        if len(chk.df.columns) < 3:
            raise LoadError(str(file), 1, None, "a .kg file needs head, relation and tail columns")
        cols = list(chk.df.columns[:3])
    chk.required(*cols)
    chk.ids(*cols)
    chk.df = chk.df[cols].set_axis(["head", "relation", "tail"], axis=1)
    chk.duplicates(["head", "relation", "tail"], "triple")
    return make_table("triples", chk.finish())


def _links(file: Path, report: LoadReport, item_field: str, items: pd.DataFrame) -> pd.DataFrame:
    chk, _ = _atomic(file, report)
    _need(chk, item_field, "entity_id", options={item_field: "item_field"})
    # RecBole ignores links to items it does not have: a filter, not an error
    chk.unknown(item_field, items["item_id"], "item (not in the items)", error=False)
    chk.df = pd.DataFrame({"item_id": chk.df[item_field], "entity_id": chk.df["entity_id"]})
    chk.duplicates(["item_id", "entity_id"], "link")
    return make_table("item_entities", chk.finish())


def find_files(path: str | Path, name: str | None = None) -> tuple[str, dict[str, Path]]:
    path = Path(path)
    if path.is_file():
        name, path = name or path.stem, path.parent
    elif not path.is_dir():
        raise LoadError(str(path), None, None, "no such file or folder")
    if name is None:
        found = sorted(path.glob("*.inter"))
        if len(found) != 1:
            raise LoadError(str(path), None, None,
                            f"expected one .inter file, found {len(found)}; pass name=")
        name = found[0].stem
    files = {ext: path / f"{name}.{ext}" for ext in ("inter", "item", "user", "kg", "link")}
    if not files["inter"].is_file():
        raise LoadError(str(files["inter"]), None, None, "no such file")
    return name, {k: f for k, f in files.items() if f.is_file()}


def read(path: str | Path, *, strict: bool = True, name: str | None = None,
         user_field: str = "user_id", item_field: str = "item_id", rating_field: str | None = None,
         time_field: str | None = None, label_field: str | None = None, seq_sep: str = " ") -> Dataset:
    """Read a RecBole data set folder (see module docstring) into a Dataset. ``rating_field``,
    ``time_field``, ``label_field``: ``None`` for RecBole's default name or a known alias,
    a column name (which must be in the ``.inter`` header), or ``""`` to read none."""
    name, files = find_files(path, name)
    report = LoadReport(strict=strict)
    items = _items(files["item"], report, item_field, seq_sep) if "item" in files else None
    users = _users(files["user"], report, user_field) if "user" in files else None
    fields = {"user": user_field, "item": item_field, "rating": rating_field, "time": time_field,
              "label": label_field}
    inter = _interactions(files["inter"], report, fields, items, users)
    if items is None:
        items = make_table("items", {"item_id": pd.unique(inter["item_id"])})
    if users is None:
        users = make_table("users", {"user_id": pd.unique(inter["user_id"])})
    triples = _triples(files["kg"], report) if "kg" in files else make_table("triples")
    links = _links(files["link"], report, item_field, items) if "link" in files \
        else make_table("item_entities")
    report.check()
    return Dataset(name=name, users=users, items=items, interactions=inter, triples=triples,
                   item_entities=links, report=report)
