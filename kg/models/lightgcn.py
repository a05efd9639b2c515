"""LightGCN over the normalised user–item adjacency, with the fast propagation of kg.sparse."""

from __future__ import annotations

import torch
from torch import nn

from kg.models.base import Contrastive, Ranking, graph_contrast, noisy_views
from kg.sparse import propagate


class LightGCN(nn.Module):
    r"""LightGCN from `"LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation" <https://arxiv.org/abs/2002.02126>`_ (He et al., SIGIR 2020).

    Ego embeddings :math:`\mathbf E^{(0)} \in \mathbb R^{(U+I) \times d}` (users first,
    then items) are propagated over the symmetric normalised bipartite adjacency
    :math:`\hat{\mathbf A} = \mathbf D^{-1/2} \mathbf A \mathbf D^{-1/2}` and the layers
    averaged:

    .. math::
        \mathbf E^{(k+1)} = \hat{\mathbf A} \mathbf E^{(k)}, \qquad
        \mathbf E = \frac{1}{L+1} \sum_{k=0}^{L} \mathbf E^{(k)}, \qquad
        \hat y_{ui} = \mathbf e_u^\top \mathbf e_i .

    Training uses BPR with L2 on the ego embeddings of the batch (see
    :meth:`kg.models.Recommender.loss`), or with ``ranking=Ranking("softmax")`` the sampled
    softmax over cosine scores of :func:`kg.models.base.sampled_softmax_loss` against ``M``
    negatives shared by the batch; :math:`\mathbf E` is then L2-normalised row-wise and
    :math:`\hat y_{ui}` is the cosine. With ``contrastive`` (:class:`kg.models.base.Contrastive`,
    mode ``xsimgcl`` or ``simgcl``) the training propagation is perturbed and an InfoNCE
    term is added:

    .. math::
        \mathcal L = \mathcal L_{BPR}(\tilde{\mathbf E}) + \lambda_2 \mathcal R
            + \lambda \bigl(\operatorname{InfoNCE}(\tilde{\mathbf E}_{\mathcal U_B},
              \mathbf V_{\mathcal U_B}) + \operatorname{InfoNCE}(\tilde{\mathbf E}_{\mathcal I_B},
              \mathbf V_{\mathcal I_B})\bigr),

    with :math:`\tilde{\mathbf E}` the noisy layer mean and :math:`\mathbf V` its noisy
    layer l* (XSimGCL) or a second noisy layer mean (SimGCL), over the batch's distinct
    users :math:`\mathcal U_B` and positive items :math:`\mathcal I_B`. Scoring
    (:meth:`embeddings`) is always noiseless. The propagation is one autograd Function
    (:func:`kg.sparse.propagate`) whose backward is the same propagation of the
    gradient (Â is symmetric), so no layer is stored for backward.

    Args:
        num_users (int): number of users U.
        num_items (int): number of items I.
        adjacency (torch.Tensor): Â, sparse CSR ``[U+I, U+I]`` from
            :func:`kg.sparse.normalized_adjacency` (a buffer: moves with ``.to()``).
        embedding_dim (int): d. (default: :obj:`64`)
        num_layers (int): L. (default: :obj:`3`)
        init_std (float): std of the normal initialisation (LightGCN's code uses 0.1).
        contrastive (Contrastive, optional): the contrastive term (default: none).
        ranking (Ranking, optional): the ranking loss and score (default: BPR, inner product).

    Shapes:
        - **embeddings()**: ``(user [U, d], item [I, d])``
        - **loss(users [B], pos [B], neg [B] or [B, n]; softmax: shared [M])**: scalar, dict
        - **score(users [B])**: ``[B, I]``
    """

    def __init__(self, num_users: int, num_items: int, adjacency: torch.Tensor,
                 embedding_dim: int = 64, num_layers: int = 3, init_std: float = 0.1,
                 contrastive: Contrastive | None = None, ranking: Ranking | None = None):
        super().__init__()
        n = num_users + num_items
        if tuple(adjacency.shape) != (n, n):
            raise ValueError(f"adjacency is {tuple(adjacency.shape)}, expected ({n}, {n})")
        self.num_users, self.num_items = num_users, num_items
        self.embedding_dim, self.num_layers = embedding_dim, num_layers
        if contrastive is not None and contrastive.kg_weight:
            raise ValueError("the knowledge view (kg_weight) needs the KG model")
        self.contrastive = contrastive if contrastive is not None and contrastive.noisy else None
        self.ranking = ranking if ranking is not None else Ranking()
        self.embedding = nn.Embedding(n, embedding_dim)  # users 0..U-1, items U..U+I-1
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.adjacency = adjacency  # set via _apply below; sparse CSR is not a state-dict buffer

    def _apply(self, fn, recurse=True):  # keep the adjacency on the module's device
        super()._apply(fn, recurse)
        self.adjacency = fn(self.adjacency)
        return self

    def propagated(self) -> torch.Tensor:
        """The layer mean E [U+I, d]."""
        return propagate(self.adjacency, self.embedding.weight, self.num_layers)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.ranking.final(self.propagated())
        return out[: self.num_users], out[self.num_users:]

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, *,
             l2: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
        ego = self.embedding.weight
        c = self.contrastive
        out, view = noisy_views(self.adjacency, ego, self.num_layers, c) if c else (self.propagated(), None)
        # one gather per table (one [N, d] gradient buffer each instead of three)
        b, nshape = len(users), neg.shape
        idx = torch.cat([users, pos + self.num_users, neg.reshape(-1) + self.num_users])
        o, e = out[idx], ego[idx]
        split = lambda t: (t[:b], t[b:2 * b], t[2 * b:].reshape(*nshape, -1))  # noqa: E731
        (u, p, n), (u0, p0, n0) = split(o), split(e)
        loss, parts = self.ranking(u, p, n, u0, p0, n0, l2, pos, neg)
        if view is not None:
            cl = graph_contrast(out, view, users, pos, self.num_users, c)
            loss = loss + c.weight * cl
            parts["cl"] = float(cl.detach())
        return loss, parts

    def score(self, users: torch.Tensor,
              embeddings: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        user_emb, item_emb = embeddings if embeddings is not None else self.embeddings()
        return user_emb[users] @ item_emb.t()

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_users}, {self.num_items}, "
                f"embedding_dim={self.embedding_dim}, num_layers={self.num_layers})")
