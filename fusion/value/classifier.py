r"""A binary classifier for tabular rows: an MLP with one logit (brand loyalty)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fusion.value.ziln import mlp


class Classifier(nn.Module):
    r"""P(label = 1 | x) for rows ``x`` FloatTensor [B, F]; ``forward`` -> logits [B].

    .. math::
        p = \sigma(\mathrm{MLP}(x)), \qquad
        L = -\,[\,y \log p + (1 - y) \log(1 - p)\,] \quad \text{(mean over the batch)}

    Args:
        in_features: F.
        hidden: width of the hidden layers (default: 32).
        layers: hidden layers (default: 1).
        dropout: dropout after each hidden layer (default: 0.1).
    """

    def __init__(self, in_features: int, hidden: int = 32, layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.body = mlp(in_features, hidden, layers, dropout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)[..., 0]                                            # [B]

    def init_output(self, y: torch.Tensor) -> None:
        """Start the output bias at the training labels' log-odds."""
        share = float(y.float().mean().clamp(1e-3, 1 - 1e-3)) if len(y) else 0.5
        with torch.no_grad():
            self.body[-1].weight.mul_(0.1)
            self.body[-1].bias.fill_(float(torch.logit(torch.tensor(share))))

    @staticmethod
    def loss(out: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        per_row = F.binary_cross_entropy_with_logits(out, y.float(), reduction="none")
        if weight is None:
            return per_row.mean()
        return (per_row * weight).sum() / weight.sum().clamp(min=1e-12)
