"""All training stages in order -- graph encoder, text encoder, fusion, value -- into one run folder.

The folder's layout is :mod:`kg.run_dir`'s; ``run.json`` holds :class:`RunConfig` (every
stage's settings, written first) and the store the run was trained on. The stages:

* ``gnn`` -- :func:`kg.pipeline.train_gnn`: export, split, graph encoder, embeddings;
* ``text`` -- :func:`run_text_stage`: the catalogue read from the store, the text encoder
  fine-tuned (or used as is), product / user-profile / judged-query embeddings;
* ``fusion`` -- :func:`run_fusion_stage`: examples and feature tables, the fusion model
  (and the CVR-on-clicks baseline), the comparison table;
* ``value`` -- :func:`fusion.value.train.run_value_stage`: customer lifetime value,
  product potential and brand loyalty over a horizon, their test report and the serving
  tables.

:func:`train_all` runs every stage (``stages`` picks some); a stage reads what the earlier
ones wrote, so ``--stage fusion`` can be re-run alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fusion.ranking.config import FusionConfig
from fusion.ranking.examples import (ExampleConfig, build_examples, build_relevance, held_out_periods, product_prices,
                                      query_parts)
from fusion.ranking.exposure import fit_exposure
from fusion.ranking.features import FeatureTables, aligned, build_tables, side_features, value_caps
from fusion.ranking.train import FusionData, FusionResult, train_fusion
from fusion.text.finetune import TextTrainConfig
from fusion.value.config import ValueConfig
from kg.build import store_version
from kg.config import checked_fields, resolve_device, torch_threads
from kg.errors import ConfigError, DataError
from kg.export import GraphExport
from kg.pipeline import GnnRunConfig
from kg.run_dir import BUILT_ON, RAN_WITH, STAGES, RunDir, save_parquet, write_json, write_text


@dataclass(frozen=True)
class TextStageConfig:
    """The text stage: fine-tune (or not) the checkpoint named in ``train.checkpoint``."""

    finetune: bool = True
    embed_batch_size: int = 64
    measure_before: bool = False  #: held-out retrieval of the untrained checkpoint too (one more catalogue pass)
    train: TextTrainConfig = field(default_factory=TextTrainConfig)

    def __post_init__(self):
        if isinstance(self.train, dict):
            object.__setattr__(self, "train", TextTrainConfig.from_dict(self.train))

    def to_dict(self) -> dict[str, Any]:
        return {"finetune": self.finetune, "embed_batch_size": self.embed_batch_size,
                "measure_before": self.measure_before, "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TextStageConfig:
        return cls(**checked_fields(cls, values))


@dataclass(frozen=True)
class RunConfig:
    """Every stage's configuration; saved as ``run.json``."""

    gnn: GnnRunConfig = field(default_factory=GnnRunConfig)
    text: TextStageConfig = field(default_factory=TextStageConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    baselines: bool = True  #: also train the ESMM-less fusion baseline for the report
    value: ValueConfig = field(default_factory=ValueConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"gnn": self.gnn.to_dict(), "text": self.text.to_dict(), "fusion": self.fusion.to_dict(),
                "baselines": self.baselines, "value": self.value.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        values = dict(checked_fields(cls, values))
        return cls(gnn=GnnRunConfig.from_dict(values.get("gnn", {})),
                   text=TextStageConfig.from_dict(values.get("text", {})),
                   fusion=FusionConfig.from_dict(values.get("fusion", {})),
                   baselines=values.get("baselines", True),
                   value=ValueConfig.from_dict(values.get("value", {})))

    def save(self, run_dir: str | Path) -> None:
        """Write every stage's section of ``run.json`` (other sections, e.g. the store, stay)."""
        RunDir(run_dir).update_config(**self.to_dict())

    @classmethod
    def load(cls, run_dir: str | Path) -> RunConfig:
        """The configuration in ``run.json`` (defaults for a new folder)."""
        values = RunDir(run_dir).config()
        values.pop("store", None)
        values.pop("store_version", None)
        values.pop(RAN_WITH, None)
        values.pop(BUILT_ON, None)
        return cls.from_dict(values)


# ------------------------------------------------------------------------------ text

def train_queries(judgements: pd.DataFrame, config: ExampleConfig) -> pd.DataFrame:
    """The judgements of training queries only (valid/test queries stay unseen)."""
    if not len(judgements):
        return judgements
    queries = judgements["query"].astype(str).unique()
    keep = set(np.asarray(queries)[query_parts(queries, config.query_valid_fraction,
                                               config.query_test_fraction, config.seed) == 0])
    return judgements[judgements["query"].astype(str).isin(keep)].reset_index(drop=True)


def run_text_stage(store, run_dir: str | Path, config: RunConfig, *, progress: bool = False) -> dict:
    """Read the catalogue, fine-tune the encoder (optional), embed products, reviews,
    user profiles and judged queries. The run's versions are dropped first
    (:meth:`~kg.run_dir.RunDir.drop_versions`: they are folded from the text stage's output)."""
    from fusion.text.encoder import TextEncoder, resolve_checkpoint, save_run_record
    from fusion.text.finetune import run_finetune
    from fusion.text.index import Embeddings, MemoryCache, embed_items, embed_reviews, user_profiles
    from kg.catalogue import read_catalogue

    run = RunDir(run_dir)
    run.need(run.graph, "gnn")  # a folder never trained: "run the gnn stage first", not "no manifest"
    run.verify(("gnn",))
    run.drop_versions()  # folded from the text embeddings this replaces
    catalogue = read_catalogue(store)
    save_parquet(catalogue.items, run.catalogue_items)
    save_parquet(catalogue.judgements, run.judgements)
    judged = np.sort(catalogue.judgements["query"].astype(str).unique())
    export = GraphExport.load(run.need(run.graph, "gnn"))
    split = run.load_split()
    # the text stage sees the training period only, like the GNN: a review of a held-out
    # purchase names it, and one written later says what the user went on to like
    catalogue.reviews = training_reviews(catalogue.reviews, export, split, config.gnn.positive_types)
    stage = config.text
    summary: dict[str, Any] = {}
    ran: dict[str, Any] = {}
    memo = MemoryCache()  # each distinct text is encoded once by the trained encoder
    if stage.finetune and (len(catalogue.reviews) or len(catalogue.judgements)):
        catalogue.judgements = train_queries(catalogue.judgements, config.fusion.examples)
        result = run_finetune(catalogue, stage.train, run.text_encoder, progress=progress, cache=memo,
                              evaluate=True if stage.measure_before else "after")
        encoder = result.encoder
        summary = {"before": result.before, "after": result.after}
        ran = {"finetune_threads": result.threads, "device": str(stage.train.resolved_device())}
    else:
        encoder = TextEncoder.from_pretrained(resolve_checkpoint(stage.train.checkpoint),
                                              max_length=stage.train.max_length)
        save_run_record(run, encoder, stage.train.max_length)
    encoder.eval()
    with torch.no_grad(), torch_threads(stage.train.threads) as threads:  # the stage's threads, as in fine-tuning
        if progress:
            print(f"text: embedding {len(catalogue.items):,} products and {len(catalogue.reviews):,} reviews",
                  flush=True)
        items = embed_items(encoder, catalogue.items, batch_size=stage.embed_batch_size, progress=progress,
                            text_config=stage.train.text, cache=memo)
        reviews = embed_reviews(encoder, catalogue.reviews, batch_size=stage.embed_batch_size,
                                text_config=stage.train.text, cache=memo, progress=progress)
        train = _train_purchases(split, export)
        # profiles: training-period reviews of training pairs, and the training purchases
        pairs = pd.MultiIndex.from_frame(train[["user_id", "item_id"]])
        own = pd.MultiIndex.from_frame(catalogue.reviews[["user_id", "item_id"]]).isin(pairs)
        profiles = user_profiles(reviews, catalogue.reviews[own], items, train)
        queries = Embeddings(np.asarray(judged, dtype=object),
                             memo.encode(encoder, list(judged), stage.embed_batch_size) if len(judged)
                             else torch.zeros(0, items.vectors.shape[1]))
    items.save(run.text_items)
    profiles.save(run.text_users)
    queries.save(run.text_queries)
    summary.update({"items": len(items), "reviews": len(reviews), "user_profiles": len(profiles),  # reviews with text
                    "queries": len(queries)})
    write_json(run.text_summary, summary)
    run.record_ran_with("text", threads=threads, **ran)
    run.write_manifest()
    return summary


def training_reviews(reviews: pd.DataFrame, export: GraphExport, split,
                     positive_types: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The ``reviews`` of the training period (:class:`fusion.ranking.examples.Periods`:
    not of a held-out pair, not after the user's first held-out pair); reviews of
    users or products the export does not know are dropped too."""
    users = export.index_of("user", reviews["user_id"].to_numpy(dtype=object))
    items = export.index_of("product", reviews["item_id"].to_numpy(dtype=object))
    known = (users >= 0) & (items >= 0)
    part = np.ones(len(reviews), dtype=np.int8)
    part[known] = held_out_periods(export.data, split, positive_types).part(
        users[known], items[known], reviews["timestamp"].to_numpy(dtype=np.int64)[known])
    return reviews[part == 0].reset_index(drop=True)


def _train_purchases(split, export: GraphExport) -> pd.DataFrame:
    """Training positives of the GNN split as an interactions-like frame (user profiles
    must not see held-out purchases)."""
    users, items = split.train
    return pd.DataFrame({"user_id": export.id_maps["user"][users], "item_id": export.id_maps["product"][items],
                         "event": "purchase"})


# ---------------------------------------------------------------------------- fusion

def load_fusion_data(run_dir: str | Path, config: ExampleConfig | None = None) -> FusionData:
    """Examples, relevance pairs and feature tables from the GNN and text stages' output."""
    from fusion.text.index import Embeddings

    run = RunDir(run_dir)
    config = config or ExampleConfig()
    run.need(run.graph, "gnn")
    run.need(run.text_items, "text")
    run.verify(("gnn", "text"))
    export = GraphExport.load(run.graph)
    split = run.load_split()
    products, users = export.id_maps["product"], export.id_maps["user"]
    items = pd.read_parquet(run.need(run.catalogue_items, "text"))
    types = RunConfig.load(run.path).gnn.positive_types  # the split's positives time its periods
    examples = build_examples(export.data, split, product_prices(items, products), config, types)
    gnn = np.load(run.need(run.embeddings, "gnn"), allow_pickle=False)
    user_gnn, _ = aligned(users, gnn["user_ids"], torch.from_numpy(gnn["user"]))
    item_gnn, _ = aligned(products, gnn["item_ids"], torch.from_numpy(gnn["item"]))
    text_items = Embeddings.load(run.need(run.text_items, "text"))
    text_users = Embeddings.load(run.need(run.text_users, "text"))
    item_text, _ = aligned(products, text_items.ids, text_items.vectors)
    user_text, has_profile = aligned(users, text_users.ids, text_users.vectors)
    item_side, user_side = side_features(items, products, len(users), examples)
    tables = build_tables(user_gnn=user_gnn, item_gnn=item_gnn, item_text=item_text, user_text=user_text,
                          has_profile=has_profile, item_side=item_side, user_side=user_side,
                          value_cap=value_caps(items, products, examples))
    tables = scale_gnn(tables, examples)
    queries = Embeddings.load(run.need(run.text_queries, "text"))
    relevance, query_vectors = None, None
    if len(queries):
        judgements = pd.read_parquet(run.need(run.judgements, "text"))
        relevance = build_relevance(judgements, lambda ids: export.index_of("product", ids), config)
        query_vectors, found = aligned(relevance.queries, queries.ids, queries.vectors)
        if not found.all():
            raise DataError("text stage is stale: judged queries without embeddings; re-run --stage text")
    exposure = fit_exposure(examples, items, products, users)
    return FusionData(tables, examples, split, relevance, query_vectors, exposure)


def scale_gnn(tables: FeatureTables, examples, sample: int = 20_000, seed: int = 0) -> FeatureTables:
    """Scale the GNN tables so the user·item dot product has unit standard deviation over
    (a sample of) the training examples -- one scalar, the ranking is unchanged."""
    train = np.flatnonzero(examples.part == 0)
    if not len(train):
        return tables
    rows = np.random.default_rng(seed).choice(train, min(sample, len(train)), replace=False)
    dots = (tables.user_gnn[examples.user[rows]] * tables.item_gnn[examples.item[rows]]).sum(-1)
    s = float(dots.std()) or 1.0
    f = s ** -0.5
    return replace(tables, user_gnn=tables.user_gnn * f, item_gnn=tables.item_gnn * f)


def train_stage_models(data: FusionData, config: FusionConfig, *, run: RunDir | None = None,
                       progress: bool = False) -> tuple[FusionResult, torch.nn.Module]:
    """(the first model's :class:`FusionResult`, the stage's model): ``config.members``
    models with seeds ``seed .. seed + members - 1`` (five consecutive seeds are
    cross-fitted), a :class:`~fusion.ranking.ensemble.FusionEnsemble` of them when there are
    several. ``run``: the first model writes its checkpoints and history there; the others
    are not saved."""
    from fusion.ranking.ensemble import FusionEnsemble

    results = [train_fusion(data, replace(config, seed=config.seed + k), run=None if k else run, progress=progress)
               for k in range(config.members)]
    models = [r.model for r in results]
    return results[0], models[0] if len(models) == 1 else FusionEnsemble(models).eval()


def run_fusion_stage(run_dir: str | Path, config: RunConfig, *, progress: bool = False) -> dict:
    """Train the fusion model (and the CVR-on-clicks baseline), write ``fusion/`` and the
    comparison ``metrics.json`` / ``report.md``. Returns the comparison. The run's versions
    are dropped first (:meth:`~kg.run_dir.RunDir.drop_versions`): a version's tables were
    made for the fusion model this replaces."""
    from fusion.ranking.comparison import compare, markdown, recall_note

    run = RunDir(run_dir)
    fc = config.fusion
    inputs = run.inputs_fingerprint()  # what the tables are made of (RunDir.check_built_on)
    data = load_fusion_data(run, fc.examples)
    run.drop_versions()  # their tables are read by the fusion model this replaces
    result, model = train_stage_models(data, fc, run=run, progress=progress)
    model.save(run.fusion_model)
    result.tables.save(run.fusion_tables)
    if data.exposure is not None:
        data.exposure.save(run.fusion_exposure)
    else:  # a retrain on other data: no stale model under the run's name
        run.fusion_exposure.unlink(missing_ok=True)
    write_json(run.fusion_examples, {"kind": data.examples.kind, "counts": data.examples.counts,
                                     "parts": data.examples.summary()})
    naive = None
    if config.baselines:  # the ESMM comparison: one model, the stage's first seed (its like: "fused, one model")
        naive = train_fusion(data, replace(fc, esmm=False, members=1), progress=False).model
    data.tables = result.tables
    results = compare(data, model, naive, fc.candidates)
    write_json(run.comparison_json, results)
    write_text(run.comparison_md, markdown(results) + "\n\n" + recall_note(results, data.split) + "\n")
    run.record_ran_with("fusion", threads=result.threads, device=str(resolve_device(fc.device)))
    run.record_built_on("fusion", inputs)
    run.write_manifest()
    return results


def fusion_seeds(run_dir: str | Path, config: RunConfig, seeds: int, first: dict
                 ) -> tuple[list[dict], dict | None]:
    """(test metrics (:func:`~fusion.ranking.train.evaluate_fusion`) of ``seeds`` fusion
    stages of the run's configuration on a trained run folder, the test metrics of all
    their models as one :class:`~fusion.ranking.ensemble.FusionEnsemble`) -- how much a
    fusion result owes to its seed, and what averaging more models gives. Stage ``k``
    trains ``m = config.fusion.members`` models with seeds ``s + k m .. s + k m + m - 1``
    (``s = config.fusion.seed``; one model, or an ensemble of ``m``: five consecutive seeds
    are cross-fitted); stage 0 is the run's own model, ``first`` its metrics, already
    evaluated. The others are trained here and not saved. The ensemble of all is ``None``
    for one stage and for ``end_to_end`` runs (their models' tables differ)."""
    from fusion.ranking.ensemble import FusionEnsemble, load_fusion_model, members_of
    from fusion.ranking.train import evaluate_fusion

    fc, run = config.fusion, RunDir(run_dir)
    data = load_fusion_data(run_dir, fc.examples)
    with run.reading(run.fusion_model, "fusion"):
        own = load_fusion_model(run.fusion_model)
    models = [members_of(own)]
    out = [first]
    for k in range(1, seeds):
        result, stage = train_stage_models(data, replace(fc, seed=fc.seed + k * fc.members))
        models.append(members_of(stage))
        out.append(evaluate_fusion(stage, replace(data, tables=result.tables), "test", candidates=fc.candidates))
    if seeds < 2 or fc.end_to_end:
        return out, None
    ensemble = FusionEnsemble([m for stage in models for m in stage]).eval()
    return out, evaluate_fusion(ensemble, data, "test", candidates=fc.candidates)


def train_all(store, run_dir: str | Path, config: RunConfig | None = None, *, stages=STAGES,
              progress: bool = False) -> dict:
    """Run ``stages`` (default all four, in order) into ``run_dir``; returns each stage's
    result by name (the fusion comparison, the value report, ...). Without the gnn stage,
    a folder it never ran in is a :class:`~kg.errors.RunFolderError` saying to run it
    first. The gnn, text and fusion stages drop the run's versions (``kgrec update``'s,
    folded from what they replace); the value stage alone keeps them (each version's value
    tables are recomputed by the update that wrote it, and serving reads the newer ones:
    :func:`fusion.value.results.newest_tables`). A value stage skipped for data it does not
    fit ends a retrain of the earlier stages (its result ``{"skipped": why, "removed_tables":
    bool}``) after :func:`drop_value_tables`; run on its own, it raises and keeps them."""
    from kg.pipeline import train_gnn

    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ConfigError(f"unknown stages {sorted(unknown)} ({', '.join(STAGES)})")
    run = RunDir(run_dir)
    if "gnn" not in stages:  # the later stages read its output: say so before writing anything
        run.need(run.graph, "gnn")
    config = config or RunConfig()
    config.save(run.path)
    if set(stages) - {"value"}:  # the value stage alone leaves the serving files (and their store version) as they are
        run.update_config(store=store.location(), store_version=store_version(store).to_dict())
    out: dict = {}
    if "gnn" in stages:
        out["gnn"] = train_gnn(store, run_dir, config.gnn, progress=progress).metrics
    if "text" in stages:
        out["text"] = run_text_stage(store, run_dir, config, progress=progress)
    if "fusion" in stages:
        out["fusion"] = run_fusion_stage(run_dir, config, progress=progress)
    if "value" in stages:
        from fusion.value.train import run_value_stage

        try:
            out["value"] = run_value_stage(run_dir, config.value, store=store, progress=progress)
        except (ConfigError, DataError) as exc:  # data the value models do not fit (no time span ...)
            if tuple(stages) == ("value",):
                raise
            removed = drop_value_tables(run)  # made from what the earlier stages just replaced
            out["value"] = {"skipped": str(exc), "removed_tables": removed}
            if progress:
                print(f"value stage skipped: {exc}" + ("; the previous training's value tables were removed"
                                                       if removed else ""), flush=True)
    return out


def drop_value_tables(run: RunDir) -> bool:
    """Remove ``value/`` of ``run`` and its entries in the manifest (the other entries stay
    as recorded, so a file changed behind kgrec's back is still caught); True if there was
    one. For a retrain whose value stage was skipped: the old tables were made from the
    graph and the vectors the earlier stages just replaced, and serving them (``kgrec
    value``, the potential / loyalty weights) would describe another data set. A value
    stage that fails on its own keeps them: they still match the trained run."""
    return run.drop_stage("value")
