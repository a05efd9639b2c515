"""Product texts, training pairs, the InfoNCE loss, and fine-tuning that measurably helps."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import loaders
from fusion.text.texts import (ProductTextConfig, product_text, product_texts, pseudo_queries,
                                 review_text, review_texts, truncate)
from fusion.text.encoder import TextEncoder, random_checkpoint
from fusion.text.finetune import (TRAIN_FILE, InfoNCELoss, TextTrainConfig, build_pairs, finetune,
                                  load_train_record, review_retrieval, run_finetune, split_reviews)


@pytest.fixture(scope="module")
def synthetic():
    # every purchase reviewed, so a small catalogue has enough reviews to learn from
    return loaders.load("synthetic", None, n_users=300, n_items=150, n_interactions=15_000,
                        n_queries=20, seed=1, rating_rate=1.0, review_share=1.0)


@pytest.fixture(scope="module")
def tiny_dir(synthetic, tmp_path_factory):
    texts = (product_texts(synthetic.items).tolist() + review_texts(synthetic.reviews).tolist()
             + synthetic.judgements["query"].tolist() + pseudo_queries(synthetic.items, 3)["query"].tolist())
    return random_checkpoint(tmp_path_factory.mktemp("tiny"), texts, max_length=64)


FAST = dict(epochs=2, batch_size=32, lr=1e-3, max_length=64, anchor_max_length=48,
            threads=1)  # tiny model: one thread is fastest, and immune to busy machines


# ---------------------------------------------------------------------------- product texts

def test_product_text_layout_cleaning_and_truncation():
    text = product_text(
        title="Acme <b>Ultra</b> Kettle &amp; Stand", brand="Acme",
        categories=["Home &amp; Kitchen > Kettles", "Home &amp; Kitchen > Kettles", "Gifts"],
        description="<p>Boils fast.</p> " + "word " * 200,
        features=["1.7 l", "1.7 l", "Auto shut-off"])
    assert text.startswith("Acme Ultra Kettle & Stand. Category: Home & Kitchen > Kettles; Gifts. Boils fast.")
    assert "Brand:" not in text                      # the title already starts with the brand
    assert "Features: 1.7 l; Auto shut-off." in text  # duplicates dropped
    assert "<" not in text and "&amp;" not in text
    assert "…" in text and len(text) <= ProductTextConfig().max_chars
    assert product_text(title="Card", brand="Target") == "Card. Brand: Target."
    assert product_text() == ""


def test_truncate_cuts_at_a_word_boundary():
    assert truncate("short", 10) == "short"
    cut = truncate("alpha beta gamma delta", 14)
    assert cut == "alpha beta…" and len(cut) <= 14


def test_review_text_drops_a_summary_that_repeats_the_text():
    assert review_text("Five Stars", "Nice present") == "Five Stars. Nice present"
    assert review_text("Great gift", "Great gift for my son") == "Great gift for my son"
    assert review_text("", "") == ""


def test_pseudo_queries_are_short_seeded_and_free_of_model_numbers(synthetic):
    pq = pseudo_queries(synthetic.items, per_item=3, seed=4)
    assert pq.equals(pseudo_queries(synthetic.items, per_item=3, seed=4))
    assert pq.groupby("item_id").size().max() <= 3
    assert not pq["query"].str.contains(r"\d").any()
    assert pq["query"].str.split().str.len().between(1, 6).all()
    assert not pq.duplicated().any()


# ---------------------------------------------------------------------------- config, split, pairs

def test_config_round_trips_through_json():
    config = TextTrainConfig(epochs=3, learn_temperature=True, text=ProductTextConfig(max_chars=300))
    again = TextTrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.text.max_chars == 300
    with pytest.raises(ValueError, match="unknown"):
        TextTrainConfig.from_dict({"epoch": 1})
    with pytest.raises(ValueError, match="batch_size"):
        TextTrainConfig(batch_size=1)


def test_split_reviews_is_seeded_and_disjoint(synthetic):
    train, held = split_reviews(synthetic.reviews, 0.2, seed=3)
    assert len(train) + len(held) == len(synthetic.reviews)
    assert len(held) == round(0.2 * len(synthetic.reviews))
    assert not set(train["review_id"]) & set(held["review_id"])
    assert split_reviews(synthetic.reviews, 0.2, seed=3)[1].equals(held)


def test_pairs_use_training_reviews_judgements_and_pseudo_queries_only(synthetic):
    config = TextTrainConfig(min_relevance=2, pseudo_queries_per_item=2)
    train, held = split_reviews(synthetic.reviews, 0.2, seed=0)
    pairs = build_pairs(synthetic.items, train, synthetic.judgements, config)
    counts = pairs.counts()
    assert counts["review"] == (review_texts(train).str.len() > 0).sum()
    judged = synthetic.judgements[synthetic.judgements["relevance"] >= 2]
    assert counts["query"] == len(judged)
    pseudo_items = set(pairs.item_ids[pairs.items[pairs.kinds == "pseudo"]])
    assert pseudo_items and not pseudo_items & set(judged["item_id"])
    # every positive of a query text is known, to mask in-batch false negatives
    q = judged["query"].iloc[0]
    g = pairs.groups[pairs.anchors.index(q)]
    rows = {int(np.flatnonzero(pairs.item_ids == i)[0]) for i in judged.loc[judged["query"] == q, "item_id"]}
    assert pairs.positives[g] == rows


def test_heldout_review_texts_never_become_anchors(synthetic):
    train, held = split_reviews(synthetic.reviews, 0.3, seed=0)
    pairs = build_pairs(synthetic.items, train, None, TextTrainConfig(pseudo_queries_per_item=0))
    only_held = set(review_texts(held)) - set(review_texts(train))
    assert only_held and not only_held & set(pairs.anchors)


# ---------------------------------------------------------------------------- loss

def test_infonce_is_low_when_aligned_and_log_batch_when_uninformative():
    loss = InfoNCELoss(temperature=0.05, symmetric=False)
    eye = torch.eye(4)
    assert loss(eye, eye, torch.arange(4)) < 1e-3
    same = torch.nn.functional.normalize(torch.ones(4, 4), dim=1)
    assert math.isclose(float(loss(same, same, torch.arange(4))), math.log(4), rel_tol=1e-5)
    sym = InfoNCELoss(temperature=0.05, symmetric=True)
    assert math.isclose(float(sym(same, same, torch.arange(4))), math.log(4), rel_tol=1e-5)


def test_infonce_masks_other_positives_of_the_same_anchor():
    loss = InfoNCELoss(temperature=1.0, symmetric=False)
    anchors = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0]]), dim=1)
    products = torch.tensor([[1.0, 0.0], [0.0, 1.0]])          # both relevant to the anchor
    plain = loss(anchors, products, torch.tensor([0]))
    masked = loss(anchors, products, torch.tensor([0]), torch.tensor([[False, True]]))
    assert math.isclose(float(plain), math.log(2), rel_tol=1e-5) and float(masked) < 1e-6


def test_learned_temperature_gets_a_gradient():
    loss = InfoNCELoss(temperature=0.1, learn=True)
    a = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    loss(a, a, torch.arange(6)).backward()
    assert loss.log_scale.grad is not None and math.isclose(loss.temperature, 0.1, rel_tol=1e-5)


# ---------------------------------------------------------------------------- training

def test_finetuning_raises_heldout_review_to_product_recall(synthetic, tiny_dir, tmp_path):
    """The point of fine-tuning: held-out reviews find their product much more often."""
    config = TextTrainConfig(checkpoint=str(tiny_dir), heldout_fraction=0.2, seed=0, **FAST)
    result = run_finetune(synthetic, config, out_dir=tmp_path / "enc")
    before, after = result.before, result.after
    print(f"before {before}\nafter {after}")
    assert before["queries"] == after["queries"] >= 100
    assert after["recall@10"] >= before["recall@10"] + 0.3, (before, after)
    assert after["mrr"] >= before["mrr"] + 0.2 and after["recall@1"] > before["recall@1"]
    assert result.history[-1]["loss"] < result.history[0]["loss"] < math.log(32)
    # the checkpoint is an HF directory + our config, and reproduces the measurement
    saved_config, record = load_train_record(tmp_path / "enc")
    assert saved_config == config and record["metrics"]["after"] == after
    assert (tmp_path / "enc" / "config.json").is_file()
    again = TextEncoder.from_pretrained(tmp_path / "enc")
    assert again.fingerprint() == result.encoder.fingerprint() == record["fingerprint"]
    _, held = split_reviews(synthetic.reviews, 0.2, seed=0)
    again_metrics = review_retrieval(again, synthetic.items, held)
    assert math.isclose(again_metrics["recall@10"], after["recall@10"], abs_tol=1e-9)


def test_training_is_seeded_and_respects_max_steps(synthetic, tiny_dir, tmp_path):
    config = TextTrainConfig(checkpoint=str(tiny_dir), max_steps=3, **{**FAST, "epochs": 5})
    train, _ = split_reviews(synthetic.reviews, 0.2, seed=0)
    pairs = build_pairs(synthetic.items, train, synthetic.judgements, config)
    runs = [finetune(TextEncoder.from_pretrained(tiny_dir), pairs, config, out_dir=tmp_path / f"r{i}")
            for i in range(2)]
    assert runs[0].steps == runs[1].steps == 3 and len(runs[0].history) == 1
    assert runs[0].history[0]["loss"] == runs[1].history[0]["loss"]
    assert runs[0].encoder.fingerprint() == runs[1].encoder.fingerprint()
    assert (tmp_path / "r0" / TRAIN_FILE).is_file()


def test_finetune_refuses_too_few_pairs(synthetic, tiny_dir):
    pairs = build_pairs(synthetic.items.head(1), synthetic.reviews.head(0), None,
                        TextTrainConfig(pseudo_queries_per_item=1))
    with pytest.raises(ValueError, match="at least 2"):
        finetune(TextEncoder.from_pretrained(tiny_dir), pairs, TextTrainConfig(**FAST))


def test_review_retrieval_skips_empty_reviews_and_unknown_items(synthetic, tiny_dir):
    reviews = synthetic.reviews.head(5).copy()
    reviews.loc[0, ["summary", "text"]] = ""
    reviews.loc[1, "item_id"] = "no-such-item"
    metrics = review_retrieval(TextEncoder.from_pretrained(tiny_dir), synthetic.items, reviews)
    assert metrics["queries"] == 3 and 0 <= metrics["recall@1"] <= metrics["recall@10"] <= 1
    assert isinstance(pd.Series(metrics), pd.Series)
