"""The contract every recommender of :mod:`kg.models` implements, and the BPR loss they share.

Index conventions: users ``0 .. U-1`` and items ``0 .. I-1`` each in their own range
(the item index is the ``product`` node index of the export); a graph adjacency over
users and items puts item ``i`` at node ``U + i``.
"""

from __future__ import annotations

from dataclasses import dataclass
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
            neg: LongTensor [B] or [B, n] sampled negative items per row; with the
                sampled softmax (:class:`Ranking`) LongTensor [M], negatives shared by the batch.
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
            (data parallel) equals the gradient of the whole batch (the same holds for
            :func:`sampled_softmax_loss`).
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


LOSSES = ("bpr", "softmax")


@dataclass(frozen=True)
class Ranking:
    r"""The ranking loss of the recommenders of :mod:`kg.models` and the score it implies.

    * ``loss="bpr"`` (the default): :func:`bpr_loss` on each pair's own negatives; a pair
      scores by the inner product :math:`\mathbf e_u^\top \mathbf e_i`.
    * ``loss="softmax"``: sampled softmax with cosine similarity and a temperature (Wu et
      al., "On the Effectiveness of Sampled Softmax Loss for Item Recommendation", TOIS
      2024): every pair of the batch against ``M`` negatives shared by the batch
      (:func:`sampled_softmax_loss`); the model's final representations are then
      L2-normalised, so that it scores by the cosine it was trained on.
    """

    loss: str = "bpr"
    temperature: float = 0.2  #: tau of the softmax

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r} ({', '.join(LOSSES)})")
        if self.temperature <= 0:
            raise ValueError(f"the softmax temperature must be > 0, not {self.temperature}")

    @property
    def cosine(self) -> bool:
        """Whether the model's final representations are L2-normalised (it scores by cosine)."""
        return self.loss == "softmax"

    def final(self, x: torch.Tensor) -> torch.Tensor:
        """The final representations [N, d] of propagated ``x`` [N, d] (normalised for cosine)."""
        return F.normalize(x, dim=-1) if self.cosine else x

    def __call__(self, u: torch.Tensor, p: torch.Tensor, n: torch.Tensor, u0: torch.Tensor, p0: torch.Tensor,
                 n0: torch.Tensor, l2: float, pos: torch.Tensor, neg: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one batch from gathered embeddings (``pos`` [B] and ``neg`` [B], [B, n]
        or the shared [M]: the item indices, for the softmax's accidental hits)."""
        if self.loss == "bpr":
            return bpr_loss(u, p, n, u0, p0, n0, l2)
        return sampled_softmax_loss(u, p, n, u0, p0, l2, self.temperature, pos[:, None] == neg[None, :])


def sampled_softmax_loss(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor, u0: torch.Tensor, p0: torch.Tensor,
                         l2: float, temperature: float, hits: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, dict[str, float]]:
    r"""Sampled softmax over cosine similarities, negatives shared by the batch, + L2.

    .. math::
        \mathcal L = \frac{1}{B} \sum_b -\log
            \frac{\exp(\cos(u_b, p_b)/\tau)}{\exp(\cos(u_b, p_b)/\tau)
                  + \sum_{m=1}^{M} [n_m \ne p_b] \exp(\cos(u_b, n_m)/\tau)}
          + \frac{\lambda}{2B} \sum_b \bigl(\|e^{(0)}_{u_b}\|^2 + \|e^{(0)}_{p_b}\|^2\bigr)

    Shapes: ``u``, ``p``, ``u0``, ``p0`` [B, d]; ``n`` [M, d] (one ``[B, M]`` matrix product,
    no per-pair gather); ``hits`` [B, M] bool, True where negative ``m`` is row ``b``'s
    positive item (masked: "accidental hits"). With cosine scores the L2 term no longer
    shapes the scores; it only keeps the embeddings' norms, and so Adam's effective step, in range.
    """
    u, p, n = F.normalize(u, dim=-1), F.normalize(p, dim=-1), F.normalize(n, dim=-1)
    pos_logit = (u * p).sum(-1, keepdim=True) / temperature  # [B, 1]
    neg_logits = u @ n.t() / temperature  # [B, M]
    if hits is not None:
        neg_logits = neg_logits.masked_fill(hits, float("-inf"))
    logits = torch.cat([pos_logit, neg_logits], 1)
    main = (torch.logsumexp(logits, 1) - logits[:, 0]).mean()
    reg = 0.5 * (u0.pow(2).sum() + p0.pow(2).sum()) / u.shape[0]
    return main + l2 * reg, {"softmax": float(main.detach()), "reg": float(reg.detach())}


CONTRASTIVE_MODES = ("none", "xsimgcl", "simgcl")


@dataclass(frozen=True)
class Contrastive:
    r"""Graph contrastive learning settings shared by the graph models (XSimGCL / SimGCL,
    plus the KG model's knowledge view).

    * ``mode="xsimgcl"`` (Yu et al., "XSimGCL: Towards Extremely Simple Graph Contrastive
      Learning for Recommendation", TKDE 2023): one propagation with uniform noise of norm
      ``eps`` added to every layer (:class:`kg.sparse.NoisyPropagation`); the BPR loss uses
      the noisy layer mean, and InfoNCE contrasts it with the noisy layer ``layer`` (l*,
      cross-layer) -- no extra propagation.
    * ``mode="simgcl"`` (Yu et al., "Are Graph Augmentations Necessary?", SIGIR 2022): two
      independent noisy propagations; BPR on the first, InfoNCE between the two layer
      means (two propagations a step instead of one).
    * ``kg_weight > 0`` (KG model only): InfoNCE between each batch item's knowledge view
      :math:`k_i` and its collaborative view :math:`\mathrm{sg}(x_i)` (stop-gradient), see
      :class:`kg.models.kg_model.KGModel`.

    The InfoNCE of two views :math:`a, b \in \mathbb R^{n \times d}` of the same ``n``
    nodes, with cosine similarity and temperature :math:`\tau`:

    .. math::
        \operatorname{InfoNCE}(a, b) = \frac{1}{n} \sum_{j=1}^{n} -\log
            \frac{\exp(\cos(a_j, b_j) / \tau)}{\sum_{m=1}^{n} \exp(\cos(a_j, b_m) / \tau)},

    over the distinct users and the distinct items of the batch (positives; at most
    ``max_nodes`` of each, a seeded random subset -- the ``n × n`` similarity matrix is
    the term's cost), added as :math:`\lambda\,(\operatorname{InfoNCE}_{users} +
    \operatorname{InfoNCE}_{items})` with :math:`\lambda` = ``weight``.
    """

    mode: str = "none"
    weight: float = 0.2        #: lambda
    eps: float = 0.2           #: noise norm per layer
    temperature: float = 0.15  #: tau
    layer: int = 1             #: l*, the contrasted layer of xsimgcl
    max_nodes: int = 2048      #: at most this many users / items per InfoNCE
    kg_weight: float = 0.0     #: weight of the knowledge-view term (KG model)

    def __post_init__(self):
        if self.mode not in CONTRASTIVE_MODES:
            raise ValueError(f"unknown contrastive mode {self.mode!r} ({', '.join(CONTRASTIVE_MODES)})")
        if self.temperature <= 0 or self.eps < 0 or self.max_nodes < 2 or self.layer < 0:
            raise ValueError(f"bad contrastive settings {self}")

    @property
    def noisy(self) -> bool:
        return self.mode != "none"


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of two views ``a``, ``b`` [n, d] of the same n nodes (the :class:`Contrastive` formula)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.t() / temperature  # [n, n]; the diagonal holds the positives
    return (torch.logsumexp(logits, 1) - logits.diagonal()).mean()


def contrast_nodes(index: torch.Tensor, max_nodes: int) -> torch.Tensor:
    """The distinct entries of ``index``, at most ``max_nodes`` of them (a random subset, global RNG)."""
    nodes = torch.unique(index)
    if nodes.numel() > max_nodes:
        nodes = nodes[torch.randperm(nodes.numel(), device=nodes.device)[:max_nodes]]
    return nodes


def graph_contrast(out: torch.Tensor, view: torch.Tensor, users: torch.Tensor, items: torch.Tensor,
                   num_users: int, spec: Contrastive) -> torch.Tensor:
    """InfoNCE(users) + InfoNCE(items) between two views ``out``, ``view`` [U+I, d] of the
    graph's nodes, over the batch's distinct ``users`` and positive ``items`` (item ``i`` is
    row ``U + i``); unweighted (the caller multiplies by ``spec.weight``)."""
    u = contrast_nodes(users, spec.max_nodes)
    i = contrast_nodes(items, spec.max_nodes) + num_users
    return info_nce(out[u], view[u], spec.temperature) + info_nce(out[i], view[i], spec.temperature)


def noisy_views(adj: torch.Tensor, ego: torch.Tensor, num_layers: int,
                spec: Contrastive) -> tuple[torch.Tensor, torch.Tensor]:
    """(the representation for BPR, the contrasted view), both [N, d], for ``spec.mode``
    ``xsimgcl`` (one pass: layer mean and layer l*) or ``simgcl`` (two noisy layer means)."""
    from kg.sparse import noisy_propagate

    if spec.mode == "xsimgcl":
        return noisy_propagate(adj, ego, num_layers, spec.eps, min(spec.layer, num_layers))
    return (noisy_propagate(adj, ego, num_layers, spec.eps, 0)[0],
            noisy_propagate(adj, ego, num_layers, spec.eps, 0)[0])
