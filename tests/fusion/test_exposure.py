"""The exposure model (fusion.ranking.exposure): hand-made impression logs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fusion.ranking.examples import ExampleSet
from fusion.ranking.exposure import POOLED, ExposureModel, category_groups, fit_exposure
from fusion.ranking.scoring import RECOMMEND_WEIGHTS, check_weights, parse_weights, ranking_score
from kg.errors import InvalidRequestError

# products 0-2 in "Home > Kitchen", 3-5 in "Garden > Tools", 6 without a category
ITEMS = np.array([f"p{i}" for i in range(7)], dtype=object)
CATEGORIES = pd.DataFrame({"item_id": ITEMS[::-1],  # a catalogue in another order than the id map
                           "categories": [[]] + [["Garden > Tools"]] * 3 + [["Home > Kitchen"]] * 3})
USERS = np.array(["home", "garden", "quiet"], dtype=object)


def _examples(rows: list[tuple[int, int, int]], sampled: list[tuple[int, int, int]] = (), kind="impressions"):
    """An ExampleSet of (user, item, part) impressions plus sampled negatives."""
    all_rows = list(rows) + list(sampled)
    u, i, p = (np.array([r[k] for r in all_rows], dtype=np.int64) for k in range(3))
    n = len(all_rows)
    flags = np.r_[np.zeros(len(rows), bool), np.ones(len(sampled), bool)]
    return ExampleSet(u, i, np.arange(n, dtype=np.int64), np.zeros(n, np.float32), np.zeros(n, np.float32),
                      np.zeros(n, np.float32), p.astype(np.int8), kind, flags)


def _log() -> list[tuple[int, int, int]]:
    """User 0 is shown kitchen products, user 1 garden products, user 2 nothing; product 0
    is shown most; the same pattern in the validation period."""
    rows = []
    for part in (0, 1):
        rows += [(0, 0, part)] * 6 + [(0, 1, part)] * 2 + [(0, 2, part)] * 2
        rows += [(1, 0, part)] * 2 + [(1, 3, part)] * 3 + [(1, 4, part)] * 3 + [(1, 5, part)] * 2
    return rows


def _all(model: ExposureModel, user: int) -> torch.Tensor:
    items = torch.arange(len(model.q))
    return model.log_prob(torch.full_like(items, user), items).exp()


def test_probabilities_follow_what_each_user_is_shown_and_sum_to_one():
    model = fit_exposure(_examples(_log()), CATEGORIES, ITEMS, USERS)
    assert torch.isclose(model.weights.sum(), torch.tensor(1.0))
    home, garden = _all(model, 0), _all(model, 1)
    for p in (home, garden, _all(model, 2), _all(model, -1)):
        assert torch.isclose(p.sum(), torch.tensor(1.0), atol=1e-5)
    assert home[:3].sum() > home[3:6].sum() and garden[3:6].sum() > garden[:3].sum()
    assert home[0] > home[1]                       # the most shown product
    # a user without impressions, an unknown one (-1) and one past the table: the shop-wide shares
    assert torch.allclose(_all(model, 2), _all(model, -1)) and torch.allclose(_all(model, 99), _all(model, -1))
    assert model.names[0].tolist() == ["Home", "Garden", ""]


def test_only_training_impressions_are_counted_and_sampled_rows_are_not_impressions():
    base = fit_exposure(_examples(_log()), CATEGORIES, ITEMS, USERS)
    # the test period, sampled negatives: nothing changes
    more = _log() + [(0, 5, 2)] * 40 + [(2, 6, 2)] * 9
    other = fit_exposure(_examples(more, sampled=[(0, 6, 0)] * 30), CATEGORIES, ITEMS, USERS)
    for u in (0, 1, 2):
        assert torch.equal(_all(base, u), _all(other, u))
    # the validation period moves the mixture weights only: the components stay
    valid_only = fit_exposure(_examples([r for r in _log() if r[2] == 0] + [(0, 5, 1)] * 20), CATEGORIES,
                              ITEMS, USERS)
    assert torch.equal(valid_only.q, base.q) and all(torch.equal(a, b) for a, b in zip(valid_only.share, base.share))
    assert not torch.equal(valid_only.weights, base.weights)


def test_no_model_without_impressions():
    assert fit_exposure(_examples(_log(), kind="implicit"), CATEGORIES, ITEMS, USERS) is None
    assert fit_exposure(_examples([(0, 1, 1)]), CATEGORIES, ITEMS, USERS) is None  # no training impression


def test_the_fit_predicts_later_impressions_of_a_known_display_policy_nearly_as_well_as_the_policy():
    """Impressions drawn 60% by a Zipf popularity, 40% uniformly within the user's one
    category: on a later period, the fitted model's log-likelihood is within 0.15 nats of
    the true policy's (-3.79 against -3.66; its product shares count the category draws
    too) and well above that of the product shares alone (-3.91)."""
    rng = np.random.default_rng(0)
    n_items, n_users = 60, 400
    cats = pd.DataFrame({"item_id": np.arange(n_items).astype(str),
                         "categories": [[f"C{i % 4} > S{i % 8}"] for i in range(n_items)]})
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    fav = rng.integers(0, 4, n_users)
    truth = 0.6 * pop[None, :] + 0.4 * (np.arange(n_items)[None, :] % 4 == fav[:, None]) / (n_items // 4)
    rows = [(u, int(rng.choice(n_items, p=truth[u])), part) for part in (0, 1, 2) for u in range(n_users)
            for _ in range(30)]
    model = fit_exposure(_examples(rows), cats, np.arange(n_items).astype(str), np.arange(n_users).astype(str))
    later = np.array([(u, i) for u, i, part in rows if part == 2])
    u, i = torch.from_numpy(later[:, 0]), torch.from_numpy(later[:, 1])
    fitted = float(model.log_prob(u, i).mean())
    best = float(np.log(truth[later[:, 0], later[:, 1]]).mean())
    shares_only = float(model.q[i].log().mean())
    assert best - 0.15 < fitted < best
    assert fitted > shares_only + 0.08
    assert torch.isclose(model.weights.sum(), torch.tensor(1.0))


def test_save_load_and_alignment_to_a_serving_version(tmp_path):
    model = fit_exposure(_examples(_log()), CATEGORIES, ITEMS, USERS)
    model.save(tmp_path / "exposure.pt")
    back = ExposureModel.load(tmp_path / "exposure.pt")
    for u in (0, 1, -1):
        assert torch.equal(_all(back, u), _all(model, u))
    # a version: users reordered plus a new one, products reordered plus a new kitchen product
    users = np.array(["garden", "new", "home"], dtype=object)
    items = np.array(["p3", "p0", "p9"], dtype=object)
    cats = pd.Series([["Garden > Tools"], ["Home > Kitchen"], ["Home > Kitchen"]], dtype=object)
    v = back.aligned(users, items, cats)
    rows = torch.tensor([0, 0, 2, 1])
    cols = torch.tensor([0, 1, 1, 0])
    old = model.log_prob(torch.tensor([1, 1, 0, -1]), torch.tensor([3, 0, 0, 3]))
    assert torch.allclose(v.log_prob(rows, cols), old)
    # the new product: the smallest product share, and its kitchen group
    assert torch.isclose(v.q[2], model.q.min())
    assert int(v.group[1][2]) == int(model.group[1][0])
    assert v.log_prob(torch.tensor([2]), torch.tensor([2])) > v.log_prob(torch.tensor([0]), torch.tensor([2]))


def test_rare_groups_are_pooled():
    names = category_groups(pd.Series([[f"A > {k}"] for k in range(5)] + [None], dtype=object))
    assert names[0].tolist() == ["A"] * 5 + [""]
    rows = [(0, i, p) for p in (0, 1) for i in range(6) for _ in range(i + 1)]
    catalogue = pd.DataFrame({"item_id": ITEMS[:6], "categories": [[f"A > {k}"] for k in range(5)] + [None]})
    model = fit_exposure(_examples(rows), catalogue, ITEMS[:6], USERS[:1], max_groups=3)
    assert len(model.names[1]) == 3 and model.names[1][-1] == POOLED
    assert model.names[1][:2].tolist() == ["", "A > 4"]  # the two most shown keep their own group
    assert torch.isclose(_all(model, 0).sum(), torch.tensor(1.0), atol=1e-5)


def test_the_exposure_weight_is_ignored_where_a_run_has_no_exposure_model():
    logits = {"ctr": torch.tensor([0.0, 1.0]), "cvr": torch.tensor([0.5, 0.0]), "value": torch.zeros(2),
              "relevance": torch.zeros(2)}
    plain = ranking_score(logits, {"ctr": 1.0, "cvr": 1.0})
    assert torch.equal(ranking_score(logits, RECOMMEND_WEIGHTS), plain)
    with_exposure = dict(logits, exposure=torch.log(torch.tensor([0.5, 0.01])))
    assert torch.allclose(ranking_score(with_exposure, RECOMMEND_WEIGHTS),
                          plain + RECOMMEND_WEIGHTS["exposure"] * with_exposure["exposure"])
    with pytest.raises(KeyError):  # a required objective stays required
        ranking_score({"ctr": torch.zeros(1), "cvr": torch.zeros(1)}, {"value": 1.0})


def test_weights_that_leave_nothing_to_rank_by_are_refused():
    """The exposure weight alone, on a run without impressions, ranks by nothing: refused
    naming ``weights`` rather than answered with an arbitrary list at score 0."""
    assert check_weights({"exposure": 1.0, "ctr": 1.0}, RECOMMEND_WEIGHTS, ("exposure",)) == {"exposure": 1.0,
                                                                                              "ctr": 1.0}
    assert check_weights({"exposure": 1.0}, RECOMMEND_WEIGHTS) == {"exposure": 1.0}
    with pytest.raises(InvalidRequestError, match=r"nothing to rank by.*cannot score \(exposure\)") as err:
        check_weights({"exposure": 1.0, "ctr": 0.0}, RECOMMEND_WEIGHTS, ("exposure",))
    assert err.value.field == "weights"
    with pytest.raises(InvalidRequestError, match="ctr is given twice"):
        parse_weights("ctr=1,cvr=1,ctr=2")


def test_a_catalogue_without_categories_still_gets_item_and_user_shares():
    """A shop whose products carry no categories (None, empty lists): one group each, so
    the user's share term is the uniform one and P(shown) follows the product shares."""
    bare = pd.DataFrame({"item_id": ITEMS, "categories": [None, [], None, [], [], None, []]})
    model = fit_exposure(_examples(_log()), bare, ITEMS, USERS)
    assert [n.tolist() for n in model.names] == [[""], [""]]
    p = _all(model, 0)
    assert torch.isclose(p.sum(), torch.tensor(1.0), atol=1e-5)
    assert torch.equal(torch.argsort(p, descending=True)[:1], torch.tensor([0]))  # the most shown product
    assert torch.allclose(p, _all(model, 1))  # no categories: nothing tells the two users apart
