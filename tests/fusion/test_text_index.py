"""Embedding cache, embedding jobs, user profiles, exact and IVF retrieval, metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import loaders
from fusion.text.texts import product_texts, review_texts
from fusion.text.encoder import TextEncoder, random_checkpoint
from fusion.text.index import (EmbeddingCache, Embeddings, ExactIndex, IVFIndex, TextSearch, build_index,
                               embed_items, embed_reviews, load_index, retrieval_metrics, user_profiles)


@pytest.fixture(scope="module")
def synthetic():
    return loaders.load("synthetic", None, n_users=80, n_items=60, n_interactions=4000, n_queries=5,
                        seed=2, rating_rate=1.0, review_share=1.0)


@pytest.fixture(scope="module")
def tiny_dir(synthetic, tmp_path_factory):
    texts = product_texts(synthetic.items).tolist() + review_texts(synthetic.reviews).tolist() \
        + ["wireless headphones", "new text never seen"]
    return random_checkpoint(tmp_path_factory.mktemp("tiny"), texts, max_length=64)


@pytest.fixture(scope="module")
def encoder(tiny_dir):
    return TextEncoder.from_pretrained(tiny_dir)


# ---------------------------------------------------------------------------- cache

def test_cache_encodes_only_what_changed(encoder, tmp_path):
    texts = ["wireless headphones", "new text never seen", "wireless headphones"]
    cache = EmbeddingCache(tmp_path / "cache")
    first = cache.encode(encoder, texts)
    assert (cache.last.hits, cache.last.misses) == (0, 2)      # the duplicate is encoded once
    assert torch.allclose(first, encoder.encode(texts), atol=1e-6)
    second = EmbeddingCache(tmp_path / "cache").encode(encoder, texts[:2] + ["wireless"])
    assert torch.equal(second[:2], first[:2])                   # read back from disk
    reopened = EmbeddingCache(tmp_path / "cache")
    reopened.encode(encoder, texts + ["wireless"])
    assert (reopened.last.hits, reopened.last.misses) == (4, 0) and len(reopened) == 3
    assert not list((tmp_path / "cache").rglob(".*tmp*"))    # shards are renamed into place


def test_cache_is_keyed_by_the_encoder_fingerprint(encoder, synthetic, tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.encode(encoder, ["wireless headphones"])
    other = TextEncoder.from_pretrained(encoder.source, max_length=16)    # other settings
    cache.encode(other, ["wireless headphones"])
    assert cache.last.misses == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([encoder.fingerprint(), other.fingerprint()])


def test_a_product_with_no_text_gets_a_zero_row_not_the_empty_strings_encoding(encoder, synthetic):
    from loaders.dataset import make_table

    items = pd.concat([synthetic.items.head(3), make_table("items", {"item_id": ["id-only-1", "id-only-2"]})],
                      ignore_index=True)
    emb = embed_items(encoder, items)
    assert list(emb.ids) == list(items["item_id"])
    assert emb.vectors[3:].abs().sum() == 0                    # "no text": nothing shared, nothing to match
    alone = embed_items(encoder, synthetic.items.head(3))
    assert torch.allclose(emb.vectors[:3], alone.vectors, atol=1e-6)
    assert torch.allclose(emb.vectors[:3].norm(dim=1), torch.ones(3), atol=1e-5)


def test_a_review_without_text_adds_nothing_to_its_users_profile(encoder, synthetic):
    reviews = synthetic.reviews.head(6).copy()
    user = reviews["user_id"].iloc[0]
    rating_only = reviews.iloc[[0]].assign(review_id="rating-only", summary="", text="")
    items = embed_items(encoder, synthetic.items)
    with_it = pd.concat([reviews, rating_only], ignore_index=True)
    emb = embed_reviews(encoder, with_it)
    assert "rating-only" not in set(emb.ids) and len(emb) == len(reviews)
    profile = user_profiles(emb, with_it, items, None)
    alone = user_profiles(embed_reviews(encoder, reviews), reviews, items, None)
    row, row_alone = list(profile.ids).index(user), list(alone.ids).index(user)
    assert torch.allclose(profile.vectors[row], alone.vectors[row_alone], atol=1e-6)


def test_embedding_jobs_align_ids_and_use_the_cache(encoder, synthetic, tmp_path):
    cache = EmbeddingCache(tmp_path)
    items = embed_items(encoder, synthetic.items, cache=cache)
    assert list(items.ids) == list(synthetic.items["item_id"]) and items.vectors.shape == (60, 32)
    again = embed_items(encoder, synthetic.items, cache=cache)
    assert cache.last.misses == 0 and torch.equal(again.vectors, items.vectors)
    reviews = embed_reviews(encoder, synthetic.reviews)
    assert list(reviews.ids) == list(synthetic.reviews["review_id"])
    items.save(tmp_path / "items")
    loaded = Embeddings.load(tmp_path / "items")
    assert list(loaded.ids) == list(items.ids) and torch.equal(loaded.vectors, items.vectors)
    assert list(loaded.positions([items.ids[3], "nope"])) == [3, -1]


# ---------------------------------------------------------------------------- user profiles

def test_user_profile_is_the_weighted_mean_of_reviews_and_distinct_purchases():
    e = torch.eye(4)
    reviews_emb = Embeddings(np.array(["r1", "r2"]), e[:2])
    items_emb = Embeddings(np.array(["a", "b"]), e[2:])
    reviews = pd.DataFrame({"review_id": ["r1", "r2", "r9"], "user_id": ["u1", "u1", "u2"],
                            "item_id": ["a", "a", "b"]})
    inter = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u3"], "item_id": ["b", "b", "a", "a"],
                          "event": ["purchase", "purchase", "click", "purchase"]})
    prof = user_profiles(reviews_emb, reviews, items_emb, inter, review_weight=1.0, item_weight=2.0)
    assert list(prof.ids) == ["u1", "u3"]                       # u2's review has no embedding
    want_u1 = torch.nn.functional.normalize(torch.tensor([1.0, 1.0, 0.0, 2.0]), dim=0)  # b counted once
    assert torch.allclose(prof.vectors[0], want_u1)
    assert torch.allclose(prof.vectors[1], e[2])
    empty = user_profiles(reviews_emb, reviews.head(0), items_emb, None)
    assert len(empty) == 0 and empty.vectors.shape == (0, 4)


def test_user_profiles_on_synthetic_data(encoder, synthetic):
    items = embed_items(encoder, synthetic.items)
    reviews = embed_reviews(encoder, synthetic.reviews)
    prof = user_profiles(reviews, synthetic.reviews, items, synthetic.interactions)
    buyers = set(synthetic.interactions.loc[synthetic.interactions["event"] == "purchase", "user_id"])
    assert set(prof.ids) == buyers | set(synthetic.reviews["user_id"])
    assert torch.allclose(prof.vectors.norm(dim=1), torch.ones(len(prof)), atol=1e-5)


# ---------------------------------------------------------------------------- retrieval

def _clustered(n=3000, d=16, centers=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(centers, d, generator=g)
    x = c[torch.randint(centers, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)
    return torch.nn.functional.normalize(x, dim=1)


def test_exact_index_matches_brute_force():
    x = _clustered(500)
    q = _clustered(20, seed=1)
    scores, pos = ExactIndex(x, [f"i{i}" for i in range(500)]).search(q, k=7, block=6)
    want = torch.topk(q @ x.T, 7, dim=1)
    assert torch.equal(pos, want.indices) and torch.allclose(scores, want.values)
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_ivf_index_is_exact_with_all_lists_and_close_with_few(tmp_path):
    x = _clustered()
    ids = [f"i{i}" for i in range(len(x))]
    q = torch.nn.functional.normalize(x[:200] + 0.05 * torch.randn(200, 16), dim=1)
    exact = ExactIndex(x, ids).search(q, k=10)[1]
    ivf = IVFIndex(x, ids, n_lists=40, n_probe=40)
    assert torch.equal(torch.sort(ivf.search(q, 10)[1], 1).values, torch.sort(exact, 1).values)
    approx = IVFIndex(x, ids, n_lists=40, n_probe=4, seed=0)
    found = approx.search(q, 10)[1]
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(found, exact)])
    assert recall >= 0.9, recall
    approx.save(tmp_path / "ivf")
    loaded = load_index(tmp_path / "ivf")
    assert isinstance(loaded, IVFIndex) and torch.equal(loaded.search(q, 10)[1], found)
    assert isinstance(build_index(Embeddings(np.array(ids), x)), ExactIndex)
    assert isinstance(build_index(Embeddings(np.array(ids), x), "ivf", n_lists=8), IVFIndex)
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(Embeddings(np.array(ids), x), "hnsw")


def test_text_search_returns_ids_and_scores(encoder, synthetic, tmp_path):
    items = embed_items(encoder, synthetic.items)
    search = TextSearch(encoder, build_index(items))
    ids, scores = search.search(synthetic.items["title"].iloc[0], k=5)
    assert ids.shape == scores.shape == (5,) and set(ids) <= set(synthetic.items["item_id"])
    assert np.all(np.diff(scores) <= 1e-6)
    many_ids, many_scores = search.search(["wireless headphones", "new text never seen"], k=3)
    assert many_ids.shape == many_scores.shape == (2, 3)
    ExactIndex(items.vectors, items.ids).save(tmp_path / "exact")
    assert isinstance(load_index(tmp_path / "exact"), ExactIndex)


def test_retrieval_metrics_on_a_hand_made_case():
    items = torch.eye(3)
    queries = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.9, 1.0], [0.1, 0.2, 0.3]])
    m = retrieval_metrics(queries, items, torch.tensor([0, 1, 0]), ks=(1, 2))
    # ranks: 1, 2, 3
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@2"] == pytest.approx(2 / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3) and m["queries"] == 3
