"""From the fusion model's logits to per-objective scores and one ranking score.

Objectives of a (user, product[, query]) triple:

=============  ================================================================
``ctr``        P(click | shown)                                  = sigma(z_ctr)
``cvr``        P(purchase | click)                               = sigma(z_cvr)
``ctcvr``      P(click and purchase | shown)                     = ctr * cvr
``value``      predicted order value given a purchase (currency) = expm1(softplus(z_value))
``relevance``  P(relevant to the query)                          = sigma(z_relevance)
``potential``  P(the product sells in the value horizon)         = sigma(z_potential)
``loyalty``    P(the user's next purchase there is this brand)   = sigma(z_loyalty)
``exposure``   P(the shop shows the product | it shows the user one)  (a log-probability)
=============  ================================================================

``potential`` and ``loyalty`` come from the value stage's tables, not from the fusion
model (:mod:`fusion.value`: product potential; brand loyalty, a floor for brands the user
never bought); the Engine adds their logits when a request weights them. ``exposure``
comes from the exposure model of sources with impressions
(:mod:`fusion.ranking.exposure`; its "logit" is ``log P``): a run without one -- no
impressions -- scores without it, whatever its weight.

The ranking score is a weighted geometric mean -- the product of the objectives, each
raised to its weight, reported as its logarithm::

    score = sum_k w_k * log(objective_k)          (value enters as log(1 + value))

so ``{"ctr": 1, "cvr": 1}`` ranks by purchase probability once shown, ``{"ctr": 1, "cvr": 1,
"exposure": 1}`` by the expected logged purchases (shown, clicked and bought), ``{"ctr": 1, "cvr": 1,
"value": 1}`` by expected order value, ``{"ctr": 1}`` by clicks, and a search adds
``relevance``; ``"potential": 1`` promotes products likely to sell (new arrivals
included), ``"loyalty": 1`` the user's own brands. Weights are per request (:meth:`fusion.engine.Engine.recommend`);
the default for recommendation, :data:`RECOMMEND_WEIGHTS`, is ``ctr 1, cvr 1, exposure 0.5``
(the exposure model's docstring says why a half).
"""

from __future__ import annotations

import math

from typing import Collection, Mapping

import torch
from torch.nn import functional as F

from kg.errors import InvalidRequestError

OBJECTIVES = ("ctr", "cvr", "ctcvr", "value", "relevance", "potential", "loyalty", "exposure")
WEIGHTED = ("ctr", "cvr", "value", "relevance", "potential", "loyalty", "exposure")
#: objectives from the value stage's tables (:mod:`fusion.value`), not the fusion model
VALUE_OBJECTIVES = ("potential", "loyalty")
RECOMMEND_WEIGHTS: dict[str, float] = {"ctr": 1.0, "cvr": 1.0, "exposure": 0.5}
#: the default without its exposure term: purchase probability once shown
WITHOUT_EXPOSURE: dict[str, float] = {"ctr": 1.0, "cvr": 1.0}
#: objectives a run may lack (no exposure model without impressions): their weights are then ignored
OPTIONAL = ("exposure",)
SEARCH_WEIGHTS: dict[str, float] = {"relevance": 1.0, "ctr": 0.1, "cvr": 0.1}


#: the largest weight accepted: scores are float32 sums of weighted log-probabilities, and
#: a weight near float32's range (3.4e38) would make every score infinite
MAX_WEIGHT = 1e6


def check_weights(weights: Mapping[str, float] | None, default: Mapping[str, float],
                  unavailable: Collection[str] = ()) -> dict[str, float]:
    """``weights`` (or the default) after checking every key names an objective, every value
    is a number of at most :data:`MAX_WEIGHT` in size, and some weight that is not zero names
    an objective this run can score (``unavailable``: those it cannot, e.g. ``exposure``
    without impressions, whose weight is ignored) -- weights that leave nothing to rank by
    would return an arbitrary list at score 0. InvalidRequestError naming ``weights``."""
    if weights is None:
        return dict(default)
    if not isinstance(weights, Mapping):
        raise InvalidRequestError(f"weights: expected a mapping of objective to number, got {weights!r}", "weights")
    unknown = set(weights) - set(WEIGHTED)
    if unknown:
        raise InvalidRequestError(f"unknown objective weights {sorted(unknown)}; use {', '.join(WEIGHTED)}", "weights")
    out = {}
    for k, v in weights.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            raise InvalidRequestError(f"weights: {k}={v!r} is not a number", "weights") from None
        if not math.isfinite(out[k]) or abs(out[k]) > MAX_WEIGHT:
            raise InvalidRequestError(f"weights: {k}={v!r} is not a finite number of at most {MAX_WEIGHT:g} in size",
                                      "weights")
    if not any(w for k, w in out.items() if k not in unavailable):
        ignored = sorted(k for k, w in out.items() if w and k in unavailable)
        raise InvalidRequestError("weights: nothing to rank by: every weight is zero"
                                  + (f" or names an objective this run cannot score ({', '.join(ignored)})"
                                     if ignored else ""), "weights")
    return out


def parse_weights(text: str | None) -> dict[str, float] | None:
    """``ctr=1,cvr=2`` -> ``{"ctr": 1.0, "cvr": 2.0}`` (the CLI's ``--weights`` and the
    service's ``weights`` parameter; InvalidRequestError naming ``weights``)."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.strip() in out:
            raise InvalidRequestError(f"weights: {key.strip()} is given twice", "weights")
        try:
            out[key.strip()] = float(value)
        except ValueError:  # also a part without "=": its value is ""
            raise InvalidRequestError(f"weights: expected name=number, got {part!r}", "weights") from None
    return out


def objectives(logits: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-objective scores from the model's logits (the table above)."""
    ctr, cvr = torch.sigmoid(logits["ctr"]), torch.sigmoid(logits["cvr"])
    out = {"ctr": ctr, "cvr": cvr, "ctcvr": ctr * cvr, "value": torch.expm1(F.softplus(logits["value"])),
           "relevance": torch.sigmoid(logits["relevance"])}
    out.update({k: torch.sigmoid(logits[k]) for k in VALUE_OBJECTIVES if k in logits})
    if "exposure" in logits:
        out["exposure"] = torch.exp(logits["exposure"])
    return out


def log_objectives(logits: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """log of each weighted objective, computed stably from the logits."""
    out = {"ctr": F.logsigmoid(logits["ctr"]), "cvr": F.logsigmoid(logits["cvr"]),
           "value": F.softplus(logits["value"]),  # log(1 + value) = softplus(z)
           "relevance": F.logsigmoid(logits["relevance"])}
    out.update({k: F.logsigmoid(logits[k]) for k in VALUE_OBJECTIVES if k in logits})
    if "exposure" in logits:
        out["exposure"] = logits["exposure"]
    return out


def ranking_score(logits: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """``sum_k w_k log(objective_k)`` (zero weights skipped, and those of an
    :data:`OPTIONAL` objective the logits lack)."""
    logs = log_objectives(logits)
    total = torch.zeros_like(logits["ctr"])
    for k, w in weights.items():
        if w and (k in logs or k not in OPTIONAL):
            total = total + w * logs[k]
    return total
