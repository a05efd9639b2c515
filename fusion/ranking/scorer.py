"""Scoring (user, product[, query]) rows with the fusion model over the feature tables.

:class:`Scorer` is what training, evaluation and the Engine share: it gathers the model's
inputs from :class:`~fusion.ranking.features.FeatureTables` by row index and returns the
logits of every objective (:mod:`fusion.ranking.scoring` turns them into scores).
"""

from __future__ import annotations

import torch

from fusion.ranking.exposure import ExposureModel
from fusion.ranking.features import FeatureTables
from fusion.ranking.model import FusionModel
from fusion.ranking.scoring import ranking_score


class Scorer:
    """Gathers model inputs from the feature tables and scores (user, item, query) rows.

    With a query, the ``relevance`` logit comes from (query, product) alone and the
    funnel logits (ctr, cvr, value) from (user, product) alone, as in training.

    ``users`` index the tables' users, -1 for "no user" (cold start, plain search);
    ``queries`` are rows of ``query_vectors`` [Q, dt], -1 for "no query". Index tensors
    may live anywhere: they are moved to the tables' device, where the logits are.
    With an ``exposure`` model (rows = the tables' users and products) the logits carry
    ``exposure``, its log-probability (:mod:`fusion.ranking.exposure`). ``capped``: the
    ``value`` logit is at most the tables' ``value_cap``
    (:func:`fusion.ranking.features.value_caps`) -- serving's scores; training's stay
    uncapped, so the value loss keeps its gradient.
    """

    def __init__(self, model: FusionModel, tables: FeatureTables, query_vectors: torch.Tensor | None = None,
                 exposure: ExposureModel | None = None, capped: bool = False):
        self.model, self.tables, self.exposure = model, tables, exposure
        self.value_cap = tables.value_cap if capped else None
        dt = tables.item_text.shape[1]
        self.device = tables.item_gnn.device
        self.query_vectors = (query_vectors.to(self.device) if query_vectors is not None
                              else torch.zeros(0, dt, device=self.device))

    def logits(self, users: torch.Tensor, items: torch.Tensor, queries: torch.Tensor | None = None,
               query_text: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Logits of rows (users [B], items [B]) with query rows [B] of ``query_vectors``, or
        with the query embeddings ``query_text`` [B, dt] given directly."""
        t, dev = self.tables, self.device
        users, items = users.to(dev), items.to(dev)
        has_user = users >= 0
        u = users.clamp(min=0)
        mask = has_user[:, None].float()
        if query_text is not None:
            qv, has_query = query_text.to(dev), torch.ones(len(items), dtype=torch.bool, device=dev)
        else:
            queries = torch.full_like(items, -1) if queries is None else queries.to(dev)
            has_query = queries >= 0
            qv = (self.query_vectors[queries.clamp(min=0)] * has_query[:, None].float()
                  if len(self.query_vectors) else torch.zeros(len(items), t.item_text.shape[1], device=dev))
        if not bool(has_query.any()):
            out = self.model(t.user_gnn[u] * mask, t.item_gnn[items], t.item_text[items],
                             t.user_text[u] * mask, qv, t.user_side[u] * mask, t.item_side[items],
                             has_user, has_query)
            if self.exposure is not None:
                out["exposure"] = self.exposure.log_prob(users, items).to(dev)
            if self.value_cap is not None:
                out["value"] = torch.minimum(out["value"], self.value_cap[items])
            return out
        # relevance depends on (query, product) only, the funnel on (user, product) only --
        # as in training: judged pairs carry no user, impressions no query
        funnel = self.logits(users, items)
        none = torch.zeros_like(has_user)
        zero_u = torch.zeros(len(items), dtype=torch.long, device=dev)
        rel = self.model(t.user_gnn[zero_u] * 0, t.item_gnn[items], t.item_text[items], t.user_text[zero_u] * 0,
                         qv, t.user_side[zero_u] * 0, t.item_side[items], none, has_query)
        funnel["relevance"] = torch.where(has_query, rel["relevance"], funnel["relevance"])
        return funnel

    @torch.no_grad()
    def rerank(self, users: torch.Tensor, weights, candidates: int) -> torch.Tensor:
        """Scores [B, I]: the fused ranking score on each user's top-``candidates`` products
        by GNN dot product, -inf elsewhere (all products when ``candidates`` is 0)."""
        items = torch.arange(self.tables.num_items, device=self.device)
        users = users.to(self.device)
        if not candidates or candidates >= len(items):
            return self.matrix(users, items, weights)
        gnn = self.tables.user_gnn[users] @ self.tables.item_gnn.T                    # [B, I]
        top = torch.topk(gnn, candidates, dim=1).indices                               # [B, N]
        logits = self.logits(users.repeat_interleave(candidates), top.reshape(-1))
        out = torch.full_like(gnn, -torch.inf)
        return out.scatter_(1, top, ranking_score(logits, weights).view(len(users), candidates))

    @torch.no_grad()
    def matrix(self, users: torch.Tensor, items: torch.Tensor, weights, queries: torch.Tensor | None = None,
               chunk: int = 262_144) -> torch.Tensor:
        """Ranking scores [B, n] of every user (or query) row against ``items`` [n]."""
        b, n = len(users), len(items)
        out = torch.empty(b, n, device=self.device)
        rows_per = max(1, chunk // max(n, 1))
        for s in range(0, b, rows_per):
            uu = users[s: s + rows_per]
            r = len(uu)
            q = None if queries is None else queries[s: s + rows_per].repeat_interleave(n)
            logits = self.logits(uu.repeat_interleave(n), items.repeat(r), q)
            out[s: s + r] = ranking_score(logits, weights).view(r, n)
        return out
