"""The write paths: the vectorised anti-join, Neo4j's CREATE path, the offline importer.

* :func:`kg.stores.base.distinct_pending` against a plain-Python reference on random rows
  (duplicate keys, missing values in keys and properties);
* both stores: new rows created, changed rows updated, unchanged ones skipped; on Neo4j a
  relationship whose endpoint is missing is left out, as the ``MERGE`` path's ``MATCH`` did;
* Neo4j with two writers in flight ends with the same graph;
* ``offline_import`` (``neo4j-admin database import full`` on a server of its own) builds
  the graph a transactional build builds (same digest), and a later build is "nothing new".
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kg.build import BuildConfig, build_graph, store_digest
from kg.stores.base import distinct_pending, key_codes, pending_rows

QUIET = BuildConfig(progress=False)
REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "scripts" / "neo4j-server" / "neo4j-server"


def _same(a, b) -> bool:
    return (a is None and b is None) or (a == b)


def _norm(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


def reference_pending(rows: pd.DataFrame, stored: pd.DataFrame, key, props):
    """distinct_pending, the slow obvious way (dicts of tuples)."""
    last = {}
    for pos, r in enumerate(rows.itertuples(index=False)):
        last[tuple(_norm(getattr(r, k)) for k in key)] = pos
    keep = sorted(last.values())
    first = {}
    for r in stored.itertuples(index=False):
        first.setdefault(tuple(_norm(getattr(r, k)) for k in key), r)
    fresh, changed = [], []
    for pos in keep:
        r = rows.iloc[pos]
        k = tuple(_norm(r[c]) for c in key)
        s = first.get(k)
        fresh.append(s is None)
        if s is not None and any(not _same(_norm(r[p]), _norm(getattr(s, p))) for p in props):
            changed.append(pos)
    return keep, np.array(fresh, dtype=bool), changed


def random_rows(rng, n):
    return pd.DataFrame({
        "src": pd.Series(rng.choice(["a", "b", "c", None], n), dtype="str"),
        "dst": rng.choice(["x", "y", "z"], n),
        "ts": rng.integers(0, 4, n),
        "value": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 3, n).astype(float)),
        "split": pd.Series(rng.choice(["train", "test", "", None], n), dtype="str"),
    })


@pytest.mark.parametrize("seed", range(40))
def test_distinct_pending_matches_the_obvious_implementation(seed):
    rng = np.random.default_rng(seed)
    rows = random_rows(rng, int(rng.integers(0, 80)))
    stored = random_rows(rng, int(rng.integers(0, 80)))
    for key, props in ((["src", "dst", "ts"], ["value", "split"]), (["src"], ["dst", "value"]), (["dst"], [])):
        distinct, fresh, changed = distinct_pending(rows, stored, key, props)
        keep, want_fresh, want_changed = reference_pending(rows, stored, key, props)
        assert list(distinct.index) == [rows.index[p] for p in keep]
        assert fresh.tolist() == want_fresh.tolist()
        assert list(changed.index) == [rows.index[p] for p in want_changed]
        if len(distinct) == len(rows):  # the old signature still answers the same
            f2, c2 = pending_rows(rows, stored, key, props)
            assert f2.tolist() == fresh.tolist() and list(c2.index) == list(changed.index)


def test_key_codes_are_equal_exactly_for_equal_keys():
    a = pd.DataFrame({"k": ["x", "y", None, "x"], "n": [1, 2, 3, 1]})
    b = pd.DataFrame({"k": ["x", None, "z"], "n": [1, 3, 1]})
    ca, cb = key_codes([a, b], ["k", "n"])
    assert ca[0] == ca[3] == cb[0] and ca[2] == cb[1]
    assert len({ca[0], ca[1], ca[2], cb[2]}) == 4


def test_an_empty_store_needs_no_join():
    rows = pd.DataFrame({"id": ["a", "b", "a"], "name": ["1", "2", "3"]})
    distinct, fresh, changed = distinct_pending(rows, rows.iloc[:0], ["id"], ["name"])
    assert distinct["name"].tolist() == ["2", "3"] and fresh.all() and changed.empty


def test_upserts_create_update_and_skip(store, tiny):
    build_graph(tiny, store, QUIET)
    users = pd.DataFrame({"id": ["u1", "u2", "u9"], "name": ["U1", "Renamed", None]})
    result = store.upsert_nodes("User", users)
    assert (result.rows, result.created, result.updated) == (3, 1, 1)
    names = dict(zip(*[store.run("MATCH (n:`User`) RETURN n.id AS id, n.name AS name")[c] for c in ("id", "name")]))
    assert names["u2"] == "Renamed"
    assert names["u9"] is None or names["u9"] != names["u9"]
    rels = pd.DataFrame({"src": ["u1", "u1", "u9"], "dst": ["p1", "p2", "p3"],
                         "ts": [100, 999, 5], "value": [7.0, 1.0, np.nan], "split": ["", "test", "x"]})
    before = store.counts()["PURCHASED"]
    result = store.upsert_rels("PURCHASED", rels)
    assert (result.rows, result.created, result.updated) == (3, 2, 1)  # (u1, p2, 999), (u9, p3, 5) new
    assert store.counts()["PURCHASED"] == before + 2
    if store.kind == "neo4j":  # a row whose endpoint is no node creates nothing (as the MERGE path's MATCH)
        missing = pd.DataFrame({"src": ["nobody"], "dst": ["p1"], "ts": [6], "value": [1.0], "split": ["y"]})
        assert store.upsert_rels("PURCHASED", missing).created == 0
    from kg import queries as q
    from kg.schema import rel_spec

    df = store.run(q.rel_rows_query(rel_spec("PURCHASED")))
    got = {(a, b, int(t)): v for a, b, t, v in zip(df["src"], df["dst"], df["ts"], df["value"])}
    assert got[("u1", "p1", 100)] == 7.0
    assert got[("u9", "p3", 5)] is None or np.isnan(got[("u9", "p3", 5)])
    again = store.upsert_rels("PURCHASED", rels)
    assert again.created == 0 and again.updated == 0


@pytest.mark.neo4j
def test_neo4j_concurrent_writers_build_the_same_graph(neo4j_uri, tmp_path):
    from kg.stores import StoreConfig, open_store
    from loaders.synthetic import SyntheticConfig, generate

    ds = generate(SyntheticConfig(n_users=200, n_items=100, n_interactions=8000, n_queries=5, seed=3))
    with open_store(StoreConfig(kind="embedded", path=str(tmp_path / "g"))) as emb:
        build_graph(ds, emb, QUIET)
        want = store_digest(emb)
    with open_store(StoreConfig(kind="neo4j", uri=neo4j_uri), batch_size=500) as neo:
        neo.clear()
        neo.write_workers = 2
        build_graph(ds, neo, QUIET)
        assert store_digest(neo) == want
        neo.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_offline_import_builds_what_a_build_builds(tmp_path, tiny):
    """neo4j-admin (from the jars scripts/neo4j-server already has) into a server of the
    test's own, started on a free port afterwards: the digest of a transactional build."""
    if not (REPO / "scripts" / "neo4j-server" / "target" / "lib").is_dir() or not shutil.which("java"):
        pytest.skip("the Neo4j test server is not built (scripts/neo4j-server/neo4j-server build) or no java")
    from kg.stores import StoreConfig, open_store
    from kg.neo4j_import import finish_import, offline_import

    home, port = tmp_path / "neo4j", _free_port()
    env = {"KGREC_NEO4J_HOME": str(home), "KGREC_NEO4J_PORT": str(port), "KGREC_NEO4J_HEAP": "512m",
           "KGREC_NEO4J_ADMIN_HEAP": "512m"}
    tiny.items.loc[tiny.items["item_id"] == "p2", "title"] = 'Blue "Navy" Mug,\nsecond line'  # quoting, newlines
    from loaders.dataset import make_table

    tiny.interactions = make_table("interactions", pd.concat([tiny.interactions, make_table("interactions", [
        {"user_id": "u2", "item_id": "p1", "event": "purchase", "value": 1, "timestamp": 160}])], ignore_index=True))
    report = offline_import(tiny, [str(SERVER), "admin"], max_off_heap_memory="256M", env=env)
    assert report.counts["PURCHASED"] == 4 and report.counts["User"] == 3
    assert {s.name: s.created for s in report.steps if s.kind == "derived"} == {"CO_PURCHASED": 1, "CO_RATED": 0,
                                                                               "CO_CLICKED": 0}
    with open_store(StoreConfig(kind="embedded", path=str(tmp_path / "g"))) as emb:
        build_graph(tiny, emb, QUIET)
        want = store_digest(emb)
    subprocess.run([str(SERVER), "start"], env={**os.environ, **env}, check=True, capture_output=True)
    try:
        with open_store(StoreConfig(kind="neo4j", uri=f"bolt://127.0.0.1:{port}")) as neo:
            finish_import(neo, report)
            assert store_digest(neo) == want  # the co-interaction counts too: (p1, p2) by u2
            assert neo.export_edges("CO_PURCHASED").num_edges == 1
            assert build_graph(tiny, neo, QUIET).up_to_date  # the import left the build record
            again = build_graph(tiny, neo, BuildConfig(progress=False, resume=False))
            assert again.created == 0 and again.updated == 0  # every property as a build writes it
            assert neo.read_meta("last_build")
    finally:
        subprocess.run([str(SERVER), "stop"], env={**os.environ, **env}, check=False, capture_output=True)
