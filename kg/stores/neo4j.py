"""The Neo4j graph store (neo4j Python driver 6.x).

Unique constraints first. Writes: an anti-join against what the store holds
(:func:`kg.stores.base.distinct_pending`) splits the rows into new ones -- written with
``CREATE``, no ``MERGE``: nothing to look for -- and stored ones whose properties
changed (``MATCH … SET``); the rest is skipped. Relationships find their endpoints by
the constraint-backed ``id``, each distinct endpoint once per batch. Rows travel as one
list per column (``UNWIND range(0, size($c0) - 1) AS i … $c0[i]``), cheaper to build and
to send than one map per row, in managed write transactions of ``batch_size`` rows
(``execute_query``: retried on transient errors). Values only ever travel as parameters;
labels and types come from :mod:`kg.schema`. Reads use ``driver.execute_query(…,
routing_=READ)``.

A first build of millions of rows into an empty database goes faster through Neo4j's
offline importer: :func:`offline_import` (``neo4j-admin database import full``, the
server stopped), then :func:`finish_import`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from kg import queries as q
from kg.errors import ReadOnlyError, StoreError, StoreUnavailableError
from kg.schema import ALL_NODES, node_spec, rel_spec
from kg.stores.base import CypherStore, EdgeIndex, WriteResult, distinct_pending, index_arrays, redact_uri


class Neo4jStore(CypherStore):
    """A :class:`~kg.stores.GraphStore` on a Neo4j server.

    Args:
        uri: e.g. ``bolt://127.0.0.1:7687`` or ``neo4j+s://…`` (Aura). Credentials inside
            it (``bolt://user:password@host``) are taken out of it -- the driver refuses
            them, and a URI is printed in messages -- and used when ``user``/``password``
            are not given; no message ever shows the password.
        user, password: credentials; an empty password connects without auth.
        database: database name (Community Edition has only ``neo4j``).
        batch_size: rows per write transaction (default: 10,000).
    """

    kind = "neo4j"
    dialect = "neo4j"

    def __init__(self, uri: str, user: str = "neo4j", password: str = "", database: str = "neo4j",
                 batch_size: int = 10_000):
        from urllib.parse import unquote, urlsplit

        try:
            parts = urlsplit(uri)
            inline_user, inline_password = parts.username, parts.password
        except ValueError:
            inline_user = inline_password = None
        if inline_user and user == "neo4j":
            user = unquote(inline_user)
        if inline_password and not password:
            password = unquote(inline_password)
        self.uri, self.user, self.database = redact_uri(uri), user, database
        self._password = password
        self.batch_size = batch_size
        self._driver = None

    def __repr__(self) -> str:  # never the password
        return f"Neo4jStore({self.uri!r}, user={self.user!r}, database={self.database!r})"

    def location(self) -> dict[str, str]:
        """Server, user and database (no password, none inside the URI either)."""
        return {"kind": self.kind, "uri": self.uri, "user": self.user, "database": self.database}

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> Neo4jStore:
        import neo4j

        if self._driver is None:
            auth = (self.user, self._password) if self._password else None
            try:
                self._driver = neo4j.GraphDatabase.driver(self.uri, auth=auth, notifications_min_severity="OFF")
                self._driver.verify_connectivity()
            except Exception as exc:  # noqa: BLE001 - any failure: one line, host only, no password
                if self._driver is not None:
                    self._driver.close()
                self._driver = None
                detail = " ".join(str(exc).split())[:400] or type(exc).__name__
                if self._password:
                    detail = detail.replace(self._password, "***")
                raise StoreUnavailableError(f"cannot reach Neo4j at {self.uri}: {detail}") from None
        return self

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
        self._driver = None

    @property
    def driver(self):
        if self._driver is None:
            raise StoreError(f"{self!r} is not connected; call connect() first")
        return self._driver

    def run(self, query: str, params: dict | None = None, write: bool = False) -> pd.DataFrame:
        """Run one Cypher statement and return the records as a DataFrame."""
        import neo4j

        records, _, keys = self.driver.execute_query(
            query, params or {}, database_=self.database,
            routing_=neo4j.RoutingControl.WRITE if write else neo4j.RoutingControl.READ,
        )
        return pd.DataFrame([r.values() for r in records], columns=keys)

    def records(self, query: str, params: dict | None = None) -> list[dict]:
        """Run one read statement and return its rows as dicts, without a DataFrame."""
        import neo4j

        records, _, keys = self.driver.execute_query(query, params or {}, database_=self.database,
                                                     routing_=neo4j.RoutingControl.READ)
        return [dict(zip(keys, r.values())) for r in records]

    def cypher(self, query: str, write: bool = False, **params) -> pd.DataFrame:
        """Run user Cypher; read-only unless ``write=True`` (see :mod:`kg.stores.guard`).

        Read-only: the statement check of :func:`kg.stores.guard.check_read_only`, then a
        managed read transaction in a READ access-mode session (the server refuses any
        write). A write raises :class:`~kg.errors.ReadOnlyError`."""
        import neo4j

        from kg.stores.guard import check_read_only

        if write:
            return self.run(query, params, write=True)
        check_read_only(query)

        def read(tx):
            result = tx.run(query, params)
            return [r.values() for r in result], result.keys()

        with self.driver.session(database=self.database, default_access_mode=neo4j.READ_ACCESS) as session:
            try:
                rows, keys = session.execute_read(read)
            except neo4j.exceptions.ClientError as exc:
                if exc.code == "Neo.ClientError.Statement.AccessMode":
                    raise ReadOnlyError(f"this query writes; pass write=True to allow it: {exc.message}") from exc
                raise
        return pd.DataFrame(rows, columns=keys)

    def ensure_schema(self) -> None:
        for spec in ALL_NODES:
            self.run(q.neo4j_constraint_query(spec), write=True)
        self.run("CALL db.awaitIndexes(300)", write=True)

    # ---------------------------------------------------------------------- write
    #: write transactions in flight at once, each in its own session (threads). 1 by default:
    #: on the measured 2-core machine a second writer gained nothing, and relationship writes
    #: that share endpoint nodes wait on each other's locks or deadlock (a deadlock is a
    #: transient error, and the managed transaction is retried). Progress is always
    #: reported in commit order, from the calling thread.
    write_workers: int = 1

    def _write_batches(self, query: str, rows: pd.DataFrame, params: Callable[[pd.DataFrame], dict],
                       created_counter: str, progress: Callable[[int], None] | None,
                       tally: list[int] | None = None) -> int:
        """Run ``query`` once per ``batch_size`` rows, each batch in its own managed write
        transaction (``execute_query``: retried on transient errors such as deadlocks), and
        report each batch to ``progress`` after its commit. Returns the entities created
        (and adds each batch's to ``tally[0]`` as it commits, for a caller that recovers
        from an error half-way)."""
        import neo4j

        tally = [0] if tally is None else tally

        def one(start: int) -> tuple[int, int]:
            batch = rows.iloc[start : start + self.batch_size]
            summary = self.driver.execute_query(query, params(batch), database_=self.database,
                                                routing_=neo4j.RoutingControl.WRITE).summary
            return getattr(summary.counters, created_counter), len(batch)

        def done(n: int, size: int) -> None:
            tally[0] += n
            if progress:
                progress(size)

        starts = range(0, len(rows), self.batch_size)
        before = tally[0]
        if self.write_workers <= 1 or len(starts) < 2:
            for start in starts:
                done(*one(start))
            return tally[0] - before
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(self.write_workers, thread_name_prefix="kgrec-neo4j-write")
        pending: deque = deque()
        try:
            for start in starts:
                pending.append(pool.submit(one, start))
                if len(pending) > self.write_workers:  # one batch queued behind the running ones
                    done(*pending.popleft().result())
            while pending:
                done(*pending.popleft().result())
        finally:  # on an error: no new batch starts; the ones running finish (commit or fail)
            pool.shutdown(wait=True, cancel_futures=True)
        return tally[0] - before

    def upsert_nodes(self, label: str, rows: pd.DataFrame,
                     progress: Callable[[int], None] | None = None) -> WriteResult:
        """New ids: ``CREATE`` (the anti-join knows they are new; the unique constraint would
        refuse a duplicate); stored ids whose properties changed: ``MATCH … SET``."""
        spec = node_spec(label)
        cols = ["id"] + [p.name for p in spec.props]
        rows, fresh, changed = distinct_pending(rows[cols], self._stored(q.neo4j_node_rows_query(spec), cols),
                                                ["id"], cols[1:])
        new = rows if fresh.all() else rows[fresh]
        if progress and len(new) + len(changed) < len(rows):
            progress(len(rows) - len(new) - len(changed))
        as_columns = lambda batch: _column_params(batch, cols)  # noqa: E731
        tally = [0]
        try:
            created = self._write_batches(q.neo4j_create_nodes_query(spec), new, as_columns, "nodes_created",
                                          progress, tally)
        except neo4j_constraint_error():  # another writer created some of these ids meanwhile: MERGE the rest
            created = tally[0] + self._write_batches(q.neo4j_merge_nodes_query(spec), self._missing_nodes(spec, new),
                                                     _param_rows, "nodes_created", progress)
        if len(changed) and spec.props:
            self._write_batches(q.neo4j_update_nodes_query(spec), changed, as_columns, "properties_set", progress)
        return WriteResult(len(rows), created, len(changed))

    def _missing_nodes(self, spec, rows: pd.DataFrame) -> pd.DataFrame:
        cols = list(rows.columns)
        _, fresh, _ = distinct_pending(rows, self._stored(q.neo4j_node_rows_query(spec), cols), ["id"], [])
        return rows[fresh]

    def upsert_rels(self, rel_type: str, rows: pd.DataFrame,
                    progress: Callable[[int], None] | None = None, *,
                    touching: list[str] | None = None) -> WriteResult:
        """New keys: ``CREATE`` between endpoints looked up once per batch by their unique id;
        stored keys whose properties changed: ``MATCH … SET``. ``touching``: every row has an
        endpoint among these ids, so the anti-join reads only the stored relationships that
        do (found from those endpoints)."""
        spec = rel_spec(rel_type)
        cols = ["src", "dst"] + [p.name for p in spec.props]
        key = ["src", "dst", *spec.key]
        props = [p.name for p in spec.props if p.name not in spec.key]
        stored = (self._stored(q.neo4j_rel_rows_query(spec, touching=True), cols, {"ids": list(touching)})
                  if touching is not None else self._stored(q.neo4j_rel_rows_query(spec), cols))
        rows, fresh, changed = distinct_pending(rows[cols], stored, key, props)
        new = rows if fresh.all() else rows[fresh]
        if progress and len(new) + len(changed) < len(rows):
            progress(len(rows) - len(new) - len(changed))
        created = self._write_batches(q.neo4j_create_rels_query(spec), new, lambda b: _rel_params(b, cols),
                                      "relationships_created", progress)
        if len(changed) and props:
            self._write_batches(q.neo4j_update_rels_query(spec), changed, lambda b: _column_params(b, cols),
                                "properties_set", progress)
        return WriteResult(len(rows), created, len(changed))

    def _stored(self, query: str, columns: list[str], params: dict | None = None) -> pd.DataFrame:
        """What is stored already, fetched as one list of rows (fast in the driver)."""
        rows = self.run(query, params)["rows"].iloc[0]
        return pd.DataFrame(rows, columns=columns)

    def write_vectors(self, label: str, ids, vectors: np.ndarray, index: bool = True) -> int:
        """Store one float32 vector per node (property ``embedding``) and, by default,
        a cosine vector index on it (``db.index.vector.queryNodes``). Returns rows sent."""
        spec = node_spec(label)
        vectors = np.asarray(vectors, dtype=np.float32)
        query = q.neo4j_set_vectors_query(spec)
        with self.driver.session(database=self.database) as session:
            for start in range(0, len(vectors), self.batch_size):
                rows = [{"id": str(i), "v": v.tolist()}
                        for i, v in zip(ids[start : start + self.batch_size], vectors[start : start + self.batch_size])]
                session.execute_write(lambda tx: tx.run(query, rows=rows).consume())
        if index:
            self.run(q.neo4j_vector_index_query(spec), {"dim": int(vectors.shape[1])}, write=True)
            self.run("CALL db.awaitIndexes(300)", write=True)
        return len(vectors)

    def vector_neighbours(self, label: str, vector, k: int = 10) -> pd.DataFrame:
        """The ``k`` nodes whose embedding is most cosine-similar to ``vector`` (id, score)."""
        index = q.neo4j_vector_index_name(node_spec(label))
        return self.run(q.NEO4J_VECTOR_NEIGHBOURS, {"index": index, "k": k, "vector": list(map(float, vector))})

    def similar_items(self, item_id: str, k: int = 10, *, same_category: bool = False,
                      min_price: float | None = None, max_price: float | None = None,
                      candidates: int | None = None) -> pd.DataFrame:
        """Items nearest to ``item_id`` by embedding (vector index), filtered by the graph in
        the same Cypher query. Columns id, title, price, score. Needs ``write_vectors`` first."""
        index = q.neo4j_vector_index_name(node_spec("Product"))
        return self.run(q.NEO4J_SIMILAR_ITEMS, {
            "item": item_id, "index": index, "k": k, "candidates": candidates or max(10 * k, 100),
            "same_category": same_category, "min_price": min_price, "max_price": max_price,
        })

    def write_meta(self, key: str, value: str) -> None:
        self.run(q.META_WRITE, {"key": key, "value": value}, write=True)

    def clear(self) -> None:
        """Delete every node and relationship, and kgrec's vector indexes."""
        with self.driver.session(database=self.database) as session:
            session.run(q.NEO4J_DELETE_RELS).consume()
            session.run(q.NEO4J_DELETE_ALL).consume()
        for name in self.run(q.NEO4J_KGREC_VECTOR_INDEXES)["name"]:
            if q.is_kgrec_index_name(name):
                self.run(f"DROP INDEX {name} IF EXISTS", write=True)

    # ----------------------------------------------------------------------- read
    def node_ids(self, label: str) -> np.ndarray:
        ids = self.run(q.node_ids_query(node_spec(label)))["id"].to_numpy(dtype=object)
        return np.sort(ids)

    def _nodes(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        row = self.run(q.neo4j_node_internal_ids_query(node_spec(label))).iloc[0]
        return np.asarray(row["o"], dtype=np.int64), np.asarray(row["id"], dtype=object)

    def export_edges(self, rel_type: str, props: tuple[str, ...] = ()) -> EdgeIndex:
        spec = rel_spec(rel_type)
        src = self._nodes(spec.src)
        dst = src if spec.dst == spec.src else self._nodes(spec.dst)
        row = self.run(q.neo4j_edge_internal_ids_query(spec, props)).iloc[0]
        raw = {p: np.asarray(row[p], dtype=object) for p in props}
        s_ids, d_ids, s_idx, d_idx, order = index_arrays(
            np.asarray(row["s"], dtype=np.int64), np.asarray(row["d"], dtype=np.int64), src, dst,
            tuple(raw.values()),
        )
        extra = {p: values[order] for p, values in raw.items()}
        return EdgeIndex(spec.type, s_ids, d_ids, s_idx, d_idx, extra)


def _param_rows(frame: pd.DataFrame) -> dict:
    """``$rows``: the rows as Cypher parameter maps with plain Python values; NaN becomes null
    (the ``MERGE`` queries; the ``CREATE`` path sends one list per column instead)."""
    return {"rows": frame.astype(object).where(frame.notna(), None).to_dict("records")}


def _plain_list(values: pd.Series | pd.Index | np.ndarray) -> list:
    """Values as a list of plain Python values, missing ones (NaN, NA, None) as None."""
    values = pd.Series(values) if not isinstance(values, pd.Series) else values
    if values.hasnans:
        return values.astype(object).where(values.notna(), None).tolist()
    return values.tolist()


def _column_params(frame: pd.DataFrame, columns: list[str]) -> dict[str, list]:
    """One list per column, named as :func:`kg.queries.neo4j_column_params` says: much
    cheaper to build and to send than one map per row (no ``to_dict("records")``)."""
    return {name: _plain_list(frame[c]) for c, name in q.neo4j_column_params(columns).items()}


def _rel_params(frame: pd.DataFrame, columns: list[str]) -> dict[str, list]:
    """:func:`_column_params` of the properties, plus the batch's distinct endpoints
    (``$src_ids``, ``$dst_ids``) and each row's position in them (``$s``, ``$d``)."""
    names = q.neo4j_column_params(columns)
    out = {names[c]: _plain_list(frame[c]) for c in columns[2:]}
    for col, ids, pos in (("src", "src_ids", "s"), ("dst", "dst_ids", "d")):
        codes, uniques = pd.factorize(frame[col], use_na_sentinel=False)
        out[ids], out[pos] = _plain_list(pd.Series(uniques, dtype=object)), codes.tolist()
    return out


def neo4j_constraint_error() -> type[Exception]:
    import neo4j

    return neo4j.exceptions.ConstraintError
