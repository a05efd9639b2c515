"""The KG content ranker and its late fusion (kg.content_baseline): the TF-IDF item rows,
the scores against the formula, and that a content with signal is chosen on validation and
helps on test while a shuffled one is given no weight."""

from __future__ import annotations

import numpy as np
import torch

from kg.content_baseline import blended_scores, choose_blend, content_scores, item_profiles, per_relation
from kg.export import KnowledgeTriples
from kg.models.kg_model import shuffle_tails
from kg.split import Split


def toy() -> KnowledgeTriples:
    """4 items; entity 4 a brand of items 0 and 1, 5 a category of all four, 6 a Freebase
    entity item 3 is linked to 1:1, with a triple of its own (6 -> 7)."""
    head = torch.tensor([0, 1, 0, 1, 2, 3, 3, 6])
    rel = torch.tensor([0, 0, 1, 1, 1, 1, 2, 3])
    tail = torch.tensor([4, 4, 5, 5, 5, 5, 6, 7])
    return KnowledgeTriples(8, ["has_brand", "in_category", "linked_to", "related:film.genre"], head, rel, tail,
                            {"product": 0, "brand": 4, "category": 5, "entity": 6})


def test_item_rows_are_tf_idf_of_the_one_hop_entities_with_links_merged():
    x = item_profiles(toy(), 4).toarray()
    assert x.shape == (4, 8)
    idf = lambda df: np.log(5 / (df + 1))  # noqa: E731
    # item 0: brand 4 (in 2 items) and category 5 (in all 4: idf log(5/5) = 0)
    assert np.allclose(x[0], np.eye(8)[4]) and np.allclose(x[1], np.eye(8)[4])
    assert idf(4) == 0 and np.allclose(x[2], 0)  # only the everywhere category: no information
    # item 3 took over its linked entity's triple (6 -> 7): entity 7 is one hop from it
    assert x[3, 7] == 1.0 and x[3, 6] == 0.0
    assert np.allclose(np.linalg.norm(x[[0, 1, 3]], axis=1), 1.0)


def test_per_relation_splits_the_merged_kg_by_relation():
    parts = {name: (n, reached, kg) for name, n, reached, kg in per_relation(toy(), 4)}
    # the 1:1 link is merged away (no linked_to part); the genre triple is item 3's own
    assert list(parts) == ["has_brand", "in_category", "related:film.genre"]
    assert [parts[r][:2] for r in parts] == [(2, 2), (4, 0), (1, 1)]  # a category of every item tells none apart
    genre = parts["related:film.genre"][2]
    assert (genre.head.tolist(), genre.tail.tolist()) == ([3], [7])
    assert np.allclose(item_profiles(genre, 4).toarray()[3], np.eye(8)[7])
    # a relation between entities only reaches no item: counted, with 0 items
    chain = toy()
    chain = KnowledgeTriples(9, chain.relation_names + ["related:award"], torch.cat([chain.head, torch.tensor([7])]),
                             torch.cat([chain.relation, torch.tensor([4])]), torch.cat([chain.tail, torch.tensor([8])]),
                             chain.offsets)
    assert [(n, reached) for name, n, reached, _ in per_relation(chain, 4) if name == "related:award"] == [(1, 0)]


def test_content_scores_are_the_summed_cosines_with_the_users_items():
    triples = toy()
    train = (np.array([0, 0, 1, 1, 1]), np.array([0, 3, 1, 1, 2]))  # a repeated pair counts once
    score = content_scores(triples, train, 2, 4)
    x = item_profiles(triples, 4).toarray()
    r = np.zeros((2, 4))
    r[train] = 1.0
    expected = r @ x @ x.T
    assert torch.allclose(score(torch.tensor([1, 0])), torch.tensor(expected[[1, 0]], dtype=torch.float32))
    assert score(torch.tensor([0]))[0, 1] == 1.0  # item 1 shares item 0's brand, the only signal


def planted(num_users=200, num_items=60, seed=0):
    """Items in 6 genres (genre g: items i with i % 6 == g) plus 20 common tags; each user
    likes one genre and interacts with 8 of its 10 items: 6 train, 1 valid, 1 test."""
    rng = np.random.default_rng(seed)
    items = np.arange(num_items)
    head = np.concatenate([items, items])
    tail = np.concatenate([num_items + items % 6, num_items + 6 + rng.integers(0, 20, num_items)])
    rel = np.concatenate([np.zeros(num_items, int), np.ones(num_items, int)])
    triples = KnowledgeTriples(num_items + 26, ["in_category", "has_tag"], torch.tensor(head),
                               torch.tensor(rel), torch.tensor(tail), {"product": 0, "category": num_items})
    parts = {"train": ([], []), "valid": ([], []), "test": ([], [])}
    for u in range(num_users):
        chosen = rng.permutation(np.flatnonzero(items % 6 == u % 6))[:8]
        for name, sl in (("train", slice(0, 6)), ("valid", slice(6, 7)), ("test", slice(7, 8))):
            parts[name][0].extend([u] * len(chosen[sl]))
            parts[name][1].extend(chosen[sl])
    arr = {k: (np.array(v[0]), np.array(v[1])) for k, v in parts.items()}
    return triples, Split(num_users, num_items, arr["train"], arr["valid"], arr["test"])


def test_a_content_with_signal_is_chosen_and_helps_a_shuffled_one_is_not():
    from kg.evaluation import evaluate

    triples, split = planted()
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(split.num_users, split.num_items, generator=gen)
    model = lambda users: noise[users]  # a model that learnt nothing  # noqa: E731
    test = lambda fn: evaluate(fn, split.num_users, split.num_items, split.test,  # noqa: E731
                               [split.train, split.valid], ks=(10,))["recall@10"]
    real = content_scores(triples, split.train, split.num_users, split.num_items)
    weight, curve = choose_blend(model, real, split, "recall@10")
    assert weight > 0 and curve[weight] > curve[0.0] + 0.3
    assert test(blended_scores(model, real, weight)) > test(model) + 0.3
    # the same KG with its tails shuffled: the genres are random, and no weight is worth giving
    # (on valid; ties go to the smaller weight)
    shuffled = content_scores(shuffle_tails(triples, seed=1), split.train, split.num_users, split.num_items)
    s_weight, s_curve = choose_blend(model, shuffled, split, "recall@10")
    assert s_curve[s_weight] < curve[weight] - 0.3
    assert test(blended_scores(model, shuffled, s_weight)) < test(blended_scores(model, real, weight)) - 0.3
    assert blended_scores(model, real, 0.0) is model
