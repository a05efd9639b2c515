"""Dataset -> GraphStore: batched, idempotent, resumable, with a report.

:func:`build_graph` writes every node label, then every relationship type
(:func:`kg.rows.graph_rows`), through the store's idempotent upserts. Progress is
kept in the store itself (a ``KgrecMeta`` node keyed by the dataset's content
fingerprint): after each batch the rows done so far are recorded, so a build
that was interrupted resumes where it stopped, and a finished build of the same
data skips straight to the report. Because every write is a MERGE (Neo4j) or an
anti-joined COPY (embedded), redoing a batch never duplicates anything.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from kg.rows import fingerprint, graph_rows
from kg.stores import GraphStore
from loaders.dataset import Dataset


@dataclass(frozen=True)
class BuildConfig:
    """Options of one build (saved in the store with its report)."""

    progress: bool = True  # progress bars on stderr
    resume: bool = True  # skip the batches a previous run of the same data finished
    force: bool = False  # rewrite everything even if the same data was built before


@dataclass
class StepReport:
    kind: str  # "node" | "rel"
    name: str
    rows: int  # distinct rows given to the store
    created: int  # nodes/relationships that did not exist before
    skipped: int  # rows skipped because a previous run had finished them
    seconds: float


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
    resumed: bool = False
    seconds: float = 0.0

    @property
    def created(self) -> int:
        return sum(s.created for s in self.steps)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def table(self) -> str:
        """The final report: counts per label/type, what this run created, rejects, time."""
        by_name = {s.name: s for s in self.steps}
        lines = [f"graph build of '{self.dataset}' into {self.store} (fingerprint {self.fingerprint})",
                 f"{'label / type':<18} {'in graph':>12} {'created now':>12} {'seconds':>8}"]
        for name, n in self.counts.items():
            if n or name in by_name:
                s = by_name.get(name)
                lines.append(f"{name:<18} {n:>12,} {(s.created if s else 0):>12,} {(s.seconds if s else 0):>8.1f}")
        lines.append(f"rows read {self.rows_read:,} = kept {self.rows_kept:,} + rejected {self.rows_rejected:,}")
        for reason, n in sorted(self.reject_reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  rejected {n:,}: {reason}")
        state = " (resumed)" if self.resumed else ""
        lines.append(f"created {self.created:,} nodes+relationships in {self.seconds:.1f} s{state}")
        return "\n".join(lines)


def _progress_key(fp: str) -> str:
    return f"build:{fp}"


def build_graph(dataset: Dataset, store: GraphStore, config: BuildConfig | None = None) -> BuildReport:
    """Write ``dataset`` into a connected ``store``; safe to run again or after a crash."""
    from tqdm.auto import tqdm

    config = config or BuildConfig()
    t0 = time.perf_counter()
    dataset.validate()
    fp = fingerprint(dataset)
    report = BuildReport(dataset.name, getattr(store, "kind", "store"), fp)
    store.ensure_schema()

    key = _progress_key(fp)
    saved = store.read_meta(key) if config.resume and not config.force else None
    done: dict[str, int] = json.loads(saved)["done"] if saved else {}
    report.resumed = bool(done)

    steps = graph_rows(dataset)
    for step in steps:
        already = min(done.get(step.name, 0), len(step.rows))
        todo = step.rows.iloc[already:]
        t = time.perf_counter()
        bar = tqdm(total=len(step.rows), initial=already, desc=f"{step.kind} {step.name}",
                   unit="row", disable=not config.progress, leave=False)
        progress_rows = [already]

        def advance(n: int, step_name: str = step.name) -> None:
            bar.update(n)
            progress_rows[0] += n
            done[step_name] = progress_rows[0]
            store.write_meta(key, json.dumps({"done": done, "finished": False}))

        upsert = store.upsert_nodes if step.kind == "node" else store.upsert_rels
        result = upsert(step.name, todo, progress=advance) if len(todo) else None
        bar.close()
        done[step.name] = len(step.rows)
        report.steps.append(StepReport(step.kind, step.name, len(step.rows),
                                       result.created if result else 0, already,
                                       round(time.perf_counter() - t, 3)))
    store.write_meta(key, json.dumps({"done": done, "finished": True}))

    report.counts = store.counts()
    rep = dataset.report
    report.rows_read, report.rows_kept, report.rows_rejected = rep.total_read, rep.total_kept, rep.total_rejected
    report.reject_reasons = rep.reasons()
    report.seconds = round(time.perf_counter() - t0, 3)
    store.write_meta("last_build", json.dumps({"config": asdict(config), "report": asdict(report)}))
    return report
