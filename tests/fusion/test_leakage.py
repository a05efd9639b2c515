"""The fused model's test-time inputs do not depend on test-period events.

Two shops that differ only in the test period -- in the second, every test-period event
(every event of a held-out test pair, and every event of its user after the first
positive event of that pair; reviews included) is deleted, for half of the test users, or changed (later
times, other quantities, ratings and review texts), for the other half -- are trained
end to end by the real pipeline (graph build, GNN, text fine-tuning, fusion with the
validation-period fit) under the same split. Everything the fused model reads for the
test users must come out identical: the GNN embeddings (candidate lists), the text
encoder's product vectors and the users' text profiles, the side features (popularity,
click rate, recency, activity ...), the exposure model (what the shop shows whom), the
training examples, the fitted model and so its scores. A leak anywhere -- a label, a negative, a count, a review the text encoder saw
-- changes some of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fusion.pipeline import RunConfig, TextStageConfig, load_fusion_data, train_all
from fusion.ranking.config import FusionConfig
from fusion.ranking.exposure import ExposureModel
from fusion.ranking.features import FeatureTables
from fusion.ranking.ensemble import load_fusion_model
from fusion.ranking.scorer import Scorer
from fusion.ranking.scoring import RECOMMEND_WEIGHTS
from fusion.text.encoder import random_checkpoint
from fusion.text.finetune import TextTrainConfig
from fusion.text.index import Embeddings
from fusion.text.texts import product_texts
from kg.build import BuildConfig, build_graph
from kg.export import GraphExport
from kg.pipeline import GnnRunConfig
from kg.run_dir import RunDir
from kg.stores import StoreConfig, open_store
from kg.train import TrainConfig
from loaders.dataset import Dataset
from loaders.synthetic import SyntheticConfig, generate

SHOP = SyntheticConfig(n_users=120, n_items=60, n_interactions=8_000, n_queries=8, seed=5)
POSITIVE = ("purchase", "rating", "review")
CANDIDATES = 20


def _test_pairs(inter: pd.DataFrame) -> pd.DataFrame:
    """Leave-last-out test pairs: each user's last new positive pair (users with >= 3)."""
    pos = inter[inter["event"].isin(POSITIVE)].groupby(["user_id", "item_id"], as_index=False)["timestamp"].min()
    pos = pos.sort_values(["user_id", "timestamp", "item_id"])
    pos = pos[pos.groupby("user_id")["item_id"].transform("size") >= 3]
    return pos.groupby("user_id").tail(1)[["user_id", "item_id"]]


def _periods(frame: pd.DataFrame, pairs: pd.DataFrame, cut: pd.Series) -> np.ndarray:
    """True for the rows of ``frame`` (user_id, item_id, timestamp) in the test period."""
    keys = pd.MultiIndex.from_frame(frame[["user_id", "item_id"]])
    held = keys.isin(pd.MultiIndex.from_frame(pairs))
    later = frame["timestamp"].to_numpy() > frame["user_id"].map(cut).fillna(np.inf).to_numpy()
    return held | later


def _shops() -> tuple[Dataset, Dataset, np.ndarray]:
    """(original, altered, test users): both with the test pairs as the source's test split."""
    shop = generate(SHOP)
    inter = shop.interactions.copy()
    pairs = _test_pairs(inter)
    mark = pd.MultiIndex.from_frame(inter[["user_id", "item_id"]]).isin(pd.MultiIndex.from_frame(pairs))
    inter["split"] = np.where(mark, "test", "")
    shop.interactions = inter
    # the test period of a user: from their first purchase/rating/review of the test pair
    # (the split's time); earlier events of that pair are altered too
    cut = inter[mark & inter["event"].isin(POSITIVE)].groupby("user_id")["timestamp"].min()
    users = np.sort(pairs["user_id"].unique())
    deleted = set(users[::2])  # every test-period event of these users goes; the others' change
    rng = np.random.default_rng(1)

    def alter(frame: pd.DataFrame, value: str) -> pd.DataFrame:
        late = _periods(frame, pairs, cut)
        gone = late & frame["user_id"].isin(deleted).to_numpy()
        frame = frame.copy()
        change = late & ~gone
        frame.loc[change, "timestamp"] += 3 * 86_400
        frame.loc[change, value] = 6 - frame.loc[change, value] if value == "rating" else frame.loc[change, value] + 1
        return frame[~gone].reset_index(drop=True), change[~gone]

    altered = Dataset(**{name: getattr(shop, name) for name in Dataset.__dataclass_fields__
                         if name not in ("interactions", "reviews")})
    altered.interactions, _ = alter(inter, "value")
    is_rating = altered.interactions["event"].isin(("rating", "review"))
    altered.interactions.loc[is_rating, "value"] = altered.interactions.loc[is_rating, "value"].clip(1, 5)
    altered.reviews, changed = alter(shop.reviews, "rating")
    other = shop.reviews["text"].to_numpy()
    altered.reviews.loc[changed, "text"] = rng.choice(other, int(changed.sum()))
    assert len(altered.interactions) < len(inter) and changed.any()
    return shop, altered, users


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run folders of the original and the altered shop, and the test users' ids."""
    root = tmp_path_factory.mktemp("leakage")
    shop, altered, users = _shops()
    texts = list(product_texts(shop.items)) + list(shop.reviews["text"]) + list(shop.judgements["query"])
    bert = random_checkpoint(root / "bert", texts, hidden_size=16, num_layers=1, num_heads=2,
                             intermediate_size=32, max_length=32)
    config = RunConfig(
        gnn=GnnRunConfig(train=TrainConfig(model="kgrec", embedding_dim=16, num_layers=2, epochs=10, lr=0.01,
                                           batch_size=512, eval_every=5, patience=2, threads=1)),
        text=TextStageConfig(train=TextTrainConfig(checkpoint=str(bert), max_steps=4, batch_size=16,
                                                   max_length=32, anchor_max_length=16, threads=1)),
        fusion=FusionConfig(epochs=2, min_steps_per_epoch=4, hidden=16, text_proj=8, tower=8,
                            candidates=CANDIDATES, train_on="valid", min_valid_conversions=0, threads=1),
        baselines=False)
    out = []
    for name, dataset in (("original", shop), ("altered", altered)):
        db = str(root / name / "graph")
        with open_store(StoreConfig(kind="embedded", path=db)) as store:
            build_graph(dataset, store, BuildConfig(progress=False))
        with open_store(StoreConfig(kind="embedded", path=db), read_only=True) as store:
            train_all(store, root / name / "run", config)
        out.append(RunDir(root / name / "run"))
    return out[0], out[1], users


def _rows(run: RunDir, users: np.ndarray) -> torch.Tensor:
    export = GraphExport.load(run.graph)
    rows = export.index_of("user", users)
    assert (rows >= 0).all()
    return torch.from_numpy(rows)


def test_the_altered_shop_differs_in_the_test_period_only(runs):
    original, altered, users = runs
    a, b = GraphExport.load(original.graph), GraphExport.load(altered.graph)
    assert all(np.array_equal(a.id_maps[t], b.id_maps[t]) for t in ("user", "product"))
    sa, sb = original.load_split(), altered.load_split()
    for part in ("train", "valid"):
        assert all(np.array_equal(x, y) for x, y in zip(getattr(sa, part), getattr(sb, part))), part
    assert len(sb.test[0]) < len(sa.test[0])  # the deleted users' test pairs are gone


def test_graph_embeddings_and_candidate_lists_do_not_see_the_test_period(runs):
    original, altered, users = runs
    ea, eb = (np.load(r.embeddings) for r in (original, altered))
    assert np.array_equal(ea["item"], eb["item"])
    assert np.array_equal(ea["user"], eb["user"])
    ta, tb = (FeatureTables.load(r.fusion_tables) for r in (original, altered))
    rows = _rows(original, users)
    top = [torch.topk(t.user_gnn[rows] @ t.item_gnn.T, CANDIDATES, dim=1).indices for t in (ta, tb)]
    assert torch.equal(*top)


def test_text_encoder_and_user_profiles_do_not_see_the_test_period(runs):
    original, altered, users = runs
    items = [Embeddings.load(r.text_items) for r in (original, altered)]
    assert np.array_equal(items[0].ids, items[1].ids) and torch.equal(items[0].vectors, items[1].vectors)
    profiles = [Embeddings.load(r.text_users) for r in (original, altered)]
    assert np.array_equal(profiles[0].ids, profiles[1].ids)
    assert torch.equal(profiles[0].vectors, profiles[1].vectors)


def test_side_features_examples_and_the_fused_scores_do_not_see_the_test_period(runs):
    original, altered, users = runs
    ta, tb = (FeatureTables.load(r.fusion_tables) for r in (original, altered))
    rows = _rows(original, users)
    assert torch.equal(ta.item_side, tb.item_side) and torch.equal(ta.item_text, tb.item_text)
    for name in ("user_gnn", "user_text", "user_side"):
        assert torch.equal(getattr(ta, name)[rows], getattr(tb, name)[rows]), name
    da, db = (load_fusion_data(r) for r in (original, altered))
    for part in (0, 1):  # what the fusion model is fit and early-stopped on
        xa, xb = da.examples.select(part), db.examples.select(part)
        for field in ("user", "item", "time", "click", "conversion", "value", "sampled"):
            assert np.array_equal(getattr(xa, field), getattr(xb, field)), (part, field)
    # the exposure model (P(shown), in the default ranking score): saved with the run and refit alike
    exposure = [ExposureModel.load(r.fusion_exposure) for r in (original, altered)]
    items = torch.arange(ta.num_items).repeat(len(rows))
    for model in exposure + [da.exposure, db.exposure]:
        assert torch.equal(model.log_prob(rows.repeat_interleave(ta.num_items), items),
                           exposure[0].log_prob(rows.repeat_interleave(ta.num_items), items))
    scores = []
    for run, tables, model in ((original, ta, exposure[0]), (altered, tb, exposure[1])):
        scorer = Scorer(load_fusion_model(run.fusion_model), tables, exposure=model)
        scores.append(scorer.rerank(rows, RECOMMEND_WEIGHTS, CANDIDATES))
    assert torch.equal(*scores)
    assert torch.isfinite(scores[0]).sum() == len(users) * CANDIDATES
