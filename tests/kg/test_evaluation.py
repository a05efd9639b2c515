"""The evaluation harness on hand-made rankings: every metric, user by user and as means."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kg.evaluation import by_item_degree, evaluate, found_pairs, per_user


def test_per_user_metrics_and_their_means_on_a_hand_made_case():
    # 3 users, 5 items; scores rank items 4, 3, 2, 1, 0 for everyone
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]]).expand(3, 5)
    score_fn = lambda users: scores[users].clone()  # noqa: E731
    heldout = (np.array([0, 0, 2]), np.array([3, 0, 1]))  # user 1 has none: not evaluated
    seen = [(np.array([0, 2]), np.array([4, 3]))]          # removed from the users' rankings
    users, values = per_user(score_fn, 3, 5, heldout, seen, ks=(1, 2))
    assert users.tolist() == [0, 2]
    # user 0: ranking 3, 2, 1, 0 (4 seen), held {3, 0}; user 2: ranking 4, 2, 1, 0 (3 seen), held {1}
    assert values["recall@1"].tolist() == [0.5, 0.0]
    assert values["recall@2"].tolist() == [0.5, 0.0]
    assert values["hit@2"].tolist() == [1.0, 0.0]
    assert values["mrr@2"].tolist() == [1.0, 0.0]
    assert values["ndcg@2"][0] == pytest.approx(1.0 / (1.0 + 1.0 / math.log2(3)))
    means = evaluate(score_fn, 3, 5, heldout, seen, ks=(1, 2))
    assert means["users"] == 2
    for name, v in values.items():
        assert means[name] == pytest.approx(v.mean()), name
    # user 2 finds item 1 at rank 3: recall@3 is 1, MRR 1/3
    _, three = per_user(score_fn, 3, 5, heldout, seen, ks=(3,), batch_size=1)
    assert three["recall@3"].tolist() == [0.5, 1.0]
    assert three["mrr@3"].tolist() == [1.0, pytest.approx(1 / 3)]


def test_found_pairs_follow_the_heldout_order_and_agree_with_recall():
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]]).expand(3, 5)
    score_fn = lambda users: scores[users].clone()  # noqa: E731
    # pairs out of user order: user 2's first; user 0 holds 3 (rank 1) and 0 (rank 4)
    heldout = (np.array([2, 0, 0]), np.array([1, 3, 0]))
    seen = [(np.array([0, 2]), np.array([4, 3]))]
    for batch_size in (1, 4096):
        assert found_pairs(score_fn, 3, 5, heldout, seen, k=2, batch_size=batch_size).tolist() == [False, True, False]
        assert found_pairs(score_fn, 3, 5, heldout, seen, k=3, batch_size=batch_size).tolist() == [True, True, False]
    # the per-pair view of a model's recall on a real-sized random case: where every user holds
    # one pair, the share found is Recall@k
    gen = torch.Generator().manual_seed(0)
    table = torch.rand(50, 40, generator=gen)
    fn = lambda users: table[users].clone()  # noqa: E731
    rng = np.random.default_rng(0)
    one = (np.arange(50), rng.integers(0, 40, 50))
    train = (np.repeat(np.arange(50), 3), rng.integers(0, 40, 150))
    train = tuple(a[train[1] != np.repeat(one[1], 3)] for a in train)  # no held-out pair also seen
    found = found_pairs(fn, 50, 40, one, [train], k=10)
    assert found.mean() == pytest.approx(evaluate(fn, 50, 40, one, [train], ks=(10,))["recall@10"])


def test_by_item_degree_groups_the_pairs_least_known_first():
    degree = np.array([0, 1, 2, 3, 50, 100])
    items = np.array([0, 1, 1, 2, 3, 4, 4, 4, 5, 5])
    found = np.array([0, 0, 0, 0, 1, 1, 0, 1, 1, 1], dtype=bool)
    groups = by_item_degree(found, items, degree, groups=2)
    assert [g[2] for g in groups] == [5, 5] and sum(g[2] for g in groups) == len(items)
    assert groups == [(0, 3, 5, 0.2), (50, 100, 5, 0.8)]
    # a degree is never split: 8 of 10 pairs on one degree leave two groups however many asked
    many = by_item_degree(np.ones(10, bool), np.array([0] * 8 + [1, 1]), np.array([7, 9]), groups=5)
    assert [(lo, hi, n) for lo, hi, n, _ in many] == [(7, 7, 8), (9, 9, 2)]
    assert by_item_degree(np.zeros(0, bool), np.zeros(0, int), degree) == []
    # a ranker scored on some of the pairs: the same groups, its share over its own pairs
    counted = np.array([1, 1, 0, 0, 0, 1, 1, 0, 0, 0], dtype=bool)
    assert by_item_degree(found, items, degree, groups=2, counted=counted) == [(0, 3, 5, 0.0), (50, 100, 5, 0.5)]
    none = by_item_degree(found, items, degree, groups=2, counted=np.arange(10) < 5)
    assert none[0] == (0, 3, 5, 0.2) and np.isnan(none[1][3])


def test_no_held_out_pairs_is_nothing_measured_not_a_score_of_zero():
    from kg.evaluation import markdown_table

    scores = torch.tensor([[0.0, 1.0, 2.0]]).expand(2, 3)
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    means = evaluate(lambda users: scores[users].clone(), 2, 3, none, [], ks=(10,))
    assert means["users"] == 0
    assert all(math.isnan(v) for name, v in means.items() if name != "users")
    table = markdown_table({"popularity": means}, ["recall@10", "ndcg@10"])
    assert table.splitlines()[-1] == "| popularity | — | — |"
