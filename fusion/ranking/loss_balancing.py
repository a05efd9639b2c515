"""How the task losses are combined into one: fixed weights, uncertainty weighting, GradNorm.

Every balancer maps the per-task losses ``{task: scalar}`` to the scalar to back-propagate
(:meth:`Balancer.combine`) and reports its current task weights (:meth:`Balancer.weights`).

* :class:`FixedWeights` -- :math:`L = \\sum_t w_t L_t` with the configured ``w_t``.
* :class:`UncertaintyWeighting` (Kendall, Gal & Cipolla, 2018) -- learned log-variances
  :math:`s_t`: :math:`L = \\sum_t e^{-s_t} L_t + s_t`.
* :class:`GradNorm` (Chen et al., 2018) -- learned weights :math:`w_t` (renormalised to
  sum to the number of tasks) such that the gradient norms
  :math:`G_t = \\lVert\\nabla_W w_t L_t\\rVert` on the last shared layer ``W`` move toward
  :math:`\\bar G\\, r_t^\\alpha`, with :math:`r_t` the task's relative inverse training rate
  :math:`(L_t / L_t^{(0)}) / \\mathrm{mean}_j(L_j / L_j^{(0)})`; the weights get the
  gradient of :math:`\\sum_t |G_t - \\bar G r_t^\\alpha|` (targets held constant) from
  their own optimiser.
"""

from __future__ import annotations

import torch
from torch import nn

from kg.errors import ConfigError

METHODS = ("fixed", "uncertainty", "gradnorm")


class Balancer(nn.Module):
    def __init__(self, tasks: tuple[str, ...]) -> None:
        super().__init__()
        self.tasks = tuple(tasks)

    def combine(self, losses: dict[str, torch.Tensor], shared: list[nn.Parameter] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        raise NotImplementedError

    def trainable(self) -> list[nn.Parameter]:
        """Parameters the model's optimiser should also train (GradNorm steps its own)."""
        return []


class FixedWeights(Balancer):
    def __init__(self, tasks, weights: dict[str, float] | None = None) -> None:
        super().__init__(tasks)
        self.w = {t: float((weights or {}).get(t, 1.0)) for t in self.tasks}

    def combine(self, losses, shared=None):
        return sum(self.w[t] * losses[t] for t in self.tasks if t in losses)

    def weights(self):
        return dict(self.w)


class UncertaintyWeighting(Balancer):
    def __init__(self, tasks, device=None) -> None:
        super().__init__(tasks)
        self.log_var = nn.Parameter(torch.zeros(len(self.tasks), device=device))

    def combine(self, losses, shared=None):
        total = 0.0
        for k, t in enumerate(self.tasks):
            if t in losses:
                total = total + torch.exp(-self.log_var[k]) * losses[t] + self.log_var[k]
        return total

    def weights(self):
        return {t: float(torch.exp(-self.log_var[k].detach())) for k, t in enumerate(self.tasks)}

    def trainable(self):
        return [self.log_var]


class GradNorm(Balancer):
    def __init__(self, tasks, alpha: float = 1.5, lr: float = 0.025, device=None) -> None:
        super().__init__(tasks)
        self.alpha = alpha
        self.w = nn.Parameter(torch.ones(len(self.tasks), device=device))
        self.initial: torch.Tensor | None = None
        self.optimizer = torch.optim.Adam([self.w], lr=lr)

    def combine(self, losses, shared=None):
        if shared is None:
            raise ValueError("GradNorm needs the shared parameters")
        present = [k for k, t in enumerate(self.tasks) if t in losses]
        L = torch.stack([losses[self.tasks[k]] for k in present])                     # [T']
        if self.initial is None:
            self.initial = L.new_ones(len(self.tasks))
            self.initial[present] = L.detach().clamp(min=1e-8)
        w = self.w[present]
        norms = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(
            w[j] * L[j], shared, retain_graph=True, create_graph=True)]).norm() for j in range(len(present))])
        ratio = L.detach() / self.initial[present]
        target = (norms.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        self.optimizer.zero_grad()
        self.w.grad = torch.autograd.grad((norms - target).abs().sum(), self.w, retain_graph=True)[0]
        self.optimizer.step()
        with torch.no_grad():  # keep sum(w) = number of tasks, every w > 0
            self.w.clamp_(min=1e-3)
            self.w.mul_(len(self.tasks) / self.w.sum())
        return (self.w[present].detach() * L).sum()

    def weights(self):
        return {t: float(self.w[k].detach()) for k, t in enumerate(self.tasks)}


def make_balancer(method: str, tasks, weights: dict[str, float] | None = None, device=None) -> Balancer:
    """A balancer by name; learnt weights live on ``device`` (the model's)."""
    if method == "fixed":
        return FixedWeights(tasks, weights)
    if method == "uncertainty":
        return UncertaintyWeighting(tasks, device)
    if method == "gradnorm":
        return GradNorm(tasks, device=device)
    raise ConfigError(f"unknown loss balancing {method!r} ({', '.join(METHODS)})")
