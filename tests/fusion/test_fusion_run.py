"""A whole run on synthetic data -- build, GNN, text (tiny random BERT), fusion -- and the
Engine and CLI on top of it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fusion.cli import main
from fusion.engine import Engine
from fusion.pipeline import RunConfig, TextStageConfig, fusion_seeds, load_fusion_data, train_all
from fusion.ranking.config import FusionConfig
from fusion.text.encoder import random_checkpoint
from fusion.text.finetune import TextTrainConfig
from fusion.text.texts import product_texts
from kg.build import BuildConfig, build_graph
from kg.errors import UnknownIdError
from kg.pipeline import GnnRunConfig
from kg.stores import StoreConfig, open_store
from kg.train import TrainConfig
from loaders.synthetic import SyntheticConfig, generate

SHOP = SyntheticConfig(n_users=1500, n_items=400, n_interactions=75_000, n_queries=120, seed=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run_dir, db, comparison, dataset) of one full run."""
    root = tmp_path_factory.mktemp("fusion-run")
    dataset = generate(SHOP)
    db, run_dir = str(root / "graph"), root / "run"
    with open_store(StoreConfig(kind="embedded", path=db)) as store:
        build_graph(dataset, store, BuildConfig(progress=False))
    texts = list(product_texts(dataset.items)) + list(dataset.reviews["text"]) + list(dataset.judgements["query"])
    bert = random_checkpoint(root / "bert", texts, max_length=64)
    config = RunConfig(
        gnn=GnnRunConfig(train=TrainConfig(model="kgrec", epochs=100, lr=0.01, batch_size=2048, patience=5,
                                           eval_every=5, threads=1)),
        text=TextStageConfig(train=TextTrainConfig(checkpoint=str(bert), max_steps=20, batch_size=32,
                                                   max_length=64, anchor_max_length=32)),
        fusion=FusionConfig(epochs=12))
    with open_store(StoreConfig(kind="embedded", path=db), read_only=True) as store:
        out = train_all(store, run_dir, config)
    from fusion.ranking.comparison import markdown

    print(markdown(out["fusion"]))
    return run_dir, db, out["fusion"], dataset


def test_fused_model_is_best_at_predicting_purchases_and_clicks(run):
    _, _, results, _ = run
    fused = results["fused"]
    for name in ("popularity", "gnn", "text"):
        # the main metric: purchase probability over the test impressions (what recommend ranks by)
        assert fused["ctcvr_auc"] > results[name]["ctcvr_auc"], (name, results)
        assert fused["ctr_auc"] > results[name]["ctr_auc"], (name, results)
    assert fused["recall@10"] > results["popularity"]["recall@10"], results
    # a tiny random BERT reads the text here; the MiniLM figures are in bench/fusion_quality.py
    assert fused["search_ndcg@10"] > results["popularity"]["search_ndcg@10"] + 0.08, results
    # the CVR-on-clicks baseline is reported too, beside its like, the ensemble's first member
    assert "cvr_auc" in results["fused, CVR on clicks"]
    one = results["fused, one model"]
    assert 0 < one["recall@10"] <= 1 and one["ctcvr_auc"] != fused["ctcvr_auc"]  # one model, not the average
    # and the same model ranked without its exposure term (a shop with impressions): same AUCs
    plain = results["fused, without exposure"]
    assert plain["ctcvr_auc"] == fused["ctcvr_auc"] and 0 < plain["recall@10"] <= 1


def test_the_fused_rankers_difference_from_the_gnn_has_a_paired_standard_error(run):
    from fusion.ranking.comparison import PAIRED_SE, count_test_users, paired_recall, recall_note, recall_se
    from fusion.ranking.ensemble import load_fusion_model
    from fusion.ranking.features import FeatureTables
    from kg.run_dir import RunDir

    run_dir, _, results, _ = run
    folder = RunDir(run_dir)
    data = load_fusion_data(run_dir)
    data.tables = FeatureTables.load(folder.fusion_tables)
    pair = paired_recall(data, load_fusion_model(folder.fusion_model))
    # user by user, the same figures as the comparison table, and the run's report carries the paired SE
    assert pair["gnn"] == pytest.approx(results["gnn"]["recall@10"])
    assert pair["fused"] == pytest.approx(results["fused"]["recall@10"])
    assert pair["difference"] == pytest.approx(pair["fused"] - pair["gnn"])
    assert pair["paired_se"] == pytest.approx(results["fused"][PAIRED_SE])
    assert recall_note(results, data.split) in folder.comparison_md.read_text()
    assert f"paired standard error {pair['paired_se']:.4f}" in folder.comparison_md.read_text()
    # the fused ranker re-ranks the GNN's candidates, so the two hit and miss many of the same
    # users: the paired SE is under the SE of a difference of two independent Recalls
    n = count_test_users(data.split)
    independent = np.hypot(recall_se(pair["gnn"], n), recall_se(pair["fused"], n))
    assert 0 < pair["paired_se"] < independent, (pair, independent)


def test_run_folder_holds_every_stage(run):
    run_dir, *_ = run
    for path in ("run.json", "model.pt", "embeddings.npz", "text/encoder", "text/items", "text/users",
                 "catalogue/items.parquet", "fusion/model/ensemble.json", "fusion/model/member-0/config.json",
                 "fusion/model/member-4/model.pt", "fusion/tables.pt",
                 "fusion/exposure.pt",
                 "fusion/history.json", "fusion/examples.json", "comparison.md"):
        assert (run_dir / path).exists(), path
    config = RunConfig.load(run_dir)
    assert config.fusion.epochs == 12 and config.gnn.train.model == "kgrec"
    # what each stage ran with ("auto" threads resolved): the numbers to set to repeat it
    ran = json.loads((run_dir / "run.json").read_text())["ran_with"]
    assert {"gnn", "text", "fusion"} <= set(ran)
    assert all(isinstance(ran[s]["threads"], int) and ran[s]["threads"] >= 1 for s in ran), ran
    assert ran["gnn"]["threads"] == 1  # as configured
    assert ran["gnn"]["device"] in ("cpu", "cuda") and ran["fusion"]["device"] in ("cpu", "cuda"), ran
    examples = json.loads((run_dir / "fusion" / "examples.json").read_text())
    assert examples["kind"] == "impressions" and examples["counts"]["unattributed_clicks"] == 0


@pytest.fixture(scope="module")
def engine(run):
    run_dir, db, _, _ = run
    store = open_store(StoreConfig(kind="embedded", path=db), read_only=True).connect()
    yield Engine.open(run_dir, store=store)
    store.close()


def test_fused_top10_is_truly_worth_most_under_the_planted_truth(run, engine):
    """Counterfactual: the planted P(click) and P(purchase | click) of every top-10 --
    what each model's list would earn if the shop showed it (fusion.ranking.planted)."""
    from fusion.ranking.planted import fused_list, model_lists, planted_value
    from loaders.synthetic import ground_truth

    *_, dataset = run
    users = np.arange(len(engine.user_index))
    truth = ground_truth(dataset)
    table = planted_value(truth, engine, model_lists(engine, users, 10), users)
    print(table)
    for name in ("popularity", "gnn", "text"):
        assert table["fused"]["purchases"] > table[name]["purchases"], table
    by_value = planted_value(truth, engine, {"fused": fused_list(engine, users, 10, {"ctr": 1, "cvr": 1, "value": 1})},
                             users)["fused"]
    print(by_value)
    assert by_value["value"] > 1.2 * max(m["value"] for m in table.values()), (by_value, table)


def test_trained_weights_and_filters(engine):
    user = engine.user_index[10]
    value = engine.recommend(user, k=10, weights={"ctr": 1, "cvr": 1, "value": 1})
    clicks = engine.recommend(user, k=10, weights={"ctr": 1})
    mean = lambda rs, key: sum(r.objectives[key] for r in rs) / len(rs)  # noqa: E731
    assert mean(value, "value") > mean(clicks, "value")
    assert mean(clicks, "ctr") >= mean(value, "ctr")
    cheap = engine.recommend(user, k=10, filters={"max_price": 30})
    assert cheap and all(r.price is not None and r.price <= 30 for r in cheap)
    category = engine.catalogue.categories[0][0].split(" > ")[0]
    in_cat = engine.recommend(user, k=5, filters={"category": category})
    assert in_cat and all(any(p.startswith(category) for p in engine.catalogue.categories[
        engine.catalogue.index.get_loc(r.item_id)]) for r in in_cat)
    # the rest of the Engine's behaviour (typed results, seen products, cold start, bad
    # requests, the category cache, threads) is tested without training in test_engine.py


def test_search_similar_batch_and_explain(engine, run):
    *_, dataset = run
    j = dataset.judgements
    query = j.loc[j["relevance"] == 3, "query"].iloc[0]
    hits = engine.search(query, k=10)
    assert len(hits) == 10 and [r.score for r in hits] == sorted((r.score for r in hits), reverse=True)
    brand = engine.catalogue.brands[engine.catalogue.index.get_loc(hits[0].item_id)]
    branded = engine.search(query, k=5, filters={"brand": brand})
    assert branded and all(engine.catalogue.brands[engine.catalogue.index.get_loc(r.item_id)] == brand
                           for r in branded)
    with pytest.raises(ValueError, match="empty"):
        engine.search("  ")
    assert len(engine.search(query, user_id=engine.user_index[0], k=5)) == 5
    assert len(engine.search(query, user_id="nobody", k=5)) == 5
    item = engine.catalogue.ids[0]
    similar = engine.similar(item, k=5)
    assert len(similar) == 5 and item not in {r.item_id for r in similar}
    with pytest.raises(UnknownIdError):
        engine.similar("no-such-item")
    users = list(engine.user_index[:40]) + ["nobody"]
    batch = engine.recommend_batch(users, k=5, batch_size=16)
    assert [[r.item_id for r in rs] for rs in batch[:3]] == [[r.item_id for r in engine.recommend(u, k=5)]
                                                             for u in users[:3]]
    explained = engine.recommend(engine.user_index[0], k=3, explain=True)
    assert all(r.explanation is not None and r.explanation.sentence for r in explained)
    assert engine.recommend("nobody", k=2, explain=True)[0].explanation is None


def test_cli_reruns_the_fusion_stage_and_queries(run, capsys):
    run_dir, db, _, _ = run
    assert main(["train", "--stage", "fusion", "--run", str(run_dir), "--db", db, "--no-progress",
                 "--no-baselines", "--fusion-set", "epochs=2", "--fusion-set", "balancing=uncertainty"]) == 0
    out = capsys.readouterr().out
    assert "| fused |" in out and "| gnn |" in out and "paired standard error" in out  # comparison.md
    assert RunConfig.load(run_dir).fusion.balancing == "uncertainty"
    assert main(["recommend", "--run", str(run_dir), "--user", "nobody", "-k", "3"]) == 0
    assert "cold start" in capsys.readouterr().out
    user = Engine.open(run_dir).user_index[0]
    assert main(["recommend", "--run", str(run_dir), "--db", db, "--user", user, "--explain",
                 "--weights", "ctr=1,cvr=1,value=1", "--max-price", "100"]) == 0
    assert "why:" in capsys.readouterr().out
    # the run remembers its graph: no --db needed; an explicit --db still wins
    assert main(["recommend", "--run", str(run_dir), "--user", user, "-k", "3", "--explain"]) == 0
    assert "why:" in capsys.readouterr().out
    assert main(["explain", "--run", str(run_dir), "--user", user, "--item", Engine.open(run_dir).catalogue.ids[0]]) == 0
    assert f"for {user}:" in capsys.readouterr().out
    assert main(["recommend", "--run", str(run_dir), "--db", str(run_dir / "no-graph"), "--user", user,
                 "--explain"]) == 2
    assert "no graph at" in capsys.readouterr().err
    assert main(["search", "--run", str(run_dir), "--query", "headphones", "--user", user]) == 0
    assert " 10. " in capsys.readouterr().out
    assert main(["similar", "--run", str(run_dir), "--item", "nope"]) == 2
    assert "unknown item id 'nope'" in capsys.readouterr().err
    assert main(["train", "--stage", "fusion", "--run", str(run_dir / "missing"), "--db", db]) == 2
    assert "run the gnn stage first" in capsys.readouterr().err


def test_the_planted_ranking_sets_the_ceiling_of_the_logged_metric(run, engine):
    """The planted p_click x p_buy ranking through the logged Recall@10: above every model
    (a perfect click / purchase model would win on the logged metric too), and its
    re-ranking of the GNN's candidates above the GNN's own ranking."""
    from fusion.ranking.planted import planted_recall
    from kg.export import GraphExport
    from kg.run_dir import RunDir
    from loaders.synthetic import ground_truth

    run_dir, _, results, dataset = run
    ids, _ = GraphExport.read_id_maps(RunDir(run_dir).graph)
    ceiling = planted_recall(ground_truth(dataset), engine, RunDir(run_dir).load_split(), ids["user"], ids["product"])
    print(ceiling, {name: m["recall@10"] for name, m in results.items()})
    best = max(m["recall@10"] for m in results.values())
    assert ceiling["every product"] > best + 0.02, (ceiling, results)
    assert ceiling["the GNN's top-100"] > results["gnn"]["recall@10"], (ceiling, results)


def test_the_fusion_inputs_fit_to_the_planted_truth_earn_more_than_the_logged_fit(run, engine):
    """``fit_to_planted``: the fusion model trained on the planted probabilities instead of
    the logs -- its top-10s are worth more planted purchases than the fused model's (on the
    planted truth, the labels, not the inputs, limit the logged fit), and its logged
    metrics are measured."""
    from fusion.ranking.planted import fit_to_planted, fused_list, planted_value
    from kg.export import GraphExport
    from kg.run_dir import RunDir
    from loaders.synthetic import ground_truth

    run_dir, _, results, dataset = run
    truth = ground_truth(dataset)
    ids, _ = GraphExport.read_id_maps(RunDir(run_dir).graph)
    config = RunConfig.load(run_dir).fusion
    fit = fit_to_planted(load_fusion_data(run_dir, config.examples), truth, ids["user"], ids["product"], config,
                         epochs=3)
    users = np.arange(len(engine.user_index))
    fused = planted_value(truth, engine, {"fused": fused_list(engine, users, 10)}, users)["fused"]
    print(fit, fused, results["fused"])
    assert fit["purchases"] > fused["purchases"] + 0.1, (fit, fused)
    assert 0 < fit["ndcg@10"] <= fit["recall@10"] <= 1, fit


def test_a_fusion_ensemble_is_trained_saved_and_served(run, capsys):
    """``members=2``: the fusion stage trains two models (seeds 0 and 1), saves them as
    one ensemble, and the Engine scores with the mean of their logits; ``fusion_seeds``
    (the bench's seeds) trains the stage again as configured: another ensemble of two."""
    import torch

    from fusion.ranking.ensemble import FusionEnsemble, load_fusion_model
    from fusion.ranking.model import FusionModel
    from fusion.ranking.scorer import Scorer
    from fusion.ranking.train import evaluate_fusion
    from kg.run_dir import RunDir

    run_dir, db, _, _ = run
    assert main(["train", "--stage", "fusion", "--run", str(run_dir), "--db", db, "--no-progress",
                 "--no-baselines", "--fusion-set", "epochs=2", "--fusion-set", "members=2"]) == 0
    assert "| fused |" in capsys.readouterr().out
    assert RunConfig.load(run_dir).fusion.members == 2
    folder = RunDir(run_dir).fusion_model
    model = load_fusion_model(folder)
    assert isinstance(model, FusionEnsemble) and len(model.members) == 2
    members = [FusionModel.load(folder / f"member-{k}") for k in range(2)]
    engine = Engine.open(run_dir)
    users, items = torch.tensor([0, 0, 1, 2]), torch.tensor([3, 5, 7, 11])
    with torch.no_grad():
        got = engine.current.scorer.logits(users, items)
        single = [Scorer(m, engine.tables).logits(users, items) for m in members]
    for task in ("ctr", "cvr", "value"):
        want = (single[0][task] + single[1][task]) / 2
        if task == "value":  # serving caps it (fusion.ranking.features.value_caps)
            want = torch.minimum(want, engine.tables.value_cap[items])
        torch.testing.assert_close(got[task], want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(single[0]["ctr"], single[1]["ctr"])  # two seeds, two models
    assert len(engine.recommend(engine.user_index[0], k=5)) == 5
    # the bench's seeds on this run: stage 0 is the run's own ensemble (its metrics given),
    # stage 1 another ensemble of two (seeds 2 and 3), and all four models averaged
    config = RunConfig.load(run_dir)
    own = {"recall@10": -1.0}
    per_seed, averaged = fusion_seeds(run_dir, config, 2, first=own)
    assert len(per_seed) == 2 and per_seed[0] is own and 0 <= per_seed[1]["recall@10"] <= 1
    assert 0 <= averaged["recall@10"] <= 1
    data = load_fusion_data(run_dir, config.fusion.examples)
    data.tables = engine.tables
    assert per_seed[1] != evaluate_fusion(model, data, "test", candidates=config.fusion.candidates)


def test_a_gnn_retrain_after_the_fusion_stage_is_refused_until_fusion_is_retrained(run, tmp_path, capsys):
    """The fusion tables hold copies of the GNN and text vectors they were trained on; after
    ``train --stage gnn`` serving them (and folding users in against the new item vectors
    with ``kgrec update``) would mix two trainings. The run says so -- verify, serve and
    update refuse, naming the stage to retrain -- until the fusion stage is retrained."""
    import shutil

    from kg.errors import IntegrityError

    run_dir, db, _, _ = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert main(["verify", "--run", str(copy)]) == 0
    capsys.readouterr()
    assert main(["train", "--stage", "gnn", "--run", str(copy), "--db", db, "--epochs", "1", "--no-progress"]) == 0
    assert ("note: the fusion stage still holds the gnn vectors it was trained with; retrain it to serve these: "
            f"kgrec train --stage fusion --run {copy} -- until then verify, serve and update refuse the run"
            in capsys.readouterr().out)
    with pytest.raises(IntegrityError, match="retrain it: kgrec train --stage fusion") as err:
        Engine.open(copy)
    assert err.value.stage == "fusion"
    assert main(["verify", "--run", str(copy)]) != 0
    assert "the fusion stage was trained on the GNN and text stages as they were" in capsys.readouterr().err
    assert main(["update", "--run", str(copy), "--db", db]) != 0
    assert "--stage fusion" in capsys.readouterr().err
    assert main(["train", "--stage", "fusion", "--run", str(copy), "--db", db, "--no-progress", "--no-baselines",
                 "--fusion-set", "epochs=1"]) == 0
    capsys.readouterr()
    assert len(Engine.open(copy).recommend(Engine.open(copy).user_index[0], k=3)) == 3
    assert main(["verify", "--run", str(copy)]) == 0
