"""Recommender models over the user–item (and knowledge) graph.

Every model follows the :class:`~kg.models.base.Recommender` protocol, so :mod:`kg.train`
trains and evaluates any of them the same way:

* :class:`~kg.models.bpr_mf.BPRMF` -- matrix factorisation with the BPR loss;
* :class:`~kg.models.lightgcn.LightGCN` -- layer-mean propagation over the normalised
  user–item adjacency (:mod:`kg.sparse`);
* :class:`~kg.models.kg_model.KGModel` -- the knowledge-graph model.

The protocol and the shared losses (BPR; sampled softmax, :class:`~kg.models.base.Ranking`)
are in :mod:`kg.models.base`.
"""

from __future__ import annotations

from kg.models.base import Ranking, Recommender, bpr_loss, sampled_softmax_loss
from kg.models.bpr_mf import BPRMF
from kg.models.kg_model import KGModel
from kg.models.lightgcn import LightGCN

__all__ = ["Recommender", "Ranking", "BPRMF", "KGModel", "LightGCN", "bpr_loss", "sampled_softmax_loss"]
