"""The evaluation harness on hand-made rankings: every metric, user by user and as means."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kg.evaluation import evaluate, per_user


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
