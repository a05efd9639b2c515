r"""The zero-inflated log-normal (ZILN) model of a non-negative amount with many zeros.

Wang, Liu & Miao, "A Deep Probabilistic Model for Customer Lifetime Value Prediction"
(2019, arXiv:1912.07753); reference code: github.com/google/lifetime_value
(``zero_inflated_lognormal.py``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

MIN_SIGMA = 1e-3


def mlp(in_features: int, hidden: int, layers: int, dropout: float, out_features: int) -> nn.Sequential:
    """``layers`` x (Linear -> ReLU -> Dropout) of width ``hidden``, then a Linear to ``out_features``."""
    parts: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        parts += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    parts.append(nn.Linear(width, out_features))
    return nn.Sequential(*parts)


class ZILN(nn.Module):
    r"""An MLP with a ZILN output: the amount ``y >= 0`` (a customer's spend, a product's
    units over the horizon) is zero with probability ``1 - p`` and log-normal otherwise.

    Shapes: ``x`` FloatTensor [B, F] -> ``forward`` FloatTensor [B, M, 3] holding
    ``(z, mu, s)`` per row and ensemble member (``M = members`` MLPs of the same shape,
    trained side by side from different initial weights; their predictions are averaged),
    with

    .. math::
        p = \sigma(z), \qquad \sigma_y = \max(\mathrm{softplus}(s), 10^{-3}), \qquad
        y \sim (1 - p)\,\delta_0 + p\,\mathrm{LogNormal}(\mu, \sigma_y^2)

    **Loss** (:meth:`loss`, the negative log-likelihood, mean over the batch and members):

    .. math::
        L = \underbrace{-\,[\,1_{y>0} \log p + 1_{y=0} \log(1 - p)\,]}_{\text{BCE}(z,\ 1_{y>0})}
            + 1_{y>0} \Big[ \log y + \log \sigma_y + \tfrac12 \log 2\pi
            + \frac{(\log y - \mu)^2}{2 \sigma_y^2} \Big]

    **Predictions** (means over the members): :meth:`mean`
    :math:`E[y] = p\, \min(e^{\mu + \sigma_y^2 / 2},\ y_{\max})` (the value; ``cap`` =
    :math:`y_{\max}`, the largest training target, see :meth:`mean`), :meth:`p_positive`
    :math:`p` (P(any purchase / sale in the horizon)).

    Args:
        in_features: F, the inputs per row.
        hidden: width of the hidden layers (default: 32).
        layers: hidden layers (default: 2).
        dropout: dropout after each hidden layer (default: 0).
        members: M, MLPs averaged (default: 1).
    """

    def __init__(self, in_features: int, hidden: int = 32, layers: int = 2, dropout: float = 0.0,
                 members: int = 1) -> None:
        super().__init__()
        self.members = nn.ModuleList(mlp(in_features, hidden, layers, dropout, 3) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members], dim=1)               # [B, M, 3]

    def init_output(self, y: torch.Tensor) -> None:
        """Start the output biases at the training targets' zero share and log-normal fit."""
        pos = y[y > 0]
        share = float((y > 0).float().mean().clamp(1e-3, 1 - 1e-3)) if len(y) else 0.5
        mu = float(pos.log().mean()) if len(pos) else 0.0
        sd = float(pos.log().std()) if len(pos) > 1 else 1.0
        sd = max(sd, 0.1)
        for member in self.members:
            last = member[-1]
            with torch.no_grad():
                last.weight.mul_(0.1)
                last.bias.copy_(torch.tensor([math.log(share / (1 - share)), mu, math.log(math.expm1(sd))]))

    @staticmethod
    def sigma(out: torch.Tensor) -> torch.Tensor:
        return F.softplus(out[..., 2]).clamp(min=MIN_SIGMA)

    @staticmethod
    def loss(out: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The ZILN negative log-likelihood of targets ``y`` [B] (class docstring); ``out``
        [B, 3] or [B, M, 3]."""
        y = y[:, None] if out.dim() == 3 else y
        positive = (y > 0).float().expand_as(out[..., 0])
        bce = F.binary_cross_entropy_with_logits(out[..., 0], positive, reduction="none")
        sigma = ZILN.sigma(out)
        log_y = torch.log(torch.where(y > 0, y, torch.ones_like(y)))
        nll = log_y + torch.log(sigma) + 0.5 * math.log(2 * math.pi) + (log_y - out[..., 1]) ** 2 / (2 * sigma ** 2)
        per_row = bce + positive * nll
        if per_row.dim() == 2:
            per_row = per_row.mean(dim=1)
        if weight is None:
            return per_row.mean()
        return (per_row * weight).sum() / weight.sum().clamp(min=1e-12)

    @staticmethod
    def p_positive(out: torch.Tensor) -> torch.Tensor:
        """P(y > 0) [B] (the members' mean)."""
        p = torch.sigmoid(out[..., 0])
        return p.mean(dim=1) if p.dim() == 2 else p

    @staticmethod
    def mean(out: torch.Tensor, cap: float | None = None) -> torch.Tensor:
        r"""E[y] [B] of ``out`` [B, 3] or [B, M, 3], the members' mean, each member's
        log-normal mean cut at ``cap``:

        .. math::
            E[y] = \frac1M \sum_m p_m \min\big(e^{\mu_m + \sigma_m^2 / 2},\ y_{\max}\big)

        ``cap`` = :math:`y_{\max}`, the largest target of the rows the model was fit on
        (:attr:`fusion.value.fitting.TabularModel.target_max`: the most one customer spent,
        one product sold, in one horizon). Why that bound: every training target lies in
        :math:`[0, y_{\max}]`, so the expectation of any distribution over them -- the
        conditional one the model approximates included, E[y | y > 0, x] as much as
        E[y | x] -- lies there too. The log-normal's mean does not: it grows as
        :math:`e^{\sigma^2 / 2}` with the spread and without bound in :math:`\mu`, so an
        input the network never saw (a burst of purchases long after the training data)
        can make it arbitrarily large. Hence E[y] <= p * y_max <= y_max. ``cap`` None (a
        model saved before the bound existed): :math:`e^{30}`, just enough to stay finite.
        """
        sigma = ZILN.sigma(out)
        each = torch.exp((out[..., 1] + 0.5 * sigma ** 2).clamp(max=30.0))
        if cap is not None:
            each = each.clamp(max=max(float(cap), 0.0))
        each = torch.sigmoid(out[..., 0]) * each
        return each.mean(dim=1) if each.dim() == 2 else each
