"""Delta ingest: new users, products, events and reviews into a graph that already holds a shop.

:func:`ingest` applies a *delta* -- a :class:`loaders.Dataset` read by the same loaders
and validated the same way, holding only what is new or changed -- to a store:

* its rows go through :func:`kg.build.build_graph` (the idempotent upserts: new rows are
  created, rows whose properties changed -- a product's new price or title, a product
  withdrawn with ``available = 0`` -- are updated in place, rows already stored are left
  alone), so an ingest run twice, or killed and run again, ends the same (the derived
  co-interaction counts included: :data:`kg.build.CO_COUNTS_DIRTY`);
* its interactions and reviews may name users and products the store already holds
  (they need not be in the delta's ``users`` / ``items`` tables); users the store does
  not know yet become new users; an event or review of a product the store does not
  know is rejected (counted, with the reason: a product needs its catalogue row first);
  a product row holding nothing but its id (how a loader lists the ids its events name,
  ``loaders.tabular.read(..., delta=True)``) is no catalogue row: it creates no product
  and updates none -- a row with any property (a title, a price, ``available = 0`` …) does;
  a user row holding nothing but its id makes a new user only when an event or review
  kept names it; a product row of a stored product is its whole new row: its properties
  are updated and its brand and category links replaced (:func:`replace_stale_links`);
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
from kg.stores import GraphStore
from loaders.dataset import Dataset, isin, make_table

@dataclass
class IngestReport:
    """What one ingest did: the build report, the rows rejected here, the new version."""

    build: BuildReport
    rejected: dict[str, int]          # reason -> rows
    new_users: int
    version: StoreVersion
    links_removed: int = 0            # brand / category links a changed product row no longer names

    def table(self) -> str:
        lines = [self.build.table()]
        if self.new_users:
            lines.append(f"new users (first seen in these events): {self.new_users:,}")
        if self.links_removed:
            lines.append(f"brand / category links replaced by changed product rows: {self.links_removed:,} removed")
        for reason, n in self.rejected.items():
            lines.append(f"  rejected {n:,}: {reason}")
        lines.append(f"store sequence {self.version.sequence} (store {self.version.store_id[:8]})")
        return "\n".join(lines)


def ingest(store: GraphStore, delta: Dataset, config: BuildConfig | None = None) -> IngestReport:
    """Apply ``delta`` to a connected ``store`` (see the module docstring)."""
    known_users = np.asarray(store.node_ids("User"), dtype=object)
    known_items = np.asarray(store.node_ids("Product"), dtype=object)
    # a loader lists the products and users its events name id-only (no title, no name)
    # when it has no catalogue row for them: for ones the store holds, that is no update --
    # their stored properties stay; a bare product the store does not hold is no catalogue
    # row either (a mistyped SKU in an event feed): dropped, so its events are rejected below.
    # A row with any property (a title, a price, available = 0 …) is a catalogue row. A bare
    # user is made below only if some kept event or review names it (a new user).
    bare_item = ((delta.items[["title", "description", "brand"]] == "").all(axis=1)
                 & delta.items["price"].isna() & delta.items["categories"].map(len).eq(0)
                 & delta.items["features"].map(len).eq(0) & delta.items["available"].eq(1))
    delta = replace(delta, items=delta.items[~bare_item.to_numpy()].reset_index(drop=True),
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
    # rows may refer to the users and products the store holds
    report = build_graph(replace(delta, **tables), store, config, known_users=known_users, known_items=known_items)
    replaced = replace_stale_links(store, delta.items[isin(delta.items["item_id"], known_items)])
    version = report.version
    if replaced and not (report.created or report.updated):  # the links removed are this ingest's only write
        version = advance(store, {"dataset": delta.name, "links_removed": replaced})
    return IngestReport(report, rejected, len(fresh), version, replaced)


def replace_stale_links(store: GraphStore, items: pd.DataFrame) -> int:
    """Remove the brand and category links of the stored products in ``items`` (catalogue
    rows of a delta) that their rows no longer name -- a product re-listed under another
    brand or category had both the old and the new. Returns the links removed (run again,
    e.g. after a crash, it removes what is left: 0)."""
    if not len(items):
        return 0
    ids = items["item_id"].astype(str)
    kept = {"HAS_BRAND": [f"{i}{q.PAIR_SEP}{b}" for i, b in zip(ids, items["brand"]) if b],
            "IN_CATEGORY": [f"{i}{q.PAIR_SEP}{c}" for i, cats in zip(ids, items["categories"]) for c in cats]}
    removed = 0
    for rel_type, keep in kept.items():
        params = {"src": list(ids), "keep": keep, "sep": q.PAIR_SEP}
        n = int(store.cypher(q.stale_links_query(rel_type, delete=False), **params)["n"].iloc[0])
        if n:
            store.cypher(q.stale_links_query(rel_type, delete=True), write=True, **params)
            removed += n
    return removed
