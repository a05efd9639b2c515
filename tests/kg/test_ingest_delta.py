"""``kgrec ingest --source csv`` of a delta into a store built from a small CSV shop.

A delta's events may name the products and users the store holds although the delta has
an items file of its own; a catalogue-only delta (a withdrawal) needs no interactions
file; an event of a product no catalogue row names (a mistyped SKU) is rejected and
creates no product -- whether the delta has an items file or not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fusion.cli import main
from kg.stores import StoreConfig, open_store

UNKNOWN = "interactions: unknown product (ingest its catalogue row first)"


def _write(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.csv").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def shop(tmp_path):
    """A store built from 5 products (00001-00005) and 4 users' purchases; its --db path."""
    items = "item_id,title,brand,price,categories\n" + "".join(
        f"0000{i},Item {i},Acme,{10 * i}.00,Home > Kitchen\n" for i in range(1, 6))
    events = "user_id,item_id,event,value,timestamp\n" + "".join(
        f"u{u},0000{i},purchase,1,{1_700_000_000 + 10 * u + i}\n" for u in range(1, 5) for i in range(1, 6)
        if (u + i) % 3)
    db = tmp_path / "db"
    assert main(["build", "--source", "csv", "--path", str(_write(tmp_path / "shop", items=items,
                                                                   interactions=events)),
                 "--db", str(db), "--no-progress", "--rejects", str(tmp_path / "rejects.csv")]) == 0
    return db


def _ingest(db: Path, delta: Path, *extra: str) -> int:
    return main(["ingest", "--source", "csv", "--path", str(delta), "--db", str(db), "--no-progress",
                 "--rejects", str(delta / "rejects.csv"), *extra])


def _products(db: Path) -> dict[str, dict]:
    with open_store(StoreConfig(kind="embedded", path=str(db))) as store:
        rows = store.cypher("MATCH (p:Product) RETURN p.id AS id, p.price AS price, p.available AS available")
    return {r["id"]: r for r in rows.to_dict("records")}


def _events(db: Path, rel: str, user: str) -> list[str]:
    with open_store(StoreConfig(kind="embedded", path=str(db))) as store:
        rows = store.cypher(f"MATCH (u:User {{id: $u}})-[:{rel}]->(p:Product) RETURN p.id AS id", u=user)
    return sorted(rows["id"])


@pytest.mark.parametrize("lenient", [False, True])
def test_a_delta_with_items_keeps_events_of_known_products(shop, tmp_path, capsys, lenient):
    """Items file: a new product, a repriced known one, a price-only row (a catalogue row);
    events of the new product, of a known product the items file does not list, and of an
    unknown GHOST: the first two are ingested, GHOST's is rejected and is no product."""
    delta = _write(tmp_path / "d1",
                   items="item_id,title,brand,price,categories\n"
                         "NEW1,Red ceramic mug,Acme,14.50,Home > Kitchen\n"
                         "00001,Item 1,Acme,999.00,Home > Kitchen\n"
                         "NEW3,,,5,\n",
                   interactions="user_id,item_id,event,value,timestamp\n"
                                "newbie,NEW1,purchase,1,1730073600\n"
                                "newbie,00002,click,1,1730073601\n"
                                "u2,NEW1,purchase,1,1730073602\n"
                                "u3,GHOST,purchase,1,1730073603\n")
    capsys.readouterr()
    assert _ingest(shop, delta, *(["--lenient"] if lenient else [])) == 0
    out = capsys.readouterr().out
    assert f"rejected 1: {UNKNOWN}" in out
    products = _products(shop)
    assert "GHOST" not in products and {"NEW1", "NEW3"} <= set(products)
    assert products["00001"]["price"] == 999.0 and products["NEW3"]["price"] == 5.0
    assert _events(shop, "CLICKED", "newbie") == ["00002"] and _events(shop, "PURCHASED", "newbie") == ["NEW1"]
    assert _events(shop, "PURCHASED", "u2") == ["00002", "00003", "00005", "NEW1"]
    # the table's CO_PURCHASED row shows the pairs in the store, not the ones recounted now
    with open_store(StoreConfig(kind="embedded", path=str(shop))) as store:
        total = int(store.cypher("MATCH (:Product)-[e:CO_PURCHASED]->() RETURN count(e) AS c")["c"].iloc[0])
    row = re.search(r"^CO_PURCHASED\s+([\d,]+)\s", out, re.M)
    assert row and int(row.group(1).replace(",", "")) == total > 3


def test_a_catalogue_only_delta_withdraws_a_product(shop, tmp_path):
    delta = _write(tmp_path / "d5", items="item_id,title,brand,price,categories,available\n"
                                          "00003,Item 3,Acme,30.00,Home > Kitchen,0\n")
    assert _ingest(shop, delta) == 0
    products = _products(shop)
    assert products["00003"]["available"] == 0 and products["00004"]["available"] == 1 and len(products) == 5


def test_an_events_only_delta_creates_no_product_for_an_unknown_id(shop, tmp_path, capsys):
    """Without an items file every id of the events is listed id-only: a known product's
    event is ingested (the product unchanged), its new user is made; GHOST's events are
    rejected, and a new user with no other event is not made."""
    delta = _write(tmp_path / "d3", interactions="user_id,item_id,event,value,timestamp\n"
                                                 "newbie3,00002,purchase,1,1730073601\n"
                                                 "u1,GHOST,purchase,1,1730073603\n"
                                                 "ghostfan,GHOST,view,1,1730073604\n")
    capsys.readouterr()
    assert _ingest(shop, delta, "--lenient") == 0
    out = capsys.readouterr().out
    assert f"rejected 2: {UNKNOWN}" in out and "new users (first seen in these events): 1" in out
    products = _products(shop)
    assert "GHOST" not in products and len(products) == 5 and products["00002"]["price"] == 20.0
    assert _events(shop, "PURCHASED", "newbie3") == ["00002"] and "GHOST" not in _events(shop, "PURCHASED", "u1")
    with open_store(StoreConfig(kind="embedded", path=str(shop))) as store:
        users = set(store.node_ids("User"))
    assert "newbie3" in users and "ghostfan" not in users


def test_a_changed_row_replaces_the_products_brand_and_categories(shop, tmp_path, capsys):
    """A product re-listed under another brand and category loses the old ones (it had both:
    still matched a brand filter it no longer has); the others keep theirs; running the same
    delta again removes nothing more."""
    delta = _write(tmp_path / "relist", items="item_id,title,brand,price,categories\n"
                   "00001,Item 1,Kettleworks,10.00,Garden > Tools|Home > Kitchen\n00002,Item 2,,20.00,\n")
    assert _ingest(shop, delta) == 0
    out = capsys.readouterr().out
    assert "brand / category links replaced by changed product rows: 3 removed" in out
    assert ("catalogue rows of stored products: 2 (the items file has title, brand, categories, price: only those "
            "set; kept as stored: description, features, available)") in out
    with open_store(StoreConfig(kind="embedded", path=str(shop))) as store:
        links = store.cypher("MATCH (p:Product)-[e:HAS_BRAND|IN_CATEGORY]->(n) RETURN p.id AS p, n.id AS n")
    got = {p: sorted(links[links["p"] == p]["n"]) for p in ("00001", "00002", "00003")}
    assert got == {"00001": ["Garden > Tools", "Home > Kitchen", "Kettleworks"], "00002": [],
                   "00003": ["Acme", "Home > Kitchen"]}
    assert _ingest(shop, delta) == 0
    assert "replaced" not in capsys.readouterr().out


def test_an_interrupted_ingest_resumed_keeps_the_co_counts_of_a_clean_one(shop, tmp_path, monkeypatch):
    """An ingest killed after it dropped PURCHASED from the ``co_counts`` record (to recount the
    pairs of its products) and run again ends as a clean ingest: PURCHASED recounted for the
    delta's products and back in the record. Counted whole instead, the delta's one customer of
    20 products makes the counts not worth keeping: the type stayed dropped, stale pairs left."""
    import kg.build
    from kg.build import CO_COUNTS_RECORD, store_digest

    clean = tmp_path / "clean"
    assert main(["build", "--source", "csv", "--path", str(tmp_path / "shop"), "--db", str(clean),
                 "--no-progress", "--rejects", str(tmp_path / "rejects2.csv")]) == 0
    items = "item_id,title,price\n" + "".join(f"B{i:02d},Bulk {i},1.00\n" for i in range(20))
    bought = [f"B{i:02d}" for i in range(20)] + ["00001"]
    events = "user_id,item_id,event,value,timestamp\n" + "".join(
        f"bulk,{i},purchase,1,{1_730_000_000 + k}\n" for k, i in enumerate(bought))
    delta = _write(tmp_path / "bulk", items=items, interactions=events)

    def killed(*args, **kwargs):
        raise RuntimeError("killed while counting")

    with monkeypatch.context() as patch:
        patch.setattr(kg.build, "update_co_counts", killed)
        with pytest.raises(RuntimeError, match="killed"):
            _ingest(shop, delta)
    assert _ingest(shop, delta) == 0 and _ingest(clean, delta) == 0
    with open_store(StoreConfig(kind="embedded", path=str(shop))) as store:
        resumed = store_digest(store), store.read_meta(CO_COUNTS_RECORD)
    with open_store(StoreConfig(kind="embedded", path=str(clean))) as store:
        expected = store_digest(store), store.read_meta(CO_COUNTS_RECORD)
    assert "PURCHASED" in expected[1] and expected[0]["CO_PURCHASED"][0] > 200
    assert resumed == expected


def test_an_event_the_graph_holds_is_replaced_never_added_to(shop, tmp_path, capsys):
    """An event with the key of one the graph holds (user, product, type and second) replaces
    it: a delta file ingested twice changes nothing (a retried upload is not a second
    order); within one file, repeat purchases at one key are summed first."""
    def purchases() -> list[tuple[int, float]]:
        with open_store(StoreConfig(kind="embedded", path=str(shop))) as store:
            rows = store.cypher("MATCH (u:User {id: $u})-[r:PURCHASED]->(p:Product {id: $p}) "
                                "RETURN r.ts AS ts, r.value AS value ORDER BY ts", u="u9", p="00001")
        return [(int(t), float(v)) for t, v in zip(rows["ts"], rows["value"])]

    once = _write(tmp_path / "once", interactions="user_id,item_id,event,value,timestamp\n"
                                                  "u9,00001,purchase,2,1700000999\nu9,00001,purchase,1,1700000999\n")
    assert _ingest(shop, once) == 0
    assert purchases() == [(1_700_000_999, 3.0)]  # the file's two rows at one key: summed
    assert _ingest(shop, once) == 0
    assert purchases() == [(1_700_000_999, 3.0)]  # the same file again: unchanged
    other = _write(tmp_path / "other", interactions="user_id,item_id,event,value,timestamp\n"
                                                    "u9,00001,purchase,5,1700000999\nu9,00001,purchase,1,1700001999\n")
    assert _ingest(shop, other) == 0
    assert purchases() == [(1_700_000_999, 5.0), (1_700_001_999, 1.0)]  # replaced; a later one added
    capsys.readouterr()


def _catalogue(db: Path, *ids: str) -> dict[str, tuple]:
    """Per product: title, price, available, and its brand and category ids (sorted)."""
    with open_store(StoreConfig(kind="embedded", path=str(db))) as store:
        props = store.cypher("MATCH (p:Product) WHERE p.id IN $ids RETURN p.id AS id, p.title AS title, "
                             "p.description AS description, p.price AS price, p.available AS available", ids=list(ids))
        links = store.cypher("MATCH (p:Product)-[:HAS_BRAND|IN_CATEGORY]->(n) WHERE p.id IN $ids "
                             "RETURN p.id AS id, n.id AS n", ids=list(ids))
    return {r["id"]: (r["title"], r["description"], r["price"], r["available"],
                      sorted(links[links["id"] == r["id"]]["n"])) for r in props.to_dict("records")}


SHOP_ROW = {i: (f"Item {i[-1]}", "", 10.0 * int(i), 1, ["Acme", "Home > Kitchen"]) for i in ("00001", "00002", "00003")}


def test_a_price_only_delta_changes_the_price_and_keeps_the_rest(shop, tmp_path, capsys):
    """``item_id,price`` (a price feed): the price changes; title, description, brand,
    categories and availability stay as stored -- a withdrawn product stays withdrawn -- and
    the summary says what was set and what kept. Fuzz pass 5 #1: it emptied them all."""
    assert _ingest(shop, _write(tmp_path / "w", items="item_id,title,description,available\n"
                                                      "00002,Item 2,A blue mug,0\n")) == 0
    capsys.readouterr()
    assert _ingest(shop, _write(tmp_path / "p", items="item_id,price\n00001,12.50\n00002,7\n")) == 0
    out = capsys.readouterr().out
    assert re.search(r"updated 2\b", out) and "removed" not in out
    assert ("catalogue rows of stored products: 2 (the items file has price: only those set; kept as stored: "
            "title, description, brand, categories, features, available)") in out
    assert _catalogue(shop, "00001", "00002", "00003") == {
        "00001": ("Item 1", "", 12.5, 1, ["Acme", "Home > Kitchen"]),
        "00002": ("Item 2", "A blue mug", 7.0, 0, ["Acme", "Home > Kitchen"]),
        "00003": SHOP_ROW["00003"]}


def test_an_available_only_delta_withdraws_and_relists(shop, tmp_path, capsys):
    """``item_id,available``: 0 withdraws, 1 re-lists, the product otherwise as stored; the
    withdrawal sent again after the re-listing withdraws again (never skipped as "built
    before": the store changed since)."""
    withdraw = _write(tmp_path / "w", items="item_id,available\n00001,0\n")
    relist = _write(tmp_path / "r", items="item_id,available\n00001,1\n")
    for delta, available in ((withdraw, 0), (relist, 1), (withdraw, 0), (relist, 1)):
        assert _ingest(shop, delta) == 0
        assert _catalogue(shop, "00001")["00001"] == (*SHOP_ROW["00001"][:3], available, ["Acme", "Home > Kitchen"])
    assert _products(shop)["00002"]["available"] == 1


def test_a_brand_only_delta_replaces_the_brand_and_keeps_the_categories(shop, tmp_path):
    assert _ingest(shop, _write(tmp_path / "b", items="item_id,brand\n00003,Kettleworks\n")) == 0
    assert _catalogue(shop, "00003")["00003"] == ("Item 3", "", 30.0, 1, ["Home > Kitchen", "Kettleworks"])


def test_an_empty_cell_of_a_column_the_file_has_empties_it(shop, tmp_path):
    """The columns a file has are the product's: an empty one empties it (the title here),
    the ones it lacks are kept (price, brand, categories)."""
    assert _ingest(shop, _write(tmp_path / "e", items="item_id,title,description\n00001,,New text\n")) == 0
    assert _catalogue(shop, "00001")["00001"] == ("", "New text", 10.0, 1, ["Acme", "Home > Kitchen"])


def test_events_of_a_withdrawn_product_do_not_relist_it(shop, tmp_path):
    """A delta whose items file has an ``available`` column, with events of a withdrawn product
    it does not list: that product (listed id-only by the loader) stays withdrawn."""
    assert _ingest(shop, _write(tmp_path / "w", items="item_id,available\n00004,0\n")) == 0
    delta = _write(tmp_path / "d", items="item_id,available\n00005,0\n",
                   interactions="user_id,item_id,event,value,timestamp\nu1,00004,view,1,1730000000\n")
    assert _ingest(shop, delta) == 0
    products = _products(shop)
    assert products["00004"]["available"] == 0 and products["00005"]["available"] == 0
    assert _events(shop, "VIEWED", "u1") == ["00004"]
