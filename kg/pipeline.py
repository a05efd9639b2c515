"""The graph-encoder stage end to end: store -> export -> split -> train -> run folder.

It fills the GNN part of a run folder (:mod:`kg.run_dir` owns the layout): the ``gnn``
section of ``run.json`` (:class:`GnnRunConfig`) and the store the graph came from,
written first; ``graph/`` (the HeteroData export and its id maps), ``split.npz``,
``checkpoints/``, ``model.pt`` (the best state_dict), ``embeddings.npz`` (user / item
embeddings, float32, with their ids, and ``item_in_graph``: bool per item, whether it has an
edge in the graph the model was trained over, :func:`kg.train.items_in_graph` -- serving's
``similar`` reads an item without one as having no graph vector; a run written before this
has no such array), ``metrics.json`` and ``report.md`` (test metrics
of the model, of the popularity baseline and, where the graph has a KG, of the KG's content
as a ranker with the real and with a shuffled KG: whether the graph's content says anything
about what users choose).

:func:`train_gnn` makes one; :func:`open_run` loads one; :func:`evaluate_run` re-scores one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kg.build import store_version
from kg.config import checked_fields
from kg.errors import ConfigError, RunFolderError
from kg.evaluation import by_degree_table, by_item_degree, evaluate, found_pairs, markdown_table, popularity_scores
from kg.export import GraphExport, export_graph
from kg.run_dir import RunDir, save_npz, save_torch, write_json, write_text
from kg.split import Split, split_from_file, split_interactions
from kg.stores import GraphStore, StoreConfig, same_store
from kg.train import TrainConfig, build_model, evaluate_model, items_in_graph, train


@dataclass(frozen=True)
class GnnRunConfig:
    """How to split the interactions and train the graph encoder."""

    split: str = "auto"  # "auto" (the source's split if it has one, else leave_last_out) | "leave_last_out" | "time" | "given"
    valid_fraction: float = 0.1  # "time"; "given" when the source has no valid part: share of validation pairs
    split_file: str | None = None  # a split file/folder (kg.split.read_split_file): overrides ``split``
    test_fraction: float = 0.1  # "time": share of test pairs
    positive_types: tuple[str, ...] | None = None  # e.g. ("purchased",); None: purchased/rated/reviewed
    write_embeddings: bool = False  # Neo4j only: item embeddings + vector index back into the graph
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("split", "valid_fraction", "test_fraction", "split_file",
                                             "write_embeddings")}
        out["positive_types"] = list(self.positive_types) if self.positive_types else None
        out["train"] = self.train.to_dict()
        return out

    @classmethod
    def from_dict(cls, values: dict) -> GnnRunConfig:
        values = dict(checked_fields(cls, values))
        values["train"] = TrainConfig.from_dict(values.get("train", {}))
        if values.get("positive_types"):
            values["positive_types"] = tuple(values["positive_types"])
        return cls(**values)


@dataclass
class GnnRun:
    run_dir: Path
    config: GnnRunConfig
    export: GraphExport
    split: Split
    model: object
    metrics: dict[str, dict[str, float]]  # "popularity" / model name -> test metrics

    def report(self) -> str:
        from kg.content_baseline import CONTENT, SHUFFLED_CONTENT

        if not len(self.split.test[0]):  # every figure would read 0.0000: a model that finds nothing
            why = no_test_pairs_hint(split_method(self.export, self.config), self.config)
            return f"No test pairs: nothing to measure ({why})."
        table = markdown_table(self.metrics, [f"{m}@{k}" for k in self.config.train.ks for m in ("recall", "ndcg")])
        if CONTENT in self.metrics:
            table += (f"\n\n{CONTENT}: no model -- items ranked by how much their KG neighbours (TF-IDF) overlap "
                      f"those of the user's training items; {SHUFFLED_CONTENT}: the same with every relation's "
                      "tails shuffled (same degrees). How far apart they are is how much the graph's content "
                      "says about what users choose.")
            users = int(self.metrics[CONTENT].get("users", 0))
            if users < int(self.metrics.get("popularity", {}).get("users", users)):
                table += f" (Their figures are on a sample of {users:,} test users.)"
        return table

    def by_degree(self, groups: int = 5, k: int | None = None) -> str:
        """Where in the long tail the model, popularity and -- where the graph has a KG --
        the KG's content (real and shuffled, as in :meth:`report`) find the test pairs: the
        share of them in the top ``k`` (default: the run's first cut-off), the pairs in
        ``groups`` groups of about equal size by their item's training interactions, least
        known first (:func:`kg.evaluation.by_item_degree`). A markdown table."""
        import torch

        split, k = self.split, k or self.config.train.ks[0]
        if not len(split.test[0]):  # every figure would be NaN (kg.evaluation.evaluate)
            return "No test pairs: nothing to measure by item degree."
        degree = np.bincount(split.train[1], minlength=split.num_items)
        everyone = np.ones(len(split.test[0]), bool)
        keep, batch = _content_sample(split, self.config)
        content = _content_rankers(split, self.config, self.export)

        def found(score, counted=everyone, batch_size=4096):
            pairs = (split.test[0][counted], split.test[1][counted])
            hits = np.zeros(len(counted), bool)
            hits[counted] = found_pairs(score, split.num_users, split.num_items, pairs, [split.train, split.valid],
                                        k=k, batch_size=batch_size, candidates=split.items)
            return by_item_degree(hits, split.test[1], degree, groups, counted=counted)

        self.model.eval()
        with torch.no_grad():
            emb = self.model.embeddings()
            tables = {"popularity": found(popularity_scores(split.train, split.num_items)),
                      self.config.train.model: found(lambda users: self.model.score(users, emb))}
        tables.update({name: found(score, keep, batch) for name, score in content.items()})
        note = (f" (the KG content rows on a sample of {len(np.unique(split.test[0][keep])):,} test users)"
                if content and not keep.all() else "")
        return (f"Share of the test pairs found in the top {k}, by the item's training interactions{note}:\n\n"
                + by_degree_table(tables["popularity"],
                                  {name: [f"{share:.4f}" for *_, share in table] for name, table in tables.items()}))

    def by_relation(self, k: int | None = None) -> str:
        """Which of the KG's relations say what users choose: the KG content ranker (as in
        :meth:`report`) with one relation at a time (:func:`kg.content_baseline.per_relation`),
        on the real and on the shuffled relation, test NDCG and Recall at ``k`` (default: the
        run's first cut-off), beside popularity and the model for scale. A markdown table
        (empty string without a KG)."""
        from kg.content_baseline import CONTENT, content_scores, per_relation
        from kg.models.kg_model import shuffle_tails

        split, k = self.split, k or self.config.train.ks[0]
        if not len(split.test[0]):  # every figure would be NaN (kg.evaluation.evaluate)
            return "No test pairs: nothing to measure per relation."
        triples = self.export.knowledge_triples()
        if not len(triples.head):
            return ""
        keep, batch = _content_sample(split, self.config)
        pairs = (split.test[0][keep], split.test[1][keep])

        def test(kg) -> dict[str, float]:
            return evaluate(content_scores(kg, split.train, split.num_users, split.num_items), split.num_users,
                            split.num_items, pairs, [split.train, split.valid], ks=(k,), batch_size=batch,
                            candidates=split.items)

        seed = self.config.train.seed
        lines = [f"| relation | triples | items reached | ndcg@{k} | shuffled | recall@{k} | shuffled |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        unreached = []
        for name, n, reached, kg in per_relation(triples, split.num_items):
            if not reached:  # nothing to rank by: every item scores 0
                unreached.append(name)
                continue
            real, shuffled = test(kg), test(shuffle_tails(kg, seed))
            lines.append(f"| {name} | {n:,} | {reached:,} | {real[f'ndcg@{k}']:.4f} | {shuffled[f'ndcg@{k}']:.4f} "
                         f"| {real[f'recall@{k}']:.4f} | {shuffled[f'recall@{k}']:.4f} |")
        if unreached:
            lines.append(f"\nLeft out, reaching no item (entity-to-entity, or an entity of every item): "
                         f"{', '.join(unreached)}.")
        scale = "; ".join(f"{row} ndcg@{k} {self.metrics[row][f'ndcg@{k}']:.4f}"
                          for row in ("popularity", self.config.train.model, CONTENT)
                          if f"ndcg@{k}" in self.metrics.get(row, {}))
        sample = (f", on a sample of {len(np.unique(pairs[0])):,} test users" if not keep.all() else "")
        return (f"The KG content ranker with one relation at a time (each item merged with the external entity "
                f"it is linked to 1:1; triples counted after that), real and with the relation's tails shuffled "
                f"(seed {seed}){sample}; for scale, {scale}:\n\n" + "\n".join(lines))

    def protocol(self) -> str:
        """One line: where the split came from and what is ranked and masked."""
        sizes = self.split.sizes()
        where = (f"split file {self.config.split_file}" if self.config.split_file
                 else f"split {self.config.split}")
        ranked = (f"{len(self.split.items):,} items ranked (the split's)" if self.split.items is not None
                  else f"all {self.split.num_items:,} items ranked")
        left = f", {self.split.left_out:,} positives in no part" if self.split.left_out else ""
        return (f"{where}: {sizes['train']:,} train / {sizes['valid']:,} valid / {sizes['test']:,} test pairs"
                f"{left}; {ranked}; train + valid items masked for test")


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def split_method(export: GraphExport | None, config: GnnRunConfig) -> str:
    """The split ``config`` makes of ``export``: ``"file"`` (``split_file``), else
    ``config.split`` with ``"auto"`` resolved -- ``"given"`` when the source marks test
    interactions, else ``"leave_last_out"`` (``export`` is read only to resolve ``"auto"``)."""
    if config.split_file:
        return "file"
    if config.split != "auto":
        return config.split
    for (src, rel, dst) in (export.data.edge_types if export is not None else ()):
        if src == "user" and dst == "product" and bool((export.data[src, rel, dst].split == 2).any()):
            return "given"
    return "leave_last_out"


def no_test_pairs_hint(method: str, config: GnnRunConfig) -> str:
    """Why a split made by ``method`` (:func:`split_method`) held out no test pair, and what
    to do instead -- a clause for the report's "No test pairs" line."""
    if method == "file":
        return (f"the split file {config.split_file} names no test pair among the graph's positive interactions; "
                "give a split file with a test part")
    if method == "given":
        return ("the source's own split marks no positive interaction as test; give a split, or "
                "--split leave_last_out / time")
    if method == "time":
        if config.test_fraction <= 0:
            return "the time split's test_fraction is 0, so it holds out nothing; give a test_fraction above 0"
        share = f"{config.test_fraction:g}"
        return (f"the time split holds out the positives later than the {1 - config.test_fraction:g} quantile of "
                f"their times (test_fraction {share}), and none is later: the latest {share} of them share the "
                "last time -- all do when the interactions have no timestamps; give a split, or interactions "
                "with their times")
    return ("leave-last-out holds out an item only of users with at least 3; give a split, or more "
            "interactions per user")


def _split(export: GraphExport, config: GnnRunConfig) -> Split:
    method = split_method(export, config)
    if method == "file":
        return split_from_file(export.data, export.id_maps, config.split_file, config.positive_types)
    return split_interactions(export.data, method, config.positive_types, config.valid_fraction,
                              config.test_fraction, seed=config.train.seed)


#: at most this many test users (a seeded sample) are scored by the KG content rows
CONTENT_USERS = 5000


def _metrics(model, split: Split, config: GnnRunConfig, export: GraphExport) -> dict[str, dict[str, float]]:
    """Test metrics of popularity, the model and -- where the graph has a KG -- the KG's
    content as a ranker, with the real and with the shuffled KG (:mod:`kg.content_baseline`:
    whether the KG's content predicts what users choose, with no model in between)."""
    device = config.train.resolved_device()
    test = lambda scores, pairs=split.test, batch=4096: evaluate(  # noqa: E731
        scores, split.num_users, split.num_items, pairs, [split.train, split.valid], ks=config.train.ks,
        batch_size=batch, candidates=split.items)
    out = {"popularity": test(popularity_scores(split.train, split.num_items)),
           config.train.model: evaluate_model(model, split, "test", ks=config.train.ks, device=device)}
    keep, batch = _content_sample(split, config)
    pairs = (split.test[0][keep], split.test[1][keep])
    for name, score in _content_rankers(split, config, export).items():
        out[name] = test(score, pairs, batch)
    return out


def _content_sample(split: Split, config: GnnRunConfig) -> tuple[np.ndarray, int]:
    """The test pairs the KG content rankers are scored on (bool [N]) and the user batch that
    keeps their scores small. A user's content scores cost a sparse product over every item
    sharing an entity with theirs: on a big shop, only a seeded sample of
    :data:`CONTENT_USERS` test users."""
    users = np.unique(split.test[0])
    if len(users) > CONTENT_USERS:
        users = np.random.default_rng(config.train.seed).choice(users, CONTENT_USERS, replace=False)
    batch = max(1, min(4096, 2 ** 25 // max(split.num_items, 1)))  # dense [B, I] scores of at most 128 MB
    return np.isin(split.test[0], users), batch


def _content_rankers(split: Split, config: GnnRunConfig, export: GraphExport) -> dict[str, object]:
    """The KG content rankers, real and shuffled KG (none without a KG)."""
    from kg.content_baseline import CONTENT, SHUFFLED_CONTENT, content_scores
    from kg.models.kg_model import shuffle_tails

    triples = export.knowledge_triples()
    if not len(triples.head):
        return {}
    return {name: content_scores(kg, split.train, split.num_users, split.num_items)
            for name, kg in ((CONTENT, triples), (SHUFFLED_CONTENT, shuffle_tails(triples, config.train.seed)))}


#: settings a resumed run may change: how long and where it trains, not what it trains
RESUMABLE_SETTINGS = frozenset({"write_embeddings", "train.epochs", "train.patience", "train.max_seconds",
                                "train.target", "train.target_metric", "train.device", "train.threads",
                                "train.eval_batch_size"})


def _flat(values: dict, prefix: str = "") -> dict[str, object]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}`` (the names the settings go by)."""
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key == "train":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_mismatches(saved: dict, config: GnnRunConfig) -> dict[str, tuple[object, object]]:
    """``{setting: (the checkpoint's, the one given)}`` for each setting of ``config`` that
    differs from the run's saved ``gnn`` section (``saved``) and that a resume cannot take:
    the model's shape, the split, the loss ... (all but :data:`RESUMABLE_SETTINGS`)."""
    then = _flat(GnnRunConfig.from_dict(saved).to_dict())
    now = _flat(config.to_dict())
    return {key: (then.get(key), now.get(key)) for key in sorted(set(then) | set(now))
            if key not in RESUMABLE_SETTINGS and then.get(key) != now.get(key)}


def check_resume(run: RunDir, store: GraphStore, config: GnnRunConfig) -> str | None:
    """Refuse (:class:`~kg.errors.ConfigError`, one line saying what to do) a resume that
    cannot continue the run's checkpoint: other model/split settings (the checkpoint's
    tensors have the old shapes), another graph store than the one run.json records (a
    resume continues on the run's own export of that graph, so a ``--db`` naming another
    one would be recorded but never read), or that store rebuilt from scratch since. A
    store that only grew since (a later sequence) is resumed on the run's export as of the
    checkpoint; the returned note says so (None when the store is as it was)."""
    recorded = run.config()
    saved = recorded.get("gnn")
    if saved:
        differ = resume_mismatches(saved, config)
        if differ:
            said = ", ".join(f"{k}={then!r} (given {now!r})" for k, (then, now) in differ.items())
            raise ConfigError(f"--resume: the checkpoint in {run.path} was trained with {said}; resume with "
                              "the same settings, or train anew without --resume")
    where = recorded.get("store")
    if where and not same_store(where, store.location()):
        raise ConfigError(f"--resume: {run.path} was trained on {StoreConfig.from_location(where).describe()}, "
                          f"not {StoreConfig.from_location(store.location()).describe()}; "
                          "resume on the run's store (leave out --db/--neo4j-uri), or train anew without --resume")
    then, now = recorded.get("store_version") or {}, store_version(store)
    if then.get("store_id") and now.store_id != then["store_id"]:
        raise ConfigError(f"--resume: the graph store was rebuilt from scratch since {run.path} was trained; "
                          "train anew without --resume")
    if then and now.sequence != int(then.get("sequence", now.sequence)):
        return (f"note: the graph changed since the checkpoint (sequence {then.get('sequence')} -> {now.sequence}); "
                f"resuming on the run's export of sequence {then.get('sequence')} (kgrec update, or a retrain "
                "without --resume, brings in the rest)")
    return None


def train_gnn(store: GraphStore, run_dir: str | Path, config: GnnRunConfig | None = None, *,
              resume: bool = False, progress: bool = True) -> GnnRun:
    """Export the graph from a connected ``store``, train, and fill ``run_dir``. A run
    folder's versions (``kgrec update``) are dropped first (:meth:`RunDir.drop_versions`):
    they are folded from the embeddings this retrain replaces.

    ``resume`` continues the run's last checkpoint on the run's own export and split (the
    checkpoint's tensors are sized to them) after :func:`check_resume`; ``run.json`` then
    keeps the store and store version it records -- they describe that export."""
    import torch

    config = config or GnnRunConfig()
    run = RunDir(run_dir)
    writer = _rank() == 0
    resuming = resume and (run.graph / "graph.pt").exists()
    note = check_resume(run, store, config) if resuming else None
    if note and writer and progress:
        print(note, flush=True)
    if writer:  # the run's versions are folded from the embeddings this replaces: never served again
        run.drop_versions()
        if resuming:  # the graph is the run's export: its store and version stay as recorded
            run.update_config(gnn=config.to_dict())
        else:
            run.update_config(gnn=config.to_dict(), store=store.location(),
                              store_version=store_version(store).to_dict())
    if resuming:
        with run.reading(run.graph, "gnn"):
            export, split = GraphExport.load(run.graph), run.load_split()
    else:
        export = export_graph(store)  # every rank reads the same graph and makes the same split
        split = _split(export, config)
        if writer:
            export.save(run.graph)
            run.save_split(split)
    model = build_model(config.train, export, split)
    result = train(model, split, config.train, checkpoint_dir=run.checkpoints, resume=resume, progress=progress)
    model = result.model
    if _rank() != 0:  # under torchrun only rank 0 holds the best model and writes the run
        return GnnRun(run.path, config, export, split, model, {})
    save_torch(model.state_dict(), run.gnn_model)
    with torch.no_grad():
        model.eval()
        users, items = (e.detach().cpu().numpy().astype(np.float32) for e in model.embeddings())
    save_npz(run.embeddings, user=users, item=items,
             user_ids=export.id_maps["user"].astype(str), item_ids=export.id_maps["product"].astype(str),
             item_in_graph=items_in_graph(model, split))
    metrics = _metrics(model, split, config, export)
    run.record_ran_with("gnn", threads=result.threads, device=str(config.train.resolved_device()))
    gnn_run = GnnRun(run.path, config, export, split, model, metrics)
    write_json(run.metrics, metrics)
    write_text(run.report, gnn_run.report() + "\n\n" + gnn_run.protocol() + "\n")
    if config.write_embeddings and hasattr(store, "write_vectors"):
        store.write_vectors("Product", export.id_maps["product"], items)
    run.write_manifest()
    return gnn_run


def open_run(run_dir: str | Path) -> GnnRun:
    """Load a finished run folder (model rebuilt and its weights restored)."""
    import torch

    run = RunDir(run_dir)
    if not run.gnn_model.exists():
        raise RunFolderError(f"{run.path} is not a finished GNN run (no model.pt); run `kgrec train` first")
    run.verify(("gnn",))
    config = GnnRunConfig.from_dict(run.config().get("gnn", {}))
    with run.reading(run.graph, "gnn"):
        export, split = GraphExport.load(run.graph), run.load_split()
    model = build_model(config.train, export, split)
    with run.reading(run.gnn_model, "gnn"):
        model.load_state_dict(torch.load(run.gnn_model, weights_only=True))
    model.eval()
    with run.reading(run.metrics, "gnn"):
        metrics = json.loads(run.metrics.read_text()) if run.metrics.exists() else {}
    return GnnRun(run.path, config, export, split, model, metrics)


def evaluate_run(run_dir: str | Path) -> GnnRun:
    """Re-score a run folder on its test split (model, popularity and the KG content rows)."""
    run = open_run(run_dir)
    run.metrics = _metrics(run.model, run.split, run.config, run.export)
    return run
