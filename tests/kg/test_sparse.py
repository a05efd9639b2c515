"""kg.sparse: the normalised adjacency and the symmetric SpMM / layer-mean Functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kg.sparse import (LayerMeanPropagation, SymmetricSpMM, noisy_propagate, normalized_adjacency, propagate,
                       sparse_mm, spmm)


def dense_adjacency(users, items, num_users, num_items):
    n = num_users + num_items
    a = torch.zeros(n, n, dtype=torch.float64)
    a[users, items + num_users] = 1
    a[items + num_users, users] = 1
    deg = a.sum(1)
    inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return inv[:, None] * a * inv[None, :]


@pytest.fixture
def tiny():
    users = np.array([0, 0, 1, 2, 2, 2, 0])  # the last pair repeats (0, 1)
    items = np.array([0, 1, 1, 2, 3, 0, 1])
    return users, items, 4, 5  # user 3 and item 4 are isolated


def test_normalized_adjacency_matches_dense(tiny):
    users, items, nu, ni = tiny
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    assert adj.layout == torch.sparse_csr and adj.shape == (nu + ni, nu + ni)
    assert adj.values().numel() == 2 * 6  # distinct pairs, both directions
    dense = adj.to_dense()
    torch.testing.assert_close(dense, dense_adjacency(users, items, nu, ni))
    torch.testing.assert_close(dense, dense.t())
    assert dense[3].abs().sum() == 0 and dense[nu + 4].abs().sum() == 0  # isolated: zero, not nan
    assert adj.values().dtype == torch.float64
    assert normalized_adjacency(users, items, nu, ni).values().dtype == torch.float32


def test_normalized_adjacency_rejects_bad_pairs():
    with pytest.raises(ValueError):
        normalized_adjacency(np.array([0, 5]), np.array([0, 1]), 3, 3)
    with pytest.raises(ValueError):
        normalized_adjacency(np.array([0]), np.array([0, 1]), 3, 3)


def test_sparse_mm_equals_dense(tiny):
    users, items, nu, ni = tiny
    for dtype in (torch.float32, torch.float64):
        adj = normalized_adjacency(users, items, nu, ni, dtype=dtype)
        x = torch.randn(nu + ni, 7, dtype=dtype)
        torch.testing.assert_close(sparse_mm(adj, x), adj.to_dense() @ x)
        torch.testing.assert_close(sparse_mm(adj, x), torch.sparse.mm(adj, x))


def test_spmm_forward_backward_and_gradcheck(tiny):
    users, items, nu, ni = tiny
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    dense = adj.to_dense()
    x = torch.randn(nu + ni, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(nu + ni, 3, dtype=torch.float64)
    y = spmm(adj, x)
    torch.testing.assert_close(y, dense @ x)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, dense.t() @ w)
    assert torch.autograd.gradcheck(lambda t: SymmetricSpMM.apply(adj, t), (x.detach().requires_grad_(),))


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_layer_mean_propagation(tiny, layers):
    users, items, nu, ni = tiny
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    dense = adj.to_dense()
    x = torch.randn(nu + ni, 4, dtype=torch.float64, requires_grad=True)
    expected, cur = x.clone(), x
    for _ in range(layers):
        cur = dense @ cur
        expected = expected + cur
    expected = expected / (layers + 1)
    torch.testing.assert_close(propagate(adj, x, layers), expected)
    assert torch.autograd.gradcheck(lambda t: LayerMeanPropagation.apply(adj, t, layers),
                                    (x.detach().requires_grad_(),))


@pytest.mark.parametrize("view_layer", [0, 1, 3])
def test_noisy_propagation_without_noise_is_the_layer_mean_and_a_layer(tiny, view_layer):
    users, items, nu, ni = tiny
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    x = torch.randn(nu + ni, 5, dtype=torch.float64)
    out, view = noisy_propagate(adj, x, 3, 0.0, view_layer)
    dense = adj.to_dense()
    torch.testing.assert_close(out, propagate(adj, x, 3))
    torch.testing.assert_close(view, torch.linalg.matrix_power(dense, view_layer) @ x)


def test_noisy_propagation_adds_eps_noise_in_the_sign_of_each_layer(tiny):
    users, items, nu, ni = tiny
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    x = torch.randn(nu + ni, 6, dtype=torch.float64)
    torch.manual_seed(1)
    _, e1 = noisy_propagate(adj, x, 1, 0.2, 1)
    clean = adj.to_dense() @ x
    delta = e1 - clean
    live = clean.abs().sum(1) > 0  # isolated nodes have a zero layer (sign 0 -> +U, still norm eps)
    torch.testing.assert_close(delta.norm(dim=1), torch.full((nu + ni,), 0.2, dtype=torch.float64))
    assert ((delta[live] * clean[live]) >= 0).all()  # the noise keeps every coordinate's sign
    torch.manual_seed(1)
    torch.testing.assert_close(noisy_propagate(adj, x, 1, 0.2, 1)[1], e1)  # drawn from the global RNG


def test_noisy_propagation_backward_is_the_noiseless_one(tiny):
    """The noise is constant in x, so d/dx of <w1, E> + <w2, E^(l*)> is
    1/(L+1) sum_k (A^k)^T w1 + (A^l*)^T w2, whatever noise was drawn."""
    users, items, nu, ni = tiny
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    a = adj.to_dense()
    x = torch.randn(nu + ni, 4, dtype=torch.float64, requires_grad=True)
    w1, w2 = torch.randn(nu + ni, 4, dtype=torch.float64), torch.randn(nu + ni, 4, dtype=torch.float64)
    for view_layer in (0, 2, 3):
        out, view = noisy_propagate(adj, x, 3, 0.3, view_layer)
        (grad,) = torch.autograd.grad((out * w1).sum() + (view * w2).sum(), x)
        powers = [torch.linalg.matrix_power(a, k) for k in range(4)]
        expected = sum(p.t() @ w1 for p in powers) / 4 + powers[view_layer].t() @ w2
        torch.testing.assert_close(grad, expected)
    out, _ = noisy_propagate(adj, x, 3, 0.3, 1)  # only the mean used: the view's gradient is None
    (grad,) = torch.autograd.grad((out * w1).sum(), x)
    torch.testing.assert_close(grad, sum(torch.linalg.matrix_power(a, k).t() @ w1 for k in range(4)) / 4)
