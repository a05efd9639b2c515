"""KGModel: shapes, attention normalisation, the use_kg ablation, gradients, and that it
learns the planted structure of the synthetic data far better than popularity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kg.export import KnowledgeTriples
from kg.models import Recommender
from kg.models.base import Contrastive
from kg.models.kg_model import KGModel, merged_links, shuffle_tails, without_relations
from kg.sparse import normalized_adjacency

U, I, D = 12, 9, 8


def toy_triples(perm: torch.Tensor | None = None, drop: int = 0) -> KnowledgeTriples:
    """9 items, 2 brands (9, 10), 3 categories (11-13), 4 entities (14-17); 5 relations."""
    items = torch.arange(I)
    head = torch.cat([items, items, items[:6], torch.tensor([14, 15, 16])])
    tail = torch.cat([9 + items % 2, 11 + items % 3, 14 + items[:6] % 4, torch.tensor([15, 16, 17])])
    rel = torch.cat([torch.full((I,), 0), torch.full((I,), 1), torch.full((6,), 2), torch.tensor([3, 4, 4])])
    if perm is not None:
        head, rel, tail = head[perm], rel[perm], tail[perm]
    if drop:
        head, rel, tail = head[drop:], rel[drop:], tail[drop:]
    return KnowledgeTriples(18, ["has_brand", "in_category", "linked_to", "related:a", "related:b"],
                            head, rel, tail, {"product": 0, "brand": 9, "category": 11, "entity": 14})


def toy_adjacency() -> torch.Tensor:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(U), 3)
    items = rng.integers(0, I, len(users))
    return normalized_adjacency(users, items, U, I)


def make(use_kg: bool = True, triples: KnowledgeTriples | None = None, seed: int = 0, **kw) -> KGModel:
    torch.manual_seed(seed)
    return KGModel(U, I, triples if triples is not None else toy_triples(), toy_adjacency(), D, 2,
                   use_kg=use_kg, **kw)


def test_shapes_repr_and_protocol():
    m = make(heads=2)
    assert isinstance(m, Recommender)
    u, i = m.embeddings()
    assert u.shape == (U, D) and i.shape == (I, D)
    users = torch.tensor([0, 3, 5])
    assert m.score(users).shape == (3, I)
    assert torch.allclose(m.score(users), u[users] @ i.T, atol=1e-6)
    assert torch.allclose(m.score(users, (u, i)), m.score(users))
    loss, parts = m.loss(users, torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6]), l2=1e-4)
    assert loss.dim() == 0 and torch.isfinite(loss) and {"bpr", "reg"} <= set(parts)
    loss, _ = m.loss(users, torch.tensor([1, 2, 3]), torch.randint(0, I, (3, 4)))  # [B, n] negatives
    assert torch.isfinite(loss)
    text = repr(m)
    assert text.startswith("KGModel(") and "num_entities=18" in text and "num_relations=5" in text
    assert "triples=27" in text and "heads=2" in text and "use_kg=True" in text
    assert m.knowledge().shape == (I, D)


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_attention_sums_to_one_per_head_node(heads):
    m = make(heads=heads)
    for layer in range(m.kg_layers):
        pi, head, rel = m.attention(layer)
        assert pi.shape == (len(head), heads) and len(rel) == len(head)
        assert (pi >= 0).all()
        sums = torch.zeros(m.num_entities, heads).index_add_(0, head, pi)
        present = torch.unique(head)
        assert torch.allclose(sums[present], torch.ones(len(present), heads), atol=1e-5)
        absent = torch.ones(m.num_entities, dtype=torch.bool)
        absent[present] = False
        assert (sums[absent] == 0).all()
    # the last layer only keeps triples whose head is an item (the rest cannot reach the items)
    assert (m.attention(m.kg_layers - 1)[1] < I).all()
    # attention is relation-aware: changing one relation embedding changes the weights
    before = m.attention(0)[0].clone()
    with torch.no_grad():
        m.relation_emb[1] += 1.0
    assert not torch.allclose(before, m.attention(0)[0])


def test_use_kg_false_ignores_triples():
    base = make(use_kg=False)
    users = torch.arange(U)
    ref = base.score(users)
    perm = torch.randperm(27, generator=torch.Generator().manual_seed(1))
    for triples in (toy_triples(perm=perm), toy_triples(drop=10), None):
        other = make(use_kg=False, triples=triples)
        assert torch.equal(other.score(users), ref)
        assert other.num_relations == 0 and other.kg_head.numel() == 0
    # and it is exactly LightGCN on interactions: layer mean of Â^k [users; items]
    adj = toy_adjacency().to_dense()
    x = torch.cat([base.user_emb, base.entity_emb[:I]]).detach()
    layers = [x]
    for _ in range(base.num_layers):
        layers.append(adj @ layers[-1])
    mean = torch.stack(layers).mean(0)
    assert torch.allclose(ref, mean[:U] @ mean[U:].T, atol=1e-5)
    # while with the KG, the triples matter
    with_kg = make(use_kg=True)
    assert not torch.allclose(with_kg.score(users), ref)
    assert not torch.allclose(make(use_kg=True, triples=toy_triples(drop=10)).score(users), with_kg.score(users))


def test_with_kg_is_invariant_to_triple_order():
    perm = torch.randperm(27, generator=torch.Generator().manual_seed(2))
    a, b = make(), make(triples=toy_triples(perm=perm))
    assert torch.allclose(a.score(torch.arange(U)), b.score(torch.arange(U)), atol=1e-5)


def test_gradients_reach_relations_entities_and_users():
    m = make(heads=2, kg_loss_weight=0.5, kg_batch=64)
    loss, parts = m.loss(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]), torch.tensor([5, 6, 7, 8]), l2=1e-4)
    assert "kg" in parts
    loss.backward()
    for name in ("user_emb", "entity_emb", "relation_emb", "relation_trans"):
        grad = getattr(m, name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    # the attribute entities (brands, categories, linked entities) are trained through the KG
    assert m.entity_emb.grad[9:].abs().sum(1).gt(0).sum() >= 8
    # the relations used by the KG branch all get a gradient from the BPR part alone
    m.zero_grad()
    m.kg_loss_weight = 0.0
    m.loss(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]), torch.tensor([5, 6, 7, 8]))[0].backward()
    assert m.relation_emb.grad[:3].abs().sum(1).gt(0).all()


def test_no_data_dependent_recompilation_of_state():
    """Eval is deterministic (no dropout) and train/eval modes agree without dropout."""
    m = make(kg_dropout=0.0)
    users = torch.arange(U)
    m.train()
    a = m.score(users)
    m.eval()
    assert torch.allclose(a, m.score(users))
    m2 = make(kg_dropout=0.5)
    m2.eval()
    assert torch.equal(m2.score(users), m2.score(users))


#: synthetic data where the planted tastes (not popularity) drive the purchases: few
#: impressions by popularity, half targeted at the user's categories; sparse positives
#: (~2k purchases/ratings of 1,000 items by 500 users), so the item knowledge matters.
SYNTHETIC = dict(n_users=500, n_items=1000, n_interactions=40_000, impression_popularity=0.1,
                 impression_targeted=0.5)


@pytest.mark.slow
def test_acceptance_beats_popularity_on_synthetic(tmp_path):
    """Trained briefly (<= 40 epochs, early stopping on valid), the KG model's Recall@20 on
    test is >= 1.3x popularity's, >= 1.3x its own ablation without the KG and >= 1.3x itself
    on the shuffled KG (same degrees, random tails: the content helps, not the parameters).
    KG / shuffled KG measured on seeds 0..3: 0.165 / 0.096, 0.151 / 0.097, 0.153 / 0.094,
    0.134 / 0.083 (ratios 1.57-1.71).

    Measured with this setting (1 thread) on seeds 0..5 (pop / KG model / use_kg=False):
    0.087/0.147/0.078, 0.092/0.156/0.097, 0.063/0.153/0.094, 0.091/0.127/0.047,
    0.095/0.167/0.071, 0.079/0.162/0.087 -- ratios to pop 1.40-2.44 (seed 0: 1.68),
    to the ablation 1.6-2.7. The test uses seed 0 (deterministic on CPU); ~55 s on the
    shared 2-core machine, most of it the synthetic build.

    Also item cold start: on a fifth of the products never seen in training, the KG model
    with its KG >= 1.5x itself on the shuffled KG and >= 1.5x random ranking.
    """
    import loaders
    from kg.build import BuildConfig, build_graph
    from kg.evaluation import evaluate, popularity_scores
    from kg.export import export_graph
    from kg.split import split_interactions
    from kg.stores import StoreConfig, open_store
    from kg.train import TrainConfig, build_model, train

    seed = 0
    ds = loaders.load("synthetic", None, seed=seed, **SYNTHETIC)
    store = open_store(StoreConfig(kind="embedded", path=str(tmp_path / "g"))).connect()
    build_graph(ds, store, BuildConfig(progress=False))
    export = export_graph(store)
    split = split_interactions(export.data, "leave_last_out")
    triples = export.knowledge_triples()
    assert len(triples.head) > 0 and {"has_brand", "in_category"} <= set(triples.relation_names)

    # the KG ablation of bench/gnn_quality.py: the graph's content, not only its parameters
    def kg_config(options: dict) -> TrainConfig:
        return TrainConfig(model="kgrec", embedding_dim=32, num_layers=2, lr=1e-2, batch_size=1024, epochs=40,
                           eval_every=5, patience=2, select_metric="recall@20", seed=seed, threads=2,
                           model_options=options)

    variants = {"kg": {}, "none": {"use_kg": False}, "shuffled": {"shuffle_kg": True}}
    recall = {}
    for name, options in variants.items():
        config = kg_config(options)
        model = build_model(config, export, split)
        assert isinstance(model, KGModel) and model.use_kg == (name != "none")
        assert model.num_relations == (0 if name == "none" else triples.num_relations)
        result = train(model, split, config, progress=False)
        assert result.test_metrics["users"] >= 200
        recall[name] = result.test_metrics["recall@20"]
    pop = evaluate(popularity_scores(split.train, split.num_items), split.num_users, split.num_items,
                   split.test, [split.train, split.valid])["recall@20"]
    assert recall["kg"] >= 1.3 * pop, (recall, pop)
    assert recall["kg"] >= 1.3 * recall["none"], (recall, pop)
    assert recall["kg"] >= 1.3 * recall["shuffled"], (recall, pop)
    # the model-free check (kg.content_baseline): ranking by the KG's content alone finds the
    # planted tastes, and the shuffled KG's content does not (measured 0.128 vs 0.037)
    from kg.content_baseline import content_scores

    content = {name: evaluate(content_scores(kg, split.train, split.num_users, split.num_items), split.num_users,
                              split.num_items, split.test, [split.train, split.valid])["recall@20"]
               for name, kg in (("kg", triples), ("shuffled", shuffle_tails(triples, seed=0)))}
    assert content["kg"] >= 1.5 * content["shuffled"], content

    # item cold start (kg.split.cold_start, bench/gnn_quality.py --cold-items): a fifth of the
    # products never seen in training, not even as negatives, and without their also-bought
    # links (those come from purchases); the KG model ranks them by their knowledge alone, far
    # better than on the shuffled KG and than chance (measured Recall@20 0.362 vs 0.077, random 0.098)
    from kg.split import cold_start

    cold = cold_start(split, 0.2, seed=seed)
    links = [r for r in ("also_bought", "also_viewed", "bought_together") if r in triples.relation_names]
    found = {}
    for name, options in {"kg": {}, "shuffled": {"shuffle_kg": True}}.items():
        config = kg_config({**options, "drop_relations": links})
        model = build_model(config, export, cold.warm)
        train(model, cold.warm, config, progress=False, negatives_from=cold.warm.items)
        model.eval()
        with torch.no_grad():
            emb = model.embeddings()
            found[name] = evaluate(lambda u: model.score(u, emb), split.num_users, split.num_items,  # noqa: B023
                                   cold.pairs, [], candidates=cold.items)["recall@20"]
    gen = torch.Generator().manual_seed(0)
    found["random"] = evaluate(lambda u: torch.rand(len(u), split.num_items, generator=gen), split.num_users,
                               split.num_items, cold.pairs, [], candidates=cold.items)["recall@20"]
    assert found["kg"] >= 1.5 * found["shuffled"] and found["kg"] >= 1.5 * found["random"], found


def test_without_triples_with_kg_is_lightgcn():
    """use_kg=True but no triples (amazon-book here has none): runs, and equals the ablation."""
    empty = KnowledgeTriples(I, [], torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                             torch.zeros(0, dtype=torch.long), {"product": 0})
    m, ref = make(use_kg=True, triples=empty), make(use_kg=False)
    users = torch.arange(U)
    assert torch.allclose(m.score(users), ref.score(users), atol=1e-6)
    loss, _ = m.loss(users[:4], torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7]), l2=1e-4)
    loss.backward()
    assert m.user_emb.grad.abs().sum() > 0


def test_shuffled_kg_keeps_every_degree_and_changes_the_tails():
    triples = toy_triples()
    shuffled = shuffle_tails(triples, seed=3)
    h, r, t = triples.head, triples.relation, triples.tail
    assert torch.equal(shuffled.head, h) and torch.equal(shuffled.relation, r)
    assert shuffled.num_entities == triples.num_entities and shuffled.relation_names == triples.relation_names
    for rel in r.unique():  # per relation: each tail entity keeps its in-degree, each head its out-degree
        mask = r == rel
        assert torch.equal(torch.sort(shuffled.tail[mask]).values, torch.sort(t[mask]).values)
    assert not torch.equal(shuffled.tail, t)  # the content is random
    assert torch.equal(shuffle_tails(triples, seed=3).tail, shuffled.tail)  # seeded
    model = make(shuffle_kg=True, shuffle_seed=3)
    assert "shuffle_kg=True" in repr(model)
    # the model built on the shuffled KG equals the one given the shuffled triples
    same = make(triples=shuffled)
    assert torch.allclose(model.score(torch.arange(U)), same.score(torch.arange(U)), atol=1e-6)


def test_dropped_relations_leave_the_model_without_their_triples():
    triples = toy_triples()
    attributes = without_relations(triples, ["linked_to", "related"])  # a name, and every related:*
    assert attributes.relation.tolist() == [0] * I + [1] * I  # only has_brand and in_category left
    assert attributes.relation_names == triples.relation_names and attributes.num_entities == triples.num_entities
    with pytest.raises(ValueError, match="also_bought"):
        without_relations(triples, ["also_bought"])
    model = make(drop_relations=["linked_to", "related"])
    assert "drop_relations=['linked_to', 'related']" in repr(model)
    # the model equals the one given the reduced triples, and differs from the full KG's
    same = make(triples=attributes)
    users = torch.arange(U)
    assert torch.allclose(model.score(users), same.score(users), atol=1e-6)
    assert not torch.allclose(model.score(users), make().score(users), atol=1e-4)
    # dropping every relation leaves the KG model without a KG
    assert make(drop_relations=["has_brand", "in_category", "linked_to", "related"]).kg_head.numel() == 0


def test_knowledge_view_term_is_one_way():
    """kg_weight adds InfoNCE(k_i, sg(x_i)) over the batch's distinct positives; its gradient
    moves only the knowledge branch (never the users' embeddings: the fusion runs one way)."""
    spec = Contrastive(mode="none", kg_weight=0.5, temperature=0.2)
    with_kv, plain = make(contrastive=spec), make()
    users, pos, neg = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 1]), torch.tensor([5, 6, 7, 8])
    loss, parts = with_kv.loss(users, pos, neg)
    base, _ = plain.loss(users, pos, neg)
    with torch.no_grad():
        k = with_kv.knowledge()
        x = with_kv.propagated()[U:]
    items = torch.tensor([0, 1, 2])
    a, b = torch.nn.functional.normalize(k[items], dim=1), torch.nn.functional.normalize(x[items], dim=1)
    sim = torch.exp(a @ b.T / 0.2)
    kv = (-torch.log(sim.diagonal() / sim.sum(1))).mean()
    assert parts["kv"] == pytest.approx(float(kv), rel=1e-5)
    torch.testing.assert_close(loss.detach(), base.detach() + 0.5 * kv, rtol=1e-5, atol=1e-6)
    (loss - base.detach()).backward()
    base.backward()
    torch.testing.assert_close(with_kv.user_emb.grad, plain.user_emb.grad)  # no CF gradient from the term
    assert not torch.allclose(with_kv.relation_emb.grad, plain.relation_emb.grad)  # the KG branch moves


def test_merge_links_puts_a_linked_entitys_triples_on_the_item():
    """Only 1:1 links merge (items 2 -> 16 and 3 -> 17; 14 and 15 are shared by two items)."""
    t = toy_triples()
    h, r, tail = merged_links(t.head, t.relation, t.tail, t.relation_names.index("linked_to"), t.num_entities, I)
    got = set(zip(h.tolist(), r.tolist(), tail.tolist()))
    assert (15, 4, 2) in got and (2, 4, 3) in got and (14, 3, 15) in got  # 16 -> item 2, 17 -> item 3
    assert not {16, 17} & set(h.tolist() + tail.tolist())
    assert (2, 2, 16) not in got and (0, 2, 14) in got and len(h) == len(t.head) - 2
    model = make(merge_links=True)
    assert model.num_triples == len(t.head) - 2
    loss, _ = model.loss(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5]))
    loss.backward()
    assert model.entity_emb.grad[16:18].abs().sum() == 0  # the merged entities are no longer used
