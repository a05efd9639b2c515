"""Graph build throughput: synthetic data (≥1M interactions) into each store.

For each store it times a full ``kg.build.build_graph`` into an empty store, then
a second (idempotent) run of the same build, and compares against a reference
loader in the same run: the way people write a loader by hand, one
``MERGE`` statement per interaction row (auto-commit), timed on a sample of the
same interaction rows into a fresh graph with the same nodes. The ratio is
kgrec rows/s ÷ reference rows/s on interaction relationships.

Write paths (``--paths``), each a row of the table, in the same run:

* ``after``: the stores as they are: Neo4j ``CREATE`` of the rows the anti-join found new
  (endpoints looked up once per batch by their unique id), column lists as parameters;
  embedded one Arrow conversion, ``COPY`` per ``batch_size`` rows, one factorisation for
  the de-duplication and the anti-join;
* ``before``: the write path this replaced, kept here (``Legacy*Store``) to measure against:
  Neo4j one ``MERGE`` per row in ``UNWIND`` batches of row maps (``to_dict("records")``);
  embedded pandas frames into ``COPY``, ``drop_duplicates`` then a pandas ``merge`` anti-join;
* ``import`` (Neo4j only, with ``--neo4j-home``): Neo4j's offline bulk importer
  (:func:`kg.neo4j_import.offline_import`) into the bench's own test server: it is stopped,
  imported into, started again, and its constraints created; the time includes all of it.
  Never point ``--neo4j-home`` at a server that holds data you need: the import replaces it.

    python bench/build_throughput.py                      # embedded + Neo4j (if reachable)
    python bench/build_throughput.py --interactions 200000 --stores embedded
    python bench/build_throughput.py --neo4j-uri bolt://127.0.0.1:7690 \\
        --neo4j-home /tmp/neo4j-build --paths before,after,import
    python bench/build_throughput.py --stores neo4j --paths after --neo4j-batch-size 50000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kg import queries as q  # noqa: E402
from kg.build import BuildConfig, build_graph  # noqa: E402
from kg.schema import EVENT_TYPES, node_spec, rel_spec  # noqa: E402
from kg.stores import CypherStore, WriteResult  # noqa: E402
from kg.stores.embedded import EmbeddedStore  # noqa: E402
from kg.neo4j_import import finish_import, offline_import
from kg.stores.neo4j import Neo4jStore  # noqa: E402
from loaders import load  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = REPO / "scripts" / "neo4j-server" / "neo4j-server"

REFERENCE_MERGE = (
    "MATCH (a:User {id: $src}) MATCH (b:Product {id: $dst}) "
    "MERGE (a)-[e:PURCHASED {ts: $ts}]->(b) SET e.value = $value, e.split = $split"
)


# --------------------------------------------------------------- the "before" write path
def legacy_pending_rows(rows: pd.DataFrame, stored: pd.DataFrame, key: list[str],
                        props: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """The anti-join as it was: a pandas ``merge`` (``isin`` for one key column)."""
    from loaders.dataset import isin

    stored = stored.astype({c: rows[c].dtype for c in stored.columns if c in rows.columns})
    if len(key) == 1:
        fresh = ~isin(rows[key[0]], stored[key[0]])
    else:
        merged = rows[key].merge(stored[key].drop_duplicates().assign(_stored=True), on=key, how="left")
        fresh = merged["_stored"].isna().to_numpy()
    old = rows[~fresh]
    if old.empty or not props:
        return fresh, rows.iloc[:0]
    both = old.merge(stored, on=key, how="inner", suffixes=("", "_old"))
    diff = np.zeros(len(both), dtype=bool)
    for p in props:
        new, before = both[p], both[f"{p}_old"]
        same = (new == before) | (new.isna() & before.isna())
        diff |= ~same.to_numpy(dtype=bool)
    return fresh, both.loc[diff, rows.columns]


class LegacyNeo4jStore(Neo4jStore):
    """Neo4j with the write path before the CREATE path: ``MERGE`` of every row to write."""

    def _legacy_write(self, query: str, rows: pd.DataFrame, counter: str,
                      progress: Callable[[int], None] | None) -> int:
        created = 0
        with self.driver.session(database=self.database) as session:
            for start in range(0, len(rows), self.batch_size):
                frame = rows.iloc[start : start + self.batch_size]
                batch = frame.astype(object).where(frame.notna(), None).to_dict("records")
                counters = session.execute_write(lambda tx: tx.run(query, rows=batch).consume().counters)
                created += getattr(counters, counter)
                if progress:
                    progress(len(batch))
        return created

    def upsert_nodes(self, label, rows, progress=None) -> WriteResult:
        spec = node_spec(label)
        cols = ["id"] + [p.name for p in spec.props]
        rows = rows[cols].drop_duplicates("id", keep="last")
        fresh, changed = legacy_pending_rows(rows, self._stored(q.neo4j_node_rows_query(spec), cols), ["id"],
                                             cols[1:])
        todo = pd.concat([rows[fresh], changed])
        if progress and len(todo) < len(rows):
            progress(len(rows) - len(todo))
        created = self._legacy_write(q.neo4j_merge_nodes_query(spec), todo, "nodes_created", progress)
        return WriteResult(len(rows), created, len(changed))

    def upsert_rels(self, rel_type, rows, progress=None, *, touching=None) -> WriteResult:  # reads all
        spec = rel_spec(rel_type)
        cols = ["src", "dst"] + [p.name for p in spec.props]
        key = ["src", "dst", *spec.key]
        rows = rows[cols].drop_duplicates(key, keep="last")
        props = [p.name for p in spec.props if p.name not in spec.key]
        fresh, changed = legacy_pending_rows(rows, self._stored(q.neo4j_rel_rows_query(spec), cols), key, props)
        todo = pd.concat([rows[fresh], changed])
        if progress and len(todo) < len(rows):
            progress(len(rows) - len(todo))
        created = self._legacy_write(q.neo4j_merge_rels_query(spec), todo, "relationships_created", progress)
        return WriteResult(len(rows), created, len(changed))


class LegacyEmbeddedStore(EmbeddedStore):
    """The embedded store with the write path before: pandas frames into ``COPY``,
    ``drop_duplicates`` and a ``merge`` anti-join over ``get_as_df`` reads, and a checkpoint
    after every ``COPY`` (no :meth:`~kg.stores.embedded.EmbeddedStore.bulk_writes`)."""

    def bulk_writes(self):
        return CypherStore.bulk_writes(self)

    def _legacy_copy(self, table, frame, progress) -> None:
        for start in range(0, len(frame), self.batch_size):
            chunk = frame.iloc[start : start + self.batch_size].reset_index(drop=True)
            self.conn.execute(q.embedded_copy_query(table), {"df": chunk})
            if progress:
                progress(len(chunk))

    def upsert_nodes(self, label, rows, progress=None) -> WriteResult:
        spec = node_spec(label)
        cols = ["id"] + [p.name for p in spec.props]
        rows = rows[cols].drop_duplicates("id", keep="last")
        fresh, changed = legacy_pending_rows(rows, self.run(q.node_props_query(spec)), ["id"],
                                             [p.name for p in spec.props])
        if progress and not fresh.all():
            progress(int((~fresh).sum()))
        self._legacy_copy(spec.label, rows[fresh], progress)
        if len(changed):
            self.conn.execute(q.embedded_update_nodes_query(spec), {"df": changed.reset_index(drop=True)})
        return WriteResult(len(rows), int(fresh.sum()), len(changed))

    def upsert_rels(self, rel_type, rows, progress=None, *, touching=None) -> WriteResult:  # reads all
        spec = rel_spec(rel_type)
        key = ["src", "dst", *spec.key]
        props = [p.name for p in spec.props if p.name not in spec.key]
        rows = rows[["src", "dst"] + [p.name for p in spec.props]].drop_duplicates(key, keep="last")
        fresh, changed = legacy_pending_rows(rows, self.run(q.rel_rows_query(spec)), key, props)
        if progress and not fresh.all():
            progress(int((~fresh).sum()))
        self._legacy_copy(spec.type, rows[fresh], progress)
        if len(changed):
            self.conn.execute(q.embedded_update_rels_query(spec), {"df": changed.reset_index(drop=True)})
        return WriteResult(len(rows), int(fresh.sum()), len(changed))


# ---------------------------------------------------------------------------- the bench
def open_fresh(kind: str, uri: str, workdir: Path, name: str, path: str = "after", **options):
    if kind == "neo4j":
        cls = LegacyNeo4jStore if path == "before" else Neo4jStore
        store = cls(uri, **options).connect()
        store.clear()
    else:
        cls = LegacyEmbeddedStore if path == "before" else EmbeddedStore
        store = cls(workdir / name, **options).connect()
    return store


def reference_rows_per_second(kind: str, uri: str, workdir: Path, dataset, sample: int) -> float:
    """One MERGE per row into a graph that already has the nodes."""
    from kg.rows import graph_rows

    steps = graph_rows(dataset)
    store = open_fresh(kind, uri, workdir, "reference")
    store.ensure_schema()
    for step in steps:
        if step.kind == "node" and step.name in ("User", "Product"):
            store.upsert_nodes(step.name, step.rows)
    rows = next(s.rows for s in steps if s.name == "PURCHASED").head(sample)
    records = rows.to_dict("records")
    t = time.perf_counter()
    if kind == "neo4j":
        with store.driver.session(database=store.database) as session:
            for r in records:
                session.run(REFERENCE_MERGE, r).consume()
    else:
        for r in records:
            store.conn.execute(REFERENCE_MERGE, r)
    seconds = time.perf_counter() - t
    store.close()
    return len(records) / seconds


def server(command: str, uri: str, home: str) -> None:
    """Stop or start the bench's own test server (scripts/neo4j-server) at ``home``."""
    port = str(urlsplit(uri).port or 7687)
    env = {**os.environ, "KGREC_NEO4J_HOME": home, "KGREC_NEO4J_PORT": port}
    subprocess.run([str(SERVER_SCRIPT), command], env=env, check=True, stdout=subprocess.DEVNULL)


def offline_import_build(ds, uri: str, home: str):
    """Stop the server, import, start it, create the constraints: (report, seconds)."""
    with Neo4jStore(uri).connect() as store:  # the bench's server, emptied above: check before replacing it
        if any(store.counts().values()):
            raise SystemExit(f"refusing to import into {uri}: it is not empty")
    port = str(urlsplit(uri).port or 7687)
    t = time.perf_counter()
    server("stop", uri, home)
    report = offline_import(ds, [str(SERVER_SCRIPT), "admin"], overwrite=True, max_off_heap_memory="1G",
                            env={"KGREC_NEO4J_HOME": home, "KGREC_NEO4J_PORT": port})
    imported = time.perf_counter() - t
    server("start", uri, home)
    with Neo4jStore(uri).connect() as store:
        finish_import(store, report)
    return report, imported, time.perf_counter() - t


def process_cpu(pid: int | None = None) -> float:
    """CPU seconds (user + system) of this process, its threads and the children it waited
    for (neo4j-admin), or of process ``pid``."""
    if pid is None:
        import resource

        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                     resource.getrusage(resource.RUSAGE_CHILDREN)))
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def server_pid(home: str | None) -> int | None:
    try:
        return int(Path(home, "server.pid").read_text()) if home else None
    except (OSError, ValueError):
        return None


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interactions", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--items", type=int, default=5_000)
    p.add_argument("--stores", default="embedded,neo4j")
    p.add_argument("--paths", default="before,after",
                   help="write paths to time, a row each: before, after, import (Neo4j, needs --neo4j-home)")
    p.add_argument("--neo4j-uri", default=os.environ.get("KGREC_TEST_NEO4J_URI", "bolt://127.0.0.1:7687"))
    p.add_argument("--neo4j-home", help="home of the bench's own scripts/neo4j-server instance at --neo4j-uri "
                                        "(for --paths import: it is stopped, replaced by the import, restarted)")
    p.add_argument("--neo4j-batch-size", type=int, help="rows per Neo4j write transaction (default: the store's)")
    p.add_argument("--neo4j-workers", type=int, help="Neo4j write transactions in flight (default: the store's)")
    p.add_argument("--embedded-batch-size", type=int, help="rows per COPY (default: the store's)")
    p.add_argument("--reference-sample", type=int, default=5_000,
                   help="interaction rows the per-row reference loader writes")
    args = p.parse_args()
    paths = args.paths.split(",")

    t = time.perf_counter()
    ds = load("synthetic", None, n_users=args.users, n_items=args.items, n_interactions=args.interactions)
    gen_s = time.perf_counter() - t
    n_inter = len(ds.interactions)
    print(f"synthetic data: {n_inter:,} interactions, {len(ds.users):,} users, {len(ds.items):,} items, "
          f"{len(ds.reviews):,} reviews ({gen_s:.1f} s to generate); load average {load_average()}\n")

    interaction_types = set(EVENT_TYPES.values())
    header = ("| store | write path | total rows | build s | rows/s | interaction rows/s | build cpu s "
              "| rerun s | rerun created | reference rows/s | ratio | load avg |")
    lines = [header, "|" + "---|" * 12]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for kind in args.stores.split(","):
            options = {}
            if kind == "neo4j" and args.neo4j_batch_size:
                options["batch_size"] = args.neo4j_batch_size
            if kind == "embedded" and args.embedded_batch_size:
                options["batch_size"] = args.embedded_batch_size
            if kind == "neo4j" and args.neo4j_workers:
                Neo4jStore.write_workers = args.neo4j_workers
            ref = None
            for i, path in enumerate(paths):
                if path == "import" and (kind != "neo4j" or not args.neo4j_home):
                    continue
                try:
                    if ref is None:  # first: it leaves nodes in a Neo4j server, cleared just below
                        ref = reference_rows_per_second(kind, args.neo4j_uri, workdir, ds, args.reference_sample)
                    store = open_fresh(kind, args.neo4j_uri, workdir, f"graph-{i}-{path}", path, **options)
                except ConnectionError as exc:
                    print(f"skipping {kind}: {exc}")
                    break
                load_before = load_average()
                cpu0, pid = process_cpu(), server_pid(args.neo4j_home) if kind == "neo4j" else None
                server0 = process_cpu(pid) if pid else 0.0
                if path == "import":
                    store.close()
                    report, imported_s, seconds = offline_import_build(ds, args.neo4j_uri, args.neo4j_home)
                    store = Neo4jStore(args.neo4j_uri, **options).connect()
                    inter = "—"
                    note = f" (import {imported_s:.1f} s + restart and constraints {seconds - imported_s:.1f} s)"
                else:
                    report = build_graph(ds, store, BuildConfig(progress=False))
                    seconds = report.seconds
                    inter_rows = sum(s.rows for s in report.steps if s.name in interaction_types)
                    inter_s = sum(s.seconds for s in report.steps if s.name in interaction_types)
                    inter = f"{inter_rows / inter_s:,.0f}"
                    note = ""
                cpu = process_cpu() - cpu0
                if pid:  # the server's CPU too (an import restarts it: its new process's)
                    now = server_pid(args.neo4j_home)
                    cpu += process_cpu(now) - (server0 if now == pid else 0.0)
                rerun = build_graph(ds, store, BuildConfig(progress=False, resume=False))
                counts = store.counts()
                store.close()
                # the data's rows; the co-interaction counts the build derives (kg.build.update_co_counts)
                # are printed apart: they are not rows of the data set
                total = sum(s.rows for s in report.steps if s.kind != "derived")
                derived = {s.name: (s.rows, s.seconds) for s in report.steps if s.kind == "derived"}
                ratio = (f"{float(inter.replace(',', '')) / ref:.1f}×" if inter != "—" else
                         f"{total / seconds / ref:.1f}× (all rows)")
                lines.append(
                    f"| {kind} | {path} | {total:,} | {seconds:.1f} | {total / seconds:,.0f} | {inter} | {cpu:.1f} "
                    f"| {rerun.seconds:.1f} | {rerun.created} | {ref:,.0f} | {ratio} | {load_before} |"
                )
                if derived:
                    print(f"{kind} ({path}): derived co-interaction counts (in the build time): "
                          + ", ".join(f"{n} {r:,} rows {t:.1f} s" for n, (r, t) in derived.items()))
                print(f"{kind} ({path}): built in {seconds:.1f} s{note}, rerun {rerun.seconds:.1f} s "
                      f"(created {rerun.created}, updated {rerun.updated}); {sum(counts.values()):,} nodes+rels; "
                      f"load average {load_average()}", flush=True)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
