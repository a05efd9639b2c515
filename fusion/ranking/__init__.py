"""The multi-objective ranker: click, conversion, order value and search relevance.

* :mod:`fusion.ranking.examples` -- labelled examples derived from the graph's events;
* :mod:`fusion.ranking.features` -- the per-user / per-product feature tables;
* :mod:`fusion.ranking.model` -- the fusion model (one ``nn.Module``; saves and loads itself);
* :mod:`fusion.ranking.fused` -- the same model for serving, its experts, gates and towers
  (and an ensemble's members) each stacked into one tensor (what the Engine scores with);
* :mod:`fusion.ranking.ensemble` -- several trained models scored as one (their logits
  averaged; ``FusionConfig.members``, five by default);
* :mod:`fusion.ranking.config` -- :class:`~fusion.ranking.config.FusionConfig`;
* :mod:`fusion.ranking.scorer`, :mod:`fusion.ranking.scoring` -- logits of (user, product,
  query) rows; objectives and the weighted ranking score (serving uses these);
* :mod:`fusion.ranking.loss_balancing`, :mod:`fusion.ranking.train` -- training;
* :mod:`fusion.ranking.metrics`, :mod:`fusion.ranking.comparison`,
  :mod:`fusion.ranking.planted` -- evaluation, the comparison table, the synthetic truth.
"""
