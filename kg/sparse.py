"""Sparse propagation for user–item graph models (LightGCN and relatives), fast on CPU.

The user–item graph with ``U`` users and ``I`` items has the bipartite adjacency
``A`` (size ``N = U + I``) and its symmetric normalisation

.. math::
    \\hat A = D^{-1/2} A D^{-1/2}, \\qquad
    A = \\begin{pmatrix} 0 & R \\\\ R^\\top & 0 \\end{pmatrix},

with ``R[u, i] = 1`` for every training pair and ``D`` the node degrees (isolated nodes
get 0, not ``inf``). Users are nodes ``0 .. U-1``, items ``U .. U+I-1``.

Because :math:`\\hat A` is symmetric, the backward of :math:`y = \\hat A x` is
:math:`\\partial L / \\partial x = \\hat A\\, g` -- the *same* matrix, so no transpose
(and no CSR→CSC conversion) is ever built. Going one step further, LightGCN's output is
the layer mean :math:`E = \\frac{1}{L+1} \\sum_{k=0}^{L} \\hat A^k E^{(0)}`, a linear
symmetric map of :math:`E^{(0)}`; its backward is the same map applied to the incoming
gradient. :class:`LayerMeanPropagation` does exactly that: forward and backward are each
``L`` CSR SpMMs accumulated in place into one buffer, and *no intermediate layer is
kept for autograd* (memory: 3 buffers of ``N × d`` instead of ``L + 1`` layers plus the
stack/mean copies).

Measurements (amazon-book-kgat train graph: N = 95,594 nodes, 1,305,028 non-zeros,
d = 64, float32, this 2-core CPU *shared with other jobs* (load average 3-7 during the
runs, so absolute times are noisy; the ratios held in every repetition).
``python -m kg.sparse [threads]`` reruns them. Forward + backward of a 3-layer LightGCN
propagation with a loss on a quarter of the rows, median of 5, in ms:

====================================================================  ==========  ========
variant                                                               2 threads   1 thread
====================================================================  ==========  ========
COO ``torch.sparse.mm``, autograd through sparse, ``stack().mean()``  2833        2244
CSR ``torch.sparse.mm``, autograd through sparse, ``stack().mean()``  3433        1564
CSR :class:`SymmetricSpMM` per layer (embedding_bag kernel)           990         474
CSR :class:`LayerMeanPropagation` (one Function, in-place layer sum)  **456**     **207**
single SpMM, ``torch.sparse.mm`` (MKL CSR)                            160         143
single SpMM, :func:`sparse_mm` (``embedding_bag`` on the CSR arrays)  **58**      **20**
====================================================================  ==========  ========

Also tried and *not* kept (no gain beyond the noise): splitting Â into its two
bipartite blocks ``R`` / ``Rᵀ`` (two half-size SpMMs, no concat) -- 14.6 vs 15.1 ms
min per SpMM; reordering users and items by degree for cache locality -- 16.9 vs 15.1;
int32 indices -- slower (40 ms); bf16/fp16 -- not supported by the MKL CSR kernel, and
not worth the precision on CPU. Outside this module: the fused CPU Adam
(``torch.optim.Adam(fused=True)``) steps the [N, 64] table in 6 ms instead of 37 ms;
gathering batch rows with one index (users, positives, negatives concatenated) saves
four [N, d] gradient buffers per step.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from kg.arrays import distinct

__all__ = ["normalized_adjacency", "sparse_mm", "SymmetricSpMM", "spmm", "LayerMeanPropagation",
           "propagate", "add_uniform_noise_", "NoisyPropagation", "noisy_propagate"]


def normalized_adjacency(users, items, num_users: int, num_items: int, *,
                         dtype: torch.dtype = torch.float32,
                         device: str | torch.device = "cpu") -> torch.Tensor:
    """The symmetric normalised bipartite adjacency Â as a ``torch.sparse_csr`` tensor.

    Args:
        users, items: training pairs (int arrays or LongTensors, length E); repeated
            pairs count once.
        num_users, num_items: U and I (the matrix is ``(U + I) × (U + I)``).
    Returns:
        sparse CSR tensor ``[U + I, U + I]`` of ``dtype`` with ``2 E'`` non-zeros
        (``E'`` distinct pairs), columns sorted within each row.
    """
    u = np.asarray(users.cpu() if torch.is_tensor(users) else users, dtype=np.int64)
    i = np.asarray(items.cpu() if torch.is_tensor(items) else items, dtype=np.int64)
    if len(u) != len(i):
        raise ValueError("users and items must have the same length")
    if len(u) and (u.min() < 0 or u.max() >= num_users or i.min() < 0 or i.max() >= num_items):
        raise ValueError("pair index out of range")
    key = distinct(u * num_items + i)  # distinct pairs, sorted by (user, item)
    u, i = key // num_items, key % num_items
    n = num_users + num_items
    deg = np.bincount(u, minlength=num_users).astype(np.float64)
    deg = np.concatenate([deg, np.bincount(i, minlength=num_items).astype(np.float64)])
    with np.errstate(divide="ignore"):
        inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(deg), 0.0)
    rows = np.concatenate([u, i + num_users])
    cols = np.concatenate([i + num_users, u])
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    vals = inv_sqrt[rows] * inv_sqrt[cols]
    crow = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=crow[1:])
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        adj = torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(cols),
                                      torch.from_numpy(vals).to(dtype), size=(n, n),
                                      check_invariants=False)
    return adj.to(device)


def sparse_mm(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adj @ x`` without autograd, by the fastest kernel for the device.

    On CPU a CSR matrix times a dense matrix is, row by row, a weighted sum of rows of
    ``x`` -- exactly ``embedding_bag(mode='sum', per_sample_weights=values)`` with the
    CSR row pointers as bag offsets. That kernel (fbgemm) is 3-4x faster here than
    ``torch.sparse.mm`` (MKL) on the same CSR arrays; on CUDA ``torch.sparse.mm``
    (cuSPARSE) is used.
    """
    if adj.layout != torch.sparse_csr:
        return torch.sparse.mm(adj, x)
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return F.embedding_bag(adj.col_indices(), x, adj.crow_indices(), mode="sum",
                               per_sample_weights=adj.values(), include_last_offset=True)
    return torch.sparse.mm(adj, x)


class SymmetricSpMM(torch.autograd.Function):
    """``y = Â x`` for a *symmetric* sparse Â; backward is ``Â g`` (no transpose built).

    Shapes: ``adj`` sparse CSR ``[N, N]`` (no gradient), ``x`` ``[N, d]`` -> ``[N, d]``.
    """

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return sparse_mm(adj, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, sparse_mm(ctx.adj, grad.contiguous())


def spmm(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Â x with the symmetric backward of :class:`SymmetricSpMM`."""
    return SymmetricSpMM.apply(adj, x)


def _layer_mean(adj: torch.Tensor, x: torch.Tensor, num_layers: int) -> torch.Tensor:
    """(1 / (L+1)) Σ_k Â^k x, the layer sum accumulated in place."""
    out = x.clone()
    cur = x
    for _ in range(num_layers):
        cur = sparse_mm(adj, cur)
        out += cur
    if num_layers:
        out /= num_layers + 1
    return out


class LayerMeanPropagation(torch.autograd.Function):
    """``E = 1/(L+1) Σ_{k=0..L} Â^k E0`` with backward ``1/(L+1) Σ_k Â^k G`` (Â symmetric).

    Shapes: ``adj`` sparse CSR ``[N, N]``, ``x`` ``[N, d]`` -> ``[N, d]``. Saves nothing
    but the adjacency for backward.
    """

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor, num_layers: int) -> torch.Tensor:
        ctx.adj, ctx.num_layers = adj, num_layers
        return _layer_mean(adj, x, num_layers)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, _layer_mean(ctx.adj, grad.contiguous(), ctx.num_layers), None


def propagate(adj: torch.Tensor, x: torch.Tensor, num_layers: int) -> torch.Tensor:
    """LightGCN's layer mean of ``x`` [N, d] over ``num_layers`` propagations by ``adj``."""
    return LayerMeanPropagation.apply(adj, x, num_layers)


def add_uniform_noise_(x: torch.Tensor, eps: float) -> torch.Tensor:
    """SimGCL's perturbation, in place: ``x += eps * sign(x) * normalize(U)``, ``U ~ U(0, 1)^d``
    per row (so every row moves by exactly ``eps`` in L2, within its own orthant).

    ``copysign(U, x)`` is ``sign(x) * U`` because ``U >= 0`` (a zero entry of ``x`` gets
    ``+U`` instead of 0, a measure-zero difference). Drawn from the global torch RNG.
    """
    noise = torch.rand_like(x)
    noise.mul_(eps / noise.norm(dim=1, keepdim=True).clamp_min_(1e-12))
    return x.add_(torch.copysign(noise, x))


class NoisyPropagation(torch.autograd.Function):
    r"""XSimGCL's perturbed propagation: the layer mean *and* one layer, in one pass.

    .. math::
        E^{(0)} = X, \qquad E^{(k)} = \hat A E^{(k-1)} + \Delta^{(k)}, \qquad
        \Delta^{(k)} = \epsilon\, \operatorname{sign}(\hat A E^{(k-1)}) \odot
                       \frac{U^{(k)}}{\lVert U^{(k)} \rVert_{\text{row}}}, \quad
        U^{(k)} \sim \mathcal U(0, 1)^{N \times d},

    returns ``(E, E^{(l*)})`` with :math:`E = \frac{1}{L+1} \sum_{k=0}^{L} E^{(k)}`.
    :math:`\Delta^{(k)}` has zero derivative (``sign`` is piecewise constant, ``U`` is
    independent of ``X``), so :math:`E^{(k)} = \hat A^k X + \text{const}` and the backward is

    .. math::
        \frac{\partial \mathcal L}{\partial X} = \frac{1}{L+1} \sum_{k=0}^{L} \hat A^k G_E
            + \hat A^{l^*} G_{l^*},

    computed Horner-style as :math:`h_L = c G_E + [l^*{=}L] G_{l^*}`,
    :math:`h_k = \hat A h_{k+1} + c G_E + [l^*{=}k] G_{l^*}`: ``L`` SpMMs, like the noiseless
    :class:`LayerMeanPropagation` (so the contrastive view costs no extra propagation).
    Shapes: ``adj`` sparse CSR ``[N, N]`` (symmetric), ``x`` ``[N, d]`` -> two ``[N, d]``;
    ``view_layer`` in ``0 .. L``.
    """

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor, num_layers: int, eps: float, view_layer: int):
        if not 0 <= view_layer <= num_layers:
            raise ValueError(f"view_layer={view_layer} must be within 0..{num_layers}")
        ctx.adj, ctx.num_layers, ctx.view_layer = adj, num_layers, view_layer
        out = x.clone()
        view = x.clone() if view_layer == 0 else None
        cur = x
        for k in range(1, num_layers + 1):
            cur = sparse_mm(adj, cur)
            if eps:
                add_uniform_noise_(cur, eps)
            out += cur
            if k == view_layer:
                view = cur.clone()
        out /= num_layers + 1
        return out, view

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor | None, grad_view: torch.Tensor | None):
        L, lv = ctx.num_layers, ctx.view_layer
        g = grad_out.contiguous() / (L + 1) if grad_out is not None else None

        def term(k: int) -> torch.Tensor | None:
            parts = [t for t in (g, grad_view.contiguous() if grad_view is not None and k == lv else None)
                     if t is not None]
            return None if not parts else (parts[0] if len(parts) == 1 else parts[0] + parts[1])

        h = term(L)
        for k in range(L - 1, -1, -1):
            if h is not None:
                h = sparse_mm(ctx.adj, h)
            t = term(k)
            h = t if h is None else (h if t is None else h.add_(t))
        return None, h, None, None, None


def noisy_propagate(adj: torch.Tensor, x: torch.Tensor, num_layers: int, eps: float,
                    view_layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(layer mean, layer view_layer)`` of ``x`` under XSimGCL's noise (:class:`NoisyPropagation`)."""
    return NoisyPropagation.apply(adj, x, num_layers, eps, view_layer)


def _benchmark(path: str = "/work/shared/data/amazon-book-kgat", reps: int = 5,
               threads: int = 2) -> str:
    """Time forward+backward of a 3-layer layer-mean propagation on amazon-book-kgat."""
    import time

    import loaders

    torch.set_num_threads(threads)
    ds = loaders.load("kgat", path)
    tr = ds.interactions[ds.interactions["split"] == "train"]
    u = tr["user_id"].astype(np.int64).to_numpy()
    i = tr["item_id"].astype(np.int64).to_numpy()
    adj = normalized_adjacency(u, i, len(ds.users), len(ds.items))
    coo = adj.to_sparse_coo().coalesce()
    x0 = torch.randn(adj.shape[0], 64) * 0.1
    rows = torch.arange(0, adj.shape[0], 4)  # a loss touching a quarter of the rows

    def naive(x, a):
        layers = [x]
        for _ in range(3):
            layers.append(torch.sparse.mm(a, layers[-1]))
        return torch.stack(layers, 1).mean(1)

    def per_layer(x):
        layers = [x]
        for _ in range(3):
            layers.append(spmm(adj, layers[-1]))
        return torch.stack(layers, 1).mean(1)

    variants = {
        "COO torch.sparse.mm, autograd through sparse, stack + mean": lambda x: naive(x, coo),
        "CSR torch.sparse.mm, autograd through sparse, stack + mean": lambda x: naive(x, adj),
        "CSR SymmetricSpMM per layer (embedding_bag kernel), stack + mean": per_layer,
        "CSR LayerMeanPropagation (one Function, in-place layer sum)": lambda x: propagate(adj, x, 3),
    }
    lines = ["| variant | ms / fwd+bwd |", "|---|---:|"]
    for name, fn in variants.items():
        times = []
        for _ in range(reps + 1):
            x = x0.clone().requires_grad_()
            t = time.perf_counter()
            (fn(x)[rows] ** 2).sum().backward()
            times.append(time.perf_counter() - t)
        lines.append(f"| {name} | {1000 * float(np.median(times[1:])):.0f} |")
    for name, fn in (("single SpMM, torch.sparse.mm (MKL CSR)", lambda: torch.sparse.mm(adj, x0)),
                     ("single SpMM, embedding_bag on the CSR arrays", lambda: sparse_mm(adj, x0))):
        times = []
        for _ in range(reps + 1):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        lines.append(f"| {name} | {1000 * float(np.median(times[1:])):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    warnings.filterwarnings("ignore")
    print(_benchmark(threads=int(sys.argv[1]) if len(sys.argv) > 1 else 2))
