"""kg.train: config, sampling, learning on planted data, determinism, resume, data parallel."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from kg.errors import ConfigError
from kg.evaluation import evaluate, popularity_scores
from kg.split import Split, cold_start
from kg.train import (PairSet, TrainConfig, build_model, sample_negatives, split_from_interactions,
                      train)

REPO = Path(__file__).resolve().parents[2]


def planted_split(num_users=300, num_items=200, blocks=10, per_user=12, seed=0) -> Split:
    """Users of block b buy items of block b (Zipf-ish popularity inside the block), plus noise;
    20% test, 10% of train valid."""
    rng = np.random.default_rng(seed)
    size = num_items // blocks
    users = np.repeat(np.arange(num_users), per_user)
    weights = 1.0 / np.arange(1, size + 1) ** 0.5
    local = rng.choice(size, len(users), p=weights / weights.sum())
    items = (users % blocks) * size + local
    noise = rng.random(len(users)) < 0.1
    items[noise] = rng.integers(0, num_items, noise.sum())
    splits = np.where(rng.random(len(users)) < 0.2, "test", "train")
    return split_from_interactions(users, items, splits, num_users, num_items, valid_fraction=0.1, seed=seed)


@pytest.fixture(scope="module")
def split() -> Split:
    return planted_split()


def small_config(**kw) -> TrainConfig:
    base = dict(model="lightgcn", embedding_dim=16, num_layers=2, lr=0.01, batch_size=256, epochs=4,
                l2=1e-4, eval_every=1, patience=100, seed=3, device="cpu", threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_config_round_trip():
    config = small_config(ks=(5, 20), model_options={"init_std": 0.05}, negatives="hard")
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.ks == (5, 20)
    with pytest.raises(ValueError):
        TrainConfig(model="nope")
    with pytest.raises(ValueError):
        TrainConfig.from_dict({"bogus": 1})


def test_split_from_interactions():
    users = np.array([0, 0, 1, 1, 2, 0])
    items = np.array([0, 1, 1, 2, 0, 0])  # (0, 0) repeated
    s = split_from_interactions(users, items, np.array(["train", "train", "test", "train", "train", "train"]), 3, 3)
    assert s.sizes() == {"train": 4, "valid": 0, "test": 1}
    s = split_from_interactions(np.arange(100) % 10, np.arange(100) % 7, np.array(["train"] * 100), 10, 7,
                                valid_fraction=0.2, seed=1)
    assert s.sizes()["valid"] == int(s.sizes()["train"] / 0.8 * 0.2) or s.sizes()["valid"] > 0


def test_negative_sampling_rejects_positives(split):
    positives = PairSet(split.train[0], split.train[1], split.num_items)
    users = torch.from_numpy(split.train[0])
    g = torch.Generator().manual_seed(0)
    neg = sample_negatives(users, (4,), positives, g)
    assert neg.shape == (len(users), 4)
    assert not positives.contains(users[:, None], neg).any()
    assert neg.min() >= 0 and neg.max() < split.num_items
    assert positives.contains(users, torch.from_numpy(split.train[1])).all()
    # a user who bought all but one item always gets that item
    few = PairSet(np.zeros(9, np.int64), np.arange(9), 10)
    assert (sample_negatives(torch.zeros(50, dtype=torch.long), (2,), few, g) == 9).all()


def test_cold_start_split_hides_the_cold_items(split):
    cold = cold_start(split, 0.2, seed=3)
    warm = cold.warm
    assert len(cold.items) == 40 and np.array_equal(cold.items, np.unique(cold.items))
    assert np.array_equal(cold_start(split, 0.2, seed=3).items, cold.items)  # seeded
    assert not np.array_equal(cold_start(split, 0.2, seed=4).items, cold.items)
    # no cold item in train or valid, none ranked among the warm items; no test part
    assert not np.isin(warm.train[1], cold.items).any() and not np.isin(warm.valid[1], cold.items).any()
    assert np.array_equal(np.sort(np.concatenate([warm.items, cold.items])), np.arange(split.num_items))
    assert warm.sizes()["test"] == 0
    # nothing lost: every pair is a warm one or a cold item's (train, valid and test alike)
    total = sum(split.sizes().values())
    assert warm.sizes()["train"] + warm.sizes()["valid"] + len(cold.pairs[0]) + \
        int(np.isin(split.test[1], warm.items).sum()) == total
    assert np.isin(cold.pairs[1], cold.items).all()
    # a split that names its ranked items keeps the others out of both sides
    named = Split(split.num_users, split.num_items, split.train, split.valid, split.test, items=np.arange(100))
    c = cold_start(named, 0.5)
    assert np.isin(c.items, np.arange(100)).all() and len(c.warm.items) == 50
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError, match="fraction"):
            cold_start(split, bad)


def test_negatives_from_a_pool(split):
    positives = PairSet(split.train[0], split.train[1], split.num_items)
    users = torch.from_numpy(split.train[0])
    pool = torch.arange(50, 150)
    neg = sample_negatives(users, (3,), positives, torch.Generator().manual_seed(0), pool=pool)
    assert torch.isin(neg, pool).all() and not positives.contains(users[:, None], neg).any()
    # training with negatives_from never touches an item outside it that has no positive:
    # its embedding stays as initialised (a cold item stays unseen)
    cold = cold_start(split, 0.2, seed=0)
    for model in ("bpr_mf", "lightgcn"):
        config = small_config(model=model, epochs=3, eval_every=3)
        net = build_model(config, (split.num_users, split.num_items), cold.warm)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        train(net, cold.warm, config, progress=False, negatives_from=cold.warm.items)
        table = next(k for k, v in before.items() if v.shape[0] in (split.num_items, split.num_users + split.num_items))
        offset = before[table].shape[0] - split.num_items
        rows = torch.from_numpy(cold.items) + offset
        assert torch.equal(net.state_dict()[table][rows], before[table][rows]), model
        warm_rows = torch.from_numpy(cold.warm.items[:20]) + offset
        assert not torch.equal(net.state_dict()[table][warm_rows], before[table][warm_rows]), model


@pytest.mark.parametrize("model", ["bpr_mf", "lightgcn"])
def test_learns_planted_structure(split, model):
    config = small_config(model=model, epochs=15, lr=0.02, num_negatives=4, eval_every=5)
    net = build_model(config, (split.num_users, split.num_items), split)
    result = train(net, split, config, progress=False)
    pop = evaluate(popularity_scores(split.train, split.num_items), split.num_users, split.num_items,
                   split.test, [split.train, split.valid], ks=(20,))
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    # measured: popularity 0.135, BPR-MF 0.76, LightGCN 0.88
    assert result.test_metrics["recall@20"] > 4 * pop["recall@20"], (result.test_metrics, pop)
    assert result.test_metrics["recall@20"] > 0.6
    assert result.best_metrics and 1 <= result.best_epoch <= 15


def test_hard_negatives_train(split):
    config = small_config(negatives="hard", hard_candidates=4, epochs=2, eval_every=0)
    result = train(build_model(config, (split.num_users, split.num_items), split), split, config, progress=False)
    assert np.isfinite(result.history[-1]["loss"]) and result.test_metrics["recall@20"] > 0


def test_deterministic_on_cpu(split):
    config = small_config(num_negatives=2)
    runs = [train(build_model(config, (split.num_users, split.num_items), split), split, config, progress=False)
            for _ in range(2)]
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]
    assert runs[0].test_metrics == runs[1].test_metrics


def test_checkpoint_resume_equals_straight_run(split, tmp_path):
    sizes = (split.num_users, split.num_items)
    config4 = small_config(epochs=4, lr_decay=0.8)  # the schedule must resume too
    straight = train(build_model(config4, sizes, split), split, config4, progress=False)
    config2 = small_config(epochs=2, lr_decay=0.8)
    train(build_model(config2, sizes, split), split, config2, checkpoint_dir=tmp_path, progress=False)
    assert (tmp_path / "last.pt").exists() and not list(tmp_path.glob("*.tmp*"))
    resumed = train(build_model(config4, sizes, split), split, config4, checkpoint_dir=tmp_path,
                    resume=True, progress=False)
    assert len(resumed.history) == 4
    np.testing.assert_allclose([h["loss"] for h in resumed.history], [h["loss"] for h in straight.history],
                               rtol=1e-6)
    for a, b in zip(resumed.model.parameters(), straight.model.parameters()):
        torch.testing.assert_close(a, b)


def test_early_stopping_restores_best(split):
    config = small_config(epochs=30, lr=0.2, patience=2, select_metric="ndcg@20")
    result = train(build_model(config, (split.num_users, split.num_items), split), split, config, progress=False)
    evaluated = [h for h in result.history if "valid_ndcg@20" in h]
    best = max(evaluated, key=lambda h: h["valid_ndcg@20"])
    assert result.best_epoch == best["epoch"]
    assert len(result.history) <= 30
    # it says why it stopped: early stopping here, all epochs or the time limit otherwise
    assert result.stop_reason == ("patience" if len(result.history) < 30 else "epochs")
    short = small_config(epochs=2, patience=100)
    assert train(build_model(short, (split.num_users, split.num_items), split), split, short,
                 progress=False).stop_reason == "epochs"
    timed = small_config(epochs=30, patience=100, max_seconds=0.0)
    result = train(build_model(timed, (split.num_users, split.num_items), split), split, timed, progress=False)
    assert result.stop_reason == "time" and len(result.history) == 1


DDP_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, torch, torch.distributed as dist, torch.multiprocessing as mp

    def worker(rank, world, init, out):
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
        from kg.train import TrainConfig, build_model, train, split_from_interactions
        sys.path.insert(0, {tests!r})
        from test_train_planted import planted_split
        split = planted_split()
        config = TrainConfig.from_dict(json.loads({config!r}))
        result = train(build_model(config, (split.num_users, split.num_items), split), split, config, progress=False)
        if rank == 0:
            torch.save({{"losses": [h["loss"] for h in result.history],
                        "state": result.model.state_dict()}}, out)
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.start_processes(worker, args=(2, sys.argv[1], sys.argv[2]), nprocs=2, start_method="fork")
""")


def test_distributed_two_ranks_match_one(split, tmp_path):
    # a time cap that is never reached: each epoch's cap decision is rank 0's, broadcast
    config = small_config(epochs=2, batch_size=250, num_negatives=2, eval_every=0, max_seconds=1e6)
    single = train(build_model(config, (split.num_users, split.num_items), split), split, config, progress=False)
    # the child imports planted_split from a copy of this file's helper
    helper = tmp_path / "test_train_planted.py"
    source = Path(__file__).read_text()
    helper.write_text(source[: source.index("@pytest.fixture")])
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(tmp_path), config=json.dumps(config.to_dict())))
    out = tmp_path / "rank0.pt"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), f"file://{tmp_path / 'rendezvous'}", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out)
    np.testing.assert_allclose(ddp["losses"], [h["loss"] for h in single.history], rtol=1e-4)
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp["state"][name], value, rtol=1e-4, atol=1e-5)


def test_build_model_kgrec_uses_kg_model(split, monkeypatch):
    """'kgrec' imports kg.models.kg_model.KGModel lazily with the documented signature."""
    import types

    calls = {}

    class FakeKGModel(torch.nn.Module):
        def __init__(self, num_users, num_items, triples, adjacency, embedding_dim, num_layers, **options):
            super().__init__()
            calls.update(num_users=num_users, num_items=num_items, triples=triples, shape=tuple(adjacency.shape),
                         embedding_dim=embedding_dim, num_layers=num_layers, options=options)

    monkeypatch.setitem(sys.modules, "kg.models.kg_model", types.SimpleNamespace(KGModel=FakeKGModel))

    class FakeExport:
        data = {"user": types.SimpleNamespace(num_nodes=split.num_users),
                "product": types.SimpleNamespace(num_nodes=split.num_items)}

        def knowledge_triples(self):
            return "triples"

    config = small_config(model="kgrec", model_options={"relation_dim": 8})
    build_model(config, FakeExport(), split)
    n = split.num_users + split.num_items
    assert calls == {"num_users": split.num_users, "num_items": split.num_items, "triples": "triples",
                     "shape": (n, n), "embedding_dim": 16, "num_layers": 2,
                     "options": {"relation_dim": 8, "ranking": config.ranking_spec()}}
    with pytest.raises(ValueError):
        build_model(config, (split.num_users, split.num_items), split)


def test_contrastive_flag_trains_and_its_loss_falls(split):
    """``contrastive="xsimgcl"`` (one TrainConfig field) adds the logged InfoNCE term; both the
    total and the term fall, and the model still learns the planted blocks."""
    # (measured: test Recall@20 0.83 with lambda 0.05; 0.50 with lambda 0.2, whose uniformity
    # term pushes apart the many same-block users of this 10-block toy; LightGCN 0.88)
    config = small_config(epochs=10, lr=0.02, num_negatives=4, eval_every=5, contrastive="xsimgcl",
                          cl_weight=0.05, cl_eps=0.1, cl_temperature=0.2)
    net = build_model(config, (split.num_users, split.num_items), split)
    assert net.contrastive is not None and net.contrastive.mode == "xsimgcl"
    result = train(net, split, config, progress=False)
    first, last = result.history[0], result.history[-1]
    assert "cl" in first and last["cl"] < first["cl"] and last["loss"] < first["loss"]
    pop = evaluate(popularity_scores(split.train, split.num_items), split.num_users, split.num_items,
                   split.test, [split.train, split.valid], ks=(20,))
    assert result.test_metrics["recall@20"] > 4 * pop["recall@20"], (result.test_metrics, pop)
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.contrastive_spec() == config.contrastive_spec()


def test_contrastive_settings_are_checked():
    assert small_config().contrastive_spec() is None  # off by default: BPR only
    with pytest.raises(ConfigError):
        small_config(contrastive="sgl")
    with pytest.raises(ConfigError):
        small_config(model="bpr_mf", contrastive="xsimgcl")
    with pytest.raises(ConfigError):
        small_config(kg_view_weight=0.1)  # the knowledge view needs the KG model
    with pytest.raises(ConfigError):
        small_config(contrastive="xsimgcl", cl_temperature=0)
    assert small_config(model="kgrec", kg_view_weight=0.1).contrastive_spec().mode == "none"


def test_softmax_loss_flag_learns_and_scores_by_cosine(split):
    """``loss="softmax"`` (one TrainConfig field): sampled softmax against negatives shared by
    the batch; the loss falls, the model learns the planted blocks, scores by cosine, and two
    runs are identical (the shared negatives come from the seeded generator)."""
    config = small_config(epochs=10, lr=0.02, eval_every=5, loss="softmax", softmax_negatives=64,
                          softmax_temperature=0.2)
    runs = []
    for model in ("lightgcn", "bpr_mf", "lightgcn"):
        cfg = TrainConfig.from_dict({**config.to_dict(), "model": model})
        net = build_model(cfg, (split.num_users, split.num_items), split)
        assert net.ranking.loss == "softmax"
        runs.append(train(net, split, cfg, progress=False))
        first, last = runs[-1].history[0], runs[-1].history[-1]
        assert "softmax" in first and "bpr" not in first and last["softmax"] < first["softmax"]
        users, items = net.embeddings()
        torch.testing.assert_close(items.norm(dim=1), torch.ones(split.num_items))
    pop = evaluate(popularity_scores(split.train, split.num_items), split.num_users, split.num_items,
                   split.test, [split.train, split.valid], ks=(20,))
    # measured: LightGCN 0.82, BPR-MF 0.81 (popularity 0.135)
    assert runs[0].test_metrics["recall@20"] > 4 * pop["recall@20"], (runs[0].test_metrics, pop)
    assert runs[1].test_metrics["recall@20"] > 4 * pop["recall@20"], (runs[1].test_metrics, pop)
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[2].history]
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_loss_settings_are_checked():
    assert small_config().ranking_spec().loss == "bpr"  # BPR by default
    for bad in (dict(loss="hinge"), dict(loss="softmax", softmax_temperature=0),
                dict(loss="softmax", softmax_negatives=0), dict(loss="softmax", negatives="hard")):
        with pytest.raises(ConfigError):
            small_config(**bad)


def test_leave_last_out_orders_ties_in_time_at_random():
    """Items bought at the same time (one day's reviews, a basket, no times at all) are held
    out at random, not by index: by index every user's test item was their highest-index
    one, so the highest-index items were never in anyone's training part."""
    from torch_geometric.data import HeteroData

    from kg.split import split_interactions

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(200), 5)
    items = np.concatenate([rng.choice(50, 5, replace=False) for _ in range(200)])
    data = HeteroData()
    data["user"].num_nodes, data["product"].num_nodes = 200, 50
    edge = data["user", "purchased", "product"]
    edge.edge_index = torch.from_numpy(np.stack([users, items]))
    edge.time = torch.zeros(len(users), dtype=torch.long)  # every time the same
    edge.split = torch.zeros(len(users), dtype=torch.int8)
    split = split_interactions(data, "leave_last_out", types=("purchased",))
    per_user_max = np.full(200, -1)
    np.maximum.at(per_user_max, users, items)
    held = split.test[1]
    assert split.sizes()["test"] == 200
    assert (held == per_user_max[split.test[0]]).mean() < 0.5  # about 1 in 5, not every one
    assert split_interactions(data, "leave_last_out", types=("purchased",)).test[1].tolist() == held.tolist()
