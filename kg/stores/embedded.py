"""The embedded graph store: ladybug (a maintained Kùzu fork), in-process, on disk, Cypher.

Writes use ``COPY <table> FROM $df`` (an Arrow table) after an anti-join against
the keys already stored (read through Arrow), because COPY itself does not
deduplicate; rows whose key exists but whose properties changed are updated with a
``LOAD FROM $df … SET``. A COPY into a table that holds rows already costs about twice
one into an empty table (it rewrites the node groups it touches), so fewer, larger
COPY statements (``batch_size``) are cheaper. Exports read ``offset(id(n))`` through Arrow.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from kg import queries as q
from kg.errors import ReadOnlyError, StoreError, StoreNotFoundError
from kg.schema import ALL_NODES, ALL_RELS, node_spec, rel_spec
from kg.stores.base import CypherStore, EdgeIndex, WriteResult, distinct_pending, index_arrays


class EmbeddedStore(CypherStore):
    """A :class:`~kg.stores.GraphStore` in a local directory (created on connect).

    Args:
        path: directory of the database.
        batch_size: rows per ``COPY`` statement (default: 500,000).
        read_only: open the database read-only (several readers may share it).
        query_threads: threads per query (0: ladybug's default, every core). The Engine's
            read-only views for explanations use 1: a point query gains nothing from more,
            and on the demo run one explanation took ~9.0 ms of CPU single-threaded against
            ~10.9 ms with the default (50 pairs, six interleaved runs, 2 cores).
    """

    kind = "embedded"
    dialect = "kuzu"

    def __init__(self, path: str | Path, batch_size: int = 500_000, read_only: bool = False,
                 query_threads: int = 0):
        self.path = Path(path)
        self.batch_size = batch_size
        self.read_only = read_only
        self.query_threads = query_threads
        self._db = None
        self._conn = None

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.path)!r})"

    def location(self) -> dict[str, str]:
        """The database directory, absolute."""
        return {"kind": self.kind, "path": str(self.path.resolve())}

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> EmbeddedStore:
        import ladybug

        if self._conn is None:
            if self.read_only and not self.path.exists():
                raise StoreNotFoundError(f"no graph at {self.path}; build one first (kgrec build --db {self.path})")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._open_database()
            except RuntimeError as exc:  # locked by a writer, not a database, a full disk …: one line
                raise StoreError(f"cannot open the embedded graph at {self.path}: {str(exc).splitlines()[0]}"
                                 + ("; another process may be writing it (kgrec ingest, a build, the service's "
                                    "updater): try again when it is done" if "lock" in str(exc).lower() else "")
                                 ) from None
            self._conn = ladybug.Connection(self._db, num_threads=self.query_threads)
        return self

    def _open_database(self):
        """The ladybug database at :attr:`path`; read-only, one whose writer was killed during
        a checkpoint is recovered first (:meth:`_recover`)."""
        import ladybug

        try:
            return ladybug.Database(str(self.path), read_only=self.read_only)
        except RuntimeError as exc:
            if not (self.read_only and "recovery is pending" in str(exc)):
                raise
        self._recover()
        return ladybug.Database(str(self.path), read_only=True)

    def _recover(self) -> None:
        """Finish the recovery of a database whose writer was killed during a checkpoint:
        ladybug opens such a file read-only only after one read-write open has replayed
        its log. That open fails while another process still writes it -- then say so."""
        import ladybug

        try:
            ladybug.Database(str(self.path)).close()
        except RuntimeError as exc:
            raise StoreError(
                f"the embedded graph at {self.path} needs recovery (its writer stopped during a checkpoint) "
                f"and cannot be opened for it now ({str(exc).splitlines()[0]}); when no other kgrec process "
                f"writes it, run `kgrec stats --db {self.path}` again") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._db.close()
        self._conn = self._db = None

    @property
    def conn(self):
        if self._conn is None:
            raise StoreError(f"{self!r} is not connected; call connect() first")
        return self._conn

    def run(self, query: str, params: dict | None = None) -> pd.DataFrame:
        """Run Cypher and return the result as a DataFrame."""
        return self.conn.execute(query, params or {}).get_as_df()

    def records(self, query: str, params: dict | None = None) -> list[dict]:
        """Run Cypher and return the rows as dicts (nulls as None), without a DataFrame."""
        result = self.conn.execute(query, params or {})
        columns = result.get_column_names()
        return [dict(zip(columns, row)) for row in result.get_all()]

    def cypher(self, query: str, write: bool = False, **params) -> pd.DataFrame:
        """Run user Cypher; read-only unless ``write=True`` (see :mod:`kg.stores.guard`).

        Read-only: the statement check of :func:`kg.stores.guard.check_read_only`, then one
        prepared statement (ladybug prepares exactly one) in a ``READ ONLY`` transaction
        that is always rolled back. A write raises :class:`~kg.errors.ReadOnlyError`."""
        if write:
            return self.run(query, params)
        import warnings

        from kg.stores.guard import check_read_only

        check_read_only(query)

        def prepared(statement: str, values: dict | None = None):
            # a PreparedStatement, not a string: conn.execute(str) without parameters runs
            # every ';'-separated statement (COMMIT; …), a prepared one refuses a second
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # ladybug: "prepare is deprecated"
                ps = self.conn.prepare(statement)
            return self.conn.execute(ps, values or {})

        prepared("BEGIN TRANSACTION READ ONLY")
        try:
            return prepared(query, params).get_as_df()
        except RuntimeError as exc:
            message = str(exc)
            if "read-only transaction" in message:
                raise ReadOnlyError(f"this query writes; pass write=True to allow it: {exc}") from exc
            if "multiple statements" in message:
                raise ReadOnlyError(f"read-only cypher() runs exactly one statement: {exc}") from exc
            raise
        finally:
            try:
                prepared("ROLLBACK")
            except RuntimeError:  # a failed statement has already ended the transaction
                pass

    def _arrow(self, query: str, params: dict | None = None):
        return self.conn.execute(query, params or {}).get_as_arrow()

    @contextlib.contextmanager
    def bulk_writes(self):
        """Automatic checkpoints off for a build's writes, one ``CHECKPOINT`` at the end.

        ladybug checkpoints after every ``COPY`` (its data goes to the data files, not only the
        write-ahead log): ~0.2 s even for 20 rows on a busy machine, a second or more for
        the ~25 steps of a build. Every statement still commits to the log, so a build
        killed meanwhile is recovered when the database is opened again (and resumed by
        running it again, as before)."""
        self.conn.execute("CALL auto_checkpoint=false")
        try:
            yield self
        finally:
            self.conn.execute("CALL auto_checkpoint=true")
            self.conn.execute("CHECKPOINT")

    def ensure_schema(self) -> None:
        for spec in ALL_NODES:
            self.conn.execute(q.embedded_node_table_query(spec))
        for spec in ALL_RELS:
            self.conn.execute(q.embedded_rel_table_query(spec))

    # ---------------------------------------------------------------------- write
    def _stored(self, query: str, params: dict | None = None) -> pd.DataFrame:
        """What a label or type holds already, through Arrow (several times faster than
        ``get_as_df`` for the million-row reads of an incremental build)."""
        return self._arrow(query, params).to_pandas()

    def _copy(self, table: str, frame: pd.DataFrame, progress: Callable[[int], None] | None) -> None:
        """``COPY`` ``frame`` in statements of ``batch_size`` rows, each handed over as an Arrow
        table (zero-copy slices of one conversion): a pandas frame of Arrow-backed strings
        would be turned into Python objects first. Fewer, larger statements are cheaper:
        a COPY into a table that already holds rows rewrites what it touches."""
        if frame.empty:
            return
        import pyarrow as pa

        data = pa.Table.from_pandas(frame, preserve_index=False)
        query = q.embedded_copy_query(table)
        for start in range(0, data.num_rows, self.batch_size):
            chunk = data.slice(start, self.batch_size)
            self.conn.execute(query, {"df": chunk})
            if progress:
                progress(chunk.num_rows)

    def _upsert(self, table: str, rows: pd.DataFrame, stored_query: str, key: list[str], props: list[str],
                update_query: str, progress: Callable[[int], None] | None,
                stored_params: dict | None = None) -> WriteResult:
        rows, fresh, changed = distinct_pending(rows, self._stored(stored_query, stored_params), key, props)
        if progress and not fresh.all():
            progress(int((~fresh).sum()))
        self._copy(table, rows if fresh.all() else rows[fresh], progress)
        if len(changed):
            self.conn.execute(update_query, {"df": changed.reset_index(drop=True)})
        return WriteResult(len(rows), int(fresh.sum()), len(changed))

    def upsert_nodes(self, label: str, rows: pd.DataFrame,
                     progress: Callable[[int], None] | None = None) -> WriteResult:
        spec = node_spec(label)
        props = [p.name for p in spec.props]
        return self._upsert(spec.label, rows[["id", *props]], q.node_props_query(spec), ["id"], props,
                            q.embedded_update_nodes_query(spec), progress)

    def upsert_rels(self, rel_type: str, rows: pd.DataFrame,
                    progress: Callable[[int], None] | None = None, *,
                    touching: list[str] | None = None) -> WriteResult:
        """``touching``: every row has an endpoint among these ids, so the anti-join reads only
        the stored relationships that do (the derived co-interaction counts of a few products)."""
        spec = rel_spec(rel_type)
        key = ["src", "dst", *spec.key]
        props = [p.name for p in spec.props if p.name not in spec.key]
        stored = (q.rel_rows_query(spec, touching=True), {"ids": list(touching)}) if touching is not None \
            else (q.rel_rows_query(spec), None)
        return self._upsert(spec.type, rows[["src", "dst"] + [p.name for p in spec.props]], stored[0],
                            key, props, q.embedded_update_rels_query(spec), progress, stored[1])

    def write_meta(self, key: str, value: str) -> None:
        self.conn.execute(q.META_WRITE, {"key": key, "value": value})

    def clear(self) -> None:
        for spec in ALL_NODES:
            self.conn.execute(q.delete_label_query(spec))

    # ----------------------------------------------------------------------- read
    def node_ids(self, label: str) -> np.ndarray:
        ids = self._arrow(q.node_ids_query(node_spec(label)))["id"].to_numpy(zero_copy_only=False)
        return np.sort(ids.astype(object))

    def export_edges(self, rel_type: str, props: tuple[str, ...] = ()) -> EdgeIndex:
        spec = rel_spec(rel_type)
        src = self._arrow(q.embedded_offsets_query(node_spec(spec.src)))
        dst = src if spec.dst == spec.src else self._arrow(q.embedded_offsets_query(node_spec(spec.dst)))
        edges = self._arrow(q.embedded_edge_offsets_query(spec, props))
        nodes = lambda t: (t["o"].to_numpy(), t["id"].to_numpy(zero_copy_only=False))  # noqa: E731
        raw = {p: edges[p].to_numpy(zero_copy_only=False) for p in props}
        s_ids, d_ids, s_idx, d_idx, order = index_arrays(
            edges["s"].to_numpy(), edges["d"].to_numpy(), nodes(src), nodes(dst), tuple(raw.values())
        )
        extra = {p: values[order] for p, values in raw.items()}
        return EdgeIndex(spec.type, s_ids, d_ids, s_idx, d_idx, extra)
