"""Delta ingest: new users, products, events and reviews into a graph that already holds a shop.

:func:`ingest` applies a *delta* -- a :class:`loaders.Dataset` read by the same loaders
and validated the same way, holding only what is new or changed -- to a store:

* its rows go through :func:`kg.build.build_graph` (the idempotent upserts: new rows are
  created, rows whose properties changed -- a product's new price or title, a product
  withdrawn with ``available = 0`` -- are updated in place, rows already stored are left
  alone), so an ingest run twice, or killed and run again, ends the same (the derived
  co-interaction counts included: :data:`kg.build.CO_COUNTS_DIRTY`); unlike a build it is
  never skipped as "built before" (``BuildConfig.resume`` off): the store may have changed
  since the same delta was ingested (a withdrawal, a re-listing, the withdrawal again);
* its interactions and reviews may name users and products the store already holds
  (they need not be in the delta's ``users`` / ``items`` tables); users the store does
  not know yet become new users; an event or review of a product the store does not
  know is rejected (counted, with the reason: a product needs its catalogue row first);
  a product row holding nothing but its id (how a loader lists the ids its events name,
  ``loaders.tabular.read(..., delta=True)``) is no catalogue row: it creates no product
  and updates none -- a row with any property (a title, a price, ``available = 0`` …) does;
  a user row holding nothing but its id makes a new user only when an event or review
  kept names it; a product row of a stored product sets the columns its file has
  (``Dataset.columns``, what ``loaders.tabular`` records; a table a loader does not describe
  has every column): each such property is set as the row gives it -- an empty cell empties
  it -- and its brand and category links are replaced when the file has a ``brand`` /
  ``categories`` column (:func:`replace_stale_links`); a column the file does not have
  keeps what is stored (an ``item_id,price`` price change keeps the title, description,
  brand, categories, features and availability: :func:`keep_stored`). In a file with an
  ``available`` column a stored product's row with nothing else is a catalogue row (a
  withdrawal, ``0``, or a re-listing, ``1``); a new product needs more than that;
* every ingest advances the store's **sequence number** (``KgrecMeta`` ``sequence``) and
  the store keeps an **identity** (``store_id``, made on the first build of an empty
  store), so a trained run, which records both (``run.json``), can tell what changed
  since it was trained -- and refuse to update against a store rebuilt from scratch.
  (:func:`kg.build.advance`; a full build advances it too: it is an ingest of everything).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from kg import queries as q
from kg.build import BuildConfig, BuildReport, StoreVersion, advance, build_graph
from kg.rows import normalise_category_path
from kg.schema import PRODUCT
from kg.stores import GraphStore
from loaders.dataset import TABLES, Dataset, isin, make_table

#: the items columns written as Product properties (:func:`kg.rows.graph_rows`)
PRODUCT_COLUMNS = ("title", "description", "price", "features", "available")
#: the items columns written as links, and the relationship type of each
LINK_COLUMNS = {"brand": "HAS_BRAND", "categories": "IN_CATEGORY"}
#: the items columns a catalogue row may set (every one but the id)
ITEM_COLUMNS = tuple(c.name for c in TABLES["items"] if c.name != "item_id")


@dataclass
class IngestReport:
    """What one ingest did: the build report, the rows rejected here, the new version."""

    build: BuildReport
    rejected: dict[str, int]          # reason -> rows
    new_users: int
    version: StoreVersion
    links_removed: int = 0            # brand / category links a changed product row no longer names
    stored_rows: int = 0              # catalogue rows of products the store held
    columns: tuple[str, ...] | None = None  # the items columns those rows set; None: every one

    def table(self) -> str:
        lines = [self.build.table()]
        if self.new_users:
            lines.append(f"new users (first seen in these events): {self.new_users:,}")
        if self.stored_rows:
            lines.append(self.catalogue_line())
        if self.links_removed:
            lines.append(f"brand / category links replaced by changed product rows: {self.links_removed:,} removed")
        for reason, n in self.rejected.items():
            lines.append(f"  rejected {n:,}: {reason}")
        lines.append(f"store sequence {self.version.sequence} (store {self.version.store_id[:8]})")
        return "\n".join(lines)

    def catalogue_line(self) -> str:
        """What the catalogue rows of stored products set, and what they kept as stored
        (how many products changed is the build line's "updated")."""
        head = f"catalogue rows of stored products: {self.stored_rows:,}"
        kept = [c for c in ITEM_COLUMNS if self.columns is not None and c not in self.columns]
        if not kept:
            return f"{head} (whole rows: every column set, an empty field empties it)"
        return (f"{head} (the items file has {', '.join(self.columns or ()) or 'no other column'}: only those set; "
                f"kept as stored: {', '.join(kept)})")


def ingest(store: GraphStore, delta: Dataset, config: BuildConfig | None = None) -> IngestReport:
    """Apply ``delta`` to a connected ``store`` (see the module docstring)."""
    known_users = np.asarray(store.node_ids("User"), dtype=object)
    known_items = np.asarray(store.node_ids("Product"), dtype=object)
    # a loader lists the products and users its events name id-only (no title, no name)
    # when it has no catalogue row for them: for ones the store holds, that is no update --
    # their stored properties stay; a bare product the store does not hold is no catalogue
    # row either (a mistyped SKU in an event feed): dropped, so its events are rejected below.
    # A row with any property (a title, a price, available = 0 …) is a catalogue row; so is a
    # stored product's row in a file with an `available` column (`item_id,available` with 1
    # re-lists it), not the rows the loader only listed. A bare user is made below only if
    # some kept event or review names it (a new user). Properties the file has no column for
    # are taken from the store (keep_stored), so writing the row keeps them.
    given = delta.columns.get("items")
    bare_item = ((delta.items[["title", "description", "brand"]] == "").all(axis=1)
                 & delta.items["price"].isna() & delta.items["categories"].map(len).eq(0)
                 & delta.items["features"].map(len).eq(0) & delta.items["available"].eq(1)).to_numpy()
    if given is not None and "available" in given:
        ids = delta.items["item_id"].astype(str)
        bare_item = bare_item & ~(isin(ids, known_items) & ~isin(ids, delta.listed.get("items", [])))
    catalogue = delta.items[~bare_item].reset_index(drop=True)
    stored = isin(catalogue["item_id"].astype(str), known_items)
    if given is not None and stored.any() and set(PRODUCT_COLUMNS) - set(given):
        catalogue = keep_stored(store, catalogue, stored, [c for c in PRODUCT_COLUMNS if c not in given])
    delta = replace(delta, items=catalogue,
                    users=delta.users[~(delta.users["name"] == "").to_numpy()].reset_index(drop=True))
    items = delta.items["item_id"].astype(str)
    users = delta.users["user_id"].astype(str)
    rejected: dict[str, int] = {}

    def known_item(ids: pd.Series) -> np.ndarray:
        return isin(ids.astype(str), items) | isin(ids.astype(str), known_items)

    tables = {}
    for name, col in (("interactions", "item_id"), ("reviews", "item_id")):
        frame = getattr(delta, name)
        ok = known_item(frame[col]) if len(frame) else np.ones(0, bool)
        if (~ok).any():
            rejected[f"{name}: unknown product (ingest its catalogue row first)"] = int((~ok).sum())
        tables[name] = frame[ok].reset_index(drop=True)
    for name, cols in (("item_links", ("src_item", "dst_item")), ("item_entities", ("item_id",)),
                       ("judgements", ("item_id",))):
        frame = getattr(delta, name)
        ok = np.logical_and.reduce([known_item(frame[c]) for c in cols]) if len(frame) else np.ones(0, bool)
        if (~ok).any():
            rejected[f"{name}: unknown product"] = int((~ok).sum())
        tables[name] = frame[ok].reset_index(drop=True)

    mentioned = pd.concat([tables["interactions"]["user_id"], tables["reviews"]["user_id"]]).astype(str).unique()
    mentioned = pd.Series(mentioned, dtype=object)
    fresh = mentioned[~(isin(mentioned, users) | isin(mentioned, known_users))]
    new_users = make_table("users", {"user_id": fresh.to_numpy(dtype=object)})
    tables["users"] = pd.concat([delta.users, new_users], ignore_index=True) if len(fresh) else delta.users

    # only the delta's own rows are written (stored products keep their properties); its
    # rows may refer to the users and products the store holds. Never skipped as "built
    # before": the store may have changed since this same delta was ingested (a withdrawal,
    # a re-listing, the withdrawal again), so its rows always go through the anti-join.
    config = replace(config or BuildConfig(), resume=False)
    report = build_graph(replace(delta, **tables), store, config, known_users=known_users, known_items=known_items)
    replaced = replace_stale_links(store, delta.items[stored],
                                   [t for c, t in LINK_COLUMNS.items() if given is None or c in given])
    version = report.version
    if replaced and not (report.created or report.updated):  # the links removed are this ingest's only write
        version = advance(store, {"dataset": delta.name, "links_removed": replaced})
    set_columns = None if given is None else tuple(c for c in ITEM_COLUMNS if c in given)
    return IngestReport(report, rejected, len(fresh), version, replaced, int(stored.sum()), set_columns)


def keep_stored(store: GraphStore, items: pd.DataFrame, stored: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """``items`` (catalogue rows of a delta) with ``columns`` -- Product properties
    (:data:`PRODUCT_COLUMNS`) that the delta's items file does not have -- taken from the
    store for the ``stored`` rows (a mask: products the store holds), so writing the rows
    leaves those properties as they are. The other rows keep their empty values (new products)."""
    ids = items["item_id"].astype(str)
    props = store.cypher(q.node_props_query(PRODUCT, by_id=True), ids=list(dict.fromkeys(ids[stored])))
    props = props.drop_duplicates("id")
    features = props["features"].astype(object).where(props["features"].notna(), "").astype(str)
    held = pd.DataFrame({
        "title": props["title"].astype(object).where(props["title"].notna(), "").astype(str).to_numpy(),
        "description": props["description"].astype(object).where(props["description"].notna(), "")
        .astype(str).to_numpy(),
        "price": pd.to_numeric(props["price"], errors="coerce").to_numpy(dtype=float),
        "features": [f.split("\n") if f else [] for f in features],
        # a product stored before the flag existed is on sale
        "available": pd.to_numeric(props["available"], errors="coerce").fillna(1).to_numpy(dtype=np.int64),
    }, index=props["id"].astype(str).to_numpy()).reindex(ids.to_numpy())
    out = items.copy()
    for col in columns:
        out[col] = out[col].where(~stored, pd.Series(held[col].to_numpy(), index=out.index))
    return make_table("items", out)


def replace_stale_links(store: GraphStore, items: pd.DataFrame,
                        rel_types: list[str] | tuple[str, ...] = tuple(LINK_COLUMNS.values())) -> int:
    """Remove the brand and category links of the stored products in ``items`` (catalogue
    rows of a delta) that their rows no longer name -- a product re-listed under another
    brand or category had both the old and the new. ``rel_types``: the links to replace
    (``HAS_BRAND`` when the delta's file has a ``brand`` column, ``IN_CATEGORY`` when it has
    ``categories``; a column the file lacks leaves those links alone). Returns the links
    removed (run again, e.g. after a crash, it removes what is left: 0)."""
    if not len(items) or not rel_types:
        return 0
    ids = items["item_id"].astype(str)
    kept = {"HAS_BRAND": [f"{i}{q.PAIR_SEP}{b}" for i, b in zip(ids, items["brand"]) if b],
            # the paths as the build stores them (kg.rows.normalise_category_path): "Home  > Kitchen" is
            # written as "Home > Kitchen", and a link kept under another spelling would be deleted as stale
            "IN_CATEGORY": [f"{i}{q.PAIR_SEP}{p}" for i, cats in zip(ids, items["categories"])
                            for p in dict.fromkeys(map(normalise_category_path, cats)) if p]}
    removed = 0
    for rel_type, keep in ((t, kept[t]) for t in rel_types):
        params = {"src": list(ids), "keep": keep, "sep": q.PAIR_SEP}
        n = int(store.cypher(q.stale_links_query(rel_type, delete=False), **params)["n"].iloc[0])
        if n:
            store.cypher(q.stale_links_query(rel_type, delete=True), write=True, **params)
            removed += n
    return removed
