"""The synthetic generator: schema, determinism, and that the planted structure is there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import loaders
from loaders.dataset import CATEGORY_SEP, LINK_RELATIONS
from loaders.errors import ConfigError
from loaders.synthetic import (
    SyntheticConfig,
    SyntheticTruth,
    funnel_expectation,
    generate,
    ground_truth,
    read,
    slug,
)

CONFIG = SyntheticConfig(n_users=400, n_items=150, n_interactions=30_000, n_queries=30, seed=7)


@pytest.fixture(scope="module")
def generated():
    return generate(CONFIG, return_truth=True)


@pytest.fixture(scope="module")
def ds(generated):
    return generated[0]


@pytest.fixture(scope="module")
def truth(generated) -> SyntheticTruth:
    return generated[1]


def _events(ds, event: str) -> pd.DataFrame:
    inter = ds.interactions
    return inter[inter["event"] == event]


# --------------------------------------------------------------------------- schema, report

def test_validates_and_report_counts_every_row(ds):
    ds.validate()
    assert ds.name == "synthetic"
    assert list(ds.report.files) == ["synthetic"]
    total = sum(ds.sizes().values())
    f = ds.report.files["synthetic"]
    assert (f.read, f.kept, f.rejected) == (total, total, 0)
    ds.report.check()
    assert set(ds.interactions["event"]) == {"impression", "click", "purchase", "rating", "review"}
    assert (ds.interactions["split"] == "").all()


def test_load_through_registry_with_string_options():
    d = loaders.load("synthetic", None, n_users="50", n_items=30, n_interactions="2000", kg="false", seed=3)
    assert d.sizes()["users"] == 50 and d.sizes()["items"] == 30
    assert len(d.triples) == 0 and len(d.item_entities) == 0
    base = SyntheticConfig(n_users=50, n_items=30, n_interactions=2000, seed=3, kg=False)
    pd.testing.assert_frame_equal(d.interactions, read(config=base).interactions)


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="unknown synthetic option"):
        read(None, n_userz=10)
    with pytest.raises(ValueError, match="n_items must be >= n_subcategories"):
        SyntheticConfig(n_items=10, n_subcategories=24)
    with pytest.raises(ValueError):
        SyntheticConfig(impression_popularity=0.8, impression_targeted=0.5)


@pytest.mark.parametrize("options", [
    dict(n_users=1, n_items=1, n_categories=1, n_subcategories=1, n_brands=1, n_interactions=10,
         n_materials=1, n_styles=1, n_designers=1),
    dict(n_users=100, n_items=24, n_interactions=0),
    dict(n_users=100, n_items=300, n_categories=12, n_subcategories=100, n_brands=70,
         n_interactions=3000, kg=False, n_queries=0),
    dict(n_users=100, n_items=60, n_categories=1, n_subcategories=3, n_brands=2, n_interactions=2000,
         rating_noise=0.0, activity_sigma=0.0, impression_popularity=1.0, impression_targeted=0.0),
])
def test_edge_configs_validate(options):
    d = generate(SyntheticConfig(**options))
    d.validate()
    assert len(d.users) == options["n_users"] and len(d.items) == options["n_items"]


def test_config_round_trips():
    c = SyntheticConfig(n_users=123, taste_concentration=0.5, kg=False)
    assert SyntheticConfig.from_dict(c.to_dict()) == c
    assert c.to_dict()["n_users"] == 123


# --------------------------------------------------------------------------- determinism, sizes

def test_same_seed_same_tables_other_seed_differs(ds):
    again = generate(CONFIG)
    for name, table in ds.tables().items():
        pd.testing.assert_frame_equal(table, again.tables()[name], obj=name)
    other = generate(SyntheticConfig(**{**CONFIG.to_dict(), "seed": CONFIG.seed + 1}))
    assert not ds.interactions.equals(other.interactions)
    assert not ds.items["title"].equals(other.items["title"])


@pytest.mark.parametrize("target", [1_000, 10_000, 60_000])
def test_sizes_follow_the_config(target):
    c = SyntheticConfig(n_users=200, n_items=80, n_interactions=target, n_queries=5, seed=1)
    d = generate(c)
    n = len(d.interactions)
    assert target - 3 <= n <= target
    assert abs(n - target) <= 0.1 * target
    assert len(d.users) == 200 and len(d.items) == 80
    assert d.judgements["query"].nunique() == 5


def test_ground_truth_of_dataset_and_config_match(ds, truth):
    for other in (ground_truth(ds), ground_truth(CONFIG)):
        np.testing.assert_array_equal(other.user_taste, truth.user_taste)
        np.testing.assert_array_equal(other.item_quality, truth.item_quality)
        np.testing.assert_array_equal(other.item_brand, truth.item_brand)
    assert list(truth.user_ids) == ds.users["user_id"].tolist()
    assert list(truth.item_ids) == ds.items["item_id"].tolist()
    np.testing.assert_allclose(truth.user_taste.sum(axis=1), 1.0)


# --------------------------------------------------------------------------- funnel

def test_funnel_nests_per_user_item(ds):
    counts = ds.interactions.groupby(["user_id", "item_id", "event"]).size().unstack(fill_value=0)
    for col in ("impression", "click", "purchase", "rating", "review"):
        if col not in counts:
            counts[col] = 0
    assert (counts["click"] <= counts["impression"]).all()
    assert (counts["purchase"] <= counts["click"]).all()
    assert (counts["rating"] + counts["review"] <= 1).all()
    assert ((counts["rating"] + counts["review"] == 0) | (counts["purchase"] >= 1)).all()
    # each click follows one of its impressions by 1-29 s, each purchase one of its clicks
    for later, earlier, lo, hi in (("click", "impression", 1, 29), ("purchase", "click", 1, 58)):
        m = _events(ds, later).reset_index().merge(
            _events(ds, earlier), on=["user_id", "item_id"], suffixes=("", "_prev"))
        dt = m["timestamp"] - m["timestamp_prev"]
        matched = m.loc[(dt >= lo) & (dt <= hi), "index"].nunique()
        assert matched == len(_events(ds, later))


def test_purchase_values_are_quantities_and_ratings_stars(ds):
    assert set(_events(ds, "purchase")["value"]) <= {1.0, 2.0, 3.0}
    assert set(_events(ds, "impression")["value"]) == {1.0}
    stars = pd.concat([_events(ds, "rating")["value"], _events(ds, "review")["value"]])
    assert set(stars) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    # reviews table mirrors the review events
    rev = _events(ds, "review")
    assert len(ds.reviews) == len(rev)
    pairs = ds.reviews.merge(rev, on=["user_id", "item_id", "timestamp"])
    assert len(pairs) == len(rev) and (pairs["rating"] == pairs["value"]).all()


def test_click_and_purchase_rates_match_planted_expectation(ds, truth):
    f = funnel_expectation(ds, truth)
    assert f["impressions"] > 10_000 and f["clicks"] > 1_000 and f["purchases"] > 300
    for event in ("clicks", "purchases"):
        expected, sd = f[f"expected_{event}"], f[f"expected_{event}_sd"]
        assert abs(f[event] - expected) <= 4 * sd, (event, f)
        assert abs(f[event] - expected) <= 0.05 * expected, (event, f)


def test_truth_probabilities_follow_the_formulas(truth):
    c = truth.config
    u, i = np.array([0, 1, 2]), np.array([5, 6, 7])
    t = truth.user_taste[u, truth.item_category[i]] + c.brand_weight * truth.user_brand[u, truth.item_brand[i]]
    np.testing.assert_allclose(truth.taste(u, i), t, rtol=1e-6)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(
        truth.p_click(u, i), sig(c.click_taste * t + c.click_quality * truth.item_quality[i] + c.click_bias),
        rtol=1e-6)
    np.testing.assert_allclose(
        truth.p_buy(u, i),
        sig(c.buy_taste * t + c.buy_quality * truth.item_quality[i] - c.buy_price * truth.item_price_z[i]
            + c.buy_bias), rtol=1e-6)
    stars = truth.expected_stars(u, i)
    assert ((stars >= 1) & (stars <= 5)).all()


def test_users_buy_from_their_favourite_top_category(ds, truth):
    K = truth.config.n_categories
    buys = _events(ds, "purchase")
    u, i = truth.user_index(buys["user_id"]), truth.item_index(buys["item_id"])
    share = (truth.item_category[i] == truth.favourite_category[u]).mean()
    assert share > 3.0 / K
    imps = _events(ds, "impression")
    u2, i2 = truth.user_index(imps["user_id"]), truth.item_index(imps["item_id"])
    assert share > (truth.item_category[i2] == truth.favourite_category[u2]).mean() + 0.15


def test_cheaper_and_better_items_convert_better(ds, truth):
    clicks = _events(ds, "click")
    i = truth.item_index(clicks["item_id"])
    bought = ds.interactions[ds.interactions["event"] == "purchase"]
    key = pd.MultiIndex.from_frame(clicks[["user_id", "item_id"]])
    got = key.isin(pd.MultiIndex.from_frame(bought[["user_id", "item_id"]]))
    cheap = truth.item_price_z[i] < 0
    assert got[cheap].mean() > got[~cheap].mean()


def test_ratings_track_taste_and_quality(ds, truth):
    rated = ds.interactions[ds.interactions["event"].isin(["rating", "review"])]
    u, i = truth.user_index(rated["user_id"]), truth.item_index(rated["item_id"])
    corr = np.corrcoef(rated["value"], truth.rating_mean(u, i))[0, 1]
    assert corr > 0.4
    assert abs(rated["value"].mean() - truth.expected_stars(u, i).mean()) < 0.15


# --------------------------------------------------------------------------- time

def test_timestamps_increase_within_each_user(ds):
    inter = ds.interactions
    assert inter.groupby("user_id")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()
    imps = _events(ds, "impression")
    assert (imps.groupby("user_id")["timestamp"].diff().dropna() >= 60).all()
    assert (inter["timestamp"] >= CONFIG.start_timestamp).all()
    # impressions stay within the configured span (plus 60 s per impression of the user)
    n_imp = imps.groupby("user_id").size()
    last = imps.groupby("user_id")["timestamp"].max()
    assert (last <= CONFIG.start_timestamp + CONFIG.time_span_days * 86400 + 60 * n_imp).all()


# --------------------------------------------------------------------------- text

def test_text_reflects_attributes(ds, truth):
    items = ds.items
    nouns = np.asarray(truth.subcategory_nouns, dtype=object)[truth.item_subcategory]
    brands = np.asarray(truth.brand_names, dtype=object)[truth.item_brand]
    assert all(n in t for n, t in zip(nouns, items["title"]))
    assert all(t.startswith(b + " ") for b, t in zip(brands, items["title"]))
    assert (items["brand"].to_numpy() == brands).all()
    assert all(n in d and b in d for n, b, d in zip(nouns, brands, items["description"]))
    paths = [[truth.category_names[c] + CATEGORY_SEP + truth.subcategory_names[s]]
             for c, s in zip(truth.item_category, truth.item_subcategory)]
    assert items["categories"].tolist() == paths
    bands = np.searchsorted([-1.0, -0.35, 0.35, 1.0], truth.item_price_z)
    words = np.array(["budget", "affordable", "mid-range", "premium", "luxury"])[bands]
    assert all(d.startswith(f"A {w} ") for w, d in zip(words, items["description"]))
    assert items["features"].map(lambda f: 2 <= len(f) <= 4).all()
    np.testing.assert_allclose(items["price"], truth.item_price)
    assert (items["price"] > 0).all()


def test_review_text_reflects_rating_and_item(ds, truth):
    rev = ds.reviews
    assert len(rev) > 20
    i = truth.item_index(rev["item_id"])
    nouns = np.asarray(truth.subcategory_nouns, dtype=object)[truth.item_subcategory[i]]
    assert all(n in s and n in t for n, s, t in zip(nouns, rev["summary"], rev["text"]))
    good = rev.loc[rev["rating"] == 5, "summary"]
    bad = rev.loc[rev["rating"] <= 2, "summary"]
    assert len(good) > 0 and good.str.match(r"^(Excellent|Fantastic) ").all()
    assert bad.str.match(r"^(Terrible|Awful|Disappointing|Mediocre) ").all()


# --------------------------------------------------------------------------- links, KG

def test_item_links(ds, truth):
    links = ds.item_links
    assert set(links["relation"]) <= set(LINK_RELATIONS)
    assert (links["src_item"] != links["dst_item"]).all()
    view = links[links["relation"] == "also_view"]
    assert len(view) > 0
    s = truth.item_subcategory
    src, dst = truth.item_index(view["src_item"]), truth.item_index(view["dst_item"])
    assert (s[src] == s[dst]).all()
    buy = links[links["relation"] == "also_buy"]
    assert buy.groupby("src_item").size().max() <= CONFIG.n_also_buy
    src, dst = truth.item_index(buy["src_item"]), truth.item_index(buy["dst_item"])
    c = truth.item_category
    assert (c[src] == c[dst]).mean() > 0.5


def test_knowledge_graph_carries_subcategory_signal(ds, truth):
    assert len(ds.triples) > 0 and len(ds.item_entities) > 0
    assert set(ds.triples["relation"]) == {"subcategory_of", "used_for", "popular_in", "works_for", "known_for"}
    ents = ds.item_entities
    mat = ents[ents["entity_id"].str.startswith("material:")]
    assert len(mat) == len(ds.items)
    # the material of most items is one its subcategory prefers (planted: 80 %)
    used_for = ds.triples[ds.triples["relation"] == "used_for"]
    preferred = set(zip(used_for["head"], used_for["tail"]))
    i = truth.item_index(mat["item_id"])
    subs = ["subcategory:" + slug(truth.subcategory_names[s]) for s in truth.item_subcategory[i]]
    hit = np.mean([(m, s) in preferred for m, s in zip(mat["entity_id"], subs)])
    assert hit > 0.7


# --------------------------------------------------------------------------- search

def test_judgements_are_graded_as_specified(ds, truth):
    j = ds.judgements
    assert j["query"].nunique() == CONFIG.n_queries
    assert set(j["relevance"]) == {0, 1, 2, 3}
    nouns = truth.subcategory_nouns
    brands = [b.lower() for b in truth.brand_names]
    i = truth.item_index(j["item_id"])
    for (query, rel), item in zip(zip(j["query"], j["relevance"]), i):
        qb = brands.index(query.split(" ")[0])
        qs = max((s for s, n in enumerate(nouns) if query.endswith(" " + n)), key=lambda s: len(nouns[s]))
        qc = truth.subcategory_category[qs]
        if truth.item_subcategory[item] == qs:
            want = 3 if truth.item_brand[item] == qb else 2
        else:
            want = 1 if truth.item_category[item] == qc else 0
        assert rel == want, (query, rel, want)
    per_query = j.groupby("query")["relevance"].agg(lambda r: (r == 3).sum())
    assert (per_query >= 1).all()
    assert j.groupby(["query", "relevance"]).size().max() <= CONFIG.judgements_per_grade


def test_no_queries_no_judgements():
    d = generate(SyntheticConfig(n_users=50, n_items=40, n_interactions=500, n_queries=0))
    assert len(d.judgements) == 0
