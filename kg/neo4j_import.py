"""Neo4j's offline bulk import for a first build of millions of rows into an EMPTY database.

``neo4j-admin database import full`` reads CSV files straight into a new database,
skipping transactions: :func:`import_files` writes exactly the rows
:func:`kg.build.build_graph` would write (one CSV per label and relationship type, plus
the build's bookkeeping so a later build of the same data says "nothing new", and the
co-interaction counts the build keeps, computed here),
:func:`offline_import` runs the importer (the server stopped; the local test server's
``scripts/neo4j-server/neo4j-server admin`` runs it from the same Maven jars), and
:func:`finish_import` -- with the server started again -- creates the constraints and the
build records. It replaces the database: only for an empty one. Incremental builds, and
builds up to a few million rows, go through :func:`kg.build.build_graph`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kg.errors import StoreError
from kg.schema import ALL_NODES, CO_RELS, node_spec, rel_spec
from kg.stores.neo4j import Neo4jStore

#: CSV header type of each schema property type (neo4j-admin database import)
_IMPORT_TYPES = {"STRING": "", "DOUBLE": ":double", "INT64": ":long"}


_ARROW_TYPES = {"STRING": "string", "DOUBLE": "float64", "INT64": "int64"}


def _write_csv(path, header: list[str], columns: list[pd.Series], kinds: list[str]) -> bool:
    """Write one neo4j-admin import file: ``header``, then the rows, by Arrow's CSV writer:
    strings always quoted (``"`` doubled, RFC 4180), numbers as their shortest round-trip
    text, and a missing value as an empty *unquoted* field, which the importer stores as no
    property (a quoted ``""`` stays an empty string) -- what a transactional write of a
    null does. Returns True if a field holds a line break (the importer must be told)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    arrays = [pa.array(c, type=getattr(pa, _ARROW_TYPES[k])(), from_pandas=True) for c, k in zip(columns, kinds)]
    table = pa.table(arrays, names=[f"c{k}" for k in range(len(arrays))])
    with open(path, "wb") as f:
        f.write((",".join(header) + "\n").encode())
        pcsv.write_csv(table, f, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
    return any(k == "STRING" and len(a) and pc.any(pc.match_substring_regex(a, "[\r\n]")).as_py()
               for a, k in zip(arrays, kinds))


def import_files(dataset, directory) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Write ``dataset``'s graph as neo4j-admin import CSV files into ``directory``.

    The rows are exactly what :func:`kg.build.build_graph` would write into an empty
    store: the steps of :func:`kg.rows.graph_rows`, de-duplicated by key as the upserts do
    (the last row of a key wins), relationships whose endpoint is not a node of the build
    left out (a transactional write's ``MATCH`` finds no endpoint for them either), plus
    the build's ``KgrecMeta`` record ("finished"), so that a later ``build_graph`` of the
    same data is "nothing new". Node ids live in one id space per label (``:ID(Label)``).
    Returns the importer's ``--nodes``/``--relationships``/``--multiline-fields`` arguments,
    the count of every label and type written, and the distinct rows of every step."""
    import json
    from pathlib import Path

    from kg.build import CO_COUNTS_RECORD, kept_co_counts, progress_key
    from kg.rows import fingerprint, graph_rows
    from kg.schema import CO_COUNTED, META, NODES, RELS, co_type
    from kg.stores import EdgeIndex

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    args: list[str] = []
    multiline: list[str] = []
    counts = {s.label: 0 for s in NODES} | {s.type: 0 for s in RELS}
    ids: dict[str, pd.Series] = {}
    done: dict[str, int] = {}
    counted: list[str] = []

    def nodes_file(label: str, frame: pd.DataFrame, props) -> None:
        path = directory / f"nodes-{label}.csv"
        header = [f"id:ID({label})"] + [f"{p.name}{_IMPORT_TYPES[p.type]}" for p in props]
        cols = [frame["id"]] + [frame[p.name] for p in props]
        if _write_csv(path, header, cols, ["STRING"] + [p.type for p in props]):
            multiline.append(str(path))
        args.append(f"--nodes={label}={path}")

    steps = graph_rows(dataset)
    for step in steps:
        spec = node_spec(step.name) if step.kind == "node" else rel_spec(step.name)
        if step.kind == "node":
            rows = step.rows[["id", *[p.name for p in spec.props]]].drop_duplicates("id", keep="last")
            nodes_file(spec.label, rows, spec.props)
            ids[spec.label] = rows["id"]
            counts[spec.label] = done[spec.label] = len(rows)
            continue
        cols = ["src", "dst"] + [p.name for p in spec.props]
        rows = step.rows[cols].drop_duplicates(["src", "dst", *spec.key], keep="last")
        done[spec.type] = len(rows)
        from loaders.dataset import isin

        ok = isin(rows["src"], ids.get(spec.src, pd.Series([], dtype=object))) & \
            isin(rows["dst"], ids.get(spec.dst, pd.Series([], dtype=object)))
        rows = rows[ok]
        if rows.empty:
            continue
        path = directory / f"rels-{spec.type}.csv"
        header = [f":START_ID({spec.src})", f":END_ID({spec.dst})"] + \
            [f"{p.name}{_IMPORT_TYPES[p.type]}" for p in spec.props]
        fields = [rows["src"], rows["dst"]] + [rows[p.name] for p in spec.props]
        if _write_csv(path, header, fields, ["STRING", "STRING"] + [p.type for p in spec.props]):
            multiline.append(str(path))
        args.append(f"--relationships={spec.type}={path}")
        counts[spec.type] = len(rows)
        if spec.type in CO_COUNTED:  # the build's co-interaction counts, imported with the rest
            co = co_type(spec.type)
            users, user_index = np.unique(rows["src"].to_numpy(dtype=object).astype(str), return_inverse=True)
            items, item_index = np.unique(rows["dst"].to_numpy(dtype=object).astype(str), return_inverse=True)
            pairs = kept_co_counts(EdgeIndex(spec.type, users, items, user_index, item_index))
            if pairs is None:  # not worth keeping: explanations count these live
                continue
            counted.append(spec.type)
            done[co] = counts[co] = len(pairs)
            if len(pairs):
                path = directory / f"rels-{co}.csv"
                _write_csv(path, [":START_ID(Product)", ":END_ID(Product)", "n:long"],
                           [pairs["src"], pairs["dst"], pairs["n"]], ["STRING", "STRING", "INT64"])
                args.append(f"--relationships={co}={path}")
    record = json.dumps({"done": done, "finished": True})
    nodes_file(META.label, pd.DataFrame({"id": [progress_key(fingerprint(dataset)), CO_COUNTS_RECORD],
                                         "value": [record, json.dumps(sorted(counted))]}), META.props)
    if multiline:
        args += ["--multiline-fields-format=v2", f"--multiline-fields={','.join(multiline)}"]
    return args, counts, done


def offline_import(dataset, admin: list[str], *, database: str = "neo4j", workdir=None,
                   overwrite: bool = False, max_off_heap_memory: str | None = None, env: dict | None = None):
    """Build ``dataset`` into a *stopped* Neo4j with its offline bulk importer
    (``neo4j-admin database import full``): the way to load millions of rows into a new,
    empty database, several times faster than any transactional write.

    ``admin`` is the neo4j-admin command line to run, e.g. ``["neo4j-admin"]`` of a Neo4j
    installation (on the machine that holds the database files) or, for kgrec's test
    server, ``["scripts/neo4j-server/neo4j-server", "admin"]`` with ``KGREC_NEO4J_HOME``
    in ``env``. ``overwrite``: replace the database's files (neo4j-admin's
    ``--overwrite-destination``; needed when the database exists, even empty -- check
    that it is empty first, the import deletes what it holds). Files go to ``workdir``
    (default: a temporary folder, removed afterwards). Then start the server and call
    :func:`finish_import` (unique constraints, the build record). Returns the
    :class:`~kg.build.BuildReport` (counts as imported; every row "created").
    Raises :class:`~kg.errors.StoreError` with the importer's output if it fails."""
    import os
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    from kg.build import BuildReport, StepReport
    from kg.rows import fingerprint

    t0 = time.perf_counter()
    dataset.validate()
    with tempfile.TemporaryDirectory(prefix="kgrec-import-") as tmp:
        where = Path(workdir) if workdir else Path(tmp)
        args, counts, given = import_files(dataset, where)
        command = [*admin, "database", "import", "full", *args, f"--report-file={where / 'import.report'}",
                   "--skip-bad-relationships=false", "--skip-duplicate-nodes=false"]
        if overwrite:
            command.append("--overwrite-destination=true")
        if max_off_heap_memory:
            command.append(f"--max-off-heap-memory={max_off_heap_memory}")
        proc = subprocess.run([*command, database], capture_output=True, text=True,
                              env={**os.environ, **(env or {})})
        if proc.returncode != 0:
            raise StoreError(f"neo4j-admin database import failed (exit {proc.returncode}):\n"
                             f"{(proc.stdout + proc.stderr)[-4000:]}")
    report = BuildReport(dataset.name, "neo4j (offline import)", fingerprint(dataset))
    labels = {s.label for s in ALL_NODES}
    derived = {s.type for s in CO_RELS}
    for name, n in given.items():
        kind = "node" if name in labels else "derived" if name in derived else "rel"
        report.steps.append(StepReport(kind, name, n, counts[name], 0, 0.0))
    report.counts = {name: n for name, n in counts.items() if name not in derived}
    rep = dataset.report
    report.rows_read, report.rows_kept, report.rows_rejected = rep.total_read, rep.total_kept, rep.total_rejected
    report.reject_reasons = rep.reasons()
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def finish_import(store: Neo4jStore, report) -> None:
    """After :func:`offline_import`, with the server started again: the unique constraints
    (their indexes are built on the imported nodes), the store's version record where
    :mod:`kg.build` keeps one (an import is a build that wrote everything), and the
    ``last_build`` record that :func:`kg.build.build_graph` leaves (read by the
    explanation plan cache)."""
    import json
    from dataclasses import asdict

    from kg import build
    from kg.build import BuildConfig

    store.ensure_schema()
    if hasattr(build, "advance"):
        report.version = build.advance(store, {"dataset": report.dataset, "fingerprint": report.fingerprint,
                                               "created": report.created, "updated": 0, "offline_import": True})
    store.write_meta("last_build", json.dumps({"config": asdict(BuildConfig(progress=False)),
                                               "report": asdict(report)}))
