"""Read-only ``store.cypher()``: one statement, reads only, on both stores (kg.stores.guard).

The attack suite of :func:`kg.stores.guard.attack_suite` (writes after ``COMMIT;``, files,
administration, several statements) must be refused with ReadOnlyError on both stores,
leave the graph exactly as it was and create no file; legitimate reads keep working and
``write=True`` still writes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from kg import queries as q
from kg.build import BuildConfig, build_graph
from kg.errors import ReadOnlyError
from kg.schema import ALL_NODES, NODES, RELS, node_spec, rel_spec
from kg.stores import guard

QUIET = BuildConfig(progress=False)


@pytest.fixture
def graph(store, tiny):
    """The tiny shop plus user u0002 (the issue's target), on both stores."""
    build_graph(tiny, store, QUIET)
    store.upsert_nodes("User", pd.DataFrame({"id": ["u0002"], "name": ["Victim"]}))
    return store


def fingerprint(store) -> tuple[dict[str, int], dict[str, str]]:
    """counts() and a checksum of every label's ids and properties."""
    sums = {}
    for spec in ALL_NODES:
        rows = store.run(q.node_props_query(spec)).sort_values("id", kind="stable")
        text = rows.astype(str).to_csv(index=False)
        sums[spec.label] = hashlib.sha256(text.encode()).hexdigest()
        assert list(np.sort(rows["id"].to_numpy(dtype=object))) == list(store.node_ids(spec.label))
    return store.counts(), sums


# ----------------------------------------------------------------- the attack suite


def test_attack_suite_is_blocked_and_changes_nothing(graph, tmp_path, capsys):
    before = fingerprint(graph)
    assert before[0]["User"] == 4
    bait = tmp_path / "attacks"
    result = guard.run_attack_suite(graph, bait)
    with capsys.disabled():
        print(f"\n{result.summary()}")
    assert result.total >= 49
    assert result.passed == {}, f"not blocked: {result.passed}"
    assert len(result.blocked) == result.total
    assert fingerprint(graph) == before  # counts, ids and properties of every label
    targets = guard.attack_targets(bait)
    for name, path in targets.items():
        assert name == "csv_in" or not path.exists(), f"{path} was created"
    assert sorted(p.name for p in bait.iterdir()) == ["in.csv"]
    assert graph.counts() == before[0]  # the store is still usable


@pytest.mark.parametrize("name, query", guard.attack_suite("/nonexistent/kgrec-guard"),
                         ids=[n for n, _ in guard.attack_suite("/nonexistent/kgrec-guard")])
def test_every_attack_is_refused_by_the_statement_check(name, query):
    with pytest.raises(ReadOnlyError, match="write=True"):
        guard.check_read_only(query)


def test_issue_attacks_one_by_one(graph, tmp_path):
    """The attacker's queries from the issue, each with the ReadOnlyError that names it."""
    before = fingerprint(graph)
    cases = {
        "COMMIT; MATCH (u:User {id: 'u0002'}) DETACH DELETE u": "'COMMIT'",
        "commit ;\nmatch (u:User {id: 'u0002'}) detach delete u": "'commit'",
        "COMMIT; DROP TABLE RELEVANT": "'COMMIT'",
        "MATCH (u:User) RETURN u.id; MATCH (u:User {id: 'u0002'}) DETACH DELETE u": "second statement",
        f"COPY (MATCH (u:User) RETURN u.id) TO '{tmp_path / 'x.csv'}'": "'COPY'",
        f"EXPORT DATABASE '{tmp_path / 'dump'}'": "'EXPORT DATABASE'",
        "LOAD FROM '/etc/passwd' (file_format='csv', header=false, delim=':') RETURN *": "'LOAD FROM'",
        "LOAD CSV FROM 'file:///etc/passwd' AS row RETURN row": "'LOAD CSV'",
        "TERMINATE TRANSACTIONS 'neo4j-transaction-1'": "'TERMINATE TRANSACTIONS'",
        "CALL dbms.listConfig() YIELD name RETURN name": "dbms.listConfig",
        "CREATE (:Brand {id: 'x', name: 'x'})": "'CREATE'",
    }
    for query, named in cases.items():
        with pytest.raises(ReadOnlyError, match="write=True") as info:
            graph.cypher(query)
        assert named in str(info.value), (query, str(info.value))
        assert isinstance(info.value, PermissionError)
    assert fingerprint(graph) == before
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "dump").exists()


def test_the_database_refuses_writes_without_the_statement_check(graph, monkeypatch):
    """Defence in depth: with the statement check switched off, the database's own means
    (a prepared statement in a READ ONLY transaction; a Neo4j read transaction) still
    refuse the writes of the issue."""
    before = fingerprint(graph)
    monkeypatch.setattr(guard, "check_read_only", lambda query: None)
    for query in ("COMMIT; MATCH (u:User {id: 'u0002'}) DETACH DELETE u", "CREATE (:Brand {id: 'x', name: 'x'})",
                  "MATCH (u:User) SET u.name = 'evil'", "MATCH (u:User {id: 'u0002'}) DETACH DELETE u"):
        with pytest.raises(Exception) as info:  # noqa: PT011 - Neo4j rejects COMMIT; as a syntax error
            graph.cypher(query)
        if graph.kind == "embedded" or "COMMIT" not in query:
            assert isinstance(info.value, ReadOnlyError), (query, info.value)
    assert fingerprint(graph) == before


@pytest.mark.neo4j
def test_neo4j_server_refuses_file_urls(neo4j_uri, monkeypatch):
    """The test server's own settings: LOAD CSV may not read its files nor fetch URLs."""
    import neo4j

    from kg.stores import StoreConfig, open_store

    monkeypatch.setattr(guard, "check_read_only", lambda query: None)
    with open_store(StoreConfig(kind="neo4j", uri=neo4j_uri)) as store:
        with pytest.raises(neo4j.exceptions.ClientError, match="allow_csv_import_from_file_urls"):
            store.cypher("LOAD CSV FROM 'file:///etc/passwd' AS row RETURN row LIMIT 1")
        with pytest.raises(neo4j.exceptions.ClientError, match="cypher_ip_blocklist"):
            store.cypher("LOAD CSV FROM 'http://127.0.0.1:9/x.csv' AS row RETURN row LIMIT 1")


# ------------------------------------------------------------- what still works


def portable_reads() -> list[tuple[str, dict]]:
    """Every read of kg/queries.py that runs on both stores, with parameters."""
    reads: list[tuple[str, dict]] = []
    reads += [(q.node_props_query(s), {}) for s in ALL_NODES]
    reads += [(q.rel_rows_query(s), {}) for s in RELS]
    reads += [(q.count_nodes_query(s), {}) for s in NODES] + [(q.count_rels_query(s), {}) for s in RELS]
    reads += [(q.node_ids_query(s), {}) for s in NODES]
    reads += [(q.node_name_query(s), {"id": "p1"}) for s in NODES]
    reads += [(q.META_READ, {"key": "fingerprint"})]
    reads += [(q.neighbours_query(s, out, node_spec(s.dst if out else s.src)), {"id": "p1", "limit": 5})
              for s in RELS for out in (True, False)]
    via, params = rel_spec("PURCHASED"), {"user": "u1", "item": "p2", "limit": 5}
    reads += [(q.explain_direct_query(via), params),
              (q.explain_shared_node_query(via, rel_spec("HAS_BRAND"), node_spec("Brand")), params),
              (q.explain_shared_node_query(via, rel_spec("IN_CATEGORY"), node_spec("Category")), params),
              (q.explain_item_link_query(via, rel_spec("ALSO_BOUGHT"), True), params),
              (q.explain_item_link_query(via, rel_spec("ALSO_BOUGHT"), False), params),
              (q.explain_related_entities_query(via, True), params),
              (q.explain_co_interaction_query(via), params)]
    return reads


def test_kgrec_reads_pass_the_statement_check():
    dialect_reads = [*q.EXPLAIN_FALLBACK.values(), q.NEO4J_VECTOR_NEIGHBOURS, q.NEO4J_SIMILAR_ITEMS,
                     q.NEO4J_KGREC_VECTOR_INDEXES, q.neo4j_node_rows_query(node_spec("User")),
                     q.neo4j_rel_rows_query(rel_spec("RATED")), q.neo4j_node_internal_ids_query(node_spec("User")),
                     q.neo4j_edge_internal_ids_query(rel_spec("RATED"), ("ts",)),
                     q.embedded_offsets_query(node_spec("User")), q.embedded_edge_offsets_query(rel_spec("RATED"))]
    for query in [r for r, _ in portable_reads()] + dialect_reads:
        assert guard.refusal(query) is None, query


def test_kgrec_reads_still_work(graph):
    for query, params in portable_reads():
        assert list(graph.cypher(query, **params).columns) == list(graph.run(query, params).columns), query
    assert graph.cypher(q.count_nodes_query(node_spec("User")))["c"].iloc[0] == 4
    fallback = graph.cypher(q.EXPLAIN_FALLBACK[graph.dialect], user="u1", item="p3")
    assert fallback["ids"].iloc[0][0] == "u1" and fallback["ids"].iloc[0][-1] == "p3"
    from kg.catalogue import read_catalogue  # the catalogue is read back through cypher()

    catalogue = read_catalogue(graph)
    assert sorted(catalogue.items["item_id"]) == ["p1", "p2", "p3"]
    assert list(catalogue.reviews["review_id"]) == ["r1"]


LEGIT_BOTH = {
    "match_return": ("MATCH (p:Product) WHERE p.price > $min RETURN p.id AS id ORDER BY id", {"min": 5.0},
                     [{"id": "p1"}, {"id": "p3"}]),
    "optional_match_with_unwind": (
        "OPTIONAL MATCH (u:User {id: 'u1'})-[:PURCHASED]->(p:Product) WITH u, count(p) AS n "
        "UNWIND [1, 2] AS x RETURN u.id AS id, n, x ORDER BY x", {},
        [{"id": "u1", "n": 2, "x": 1}, {"id": "u1", "n": 2, "x": 2}]),
    "words_in_strings": (
        "MATCH (p:Product {id: 'p1'}) RETURN 'delete me; LOAD CSV FROM x' AS a, \"commit; drop table\" AS b, "
        "'it\\'s; create' AS c", {},
        [{"a": "delete me; LOAD CSV FROM x", "b": "commit; drop table", "c": "it's; create"}]),
    "keywords_as_names": (
        "WITH {load: 1, copy: 2, delete: 3} AS n RETURN n.load AS load, n.copy AS `copy`, n.delete AS del", {},
        [{"load": 1, "copy": 2, "del": 3}]),
    "comments": ("// drop table User\nMATCH (b:Brand) /* COMMIT; DETACH DELETE b */ RETURN b.id AS id;", {},
                 [{"id": "Acme"}]),
    "count_subquery": ("MATCH (u:User) WHERE COUNT { MATCH (u)-[:PURCHASED]->(:Product) } > 1 RETURN u.id AS id",
                       {}, [{"id": "u1"}]),
    "exists_subquery": ("MATCH (u:User) WHERE EXISTS { MATCH (u)-[:RATED]->(:Product) } RETURN u.id AS id", {},
                        [{"id": "u3"}]),
    "params_and_lower_case": ("match (u:User) where u.id = $id return u.name as name", {"id": "u0002"},
                              [{"name": "Victim"}]),
}

LEGIT_NEO4J = {
    "call_subquery": ("MATCH (u:User {id: 'u1'}) CALL (u) { MATCH (u)-[r:PURCHASED]->() RETURN count(r) AS n } "
                      "RETURN u.id AS id, n", {}, [{"id": "u1", "n": 2}]),
    "call_subquery_with": ("MATCH (u:User {id: 'u2'}) CALL { WITH u MATCH (u)-->(p:Product) RETURN count(p) AS n } "
                           "RETURN n", {}, [{"n": 2}]),
    "shortest_path": ("MATCH p = shortestPath((:User {id: 'u1'})-[*..4]-(:Product {id: 'p2'})) "
                      "RETURN length(p) AS hops", {}, [{"hops": 2}]),
    "db_labels": ("CALL db.labels() YIELD label WHERE label = 'Brand' RETURN label", {}, [{"label": "Brand"}]),
    "show_indexes": ("SHOW INDEXES YIELD name WHERE name = 'kgrec_user_id' RETURN name", {},
                     [{"name": "kgrec_user_id"}]),
}

LEGIT_EMBEDDED = {
    "shortest_path": ("MATCH p = (:User {id: 'u1'})-[* SHORTEST 1..4]-(:Product {id: 'p2'}) "
                      "RETURN length(p) AS hops", {}, [{"hops": 2}]),
    "show_tables": ("CALL show_tables() WHERE name = 'Brand' RETURN name", {}, [{"name": "Brand"}]),
}


def test_legit_reads_work_on_both_stores(graph):
    cases = {**LEGIT_BOTH, **(LEGIT_NEO4J if graph.kind == "neo4j" else LEGIT_EMBEDDED)}
    for name, (query, params, expected) in cases.items():
        got = graph.cypher(query, **params).to_dict("records")
        assert got == expected, (name, got)


@pytest.mark.neo4j
def test_vector_index_query_is_read_only(neo4j_uri, tiny):
    from kg.stores import StoreConfig, open_store

    with open_store(StoreConfig(kind="neo4j", uri=neo4j_uri)) as store:
        store.clear()
        try:
            build_graph(tiny, store, QUIET)
            store.write_vectors("Product", ["p1", "p2", "p3"], np.eye(3, dtype=np.float32))
            df = store.cypher(q.NEO4J_VECTOR_NEIGHBOURS, index=q.neo4j_vector_index_name(node_spec("Product")),
                              k=2, vector=[1.0, 0.1, 0.0])
            assert list(df["id"]) == ["p1", "p2"]
        finally:
            store.clear()


def test_write_true_still_writes(graph):
    before = graph.counts()
    graph.cypher("CREATE (:Brand {id: 'x', name: 'x'})", write=True)
    graph.cypher("MATCH (u:User {id: $id}) SET u.name = $name", write=True, id="u0002", name="Renamed")
    graph.cypher("MATCH (u:User {id: 'u3'}) DETACH DELETE u", write=True)
    after = graph.counts()
    assert after["Brand"] == before["Brand"] + 1 and after["User"] == before["User"] - 1
    assert graph.cypher("MATCH (u:User {id: 'u0002'}) RETURN u.name AS n")["n"].iloc[0] == "Renamed"
    assert list(graph.cypher("MATCH (b:Brand) RETURN b.id AS id ORDER BY id")["id"]) == ["Acme", "x"]


def test_store_errors_are_not_masked(graph):
    with pytest.raises(Exception, match="(?i)variable|not defined|unbound|not in scope") as info:
        graph.cypher("MATCH (p:Product) RETURN q.id")
    assert not isinstance(info.value, ReadOnlyError)
    assert graph.cypher("MATCH (b:Brand) RETURN count(b) AS c")["c"].iloc[0] == 1  # still usable


# ---------------------------------------------------------- the statement check itself


@pytest.mark.parametrize("query", [
    "MATCH (n) RETURN n.load, n.copy, n.set, n.delete, n.`drop`",
    "MATCH (n:Product) WHERE n.title CONTAINS 'delete' OR n.title = \"load csv from 'x'\" RETURN n",
    "MATCH (n) RETURN 'a\\\\' AS backslash, 'x' AS y",
    "RETURN {create: 1, merge: 2}.create AS c",
    "WITH 1 AS load, 2 AS copy RETURN 3 AS x",
    "MATCH (set:User) RETURN set.id",
    "MATCH (n) RETURN n /* commit; drop table x */",
    "MATCH (n) // delete\nRETURN n",
    "MATCH (n) RETURN n;",
    "MATCH (n) RETURN n ;  // trailing comment\n",
    "RETURN 1.5 AS x, 2 AS y",
    "EXPLAIN MATCH (n) RETURN n",
    "PROFILE MATCH (n) RETURN count(n)",
    "CALL db.index.vector.queryNodes($index, $k, $vector) YIELD node, score RETURN node.id AS id, score",
    "CALL `db`.`labels`() YIELD label RETURN label",
    "SHOW VECTOR INDEXES YIELD name WHERE name STARTS WITH 'kgrec_' RETURN name",
    "CALL table_info('User') RETURN *",
    "MATCH (u:User) WHERE u.id STARTS WITH 'u' RETURN u",
    "MATCH (n) WHERE n.id IN $ids AND n.x = $delete RETURN n.id AS id, $`load` AS l",
])
def test_reads_pass(query):
    assert guard.refusal(query) is None


@pytest.mark.parametrize("query, named", [
    ("MATCH (n) DETACH DELETE n", "'DETACH DELETE'"),
    ("match (n) detach delete n", "'detach delete'"),
    ("RETURN 'x'; MATCH (n) DELETE n", "second statement"),
    ("RETURN 'a\\'; MATCH (n) DELETE n; //'", None),  # one string in the databases' lexers: a read
    ("RETURN 'it\\'s'; MATCH (n) DELETE n", "second statement"),
    ("RETURN 1 AS x // c\rCOMMIT", "'COMMIT'"),  # Neo4j ends a // comment at \r too
    ("RETURN 1 AS x // c\u2028COMMIT", "'COMMIT'"),  # the check ends // at any line break: refuses more
    ("RETURN `a``; DELETE` AS x", None),  # a quoted name
    ("RETURN `a`; MATCH (n) DELETE n", "second statement"),
    ("MATCH (n) SET n.x = 1", "'SET'"),
    ("MATCH (n) CALL { CREATE (:X) } RETURN n", "'CREATE'"),
    ("CALL dbms.killConnections(['bolt-1'])", "dbms.killConnections"),
    ("CALL threads = 2", "threads"),
    ("SHOW TRANSACTIONS", "'SHOW TRANSACTIONS'"),
    ("SHOW SETTINGS", "'SHOW SETTINGS'"),
    ("STOP DATABASE neo4j", "'STOP DATABASE'"),
    ("RETURN 'abc", "unterminated string"),
    ("RETURN 1 /* x", "unterminated /* comment"),
    ("RETURN `x", "unterminated `identifier`"),
    ("RETURN 1. DELETE", "'DELETE'"),
])
def test_refusals_name_what_was_refused(query, named):
    why = guard.refusal(query)
    if named is None:
        assert why is None
    else:
        assert why is not None and named in why and "write=True" in why, why
