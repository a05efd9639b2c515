"""A knowledge-aware graph recommender of the KGAT / KGIN family, CPU-friendly.

References: KGAT -- X. Wang, X. He, Y. Cao, M. Liu, T.-S. Chua, "KGAT: Knowledge Graph
Attention Network for Recommendation", KDD 2019; KGIN -- X. Wang, T. Huang, D. Wang,
Y. Yuan, Z. Liu, X. He, T.-S. Chua, "Learning Intents behind Interactions with
Knowledge Graph for Recommendation", WWW 2021; LightGCN -- X. He et al., SIGIR 2020.

Two branches share one embedding table of entities (item ``i`` is entity ``i``, as
in KGAT and :meth:`kg.export.GraphExport.knowledge_triples`):

**Knowledge branch.** Every triple ``(h, r, t)`` is used in both directions (``r``
and its inverse ``r + R``), so items gather from their brands, categories, linked
entities and co-bought items, and entities gather from items and from each other.
Layer ``l`` aggregates, per head node, the tails' relational messages with
relation-aware attention (KGAT's attention with KGIN's relational message
:math:`e_t \\odot e_r`; ``H`` heads, each over ``d / H`` channels):

.. math::
    a^{(l)}(h, r, t) = \\frac{\\langle \\tanh(e_h^{(l)} + e_r),\\, e_t^{(l)} \\rangle_k}{\\sqrt{d/H}},
    \\qquad
    \\pi^{(l)}_k(h, r, t) = \\frac{\\exp a^{(l)}_k(h, r, t)}
                                {\\sum_{(h, r', t') \\in \\mathcal N_h} \\exp a^{(l)}_k(h, r', t')},

.. math::
    e_h^{(l+1)} = \\sum_{(h, r, t) \\in \\mathcal N_h} \\pi^{(l)}(h, r, t)\\; (e_t^{(l)} \\odot e_r),
    \\qquad
    k_i = \\frac{1}{L_{kg}} \\sum_{l=1}^{L_{kg}} e_i^{(l)} .

Everything is one gather / segment-softmax / ``index_add_`` per layer over all
triples; no Python loop over nodes or edges.

**Collaborative branch** (LightGCN). The items enter the user–item graph enriched by
their knowledge, so the KG reaches the users too (early fusion):

.. math::
    x^{(0)} = [\\,u^{(0)};\\; e_{0..I-1}^{(0)} + \\beta\\, k_{0..I-1}\\,], \\qquad
    x = \\frac{1}{L+1}\\sum_{l=0}^{L} \\hat A^{l} x^{(0)}, \\qquad
    \\hat y_{ui} = \\langle x_u, x_{U+i} \\rangle ,

with :math:`\\hat A = D^{-1/2} A D^{-1/2}` from :func:`kg.sparse.normalized_adjacency`.
``use_kg=False`` drops :math:`k` and is exactly LightGCN.

**Loss.** BPR with L2 on the batch's layer-0 embeddings (as LightGCN), plus
optionally (``kg_loss_weight > 0``) a TransE-style BPR loss on sampled triples with
corrupted tails (KGAT's KG-embedding term, with the cheaper TransE score):
:math:`-\\log \\sigma(\\lVert e_h + e_r - e_{t'}\\rVert^2 - \\lVert e_h + e_r - e_t\\rVert^2)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kg.sparse import normalized_adjacency, propagate

__all__ = ["KGModel"]


class KGModel(nn.Module):
    """Knowledge-graph attention recommender (KGAT/KGIN family over a LightGCN backbone).

    Args:
        num_users, num_items: U and I.
        triples: :class:`kg.export.KnowledgeTriples` (``head``, ``relation``, ``tail``
            LongTensors [T] over ``num_entities`` entities, items first); ``None`` or
            zero triples is allowed (then it is LightGCN with an extra table).
        adjacency: the normalised user–item adjacency, sparse CSR ``[U+I, U+I]``
            (:func:`kg.sparse.normalized_adjacency`); or a pair ``(users [N], items [N])``
            of training interactions to build it from.
        embedding_dim: d.  num_layers: L, LightGCN layers.
        kg_layers: L_kg, attention layers over the KG.  heads: H (divides d).
        kg_weight: beta, scale of the knowledge part in the item input.
        kg_dropout: fraction of triples dropped per training forward (KGIN's node/edge
            dropout; a random mask, not a data-dependent branch).
        reg: L2 weight on the batch's layer-0 embeddings.  kg_loss_weight: weight of the
            TransE term (0 = off).  kg_batch: triples sampled per step for that term.
        use_kg: ``False`` ignores ``triples`` entirely (the LightGCN ablation).

    Shapes: :meth:`embeddings` -> (users [U, d], items [I, d]); :meth:`score` users [B]
    -> [B, I]; :meth:`loss` users, pos, neg [B] -> (scalar, dict of floats);
    :meth:`attention` -> [2T, H] (each head node's weights sum to 1 per attention head).
    """

    def __init__(self, num_users: int, num_items: int, triples=None, adjacency=None,
                 embedding_dim: int = 64, num_layers: int = 3, *, kg_layers: int = 2,
                 heads: int = 1, kg_weight: float = 1.0, kg_dropout: float = 0.0,
                 reg: float = 1e-4, kg_loss_weight: float = 0.0, kg_batch: int = 4096,
                 use_kg: bool = True):
        super().__init__()
        if embedding_dim % heads:
            raise ValueError(f"heads={heads} must divide embedding_dim={embedding_dim}")
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.embedding_dim, self.num_layers, self.kg_layers, self.heads = embedding_dim, num_layers, kg_layers, heads
        self.kg_weight, self.kg_dropout, self.reg = kg_weight, kg_dropout, reg
        self.kg_loss_weight, self.kg_batch, self.use_kg = kg_loss_weight, kg_batch, use_kg

        if adjacency is None:
            raise ValueError("adjacency is required (sparse CSR [U+I, U+I] or (users, items) pairs)")
        if isinstance(adjacency, (tuple, list)):
            adjacency = normalized_adjacency(adjacency[0], adjacency[1], self.num_users, self.num_items)
        self.adjacency = adjacency  # sparse CSR [U+I, U+I], not a parameter

        empty = torch.zeros(0, dtype=torch.long)
        if use_kg and triples is not None and len(triples.head):
            h, r, t = (torch.as_tensor(x, dtype=torch.long) for x in (triples.head, triples.relation, triples.tail))
            num_entities, num_relations = max(int(triples.num_entities), self.num_items), int(triples.num_relations)
            self.relation_names = list(triples.relation_names)
        else:  # the ablation / no KG: the triples are never read
            h = r = t = empty
            num_entities, num_relations = self.num_items, 0
            self.relation_names = []
        self.num_entities, self.num_relations = num_entities, num_relations
        # both directions: (h, r, t) lets h gather from t; (t, r + R, h) lets t gather from h
        self.register_buffer("kg_head", torch.cat([h, t]), persistent=False)  # [2T] receiving node
        self.register_buffer("kg_tail", torch.cat([t, h]), persistent=False)  # [2T] sending node
        self.register_buffer("kg_rel", torch.cat([r, r + num_relations]), persistent=False)  # [2T]

        self.user_emb = nn.Parameter(torch.empty(self.num_users, embedding_dim))
        self.entity_emb = nn.Parameter(torch.empty(num_entities, embedding_dim))
        self.relation_emb = nn.Parameter(torch.empty(2 * num_relations, embedding_dim))
        nn.init.normal_(self.user_emb, std=0.1)
        nn.init.normal_(self.entity_emb, std=0.1)
        nn.init.normal_(self.relation_emb, mean=1.0, std=0.1)  # e_t ⊙ e_r starts near e_t
        self.relation_trans = nn.Parameter(torch.empty(2 * num_relations, embedding_dim))  # TransE r
        nn.init.normal_(self.relation_trans, std=0.1)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ knowledge branch
    def _triple_mask(self) -> torch.Tensor:
        """Bool [2T]: triples kept this forward (all in eval mode)."""
        keep = 1.0 - (self.kg_dropout if self.training else 0.0)
        return torch.rand(self.kg_head.shape[0], device=self.kg_head.device) < keep

    def _attention(self, x: torch.Tensor, head: torch.Tensor, tail: torch.Tensor,
                   rel: torch.Tensor) -> torch.Tensor:
        """pi [T', H] of the given triples for entity states ``x`` [E, d] (softmax per head node)."""
        from torch_geometric.utils import softmax

        H, dk = self.heads, self.embedding_dim // self.heads
        eh, et, er = x[head], x[tail], self.relation_emb[rel]  # [T', d]
        logits = (torch.tanh(eh + er) * et).view(-1, H, dk).sum(-1) / math.sqrt(dk)  # [T', H]
        return softmax(logits, head, num_nodes=x.shape[0], dim=0)

    def knowledge(self) -> torch.Tensor:
        """k [E, d]: mean of the L_kg attention-aggregated layers (zeros when unused)."""
        x = self.entity_emb
        mask = self._triple_mask()
        head, tail, rel = self.kg_head[mask], self.kg_tail[mask], self.kg_rel[mask]
        H, dk = self.heads, self.embedding_dim // self.heads
        out = torch.zeros_like(x)
        for _ in range(self.kg_layers):
            pi = self._attention(x, head, tail, rel)  # [T', H]
            msg = (x[tail] * self.relation_emb[rel]).view(-1, H, dk) * pi.unsqueeze(-1)
            x = torch.zeros_like(x).index_add_(0, head, msg.reshape(-1, self.embedding_dim))
            out = out + x
        return out / max(self.kg_layers, 1)

    @torch.no_grad()
    def attention(self) -> torch.Tensor:
        """pi [2T, H] of the first KG layer for all triples (eval mode, no dropout)."""
        return self._attention(self.entity_emb, self.kg_head, self.kg_tail, self.kg_rel)

    # ------------------------------------------------------------------ recommender protocol
    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        items = self.entity_emb[: self.num_items]
        if self.use_kg:
            items = items + self.kg_weight * self.knowledge()[: self.num_items]
        x = propagate(self.adjacency, torch.cat([self.user_emb, items]), self.num_layers)  # [U+I, d]
        return x[: self.num_users], x[self.num_users:]

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users [U, d], items [I, d]) final representations (cached in eval mode)."""
        if self.training:
            return self._propagate()
        if self._cache is None:
            with torch.no_grad():
                self._cache = self._propagate()
        return self._cache

    def train(self, mode: bool = True):
        self._cache = None
        return super().train(mode)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [B, I] of all items for ``users`` [B]."""
        u, i = self.embeddings()
        return u[users] @ i.T

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor):
        """BPR + L2 (+ TransE KG term) for a batch of ``users``, ``pos``, ``neg`` [B]."""
        u, i = self._propagate()
        su, sp, sn = u[users], i[pos], i[neg]
        bpr = F.softplus((su * sn).sum(-1) - (su * sp).sum(-1)).mean()
        l2 = (self.user_emb[users].pow(2).sum() + self.entity_emb[pos].pow(2).sum()
              + self.entity_emb[neg].pow(2).sum()) / (2 * len(users))
        total = bpr + self.reg * l2
        parts = {"bpr": float(bpr.detach()), "l2": float(l2.detach())}
        if self.kg_loss_weight > 0 and self.kg_head.numel():
            kg = self.kg_loss()
            total = total + self.kg_loss_weight * kg
            parts["kg"] = float(kg.detach())
        return total, parts

    def kg_loss(self) -> torch.Tensor:
        """TransE BPR loss on ``kg_batch`` random triples with uniformly corrupted tails."""
        dev = self.kg_head.device
        idx = torch.randint(0, self.kg_head.shape[0], (self.kg_batch,), device=dev)
        h, r, t = self.kg_head[idx], self.kg_rel[idx], self.kg_tail[idx]
        t_neg = torch.randint(0, self.num_entities, (self.kg_batch,), device=dev)
        anchor = self.entity_emb[h] + self.relation_trans[r]
        pos_d = (anchor - self.entity_emb[t]).pow(2).sum(-1)
        neg_d = (anchor - self.entity_emb[t_neg]).pow(2).sum(-1)
        return F.softplus(pos_d - neg_d).mean()

    def extra_repr(self) -> str:
        return (f"num_users={self.num_users}, num_items={self.num_items}, num_entities={self.num_entities}, "
                f"num_relations={self.num_relations}, triples={self.kg_head.numel() // 2}, "
                f"embedding_dim={self.embedding_dim}, num_layers={self.num_layers}, "
                f"kg_layers={self.kg_layers}, heads={self.heads}, use_kg={self.use_kg}")
