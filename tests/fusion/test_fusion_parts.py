"""The fusion stage's parts on hand-made inputs: labels, parts, losses, balancing, scores, metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import HeteroData

from fusion.ranking.config import FusionConfig
from fusion.ranking.examples import ExampleConfig, ExampleSet, build_examples, build_relevance
from fusion.ranking.features import FeatureTables
from fusion.ranking.train import relevance_batch, task_losses, with_candidate_negatives
from fusion.ranking.loss_balancing import make_balancer
from fusion.ranking.metrics import auc, search_ndcg
from fusion.ranking.fused import FusedFusionModel
from fusion.ranking.model import TASKS, FusionModel
from fusion.ranking.scorer import Scorer
from fusion.ranking.scoring import check_weights, objectives, ranking_score
from kg.errors import ConfigError, RunFolderError
from kg.split import Split


def _graph(events: dict[str, list[tuple[int, int, int, float]]], users: int = 3, items: int = 4) -> HeteroData:
    data = HeteroData()
    data["user"].num_nodes, data["product"].num_nodes = users, items
    for rel, rows in events.items():
        u, i, t, v = (list(x) for x in zip(*rows))
        store = data["user", rel, "product"]
        store.edge_index = torch.tensor([u, i])
        store.time, store.value = torch.tensor(t), torch.tensor(v, dtype=torch.float)
        store.split = torch.zeros(len(u), dtype=torch.long)
    return data


def _split(users=3, items=4, valid=((), ()), test=((), ())) -> Split:
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    arr = lambda p: (np.array(p[0], np.int64), np.array(p[1], np.int64)) if p[0] else empty  # noqa: E731
    return Split(users, items, empty, arr(valid), arr(test))


def test_impression_funnel_labels_and_unattributed_counts():
    data = _graph({
        "shown": [(0, 1, 100, 1), (0, 1, 500, 1), (0, 2, 100, 1), (1, 3, 100, 1)],
        "clicked": [(0, 1, 510, 1), (2, 0, 50, 1)],          # 2nd impression of (0,1); (2,0) never shown
        "purchased": [(0, 1, 545, 2), (1, 3, 150, 1)],        # (1,3) bought without a click
    })
    prices = np.array([1.0, 5.0, np.nan, 3.0])
    ex = build_examples(data, _split(), prices, ExampleConfig(unshown_negatives=0))
    rows = {(int(u), int(i), int(t)): (c, v, val) for u, i, t, c, v, val in
            zip(ex.user, ex.item, ex.time, ex.click, ex.conversion, ex.value)}
    assert ex.kind == "impressions" and len(ex) == 4
    assert rows[(0, 1, 100)] == (0, 0, 0)            # the earlier impression did not lead to the click
    assert rows[(0, 1, 500)] == (1, 1, 10.0)         # clicked, bought 2 x 5.0
    assert rows[(0, 2, 100)] == (0, 0, 0)
    assert rows[(1, 3, 100)] == (0, 0, 0)
    assert ex.counts["unattributed_clicks"] == 1 and ex.counts["unattributed_purchases"] == 1
    assert ex.counts["clicks"] == 2 and ex.counts["purchases"] == 2


def test_unshown_negatives_are_items_the_user_never_touched():
    data = _graph({"shown": [(0, 0, 10, 1), (0, 1, 20, 1)], "clicked": [(0, 0, 15, 1)],
                   "purchased": [(0, 0, 50, 1)]}, users=1, items=6)
    ex = build_examples(data, _split(1, 6), np.ones(6), ExampleConfig(unshown_negatives=20))
    neg = ex.sampled
    assert neg.sum() == 20 and not set(ex.item[neg]) & {0, 1}
    assert ex.click[neg].sum() == 0 and (ex.time[neg] == 10).all()
    assert (ex.scored() == ~neg).all()  # AUCs are measured on logged impressions only


def test_sampled_negatives_never_label_an_engaged_pair_when_the_catalogue_is_small():
    # implicit source, 2 products: user 0 engaged with both (no unseen product: no negative),
    # user 1 with product 0 (every negative is product 1). Before the fix the draws that still
    # collided after the redraws were kept, labelled click = conversion = 0.
    data = _graph({"viewed": [(0, 0, 10, 1), (0, 1, 20, 1), (1, 0, 30, 1)],
                   "purchased": [(0, 1, 25, 1)]}, users=2, items=2)
    ex = build_examples(data, _split(2, 2), np.ones(2), ExampleConfig(negatives_per_positive=4))
    neg = ex.sampled
    assert set(zip(ex.user[neg].tolist(), ex.item[neg].tolist())) == {(1, 1)} and neg.sum() == 4
    assert ex.counts["sampled_negatives"] == 4 and ex.counts["negatives_without_unseen_product"] == 8
    assert all(len(a) == len(ex) == 3 + 4 for a in (ex.item, ex.time, ex.click, ex.conversion, ex.value, ex.part))
    # impressions: the user was shown, and so touched, every product: no unshown negative
    shown = _graph({"shown": [(0, 0, 10, 1), (0, 1, 20, 1)], "clicked": [(0, 0, 15, 1)],
                    "purchased": [(0, 0, 50, 1)]}, users=1, items=2)
    ex = build_examples(shown, _split(1, 2), np.ones(2), ExampleConfig(unshown_negatives=5))
    assert not ex.sampled.any() and len(ex) == 2 and ex.counts["negatives_without_unseen_product"] == 5


def test_a_held_out_positive_is_never_its_own_test_negative():
    # one customer who engaged with all 3 products, the last held out: the test part has the
    # positive and no negative, so its CTR AUC is NaN ("—"), not 0.0 from negatives the user bought
    data = _graph({"viewed": [(0, 0, 10, 1), (0, 1, 20, 1), (0, 2, 30, 1)]}, users=1, items=3)
    ex = build_examples(data, _split(1, 3, test=([0], [2])), np.ones(3), ExampleConfig(negatives_per_positive=4))
    test = ex.select(2)
    assert test.item.tolist() == [2] and not test.sampled.any()
    assert math.isnan(auc(np.zeros(len(test)), test.click))


def test_implicit_source_conversion_is_a_satisfied_rating():
    data = _graph({"rated": [(0, 0, 10, 5.0), (0, 1, 20, 2.0), (1, 2, 30, 4.0)]})
    ex = build_examples(data, _split(), np.array([2.0, 3.0, 4.0, 5.0]),
                        ExampleConfig(negatives_per_positive=2))
    real = ~ex.sampled
    got = dict(zip(zip(ex.user[real], ex.item[real]), ex.conversion[real]))
    assert got == {(0, 0): 1, (0, 1): 0, (1, 2): 1}
    assert ex.counts["rule"] == "rating>=4" and ex.sampled.sum() == 6
    assert ex.value[real].tolist() == [2.0, 0.0, 4.0]


def test_parts_follow_the_gnn_split_and_later_events_of_the_user():
    data = _graph({"shown": [(0, 0, 10, 1), (0, 1, 20, 1), (0, 2, 30, 1), (1, 0, 40, 1)]})
    ex = build_examples(data, _split(test=([0], [1])), np.ones(4), ExampleConfig(unshown_negatives=0))
    part = dict(zip(zip(ex.user, ex.item), ex.part))
    assert part == {(0, 0): 0, (0, 1): 2, (0, 2): 2, (1, 0): 0}


def test_relevance_examples_and_sampled_negatives_keep_judged_grades():
    judgements = pd.DataFrame({"query": ["a", "a", "b"], "item_id": ["x", "y", "x"], "relevance": [3, 0, 1]})
    index = {"x": 0, "y": 1, "z": 2}
    rel = build_relevance(judgements, lambda ids: np.array([index.get(i, -1) for i in ids]))
    assert rel.queries.tolist() == ["a", "b"] and rel.target.tolist() == pytest.approx([1.0, 0.0, 1 / 3])
    q, i, target = relevance_batch(rel, np.arange(3), 50, 3, np.random.default_rng(0))
    judged = {(0, 0): 1.0, (0, 1): 0.0, (1, 0): 1 / 3}
    for qq, ii, tt in zip(q, i, target):
        assert tt == pytest.approx(judged.get((int(qq), int(ii)), 0.0))
    with pytest.raises(ValueError, match="'nope'"):
        build_relevance(pd.DataFrame({"query": ["a"], "item_id": ["nope"], "relevance": [1]}),
                        lambda ids: np.array([index.get(i, -1) for i in ids]))


def test_candidate_negatives_come_from_the_users_gnn_top_n_and_skip_logged_pairs():
    # 2 users, 6 products on a line: user 0 prefers products 0..2, user 1 products 3..5
    item_gnn = torch.tensor([[3.0, 0], [2.9, 0], [2.8, 0], [0, 3.0], [0, 2.9], [0, 2.8]])
    user_gnn = torch.tensor([[1.0, 0], [0, 1.0]])
    z = torch.zeros
    tables = FeatureTables(user_gnn, item_gnn, z(6, 2), z(2, 2), z(2, 3), z(6, 7))
    f = np.float32
    train = ExampleSet(np.array([0, 0, 1]), np.array([0, 5, 3]), np.array([1, 2, 3]), np.array([1, 0, 1], f),
                       np.array([1, 0, 1], f), np.array([5, 0, 0], f), np.array([0, 0, 1], np.int8),
                       "impressions", np.zeros(3, bool))
    out = with_candidate_negatives(train, tables, per=50, depth=3, rng=np.random.default_rng(0))
    assert len(out) == 3 + 2 * 50 and out.counts["candidate_negatives"] == 100
    new = slice(3, None)
    u, i = out.user[new], out.item[new]
    # user 0: top-3 is {0, 1, 2}, 0 is logged -> {1, 2}; user 1: top-3 {3, 4, 5}, 3 logged -> {4, 5}
    assert set(i[u == 0]) == {1, 2} and set(i[u == 1]) == {4, 5}
    assert out.sampled[new].all() and not out.click[new].any() and not out.conversion[new].any()
    assert (out.part[new][u == 1] == 1).all() and (out.time[new][u == 0] == 1).all()
    assert with_candidate_negatives(train, tables, 0, 3, np.random.default_rng(0)) is train


def _inputs(b=6, dg=8, dt=12):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return (r(b, dg), r(b, dg), r(b, dt), r(b, dt), r(b, dt), r(b, 3), r(b, 7),
            torch.ones(b, dtype=torch.bool), torch.zeros(b, dtype=torch.bool))


@pytest.mark.parametrize("experts", [1, 3])
def test_model_outputs_one_logit_per_task(experts):
    model = FusionModel(8, 12, 3, 7, num_experts=experts)
    out = model(*_inputs())
    assert set(out) == set(TASKS) and all(v.shape == (6,) for v in out.values())


@pytest.mark.parametrize("experts, raw_gnn, without", [(1, False, ()), (4, True, ()), (3, True, ("text",))])
def test_the_serving_model_computes_what_the_trained_model_does(experts, raw_gnn, without):
    """FusedFusionModel (experts, gates and towers stacked, the input norm's scale and shift
    folded into the layers that read it; what the Engine scores with) gives the eval-mode
    model's logits for every task, with and without a query: to float32 rounding, and to
    1e-10 in float64 (the same function, summed in another order)."""
    torch.manual_seed(experts)
    model = FusionModel(8, 12, 3, 7, num_experts=experts, raw_gnn=raw_gnn, without=without).eval()
    for p in model.parameters():  # trained-like weights: biases and gates far from their init
        p.data.normal_(0, 0.5)
    x = list(_inputs(b=9))
    x[8] = torch.tensor([0, 1] * 4 + [1], dtype=torch.bool)  # some rows with a query
    for dtype, tolerance in ((torch.float32, 1e-4), (torch.float64, 1e-10)):
        model = model.to(dtype)
        fused = FusedFusionModel(model)
        x = [v.to(dtype) if v.is_floating_point() else v for v in x]
        with torch.inference_mode():
            want, got = model(*x), fused(*x)
            assert set(got) == set(TASKS) and all(got[t].shape == (9,) and got[t].dtype == dtype for t in TASKS)
            for t in TASKS:
                torch.testing.assert_close(got[t], want[t], rtol=tolerance, atol=tolerance)
            one = fused(*(v[:1] for v in x))  # one row, as a single search result is scored
            assert all(torch.allclose(one[t], want[t][:1], rtol=tolerance, atol=tolerance) for t in TASKS)


@pytest.mark.parametrize("experts, raw_gnn, without", [(1, False, ()), (3, True, ("side",))])
def test_the_serving_model_of_an_ensemble_stacks_its_members(experts, raw_gnn, without):
    """Five members of one shape are served as one FusedFusionModel (members stacked)
    that gives the ensemble's mean logits, for batches of many rows and of one."""
    from fusion.ranking.ensemble import FusionEnsemble
    from fusion.ranking.fused import serving_model

    members = []
    for seed in range(5):
        torch.manual_seed(seed)
        member = FusionModel(8, 12, 3, 7, num_experts=experts, raw_gnn=raw_gnn, without=without).eval()
        for p in member.parameters():
            p.data.normal_(0, 0.5)
        member.set_scalar_stats(torch.randn(3), torch.rand(3) + 0.5)
        members.append(member)
    ensemble = FusionEnsemble(members).eval()
    served = serving_model(ensemble)
    assert isinstance(served, FusedFusionModel) and served.members == 5
    x = list(_inputs(b=9))
    x[8] = torch.tensor([0, 1] * 4 + [1], dtype=torch.bool)
    with torch.inference_mode():
        want = ensemble(*x)
        for rows in (slice(None), slice(0, 1)):
            got = served(*(v[rows] for v in x))
            for t in TASKS:
                torch.testing.assert_close(got[t], want[t][rows], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(want["ctr"], members[0](*x)["ctr"])  # not one member's
    with pytest.raises(ValueError, match="one configuration"):
        FusedFusionModel([members[0], FusionModel(8, 12, 3, 7, num_experts=experts + 1)])


def test_an_ensemble_scores_with_the_mean_of_its_members_logits():
    """FusionEnsemble: every task's logit is the members' mean; the ranking score follows
    from those averaged logits, and the Scorer takes the ensemble like one model."""
    from fusion.ranking.ensemble import FusionEnsemble
    from fusion.ranking.scoring import RECOMMEND_WEIGHTS, ranking_score

    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(FusionModel(8, 12, 3, 7, num_experts=2).eval())
    ensemble = FusionEnsemble(members).eval()
    x = _inputs(b=5)
    with torch.no_grad():
        outs = [m(*x) for m in members]
        got = ensemble(*x)
        for t in TASKS:
            torch.testing.assert_close(got[t], (outs[0][t] + outs[1][t] + outs[2][t]) / 3)
        assert not torch.allclose(got["ctr"], outs[0]["ctr"])  # the members differ
        single = ranking_score(outs[0], RECOMMEND_WEIGHTS)
        assert ranking_score(got, RECOMMEND_WEIGHTS).shape == single.shape
    assert FusionEnsemble([members[0]])(*x)["cvr"].allclose(outs[0]["cvr"])
    with pytest.raises(ValueError, match="at least one model"):
        FusionEnsemble([])


def test_an_ensemble_saves_loads_and_serves_fused(tmp_path):
    """FusionEnsemble.save / load_fusion_model round trip (and a single model through the
    same loader); the Engine's serving form of an ensemble gives the ensemble's logits."""
    from fusion.ranking.ensemble import FusionEnsemble, load_fusion_model
    from fusion.ranking.fused import serving_model

    torch.manual_seed(0)
    ensemble = FusionEnsemble([FusionModel(8, 12, 3, 7, num_experts=k) for k in (1, 3)]).eval()
    x = _inputs(b=4)
    loaded = load_fusion_model(ensemble.save(tmp_path / "ensemble"))
    single = load_fusion_model(ensemble.members[1].save(tmp_path / "single"))
    assert isinstance(loaded, FusionEnsemble) and isinstance(single, FusionModel)
    with torch.no_grad():
        want = ensemble(*x)
        for model in (loaded, serving_model(loaded)):
            got = model(*x)
            for t in TASKS:
                torch.testing.assert_close(got[t], want[t], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(single(*x)["ctr"], ensemble.members[1](*x)["ctr"])
    for text in ("{not json", '{"members": 0}'):
        (tmp_path / "ensemble" / "ensemble.json").write_text(text)
        with pytest.raises(RunFolderError, match="ensemble.json"):
            load_fusion_model(tmp_path / "ensemble")
    with pytest.raises(ConfigError, match="members must be at least 1"):
        FusionConfig(members=0)
    with pytest.raises(ConfigError, match="end_to_end=False"):
        FusionConfig(members=2, end_to_end=True)


def test_an_input_group_left_out_changes_nothing_when_it_changes(tmp_path):
    """``without`` (the input ablation of bench/fusion_quality.py --ablation): the left-out
    group's values do not reach any logit; the other groups still do."""
    torch.manual_seed(0)
    model = FusionModel(8, 12, 3, 7, without=("gnn", "side")).eval()
    x = list(_inputs())
    base = model(*x)
    changed = list(x)
    for k in (0, 1, 5, 6):  # user/item GNN, user/item side
        changed[k] = x[k] * 3 + 1
    assert all(torch.equal(base[t], model(*changed)[t]) for t in TASKS)
    changed[2] = x[2] * 3 + 1  # item text still counts
    assert not torch.equal(base["ctr"], model(*changed)["ctr"])
    assert FusionModel.load(model.save(tmp_path / "m")).without == {"gnn", "side"}
    with pytest.raises(ConfigError, match="unknown input groups"):
        FusionConfig(without="gnn,price")
    assert FusionConfig(without="gnn,text").without == ("gnn", "text")


def test_esmm_trains_cvr_on_every_impression_and_the_baseline_on_clicks_only():
    logits = {t: torch.zeros(4, requires_grad=True) for t in TASKS}
    click = torch.tensor([1.0, 0.0, 0.0, 1.0])
    conv = torch.tensor([1.0, 0.0, 0.0, 0.0])
    value = torch.tensor([7.0, 0.0, 0.0, 0.0])
    for esmm, unclicked_grad in ((True, True), (False, False)):
        losses = task_losses(logits, click, conv, value, esmm)
        (grad,) = torch.autograd.grad(losses["cvr"], logits["cvr"])
        assert bool((grad[1:3] != 0).any()) == unclicked_grad
        assert set(losses) == {"ctr", "cvr", "value"}
    # ESMM: the CTCVR probability of 0.25 for logits 0, 0
    losses = task_losses(logits, click, conv, value, True)
    assert losses["cvr"].item() == pytest.approx(-(math.log(0.25) + 3 * math.log(0.75)) / 4, rel=1e-5)


@pytest.mark.parametrize("method", ["fixed", "uncertainty", "gradnorm"])
def test_loss_balancers_combine_and_adapt(method):
    torch.manual_seed(0)
    model = FusionModel(8, 12, 3, 7, num_experts=2)
    balancer = make_balancer(method, TASKS, {"ctr": 2.0})
    opt = torch.optim.SGD(list(model.parameters()) + balancer.trainable(), lr=0.1)
    before = balancer.weights()
    for _ in range(5):
        out = model(*_inputs())
        losses = {t: (out[t] - k) .pow(2).mean() for k, t in enumerate(TASKS)}
        loss = balancer.combine(losses, model.shared_parameters())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = balancer.weights()
    if method == "fixed":
        assert after == before and after["ctr"] == 2.0
    else:
        assert after != before
    if method == "gradnorm":
        assert sum(after.values()) == pytest.approx(len(TASKS))


def test_ranking_score_is_the_weighted_log_of_the_objectives():
    logits = {"ctr": torch.tensor([0.0, 2.0]), "cvr": torch.tensor([1.0, -1.0]),
              "value": torch.tensor([0.5, 3.0]), "relevance": torch.tensor([0.0, 0.0])}
    obj = objectives(logits)
    assert torch.allclose(ranking_score(logits, {"ctr": 1, "cvr": 1}), torch.log(obj["ctcvr"]))
    expected = torch.log(obj["ctcvr"]) + torch.log1p(obj["value"])
    assert torch.allclose(ranking_score(logits, {"ctr": 1, "cvr": 1, "value": 1}), expected, atol=1e-6)
    with pytest.raises(ValueError, match="clicks"):
        check_weights({"clicks": 1}, {})


def test_auc_and_search_ndcg_match_their_definitions():
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=200), rng.random(200) < 0.3
    pairs = np.mean([(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]])
    assert auc(s, y) == pytest.approx(pairs)
    assert math.isnan(auc([1, 2], [0, 0]))
    # one query, judged items 0 (grade 2) and 3 (grade 1); ranking 3, 0, 1, 2
    score = lambda q: torch.tensor([[3.0, 2.0, 1.0, 4.0]])  # noqa: E731
    got = search_ndcg(score, np.array([0, 0]), np.array([0, 3]), np.array([2.0, 1.0]), [0], k=10)
    dcg = 1 / math.log2(2) + 3 / math.log2(3)
    ideal = 3 / math.log2(2) + 1 / math.log2(3)
    assert got == pytest.approx(dcg / ideal)


def test_without_test_pairs_the_baseline_rows_read_a_dash_not_zero():
    from fusion.ranking.comparison import baselines, markdown, recall_note
    from fusion.ranking.train import FusionData

    # every user with 2 products: nothing held out for test
    data = _graph({"viewed": [(0, 0, 10, 1), (0, 1, 20, 1), (1, 1, 30, 1), (1, 2, 40, 1)]}, users=2, items=3)
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    split = Split(2, 3, (np.array([0, 0, 1, 1]), np.array([0, 1, 1, 2])), none, none)
    ex = build_examples(data, split, np.ones(3), ExampleConfig(negatives_per_positive=1))
    z = torch.zeros
    tables = FeatureTables(torch.ones(2, 2), torch.ones(3, 2), z(3, 2), z(2, 2), z(2, 3), z(3, 7))
    results = baselines(FusionData(tables, ex, split))
    assert all(math.isnan(results[row][m]) for row in ("popularity", "gnn", "text") for m in ("recall@10", "ndcg@10"))
    table = markdown(results)
    assert "0.0000" not in table and "| popularity | — | — |" in table
    assert recall_note(results, split).startswith("No test pairs: ")


def test_recall_note_gives_one_standard_error_per_model():
    from fusion.ranking.comparison import recall_note

    split = _split(users=5, test=([0, 1, 2, 3], [0, 1, 2, 3]))
    note = recall_note({"gnn": {"recall@10": 0.5}, "text": {"search_ndcg@10": 0.7}}, split)
    assert note == "4 test users; one standard error of Recall@10: gnn 0.2500"  # sqrt(0.25 / 4)
    from fusion.ranking.comparison import PAIRED_SE

    note = recall_note({"gnn": {"recall@10": 0.5}, "fused": {"recall@10": 0.75, PAIRED_SE: 0.25}}, split)
    assert note == ("4 test users; one standard error of Recall@10: gnn 0.2500, fused 0.2165; "
                    "fused − GNN +0.2500, paired standard error 0.2500")


def test_value_caps_bound_a_product_by_its_price_and_the_training_quantities(tmp_path):
    """Bought (with a known value): price x the largest quantity of a training line; never
    bought: price x the mean quantity; no price: the category's median price, else the
    shop's. Valid and test purchases count for nothing; the tables keep the caps on disk."""
    from fusion.ranking.features import value_caps

    items = pd.DataFrame({"item_id": ["a", "b", "c", "d", "e", "f"], "price": [10.0, 20.0, np.nan, 30.0, np.nan, 0.0],
                          "categories": [["X"], ["X"], ["X"], ["Y"], [], ["Y"]]})
    f = np.float32
    # a bought once (quantity 1) and twice (2), b 3 at once, d once in training and 10 at once in the test part
    examples = ExampleSet(np.array([0, 1, 2, 0, 3]), np.array([0, 0, 1, 3, 3]), np.arange(5), np.ones(5, f),
                          np.ones(5, f), np.array([10, 20, 60, 30, 300], f), np.array([0, 0, 0, 0, 2], np.int8),
                          "implicit", np.zeros(5, bool))
    caps = value_caps(items, np.array(["a", "b", "c", "d", "e", "f", "zz"], dtype=object), examples)
    q_max, q_mean = 3.0, (1 + 2 + 3 + 1) / 4
    # c: X's median price 15; e: no category -> the shop's median 15; zz: not in the catalogue
    want = [10 * q_max, 20 * q_max, 15 * q_mean, 30 * q_max, 15 * q_mean, 0.0, 15 * q_mean]
    assert np.exp(caps.numpy()) == pytest.approx(want, rel=1e-5)
    no_value = ExampleSet(*(x[:1] for x in (examples.user, examples.item, examples.time, examples.click,
                                           examples.conversion)), np.zeros(1, f), np.zeros(1, np.int8), "implicit")
    assert value_caps(items, np.array(["a"], dtype=object), no_value) is None

    z = torch.zeros
    tables = FeatureTables(z(2, 2), z(7, 2), z(7, 2), z(2, 2), z(2, 3), z(7, 7), caps)
    tables.save(tmp_path / "t.pt")
    assert torch.equal(FeatureTables.load(tmp_path / "t.pt").value_cap, caps)
    FeatureTables(*(getattr(tables, f) for f in ("user_gnn", "item_gnn", "item_text", "user_text", "user_side",
                                                  "item_side"))).save(tmp_path / "old.pt")
    assert FeatureTables.load(tmp_path / "old.pt").value_cap is None  # a run trained before the caps

    model = FusionModel(2, 2, 3, 7).eval()
    with torch.no_grad():
        model.towers["value"][-1].bias.fill_(50.0)  # an extrapolating value head
    users, rows = torch.zeros(7, dtype=torch.long), torch.arange(7)
    assert (Scorer(model, tables).logits(users, rows)["value"] > 40).all()  # training's scorer: uncapped
    capped = Scorer(model, tables, capped=True).logits(users, rows)["value"]
    assert torch.equal(capped, caps)
