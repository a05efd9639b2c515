"""The contract every recommender of :mod:`kg.models` implements, and the BPR loss they share.

Index conventions: users ``0 .. U-1`` and items ``0 .. I-1`` each in their own range
(the item index is the ``product`` node index of the export); a graph adjacency over
users and items puts item ``i`` at node ``U + i``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch.nn import functional as F


@runtime_checkable
class Recommender(Protocol):
    """The interface every recommender model of the project implements (an ``nn.Module``).

    Attributes:
        num_users: U, the number of users (user indices are ``0 .. U-1``).
        num_items: I, the number of items (item indices are ``0 .. I-1``).
    """

    num_users: int
    num_items: int

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (propagated) representations: ``(user_emb [U, d], item_emb [I, d])``.

        Differentiable (training) or not (call under ``torch.no_grad()`` to cache for
        evaluation). The score of a pair is ``<user_emb[u], item_emb[i]>``.
        """
        ...

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, *,
             l2: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of one batch.

        Args:
            users: LongTensor [B] user indices.
            pos: LongTensor [B] one positive item per user.
            neg: LongTensor [B] or [B, n] sampled negative items per row.
            l2: weight of the L2 penalty on the batch's *ego* (layer-0) embeddings.
        Returns:
            ``(loss, parts)``: the scalar loss to minimise and a dict of its float parts
            (``bpr``, ``reg``, ... for logging). The LightGCN convention is

            .. math::
                \\mathcal L = \\frac{1}{B} \\sum_b \\frac{1}{n} \\sum_j
                    \\operatorname{softplus}(s_{u_b, j} - s_{u_b, p_b})
                  + \\frac{\\lambda}{2B} \\sum_b \\bigl(\\|e^{(0)}_{u_b}\\|^2 + \\|e^{(0)}_{p_b}\\|^2
                    + \\tfrac{1}{n} \\sum_j \\|e^{(0)}_{j}\\|^2\\bigr)

            i.e. a mean over the batch, so that averaging the gradients of equal shards
            (data parallel) equals the gradient of the whole batch.
        """
        ...

    def score(self, users: torch.Tensor,
              embeddings: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Scores of all items for ``users`` (LongTensor [B]) -> FloatTensor [B, I].

        ``embeddings``: the output of :meth:`embeddings` cached by the caller (the
        evaluation loop computes it once); computed here when ``None``.
        """
        ...


def bpr_loss(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor, u0: torch.Tensor, p0: torch.Tensor,
             n0: torch.Tensor, l2: float) -> tuple[torch.Tensor, dict[str, float]]:
    """BPR + L2 (the :meth:`Recommender.loss` formula) from gathered embeddings.

    Shapes: ``u``, ``p``, ``u0``, ``p0`` [B, d]; ``n``, ``n0`` [B, d] or [B, n, d].
    """
    if n.dim() == 2:
        n, n0 = n.unsqueeze(1), n0.unsqueeze(1)
    pos_score = (u * p).sum(-1, keepdim=True)  # [B, 1]
    neg_score = (u.unsqueeze(1) * n).sum(-1)  # [B, n]
    bpr = F.softplus(neg_score - pos_score).mean()
    batch = u.shape[0]
    reg = 0.5 * (u0.pow(2).sum() + p0.pow(2).sum() + n0.pow(2).sum() / n0.shape[1]) / batch
    loss = bpr + l2 * reg
    return loss, {"bpr": float(bpr.detach()), "reg": float(reg.detach())}
