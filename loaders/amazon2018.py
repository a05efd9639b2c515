"""Amazon Reviews 2018 (McAuley lab): a 5-core reviews file plus product metadata.

RAW_FILES (in the folder ``path``; or give ``reviews=`` / ``meta=`` explicitly, or pass
one of the two files as ``path`` and the other is found next to it):

* ``<Category>_5.json.gz`` (or any other non-``meta_`` ``*.json[.gz]``) -- one review per
  line: ``reviewerID, asin, overall, verified, reviewText, summary, unixReviewTime,
  style, reviewerName``.
* ``meta_<Category>.json.gz`` (or ``.json``) -- one product per line: ``asin, title,
  brand, category[], description[], feature[], price, also_buy[], also_view[],
  main_cat`` (and unused ``rank, details, image, tech1 …``). The 2014 release (the same
  names, ``reviews_<Category>_5.json.gz``) reads too: its meta lines are Python literals
  (below), with ``categories`` (several paths) and ``related`` in place of ``category``,
  ``also_buy`` and ``also_view``.

Mapping:

* items: ``item_id`` = asin; ``title``, ``brand`` = cleaned text (tags stripped, also
  a cut-off tag fragment such as ``<span class="a-size-medium"``; entities decoded, see
  :mod:`loaders.text`); a title with no letter or digit left falls back to
  ``"<brand> — <leaf category>"``, else the brand, else the description's first words,
  else the leaf category, else the asin (:func:`loaders.text.fallback_title`; counted
  in ``report.titles_fallback``, titles that held markup in ``report.titles_cleaned``);
  ``description`` = the cleaned
  ``description`` list joined with newlines; ``features`` = cleaned ``feature`` list;
  ``categories`` = ``[category_path(category)]`` (consecutive duplicate levels collapsed,
  scraped junk levels cut, ``[]`` when empty; the 2014 release's ``categories``, a list of
  such lists, gives one path each, and so does a ``category`` nested that way,
  ``[["Gift Cards", "Plastic"]]``, at any depth: :func:`category_paths`; a category that
  is neither -- a dict, a list mixing levels and lists -- is left out and counted in the
  notes, "categories not understood (product kept without them)"); ``price`` = ``parse_price(price)``
  (``"$12.99"`` -> 12.99, a range -> its low end, else NaN; a price given but not
  understood -- not blank, not ``"None"`` -- is counted in the notes, "prices not
  understood (kept as unknown)"). ``main_cat`` is not used. A number where text belongs
  (a ``brand`` of ``123``, a numeric ``title``, ``reviewText`` or level) is read as its
  text (``"123"``; :func:`as_text`), counted in the notes, "numbers read as text"; other
  types (a list where one text belongs, a dict) read as empty, as before.
* id-only items: a product that has reviews but no metadata line (common in real
  categories) is kept with its reviews, as an item with only ``item_id`` (empty title,
  no categories, NaN price …). Not a reject: ``report.products_without_metadata`` counts
  such products and ``report.reviews_without_metadata`` their kept reviews. Read as a
  delta for ``kgrec ingest`` (``delta=True``), such products are counted in the notes
  instead (:data:`DELTA_ID_ONLY_NOTE`): an ingest keeps a product the store holds as it
  is and rejects the reviews of one it does not, so none is "kept as an id-only item".
* item_links: one row per ``also_buy`` / ``also_view`` entry (relation = the field name;
  the 2014 release's ``related`` dict: ``also_bought`` -> ``also_buy``, ``also_viewed`` ->
  ``also_view``, ``bought_together``). A target outside the items (metadata and id-only),
  a self-link or a repeated link is a *filtered* reject, counted under the pseudo-file ``"<meta file>#also_buy"`` (resp.
  ``#also_view``).
* reviews: ``review_id`` = ``f"{reviewerID}|{asin}|{timestamp}"`` (a second review
  with the same key but another text or rating gets ``"#2"``, ``"#3"`` … appended), ``rating`` =
  ``overall`` (1 to 5 stars, :data:`RATING_RANGE`; anything else is an error reject),
  ``summary``, ``text`` = ``reviewText`` (kept as written), ``timestamp`` =
  ``unixReviewTime`` (a whole number of seconds in the accepted range of
  :mod:`loaders.dataset`, 1970-01-01 to before 2200-01-01 UTC); without it, ``reviewTime``
  (``"06 17, 2018"``, ``"%m %d, %Y"``) read as midnight UTC (counted in the notes, "review
  times read from reviewTime"); with neither (or a ``reviewTime`` that is not such a
  date) 0, counted in the notes as "reviews without a time".
* interactions: one ``review`` event per kept review, ``value`` = ``overall`` (two reviews
  of one item by one user on one day make one interaction, the first).
* users: the reviewers of kept reviews; ``name`` = their first non-empty ``reviewerName``.

Lines of the 2014 release's metadata, written as Python literals (``{'asin': …}``), are
read as such (:mod:`loaders.jsonl`; counted in the notes).

Rejects (file, 1-based line, field): errors -- bad JSON (also nested too deeply), not
UTF-8, a truncated gzip or a ``.gz`` that is not gzip (see :mod:`loaders.jsonl`), a
missing ``reviewerID``/``asin``/``overall`` (meta: ``asin``), a ``reviewerID`` or ``asin``
holding a control character (NUL, tab …: "control character in an id"), a non-numeric
``overall`` or one outside 1 to 5 ("not a star rating (1 to 5)"),
a non-integer or out-of-range ``unixReviewTime`` (or ``reviewTime``); filtered -- a second
meta line for an asin, or a review repeating an earlier one exactly (same user, item, time,
text, summary and rating); the first is kept and the reason names its line.

The reading machinery (:func:`read_amazon`) is shared with :mod:`loaders.amazon2023`.
"""

from __future__ import annotations

import calendar
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import pandas as pd

from loaders.dataset import KEYS, TIMESTAMP_RANGE, Dataset, make_table, timestamps_ok
from loaders.errors import FieldError, LoadError
from loaders.jsonl import is_missing, iter_records, number_field, require_ids, timestamp_field
from loaders.report import LoadReport
from loaders.text import category_path, clean_lines, clean_text, fallback_title, has_markup, is_meaningful, \
    parse_price

RAW_FILES = ("<Category>_5.json.gz", "meta_<Category>.json.gz")

#: parses one meta record -> (item row, {relation: targets}); raises FieldError
ItemParser = Callable[[dict], tuple[dict, dict[str, object]]]
#: parses one review record -> review row (+ "name"); raises FieldError
ReviewParser = Callable[[dict], dict]
#: a parsed row may hold, under this key, the labels of the notes (:meth:`LoadReport.note`)
#: its reading earned; they are counted when the row is kept
NOTES = "notes"
PRICE_NOTE = "prices not understood (kept as unknown)"
REVIEW_TIME_NOTE = "review times read from reviewTime (no unixReviewTime)"
NO_TIME_NOTE = "reviews without a time (kept with timestamp 0)"
#: ``reviewTime`` as written in the 2014 and 2018 releases: ``"06 17, 2018"`` (also ``"6 7, 2018"``)
REVIEW_TIME_FORMAT = "%m %d, %Y"
NUMBER_TEXT_NOTE = "numbers read as text (a brand, title, review text … written as a number)"
CATEGORY_NOTE = "categories not understood (product kept without them)"
#: with ``delta=True`` (``kgrec ingest``), in place of ``report.products_without_metadata``
DELTA_ID_ONLY_NOTE = ("reviewed products without a metadata line in this delta (ingest keeps a stored one as "
                      "it is and rejects the reviews of one the store lacks)")
#: the stars a review gives, both releases (their documentation: "rating of the product", 1.0 to 5.0)
RATING_RANGE = (1.0, 5.0)


@dataclass(frozen=True)
class Layout:
    """How a release names its files and ids."""

    release: str                    # "amazon2018"
    review_globs: tuple[str, ...]   # tried in order, meta_* excluded
    meta_globs: tuple[str, ...]
    item_field: str                 # raw field holding the item id (for messages)
    suffixes: tuple[str, ...]       # stripped from the reviews file name -> category
    title_field: str = "title"      # raw meta field holding the product title


LAYOUT = Layout("amazon2018", ("*_5.json.gz", "*_5.json", "*.json.gz", "*.json"),
                ("meta_*.json.gz", "meta_*.json"), "asin", (".gz", ".json", "_5"))


def parse_item(rec: dict) -> tuple[dict, dict[str, object]]:
    require_ids(rec, ("asin",))
    title, brand = as_text(rec.get("title")), as_text(rec.get("brand"))
    description, features = text_list(rec.get("description")), text_list(rec.get("feature"))
    categories = item_categories(rec)
    row = {
        "item_id": str(rec["asin"]).strip(),
        "title": clean_text(title.text),
        "description": "\n".join(clean_lines(description.text)),
        "brand": clean_text(brand.text),
        "categories": categories if categories is not None else [],
        "features": clean_lines(features.text),
    }
    row["price"], note = meta_price(rec.get("price"))
    related = rec.get("related") if isinstance(rec.get("related"), dict) else {}  # the 2014 release
    links = {"also_buy": _first_given(rec.get("also_buy"), related.get("also_bought")),
             "also_view": _first_given(rec.get("also_view"), related.get("also_viewed"))}
    if related.get("bought_together") is not None:
        links["bought_together"] = related["bought_together"]
    numbers = NUMBER_TEXT_NOTE if any(t.number for t in (title, brand, description, features)) else None
    return with_notes(row, note, numbers, CATEGORY_NOTE if categories is None else None), links


class Text(NamedTuple):
    """A text field as read: its text, and whether it was written as a number."""

    text: object  # str, or a list of str (text_list)
    number: bool = False


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def as_text(value: object) -> Text:
    """A field that holds text, read leniently: a string as it is; a finite number (not a
    bool) as its text -- ``123`` -> ``"123"``, ``4.0`` -> ``"4"``, ``2.5`` -> ``"2.5"`` --
    flagged ``number``; anything else (null, a list, a dict) ``""``, as the text helpers
    read it (:func:`loaders.text.clean_text`)."""
    if isinstance(value, str):
        return Text(value)
    if _is_number(value):
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            value = int(value)
        return Text(str(value), True)
    return Text("")


def text_list(values: object) -> Text:
    """A field that holds a list of texts (a lone string or number counts as a one-element
    list), each number read as its text (:func:`as_text`); other elements as they are
    (:func:`loaders.text.clean_lines` drops them)."""
    if isinstance(values, str) or _is_number(values):
        values = [values]
    if not isinstance(values, (list, tuple)):
        return Text(values)
    read = [as_text(v) if isinstance(v, str) or _is_number(v) else Text(v) for v in values]
    return Text([t.text for t in read], any(t.number for t in read))


def item_categories(rec: dict) -> list[str] | None:
    """The product's category paths (:func:`category_paths`) from ``category`` (2018), else
    the 2014 release's ``categories`` -- several lists of levels, one path each; ``[]``
    when neither has a level; ``None`` when the one read is not understood."""
    if not is_missing(rec.get("category")) or not isinstance(rec.get("categories"), list):
        return category_paths(rec.get("category"))
    return category_paths(rec["categories"])


def category_paths(value: object) -> list[str] | None:
    """Category paths from a category field, root first (:func:`loaders.text.category_path`):

    * a text (or a number, :func:`as_text`): one path of one level;
    * a list of levels (texts, numbers; a null level cuts the path there): one path;
    * a list whose every element is a list: one path per element, read by these same rules,
      so a path nested one level deeper than the format has it (``[["Gift Cards", "Plastic"]]``)
      is that path and the 2014 release's several paths are several; repeated paths once;
    * missing (null, ``""``, ``[]``): no path.

    ``None`` (not understood) for anything else: a dict, a bool, a list mixing levels with
    lists or dicts."""
    if is_missing(value):
        return []
    if isinstance(value, str) or _is_number(value):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return None
    if value and all(isinstance(v, (list, tuple)) for v in value):
        paths: list[str] = []
        for levels in value:
            inner = category_paths(levels)
            if inner is None:
                return None
            paths.extend(inner)
        return list(dict.fromkeys(paths))
    if any(isinstance(v, (list, tuple, dict)) or isinstance(v, bool) for v in value):
        return None
    path = category_path([as_text(v).text for v in value])  # a null level is empty: the path ends there
    return [path] if path else []


def _first_given(*values: object) -> object:
    return next((v for v in values if v is not None), None)


def parse_review(rec: dict) -> dict:
    require_ids(rec, ("reviewerID", "asin"))
    rating = star_rating(rec, "overall")
    ts, note = review_time(rec)
    user, item = str(rec["reviewerID"]).strip(), str(rec["asin"]).strip()
    summary, text, name = (as_text(rec.get(f)) for f in ("summary", "reviewText", "reviewerName"))
    numbers = NUMBER_TEXT_NOTE if summary.number or text.number or name.number else None
    return with_notes({
        "review_id": f"{user}|{item}|{ts}", "user_id": user, "item_id": item,
        "rating": rating, "summary": summary.text, "text": text.text,
        "timestamp": ts, "name": name.text.strip(),
    }, note, numbers)


def star_rating(rec: dict, name: str) -> float:
    """``record[name]`` as a rating of 1 to 5 stars (:data:`RATING_RANGE`); a
    :class:`FieldError` when it is missing, not a number, or outside that range (a 0, a 6, a
    -1: not a rating the release can hold, never kept as given)."""
    value = number_field(rec, name)
    low, high = RATING_RANGE
    if not low <= value <= high:
        raise FieldError(name, f"not a star rating ({low:g} to {high:g}): {rec.get(name)!r}", rec.get(name))
    return value


def review_time(rec: dict) -> tuple[int, str | None]:
    """A review's Unix seconds and the note its reading earns (None for ``unixReviewTime``):
    ``unixReviewTime``, else ``reviewTime`` as midnight UTC, else 0 (no time)."""
    if not is_missing(rec.get("unixReviewTime")):
        return timestamp_field(rec, "unixReviewTime"), None
    value = rec.get("reviewTime")
    try:
        day = time.strptime(value.strip(), REVIEW_TIME_FORMAT)
    except (AttributeError, ValueError):  # absent, not a string, not such a date
        return 0, NO_TIME_NOTE
    seconds = calendar.timegm(day)
    if not timestamps_ok(seconds):
        raise FieldError("reviewTime", f"{TIMESTAMP_RANGE}: {value!r}", value)
    return seconds, REVIEW_TIME_NOTE


def meta_price(value: object) -> tuple[float, str | None]:
    """``parse_price(value)``, and :data:`PRICE_NOTE` when a price was given (not missing,
    not ``"None"``) but not understood."""
    v = parse_price(value)
    given = not is_missing(value) and not (isinstance(value, str) and value.strip() == "None")
    return v, PRICE_NOTE if math.isnan(v) and given else None


def with_notes(row: dict, *notes: str | None) -> dict:
    """``row`` with the given notes (None ones left out) under :data:`NOTES`."""
    if any(notes):
        row[NOTES] = [n for n in notes if n]
    return row


def count_notes(report: LoadReport, row: dict) -> None:
    """Count the notes of a kept row (and take them off it)."""
    for label in row.pop(NOTES, ()):
        report.note(label)


def read(path: str | Path | None = None, *, strict: bool = True,
         reviews: str | Path | None = None, meta: str | Path | None = None, delta: bool = False) -> Dataset:
    """Read an Amazon 2018 category (folder, or one of its two files) into a Dataset;
    ``delta``: read for ``kgrec ingest`` (products without metadata: :func:`as_delta`)."""
    dataset = read_amazon(LAYOUT, path, strict, reviews, meta, parse_item, parse_review)
    return as_delta(dataset) if delta else dataset


def as_delta(dataset: Dataset) -> Dataset:
    """``dataset`` read as a delta to ingest: the products it reviews without a metadata
    line are counted under :data:`DELTA_ID_ONLY_NOTE`, not as products "kept as id-only
    items" (``report.products_without_metadata``, ``reviews_without_metadata``) -- ingest
    keeps such a product the store holds as it is and rejects the reviews of one it lacks,
    so the load summary printed before it must not say they are new id-only products."""
    report = dataset.report
    report.note(DELTA_ID_ONLY_NOTE, report.products_without_metadata)
    report.products_without_metadata = report.reviews_without_metadata = 0
    return dataset


# --------------------------------------------------------------------------- shared core

def find_files(layout: Layout, path, reviews, meta) -> tuple[Path, Path]:
    """Resolve the reviews and meta files from a folder / file / explicit options."""
    if path is not None:
        path = Path(path)
        if path.is_file():
            if path.name.startswith("meta_"):
                meta = meta or path
            else:
                reviews = reviews or path
            path = path.parent
        elif not path.is_dir():
            raise LoadError(str(path), None, None, "no such file or folder")
    folder = path if path is not None else Path(reviews or meta or ".").parent

    def pick(globs: tuple[str, ...], is_meta: bool, prefer: str) -> Path:
        for pattern in globs:
            found = sorted(p for p in folder.glob(pattern)
                           if p.is_file() and p.name.startswith("meta_") == is_meta)
            if len(found) > 1 and prefer:
                found = [p for p in found if prefer in p.name] or found
            if len(found) == 1:
                return found[0]
            if found:
                kind = "meta" if is_meta else "reviews"
                raise LoadError(str(folder), None, None,
                                f"several {kind} files ({', '.join(p.name for p in found)}); name one: "
                                f"-o {kind}=PATH on the command line, {kind}=PATH from Python")
        raise LoadError(str(folder), None, None,
                        f"no {'meta' if is_meta else 'reviews'} file ({' or '.join(globs)})")

    reviews = Path(reviews) if reviews else pick(layout.review_globs, False, "")
    meta = Path(meta) if meta else pick(layout.meta_globs, True, category_of(layout, reviews))
    for f in (reviews, meta):
        if not f.is_file():
            raise LoadError(str(f), None, None, "no such file")
    return reviews, meta


def category_of(layout: Layout, reviews: Path) -> str:
    name = reviews.name
    for suffix in layout.suffixes:
        name = name.removesuffix(suffix)
    return name


def read_amazon(layout: Layout, path, strict: bool, reviews, meta,
                parse_item: ItemParser, parse_review: ReviewParser) -> Dataset:
    reviews_file, meta_file = find_files(layout, path, reviews, meta)
    report = LoadReport(strict=strict)
    items, links = read_meta(meta_file, report, parse_item, layout)
    catalogue = {row["item_id"] for row in items}
    rows, id_only = _read_reviews(reviews_file, report, parse_review, catalogue)
    report.products_without_metadata = len(id_only)
    report.reviews_without_metadata = sum(id_only.values())
    items.extend({"item_id": iid} for iid in id_only)
    item_links = read_links(meta_file, report, links, catalogue | set(id_only))
    report.check()

    review_table = make_table("reviews", pd.DataFrame(rows, columns=[
        "review_id", "user_id", "item_id", "rating", "summary", "text", "timestamp", "name"]))
    interactions = make_table("interactions", {
        "user_id": review_table["user_id"], "item_id": review_table["item_id"],
        "event": "review", "value": review_table["rating"],
        "timestamp": review_table["timestamp"], "split": ""})
    # two reviews of one item by one user on one day are one interaction (the first)
    interactions = interactions.drop_duplicates(KEYS["interactions"]).reset_index(drop=True)
    names: dict[str, str] = {}
    for row in rows:
        if not names.get(row["user_id"]):
            names[row["user_id"]] = row["name"]
    users = make_table("users", {"user_id": list(names), "name": list(names.values())})
    return Dataset(
        name=f"{layout.release}-{category_of(layout, reviews_file)}",
        users=users, items=make_table("items", items), interactions=interactions,
        reviews=review_table, item_links=make_table("item_links", item_links), report=report)


def read_meta(file: Path, report: LoadReport, parse: ItemParser, layout: Layout):
    """Items and their raw links from the meta file; titles cleaned or fallen back (counted)."""
    items: list[dict] = []
    links: list[tuple[str, str, object, int]] = []  # (src, relation, targets, line)
    first: dict[str, int] = {}
    id_field = layout.item_field
    for line, rec in iter_records(file, report):
        try:
            row, rels = parse(rec)
        except FieldError as exc:
            report.reject(file, line, exc.field, exc.reason, exc.value)
            continue
        iid = row["item_id"]
        if iid in first:
            report.reject(file, line, id_field, f"duplicate {id_field}: first seen on line "
                          f"{first[iid]}, that one is kept", iid, error=False)
            continue
        first[iid] = line
        if has_markup(rec.get(layout.title_field)):
            report.titles_cleaned += 1
        if not is_meaningful(row["title"]):
            row["title"] = fallback_title(iid, row["brand"], row["categories"], row["description"])
            report.titles_fallback += 1
        count_notes(report, row)
        items.append(row)
        report.keep(file)
        links.extend((iid, rel, targets, line) for rel, targets in rels.items() if targets is not None)
    return items, links


def read_links(meta_file: Path, report: LoadReport, links, catalogue: set[str]) -> list[dict]:
    out: list[dict] = []
    seen: set[tuple[str, str, str]] = set()
    for src, rel, targets, line in links:
        acct = f"{meta_file}#{rel}"
        if not isinstance(targets, list):
            report.read(acct)
            report.reject(acct, line, rel, f"not a list but {type(targets).__name__}", targets)
            continue
        for dst in targets:
            report.read(acct)
            if not isinstance(dst, str) or not dst.strip():
                report.reject(acct, line, rel, "link target is not a non-empty string", dst)
                continue
            dst = dst.strip()
            if dst == src:
                report.reject(acct, line, rel, "self-link", dst, error=False)
            elif dst not in catalogue:
                report.reject(acct, line, rel, "link target not in the catalogue", dst, error=False)
            elif (src, dst, rel) in seen:
                report.reject(acct, line, rel, "duplicate link", dst, error=False)
            else:
                seen.add((src, dst, rel))
                out.append({"src_item": src, "dst_item": dst, "relation": rel})
                report.keep(acct)
    return out


def _read_reviews(file: Path, report: LoadReport, parse: ReviewParser,
                  catalogue: set[str]) -> tuple[list[dict], dict[str, int]]:
    """The kept review rows, and the products outside ``catalogue`` (no metadata) that
    they review, each with its number of kept reviews (in order of first review)."""
    rows: list[dict] = []
    id_only: dict[str, int] = {}
    first: dict[str, tuple[int, dict]] = {}
    for line, rec in iter_records(file, report):
        try:
            row = parse(rec)
        except FieldError as exc:
            report.reject(file, line, exc.field, exc.reason, exc.value)
            continue
        rid = row["review_id"]
        if rid in first:
            line0, row0 = first[rid]
            if (row0["text"], row0["summary"], row0["rating"]) == (row["text"], row["summary"], row["rating"]):
                report.reject(file, line, "review_id", f"duplicate review: same as line {line0}, "
                              "that one is kept", rid, error=False)
                continue
            # the same user, item and day but another text: a second review, kept apart
            n = 2
            while f"{rid}#{n}" in first:
                n += 1
            rid = row["review_id"] = f"{rid}#{n}"
        first[rid] = (line, row)
        if row["item_id"] not in catalogue:
            id_only[row["item_id"]] = id_only.get(row["item_id"], 0) + 1
        count_notes(report, row)
        rows.append(row)
        report.keep(file)
    return rows, id_only
