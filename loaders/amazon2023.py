"""Amazon Reviews 2023 (McAuley lab): a reviews JSONL file plus product metadata.

RAW_FILES (in the folder ``path``; or ``reviews=`` / ``meta=``, or one of them as ``path``):

* ``<Category>.jsonl[.gz]`` -- one review per line: ``rating, title, text, user_id, asin,
  parent_asin, timestamp`` (milliseconds), ``verified_purchase, helpful_vote, images``.
* ``meta_<Category>.jsonl[.gz]`` -- one product per line: ``main_category, title,
  average_rating, rating_number, features[], description[], price, store, categories[],
  details{}, parent_asin, bought_together, images, videos``. ``details`` may also be a
  JSON string, as in the Hugging Face ``datasets`` export (``raw_meta_*``); it is parsed
  (text that is not JSON is counted in the notes and read as ``{}``).

Mapping (products are keyed by ``parent_asin``; a review's variant ``asin`` is folded
into its ``parent_asin``, falling back to ``asin`` when ``parent_asin`` is absent):

* items: ``item_id`` = parent_asin; ``title`` = cleaned title; ``description`` = cleaned
  ``description`` list joined with newlines; ``brand`` = ``store``, else
  ``details["Brand"]``; ``categories`` = ``[category_path(categories)]`` when non-empty
  (a list nested deeper gives one path per inner list, and a category that is not
  understood is counted, as in 2018: :func:`loaders.amazon2018.category_paths`),
  else ``[main_category]`` (``[]`` when neither); ``price`` = ``parse_price(price)``
  (a number, ``"$12.99"``, a range -> low end; null or other text -> NaN; text other than
  ``""`` / ``"None"`` that is not understood is counted in the notes, as in 2018); ``features``
  = cleaned ``features``. ``average_rating``, ``rating_number``, the rest of
  ``details``, images and videos are not used. A number where text belongs (a numeric
  ``store``, ``title``, review ``text``) is read as its text and counted, as in 2018.
  As in 2018, a title with nothing meaningful left after cleaning falls back to
  ``"<brand> — <leaf category>"`` / brand / description's first words / leaf / id.
* id-only items: a product with reviews but no metadata line is kept, with its reviews,
  as an item with only ``item_id`` (counted in ``report.products_without_metadata`` and
  ``report.reviews_without_metadata``, as in 2018; read as a delta, ``delta=True``, in the
  notes instead: :func:`loaders.amazon2018.as_delta`, also for the benchmark files).
* item_links: ``bought_together`` entries, relation ``bought_together`` (targets outside
  the items, self-links and repeats are filtered rejects, as in 2018).
* reviews: ``review_id`` = ``f"{user_id}|{parent_asin}|{timestamp // 1000}"``,
  ``rating`` (1.0 to 5.0 as documented; anything else is an error reject, "not a star
  rating (1 to 5)"), ``summary`` = ``title``, ``text``, ``timestamp`` = ms // 1000 (a whole
  number of ms; the seconds in the accepted range of :mod:`loaders.dataset`). A value
  below :data:`loaders.tabular.MS_THRESHOLD` (1e11; as ms, before March 1973, long before
  any Amazon review) is taken as seconds, as some re-exported copies hold them (counted
  in the notes, "timestamps read as seconds").
* interactions: one ``review`` event per kept review, ``value`` = ``rating``.
* users: the reviewers of kept reviews (``name`` = "": the release has no names).

The lab's benchmark files (``<Category>.train.csv`` / ``.valid.csv`` / ``.test.csv``:
ratings with their split, or ``rating_only``'s ``<Category>.csv``) are read by
:mod:`loaders.amazon2023_benchmark` when ``path`` is one of them or a folder of them.

Rejects follow :mod:`loaders.amazon2018`: required fields are ``user_id``,
``parent_asin``/``asin`` and ``rating`` for reviews, ``parent_asin`` for meta; an id
holding a control character is an error reject too.
"""

from __future__ import annotations

import json
from pathlib import Path

from loaders import amazon2023_benchmark as benchmark
from loaders.amazon2018 import CATEGORY_NOTE, NO_TIME_NOTE, NUMBER_TEXT_NOTE, Layout, as_delta, as_text, \
    category_paths, meta_price, read_amazon, star_rating, text_list, with_notes
from loaders.dataset import Dataset
from loaders.errors import FieldError
from loaders.jsonl import is_missing, require_ids, timestamp_field, to_number
from loaders.tabular import MS_THRESHOLD
from loaders.text import clean_lines, clean_text

RAW_FILES = ("<Category>.jsonl.gz", "meta_<Category>.jsonl.gz")

LAYOUT = Layout("amazon2023", ("*.jsonl.gz", "*.jsonl"), ("meta_*.jsonl.gz", "meta_*.jsonl"),
                "parent_asin", (".gz", ".jsonl"))
SECONDS_NOTE = "timestamps read as seconds (the 2023 format has milliseconds)"
DETAILS_NOTE = "details that are not JSON (read as empty)"


def parse_item(rec: dict) -> tuple[dict, dict[str, object]]:
    require_ids(rec, ("parent_asin",))
    details, details_note = parse_details(rec.get("details"))
    title, store, details_brand = as_text(rec.get("title")), as_text(rec.get("store")), as_text(details.get("Brand"))
    description, features = text_list(rec.get("description")), text_list(rec.get("features"))
    brand = clean_text(store.text) or clean_text(details_brand.text)
    paths = category_paths(rec.get("categories"))
    understood = paths is not None
    main = as_text(rec.get("main_category"))
    if not paths and clean_text(main.text):
        paths = [clean_text(main.text)]
    row = {
        "item_id": str(rec["parent_asin"]).strip(),
        "title": clean_text(title.text),
        "description": "\n".join(clean_lines(description.text)),
        "brand": brand,
        "categories": paths or [],
        "features": clean_lines(features.text),
    }
    row["price"], price_note = meta_price(rec.get("price"))
    numbers = any(t.number for t in (title, store, details_brand, description, features, main))
    return with_notes(row, details_note, price_note, NUMBER_TEXT_NOTE if numbers else None,
                      None if understood else CATEGORY_NOTE), {"bought_together": rec.get("bought_together")}


def parse_details(value: object) -> tuple[dict, str | None]:
    """``details`` as a dict (a JSON string is parsed; anything else is ``{}``), and
    :data:`DETAILS_NOTE` when it was non-empty text that is not JSON."""
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {}, DETAILS_NOTE
    return (value if isinstance(value, dict) else {}), None


def parse_review(rec: dict) -> dict:
    require_ids(rec, ("user_id",))
    item_field = "asin" if is_missing(rec.get("parent_asin")) and not is_missing(rec.get("asin")) \
        else "parent_asin"
    if is_missing(rec.get(item_field)):
        raise FieldError("parent_asin", "missing required field (and no asin)", "")
    require_ids(rec, (item_field,))
    rating = star_rating(rec, "rating")
    ts, note = review_time(rec)
    user, item = str(rec["user_id"]).strip(), str(rec[item_field]).strip()
    summary, text = as_text(rec.get("title")), as_text(rec.get("text"))
    return with_notes({
        "review_id": f"{user}|{item}|{ts}", "user_id": user, "item_id": item, "rating": rating,
        "summary": summary.text, "text": text.text, "timestamp": ts, "name": "",
    }, note, NUMBER_TEXT_NOTE if summary.number or text.number else None)


def review_time(rec: dict) -> tuple[int, str | None]:
    """A review's Unix seconds from ``timestamp`` in ms, or in seconds when below
    :data:`MS_THRESHOLD` (then with :data:`SECONDS_NOTE`); 0 when it has none (with the
    2018 reader's note, "reviews without a time")."""
    if is_missing(rec.get("timestamp")):
        return 0, NO_TIME_NOTE
    v = to_number(rec.get("timestamp"))
    if v is not None and v != 0 and abs(v) < MS_THRESHOLD:
        return timestamp_field(rec, "timestamp"), SECONDS_NOTE
    return timestamp_field(rec, "timestamp", per_second=1000), None


def read(path: str | Path | None = None, *, strict: bool = True,
         reviews: str | Path | None = None, meta: str | Path | None = None, delta: bool = False) -> Dataset:
    """Read an Amazon 2023 category (folder, or one of its two files) into a Dataset; the
    lab's benchmark files (ratings with their split, :mod:`loaders.amazon2023_benchmark`)
    when ``path`` is one of them or a folder holding them and no reviews file. ``delta``:
    read for ``kgrec ingest`` (products without metadata: :func:`loaders.amazon2018.as_delta`)."""
    files = benchmark.benchmark_files(path) if reviews is None else {}
    if files:
        dataset = benchmark.read(files, LAYOUT, parse_item, strict, meta)
    else:
        dataset = read_amazon(LAYOUT, path, strict, reviews, meta, parse_item, parse_review)
    return as_delta(dataset) if delta else dataset
