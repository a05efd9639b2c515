"""Dataset -> GraphStore: batched, idempotent, resumable, with a report.

:func:`build_graph` writes every node label, then every relationship type
(:func:`kg.rows.graph_rows`), through the store's idempotent upserts: each upsert
first anti-joins its rows against what the store holds and writes only the rows that
are missing (and updates the ones whose properties changed). That is also how a build
resumes: an interrupted build -- killed at any moment, of new data or of data partly
built before -- is simply run again; every step hands *all* its rows to the store, and
the anti-join finds exactly the ones the crash left out, wherever they are in the step.
(Resuming from a row offset would be wrong: rows already stored are scattered through
a step of incremental data, not its first N.) The derived co-interaction counts resume
the same way: the products whose pairs a build is recounting are recorded in the store
before their type leaves the ``co_counts`` record (:data:`CO_COUNTS_DIRTY`), and the next
build recounts them, so a build killed and run again keeps the counts a clean one keeps.

Bookkeeping lives in the store (a ``KgrecMeta`` node keyed by the dataset's content
fingerprint): progress after each batch, for the report, and ``finished`` once every
step is written, so a finished build of the same data skips straight to the report
("nothing new"). :func:`store_digest` summarises what a store holds (counts and a
checksum per label and relationship type), to compare two builds.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from kg.arrays import distinct
from kg.rows import fingerprint, graph_rows
from kg.schema import ALL_RELS, CO_COUNTED, NODES, REL_BY_TYPE, co_type
from kg.stores import EdgeIndex, GraphStore
from loaders.dataset import Dataset


@dataclass(frozen=True)
class BuildConfig:
    """Options of one build (saved in the store with its report)."""

    progress: bool = True  # progress bars on stderr
    resume: bool = True  # skip a build of the same data that finished before ("nothing new")
    force: bool = False  # hand every row to the store even if the same data was built before
    # keep the co-interaction counts (CO_<type>) current: explanations read them instead of
    # counting co-customers live (update_co_counts); off, those types are counted live
    co_counts: bool = True


SEQUENCE_KEY = "sequence"
STORE_ID_KEY = "store_id"


@dataclass(frozen=True)
class StoreVersion:
    """Which graph, at which point: the store's identity (made on its first build) and its
    sequence number (one more for every build or ingest that wrote something)."""

    store_id: str
    sequence: int

    def to_dict(self) -> dict:
        return {"store_id": self.store_id, "sequence": self.sequence}


def store_version(store: GraphStore) -> StoreVersion:
    """The store's identity and sequence number (``("", 0)`` for a store never built)."""
    return StoreVersion(store.read_meta(STORE_ID_KEY) or "", int(store.read_meta(SEQUENCE_KEY) or 0))


def advance(store: GraphStore, what: dict) -> StoreVersion:
    """Record one more write to the store (``what``: its summary) and return the new
    version; gives the store its identity on the first."""
    now = store_version(store)
    store_id = now.store_id or uuid.uuid4().hex
    if not now.store_id:
        store.write_meta(STORE_ID_KEY, store_id)
    sequence = now.sequence + 1
    store.write_meta(f"write:{sequence}", json.dumps({**what, "at": int(time.time())}))
    store.write_meta(SEQUENCE_KEY, str(sequence))
    return StoreVersion(store_id, sequence)


@dataclass
class StepReport:
    kind: str  # "node" | "rel" | "derived" (co-interaction counts, kept by the build)
    name: str
    rows: int  # distinct rows given to the store
    created: int  # nodes/relationships that did not exist before
    skipped: int  # rows already in the store, unchanged (a rebuild, or an interrupted build resumed)
    seconds: float
    updated: int = 0  # rows already stored whose properties changed
    in_graph: int | None = None  # a derived step: the relationships of its type in the store after it


@dataclass
class BuildReport:
    dataset: str
    store: str
    fingerprint: str
    steps: list[StepReport] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # per label / type after the build
    rows_read: int = 0
    rows_kept: int = 0
    rows_rejected: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    resumed: bool = False  # an interrupted build of the same data was completed
    up_to_date: bool = False  # the same data was built before, completely: nothing was written
    #: the data's knowledge-graph triples, when none of them touches an entity a product is
    #: linked to (no item_entities / RecBole .link): no model can reach them (0 otherwise)
    unlinked_triples: int = 0
    seconds: float = 0.0
    version: StoreVersion | None = None  # the store's identity and sequence number after the build

    @property
    def created(self) -> int:
        return sum(s.created for s in self.steps)

    @property
    def updated(self) -> int:
        return sum(s.updated for s in self.steps)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def table(self, reasons: bool = True) -> str:
        """The final report: counts per label/type, what this run created, rejects (one line
        per kind of reason unless ``reasons=False``: the load summary printed them), time."""
        by_name = {s.name: s for s in self.steps}
        lines = [f"graph build of '{self.dataset}' into {self.store} (fingerprint {self.fingerprint})",
                 f"{'label / type':<18} {'in graph':>12} {'created now':>12} {'seconds':>8}"]
        for name, n in self.counts.items():
            if n or name in by_name:
                s = by_name.get(name)
                lines.append(f"{name:<18} {n:>12,} {(s.created if s else 0):>12,} {(s.seconds if s else 0):>8.1f}")
        for s in self.steps:
            if s.kind == "derived":  # not in counts: derived relationships (co-interaction counts);
                n = s.rows if s.in_graph is None else s.in_graph  # rows: the pairs (re)counted
                lines.append(f"{s.name:<18} {n:>12,} {s.created:>12,} {s.seconds:>8.1f}")
        lines.append(f"rows read {self.rows_read:,} = kept {self.rows_kept:,} + rejected {self.rows_rejected:,}")
        for reason, n in sorted(self.reject_reasons.items(), key=lambda kv: -kv[1]) if reasons else ():
            lines.append(f"  rejected {n:,}: {reason}")
        if self.unlinked_triples:
            lines.append(f"warning: the {self.unlinked_triples:,} knowledge-graph triples touch no entity that a "
                         "product is linked to (no item_entities rows / RecBole .link file naming them): "
                         "no model can reach them")
        if self.up_to_date:
            lines.append(f"nothing new: this data was built into the store before ({self.seconds:.1f} s; "
                         "--force hands every row to the store again)")
        elif self.rows_read and not self.rows_kept:
            lines.append(f"nothing written: every row read was rejected ({self.seconds:.1f} s)")
        elif self.created == 0 and not self.updated:
            lines.append(f"nothing new: every row is in the store already ({self.seconds:.1f} s)")
        else:
            state = " (an interrupted build of this data, completed)" if self.resumed else ""
            changed = f", updated {self.updated:,}" if self.updated else ""
            lines.append(f"created {self.created:,} nodes+relationships{changed} in {self.seconds:.1f} s{state}")
        return "\n".join(lines)


def unlinked_triples(dataset: Dataset) -> int:
    """The number of ``dataset``'s knowledge-graph triples when not one of them has a head
    or tail that a product is linked to (``item_entities``): a KG that reaches no product
    at any depth, which a build should say rather than write silently. 0 when some triple
    touches a linked entity, or when there are no triples."""
    triples, linked = dataset.triples, dataset.item_entities["entity_id"]
    if not len(triples) or (triples["head"].isin(linked) | triples["tail"].isin(linked)).any():
        return 0
    return len(triples)


def progress_key(fp: str) -> str:
    """The meta key of a build's bookkeeping (by the dataset's fingerprint)."""
    return f"build:{fp}"


def build_graph(dataset: Dataset, store: GraphStore, config: BuildConfig | None = None, *,
                known_users=None, known_items=None) -> BuildReport:
    """Write ``dataset`` into a connected ``store``; safe to run again, or after a crash.

    ``known_users`` / ``known_items``: ids the store holds already, which the dataset's
    rows may refer to without listing them (a delta: :func:`kg.ingest.ingest`). A build
    that writes anything advances the store's sequence number (:func:`advance`)."""
    config = config or BuildConfig()
    t0 = time.perf_counter()
    dataset.validate(known_users, known_items)
    fp = fingerprint(dataset)
    report = BuildReport(dataset.name, getattr(store, "kind", "store"), fp)
    store.ensure_schema()

    key = progress_key(fp)
    saved = json.loads(store.read_meta(key) or "null") if not config.force else None
    report.up_to_date = bool(saved and saved.get("finished") and config.resume)
    report.resumed = bool(saved and not saved.get("finished"))
    done: dict[str, int] = {}
    steps = [] if report.up_to_date else graph_rows(dataset)
    counted, pending = _plan_co_counts(store, steps, config.co_counts)
    with store.bulk_writes():
        _write_steps(store, steps, key, done, report, config)
        steps_co, completed = update_co_counts(store, pending, config.progress)
    report.steps += steps_co
    if completed:
        store.write_meta(CO_COUNTS_RECORD, json.dumps(sorted(counted | completed)))
        # only once the record holds them again: a crash in between recounts them once more
        dirty = parse_co_counts_dirty(store.read_meta(CO_COUNTS_DIRTY))
        if set(dirty) & completed:
            store.write_meta(CO_COUNTS_DIRTY, json.dumps({t: ids for t, ids in dirty.items() if t not in completed}))
    if not report.up_to_date:
        store.write_meta(key, json.dumps({"done": done, "finished": True}))

    if report.created or report.updated or not store_version(store).store_id:
        report.version = advance(store, {"dataset": dataset.name, "fingerprint": fp, "created": report.created,
                                         "updated": report.updated})
    else:
        report.version = store_version(store)
    report.counts = store.counts()
    rep = dataset.report
    report.rows_read, report.rows_kept, report.rows_rejected = rep.total_read, rep.total_kept, rep.total_rejected
    report.reject_reasons = rep.reasons()
    if known_items is None:  # a delta's triples may touch entities linked in the store before
        report.unlinked_triples = unlinked_triples(dataset)
    report.seconds = round(time.perf_counter() - t0, 3)
    store.write_meta("last_build", json.dumps({"config": asdict(config), "report": asdict(report)}))
    return report


#: the store's record of the interaction types whose co-interaction counts are complete (a
#: JSON list): only for those do explanations read ``CO_<type>`` instead of counting live
CO_COUNTS_RECORD = "co_counts"


def parse_co_counts(value: str | None) -> set[str]:
    """The interaction types of a ``co_counts`` record (none for a missing or unreadable one:
    explanations then count live, which is slower but never wrong)."""
    try:
        types = json.loads(value) if value else []
    except ValueError:
        return set()
    return {t for t in types if t in CO_COUNTED} if isinstance(types, list) else set()


#: the products whose co-interaction pairs a build dropped from the ``co_counts`` record is
#: recounting (a JSON object ``{type: [product ids]}``): the type's other pairs are correct, so
#: the next build -- of any data, after a crash -- recounts these with its own products
#: instead of counting the type whole (whole, :func:`kept_co_counts` may find the counts
#: not worth keeping where a build that was not interrupted kept them)
CO_COUNTS_DIRTY = "co_counts_dirty"


def parse_co_counts_dirty(value: str | None) -> dict[str, list[str]]:
    """``{type: product ids}`` of a ``co_counts_dirty`` record (none for a missing or
    unreadable one: those types are then counted whole, which is never wrong)."""
    try:
        dirty = json.loads(value) if value else {}
    except ValueError:
        return {}
    if not isinstance(dirty, dict):
        return {}
    return {t: [str(i) for i in ids] for t, ids in dirty.items() if t in CO_COUNTED and isinstance(ids, list)}


def _plan_co_counts(store: GraphStore, steps, keep: bool) -> tuple[set[str], dict[str, object]]:
    """Which co-interaction counts this build must bring up to date, recorded before it writes.

    Returns (the types whose counts stay complete, ``{type: products to recompute, None = all}``).
    A type this build writes interactions of loses its place in the record until its counts
    are recomputed after the writes (:func:`update_co_counts`) -- so a build killed in between
    leaves explanations counting live, never reading stale counts, and the next build
    recomputes that type whole. Only the products this build's rows touch are recomputed
    when the type was complete before: a new interaction of ``(u, p)`` changes only pairs
    that contain ``p``. A type the store holds interactions of but no complete counts
    (a store built before counts were kept, or with ``co_counts`` off) is computed whole.
    A type an earlier build was recounting when it stopped (:data:`CO_COUNTS_DIRTY`) counts
    as complete but for the products that build listed: they are recounted too. The
    products to recount are recorded before the record drops their types."""
    from kg import queries as q

    specs = [REL_BY_TYPE[t] for t in CO_COUNTED]
    row = store.run(q.explain_presence_query(specs), {"meta": "last_build", "co": CO_COUNTS_RECORD}
                    ).to_dict("records")[0]
    recorded = parse_co_counts(row["co_counts"] if isinstance(row["co_counts"], str) else None)
    dirty = {t: ids for t, ids in parse_co_counts_dirty(store.read_meta(CO_COUNTS_DIRTY)).items()
             if t not in recorded}
    complete = recorded | set(dirty)
    written = {s.name: s.rows["dst"] for s in steps if s.kind == "rel" and s.name in CO_COUNTED and len(s.rows)}
    if not keep:
        pending: dict[str, object] = {}
    else:
        pending = {t: (_product_ids(items, dirty.get(t, [])) if t in complete else None)
                   for t, items in written.items()}
        pending.update({t: ids for t, ids in dirty.items() if t not in pending})
        pending.update({t: None for k, t in enumerate(CO_COUNTED)
                        if t not in complete and t not in pending and bool(row[f"t{k}"])})
    counted = recorded - set(written) - set(pending)
    # products to recount: a type written with co_counts off is no longer complete anywhere
    recount = {t: ids for t, ids in pending.items() if ids is not None}
    recount.update({t: ids for t, ids in dirty.items() if t not in written and t not in recount})
    if recount != dirty:
        store.write_meta(CO_COUNTS_DIRTY, json.dumps(recount))
    if counted != recorded:
        store.write_meta(CO_COUNTS_RECORD, json.dumps(sorted(counted)))
    return counted, pending


def _product_ids(items, more: list[str]) -> list[str]:
    """The distinct product ids of ``items`` and ``more``, as strings, sorted."""
    return sorted(set(pd.Series(np.asarray(items, dtype=object)).astype(str)) | set(more))


#: keep a type's co-interaction counts when counting live would read, on average over
#: users, at least this many relationships per explanation (the users' products'
#: interactions: ~18,000 for ml-100k's ratings, ~250 for Gift Cards' reviews) ...
CO_COUNT_MIN_WORK = 5_000
#: ... or when they are cheap to keep: at most this many pairs per interaction
CO_COUNT_CHEAP = 2.0
#: and never more pairs than this (the sparse product is held in memory)
CO_COUNT_MAX_PAIRS = 20_000_000
#: a type that does not pass on work is not counted at all when its bound on the pairs
#: (each user's products taken two at a time) is above this many times the cheap limit:
#: the pairs measured run at 40-100% of that bound (Gift Cards' reviews 42%, the synthetic
#: shop's clicks 77%, purchases 85%), so such a type would almost always be counted only to
#: be dropped -- the synthetic shop's clicks cost 0.26 s of a 4 s build that way
CO_COUNT_BOUND_FACTOR = 2.0


def kept_co_counts(edges: EdgeIndex) -> pd.DataFrame | None:
    """All co-interaction counts of one interaction type (:func:`co_count_rows`) if they earn
    their place (see :data:`CO_COUNT_MIN_WORK`, :data:`CO_COUNT_CHEAP`), else None: they
    cost one relationship per pair of products with a common user -- ten per rating on
    ml-100k, six per click on the synthetic shop -- and save reading every co-customer's
    interactions per explanation, which matters only where users and products have
    hundreds of interactions."""
    if edges.num_edges == 0:
        return None
    pairs = distinct(edges.src_index.astype(np.int64) * len(edges.dst_ids) + edges.dst_index)
    users, items = pairs // len(edges.dst_ids), pairs % len(edges.dst_ids)
    item_degree = np.bincount(items, minlength=len(edges.dst_ids)).astype(np.float64)
    user_degree = np.bincount(users, minlength=len(edges.src_ids)).astype(np.float64)
    work = np.bincount(users, weights=item_degree[items]).sum() / max(int((user_degree > 0).sum()), 1)
    bound = float((user_degree * (user_degree - 1) / 2).sum())  # pairs, at most
    cheap = CO_COUNT_CHEAP * edges.num_edges
    if bound > CO_COUNT_MAX_PAIRS or (work < CO_COUNT_MIN_WORK and bound > CO_COUNT_BOUND_FACTOR * cheap):
        return None  # not counted at all: the product costs in proportion to the bound
    rows = co_count_rows(edges)
    return rows if work >= CO_COUNT_MIN_WORK or len(rows) <= cheap else None


def update_co_counts(store: GraphStore, pending: dict[str, object],
                     progress: bool = False) -> tuple[list[StepReport], set[str]]:
    """Recompute the co-interaction counts ``CO_<type>`` of each type in ``pending`` for the
    products given (None: all) from the interactions the store holds, and upsert them (new
    pairs created, changed counts updated, the rest skipped: idempotent). A type to count
    whole (None) is counted only if :func:`kept_co_counts` says so; else its
    explanations keep counting live. Returns one step report per type written, of kind
    ``"derived"``, and the types whose counts are now complete."""
    from tqdm.auto import tqdm

    from kg import queries as q

    reports, completed = [], set()
    for rel_type, items in pending.items():
        t = time.perf_counter()
        edges = store.export_edges(rel_type)
        rows = kept_co_counts(edges) if items is None else co_count_rows(edges, items)
        if rows is None:
            continue
        bar = tqdm(total=len(rows), desc=f"derived {co_type(rel_type)}", unit="row", disable=not progress,
                   leave=False)
        # a recomputation for some products: its rows all touch them, and so need the stored ones to
        touching = None if items is None else sorted({str(i) for i in items})
        result = store.upsert_rels(co_type(rel_type), rows, progress=bar.update, touching=touching) \
            if len(rows) else None
        bar.close()
        created, updated = (result.created, result.updated or 0) if result else (0, 0)
        # the pairs recounted are those touching the products given: the total is one count query
        total = int(store.run(q.count_rels_query(REL_BY_TYPE[co_type(rel_type)]))["c"].iloc[0])
        reports.append(StepReport("derived", co_type(rel_type), len(rows), created, len(rows) - created - updated,
                                  round(time.perf_counter() - t, 3), updated, total))
        completed.add(rel_type)
    return reports, completed


def _write_steps(store: GraphStore, steps, key: str, done: dict[str, int], report: BuildReport,
                 config: BuildConfig) -> None:
    """Every step's rows through the store's idempotent upserts, the progress recorded in
    the store after each batch (``done``), a :class:`StepReport` each."""
    from tqdm.auto import tqdm

    for step in steps:
        t = time.perf_counter()
        bar = tqdm(total=len(step.rows), desc=f"{step.kind} {step.name}", unit="row",
                   disable=not config.progress, leave=False)

        def progressed(n: int, step_name: str = step.name) -> None:
            bar.update(n)
            done[step_name] = done.get(step_name, 0) + n
            store.write_meta(key, json.dumps({"done": done, "finished": False}))

        upsert = store.upsert_nodes if step.kind == "node" else store.upsert_rels
        # every row, always: the store's anti-join writes only what it lacks (see the module docstring)
        result = upsert(step.name, step.rows, progress=progressed) if len(step.rows) else None
        bar.close()
        created, updated = (result.created, result.updated or 0) if result else (0, 0)
        rows = result.rows if result else 0
        report.steps.append(StepReport(step.kind, step.name, rows, created, rows - created - updated,
                                       round(time.perf_counter() - t, 3), updated))


def store_digest(store: GraphStore) -> dict[str, tuple[int, str]]:
    """``{label or type: (count, sha256)}`` of everything a store holds: the sorted ids of
    every label, and every relationship type's edges (endpoint ids and all properties)
    sorted. Two stores with equal digests hold the same graph (whatever their kind)."""
    out: dict[str, tuple[int, str]] = {}
    for spec in NODES:
        ids = np.sort(store.node_ids(spec.label).astype(str))
        out[spec.label] = (len(ids), hashlib.sha256("\n".join(ids).encode()).hexdigest())
    for spec in ALL_RELS:  # the derived co-interaction counts too: they must match a clean build
        props = tuple(p.name for p in spec.props)
        edges = store.export_edges(spec.type, props)
        cols = [edges.src_ids[edges.src_index].astype(str), edges.dst_ids[edges.dst_index].astype(str)]
        cols += [np.asarray(["" if v is None or v != v else str(v) for v in edges.props[p]], dtype=object)
                 for p in props]
        rows = sorted("\t".join(r) for r in zip(*cols)) if len(cols[0]) else []
        out[spec.type] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return out


def co_count_rows(edges: EdgeIndex, items=None) -> pd.DataFrame:
    """Co-interaction counts of one interaction type (``edges``: its ``(:User)->(:Product)``
    relationships): ``src``, ``dst``, ``n`` -- for every pair of distinct products that at
    least one user interacted with both, how many distinct users did (repeat interactions
    count once), once per unordered pair with ``src < dst``. ``items``: only the pairs with
    at least one product among them (None: all pairs).

    One sparse product :math:`C = M^\\top M` of the binary user × product matrix ``M``
    (only the rows of ``items`` when given), the diagonal dropped."""
    import scipy.sparse as sp

    n_users, n_items = len(edges.src_ids), len(edges.dst_ids)
    m = sp.csr_matrix((np.ones(edges.num_edges, dtype=np.int32), (edges.src_index, edges.dst_index)),
                      shape=(n_users, n_items))
    m.data[:] = 1  # repeat interactions (summed by the constructor) count once
    m = m.tocsc()
    if items is None:
        rows_of = np.arange(n_items)
    else:
        wanted = np.asarray(pd.unique(pd.Series(np.asarray(items, dtype=object)).astype(str)), dtype=object)
        pos = np.searchsorted(edges.dst_ids, wanted)
        pos = pos[(pos < n_items) & (edges.dst_ids[np.minimum(pos, n_items - 1)] == wanted)] if n_items else pos[:0]
        rows_of = np.unique(pos)
    c = (m[:, rows_of].T.tocsr() @ m).tocoo()  # [len(rows_of), n_items]
    a, b, n = rows_of[c.row], c.col, c.data
    if items is None:
        keep = a < b  # dst_ids are sorted: index order is id order
    else:
        touched = np.zeros(n_items, dtype=bool)
        touched[rows_of] = True
        keep = (a < b) | ((a > b) & ~touched[b])  # a pair of two touched products: once
    a, b, n = a[keep], b[keep], n[keep]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((hi, lo))
    return pd.DataFrame({"src": edges.dst_ids[lo[order]], "dst": edges.dst_ids[hi[order]],
                         "n": n[order].astype(np.int64)})
