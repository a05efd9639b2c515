"""kg.models: BPR-MF and LightGCN follow the Recommender protocol and its formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kg.models import BPRMF, LightGCN, Recommender
from kg.models.base import Contrastive, Ranking
from kg.sparse import normalized_adjacency


def planted_pairs(num_users=60, num_items=40, blocks=4, per_user=8, seed=0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(num_users), per_user)
    size = num_items // blocks
    block = users % blocks
    items = block * size + rng.integers(0, size, len(users))
    return users, items


@pytest.fixture
def graph():
    users, items = planted_pairs()
    return users, items, 60, 40


def test_shapes_repr_protocol(graph):
    users, items, nu, ni = graph
    adj = normalized_adjacency(users, items, nu, ni)
    for model in (BPRMF(nu, ni, 16), LightGCN(nu, ni, adj, embedding_dim=16, num_layers=2)):
        assert isinstance(model, Recommender)
        assert (model.num_users, model.num_items) == (nu, ni)
        ue, ie = model.embeddings()
        assert ue.shape == (nu, 16) and ie.shape == (ni, 16)
        batch = torch.tensor([0, 5, 7])
        assert model.score(batch).shape == (3, ni)
        torch.testing.assert_close(model.score(batch, (ue, ie)), ue[batch] @ ie.t())
        for neg in (torch.tensor([1, 2, 3]), torch.tensor([[1, 2], [3, 4], [5, 6]])):
            loss, parts = model.loss(batch, torch.tensor([0, 1, 2]), neg, l2=1e-3)
            assert loss.dim() == 0 and set(parts) >= {"bpr", "reg"}
            loss.backward()
    assert repr(BPRMF(nu, ni, 16)) == "BPRMF(60, 40, embedding_dim=16)"
    assert repr(LightGCN(nu, ni, adj, 16, 2)) == "LightGCN(60, 40, embedding_dim=16, num_layers=2)"
    with pytest.raises(ValueError):
        LightGCN(nu + 1, ni, adj)


def test_lightgcn_embeddings_are_the_layer_average(graph):
    users, items, nu, ni = graph
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    model = LightGCN(nu, ni, adj, embedding_dim=8, num_layers=3).double()
    e0 = model.embedding.weight.detach()
    dense = adj.to_dense()
    layers = [e0]
    for _ in range(3):
        layers.append(dense @ layers[-1])
    expected = torch.stack(layers).mean(0)
    ue, ie = model.embeddings()
    torch.testing.assert_close(ue, expected[:nu])
    torch.testing.assert_close(ie, expected[nu:])


def test_loss_formula_and_gradient(graph):
    users, items, nu, ni = graph
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    model = LightGCN(nu, ni, adj, embedding_dim=4, num_layers=2).double()
    u, p, n = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([[4, 5, 6], [7, 8, 9]])
    ue, ie = model.embeddings()
    ego = model.embedding.weight
    pos = (ue[u] * ie[p]).sum(-1, keepdim=True)
    neg = (ue[u][:, None] * ie[n]).sum(-1)
    bpr = torch.nn.functional.softplus(neg - pos).mean()
    reg = 0.5 * (ego[u].pow(2).sum() + ego[p + nu].pow(2).sum() + ego[n + nu].pow(2).sum() / 3) / 2
    loss, parts = model.loss(u, p, n, l2=0.1)
    torch.testing.assert_close(loss, bpr + 0.1 * reg)
    assert parts["bpr"] == pytest.approx(float(bpr.detach())) and parts["reg"] == pytest.approx(float(reg.detach()))
    # the custom backward equals autograd through the explicit dense formula
    grad = torch.autograd.grad(loss, ego)[0]
    e = ego.detach().clone().requires_grad_()
    layers = [e]
    for _ in range(2):
        layers.append(adj.to_dense() @ layers[-1])
    out = torch.stack(layers).mean(0)
    pos2 = (out[u] * out[p + nu]).sum(-1, keepdim=True)
    neg2 = (out[u][:, None] * out[n + nu]).sum(-1)
    reg2 = 0.5 * (e[u].pow(2).sum() + e[p + nu].pow(2).sum() + e[n + nu].pow(2).sum() / 3) / 2
    ref = torch.autograd.grad(torch.nn.functional.softplus(neg2 - pos2).mean() + 0.1 * reg2, e)[0]
    torch.testing.assert_close(grad, ref)


def test_lightgcn_moves_adjacency_with_dtype(graph):
    users, items, nu, ni = graph
    model = LightGCN(nu, ni, normalized_adjacency(users, items, nu, ni), 8, 1)
    model.double()
    assert model.adjacency.values().dtype == torch.float64
    assert "adjacency" not in model.state_dict()


def hand_info_nce(a, b, tau):
    """-log of the positive's softmax share, cosine similarities over tau (the docstring)."""
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    sim = torch.exp(a @ b.t() / tau)
    return (-torch.log(sim.diagonal() / sim.sum(1))).mean()


def test_xsimgcl_term_is_the_docstring_formula(graph):
    """Without noise (eps = 0) the loss is BPR + L2 + lambda (InfoNCE(users) + InfoNCE(items))
    between the layer mean and layer l*, over the batch's distinct users and positives."""
    users, items, nu, ni = graph
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    spec = Contrastive(mode="xsimgcl", weight=0.3, eps=0.0, temperature=0.2, layer=1)
    model = LightGCN(nu, ni, adj, embedding_dim=4, num_layers=2, contrastive=spec).double()
    plain = LightGCN(nu, ni, adj, embedding_dim=4, num_layers=2).double()
    plain.load_state_dict(model.state_dict())
    u, p, n = torch.tensor([0, 1, 0]), torch.tensor([2, 3, 2]), torch.tensor([4, 5, 6])
    loss, parts = model.loss(u, p, n, l2=0.1)
    base, _ = plain.loss(u, p, n, l2=0.1)
    ego = model.embedding.weight.detach()
    layer1 = adj.to_dense() @ ego
    out = torch.stack([ego, layer1, adj.to_dense() @ layer1]).mean(0)
    du, di = torch.tensor([0, 1]), torch.tensor([2, 3]) + nu  # distinct users / positive items
    cl = hand_info_nce(out[du], layer1[du], 0.2) + hand_info_nce(out[di], layer1[di], 0.2)
    assert parts["cl"] == pytest.approx(float(cl))
    torch.testing.assert_close(loss.detach(), base.detach() + 0.3 * cl)
    # scoring never sees the noise nor the term: the same embeddings as plain LightGCN
    for a, b in zip(model.embeddings(), plain.embeddings()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", ["xsimgcl", "simgcl"])
def test_contrastive_noise_and_subsampling(graph, mode):
    users, items, nu, ni = graph
    adj = normalized_adjacency(users, items, nu, ni)
    spec = Contrastive(mode=mode, eps=0.2, max_nodes=8)
    model = LightGCN(nu, ni, adj, embedding_dim=8, num_layers=2, contrastive=spec)
    u, p = torch.arange(40), torch.arange(40) % ni
    torch.manual_seed(0)
    a, parts = model.loss(u, p, (p + 1) % ni)
    torch.manual_seed(1)
    b, _ = model.loss(u, p, (p + 1) % ni)
    assert float(a.detach()) != float(b.detach())  # a fresh noise draw (and anchor subset) each step
    assert 0 < parts["cl"] < 2 * np.log(8) + 1  # InfoNCE over at most 8 anchors: ~log 8 at random
    a.backward()
    assert model.embedding.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        LightGCN(nu, ni, adj, contrastive=Contrastive(mode="xsimgcl", kg_weight=0.1))
    with pytest.raises(ValueError):
        Contrastive(mode="sgl")


def test_sampled_softmax_is_the_docstring_formula(graph):
    """``Ranking("softmax")``: -log of the positive's share among the positive and the shared
    negatives (cosine / tau, a row's own positive masked among them) + L2 on the users' and
    positives' ego rows; the final representations are unit vectors, so a score is a cosine."""
    users, items, nu, ni = graph
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    model = LightGCN(nu, ni, adj, embedding_dim=4, num_layers=2, ranking=Ranking("softmax", 0.3)).double()
    plain = LightGCN(nu, ni, adj, embedding_dim=4, num_layers=2).double()
    plain.load_state_dict(model.state_dict())
    u, p, n = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([3, 5, 6])  # 3: user 1's positive
    loss, parts = model.loss(u, p, n, l2=0.1)
    ue, ie = (x / x.norm(dim=1, keepdim=True) for x in plain.embeddings())
    expected = 0.0
    for b in range(2):
        others = [m for m in n.tolist() if m != p[b]]
        logits = torch.cat([(ue[u[b]] * ie[p[b]]).sum()[None], ie[others] @ ue[u[b]]]) / 0.3
        expected += (torch.logsumexp(logits, 0) - logits[0]) / 2
    ego = model.embedding.weight.detach()
    reg = 0.5 * (ego[u].pow(2).sum() + ego[p + nu].pow(2).sum()) / 2
    expected = expected.detach()
    assert parts["softmax"] == pytest.approx(float(expected))
    torch.testing.assert_close(loss.detach(), expected + 0.1 * reg)
    for a, b in zip(model.embeddings(), (ue, ie)):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(model.score(u), ue[u] @ ie.t())
    mf = BPRMF(nu, ni, 4, ranking=Ranking("softmax"))
    assert torch.allclose(mf.embeddings()[1].norm(dim=1), torch.ones(ni))
    loss, parts = mf.loss(u, p, n, l2=0.0)
    loss.backward()
    with pytest.raises(ValueError):
        Ranking("hinge")
