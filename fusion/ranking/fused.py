"""The fusion model for serving: the same function with every expert, gate and tower of a
kind -- of one model or of every member of an ensemble -- run as one batched matrix product."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from fusion.ranking.ensemble import FusionEnsemble, members_of
from fusion.ranking.model import TASKS, FusionModel, without_inputs


class FusedFusionModel(nn.Module):
    r"""``M`` trained :class:`~fusion.ranking.model.FusionModel` s of one shape (one model,
    or the members of a :class:`~fusion.ranking.ensemble.FusionEnsemble`), evaluated with
    their text projections, input norms, ``E`` experts, ``T`` gates and ``T`` towers each
    stacked into one tensor, the logits averaged over the members (inference only: no
    dropout, no gradients; build it again if a source model's weights change).

    With the inputs of :class:`FusionModel` (the product ``u_g \odot i_g`` and the raw
    similarity scalars ``r`` [B, 3] are the same for every member), for member ``m``:

    .. math::
        [P_m i_t, P_m u_t, P_m q_t] \ \text{(one product with } [P_1; \dots; P_M]^\top),\qquad
        s_m = \mathrm{clip}\big((r - \mu_m) / \sigma_m\big) \odot \text{present}

        x_m = \mathrm{LayerNorm}_m\big([u_g \odot i_g,\ P_m i_t,\ P_m u_t,\ P_m q_t,\ s_m,\ f]\big)
            \in \mathbb{R}^{B \times D}

        H_{1,m} = \mathrm{ReLU}(x_m\,[W^{(1)}_{m1}; \dots; W^{(1)}_{mE}]^\top + b^{(1)}_m)
            \in \mathbb{R}^{B \times E \times H}\ \text{(one batched product over } m)

        e_{mbk} = \mathrm{ReLU}(W^{(2)}_{mk} H_{1,mbk} + b^{(2)}_{mk})
            \qquad \text{(one batched product over } (m, k))

        g_{mbt} = \mathrm{softmax}_k\big(W^g_{mt}\, x_{mb} + b^g_{mt}\big) \in \mathbb{R}^{E},
            \qquad h_{mbt} = \textstyle\sum_k g_{mbtk}\, e_{mbk}

        z_{mbt} = w^{o}_{mt}{}^\top \mathrm{ReLU}(W^{o1}_{mt} h_{mbt} + b^{o1}_{mt}) + b^o_{mt}
            + a_{mt}^\top s_{mb},\qquad z_{bt} = \frac{1}{M} \sum_m z_{mbt}

    -- the same numbers as :meth:`FusionModel.forward` in eval mode (``M = 1``) or
    :meth:`FusionEnsemble.forward` (the members' mean) up to float rounding, from ~15
    tensor operations whatever ``M``: a serving request scores ~100 candidates, where
    per-call overhead, not arithmetic, is the cost (100 candidates, one thread: five
    members 0.9 ms, one 0.35 ms).

    With one expert (``E = 1``, the default) every gate is 1 and :math:`h_{mbt} = e_{mb1}`
    for every task, so the towers' first layers are one product
    :math:`e_{mb1} [W^{o1}_{m1}; \dots; W^{o1}_{mT}]^\top` and no gate is computed.

    Shapes: as :class:`FusionModel` (inputs ``[B, ·]``, returns a dict of logits [B] per
    task in :data:`~fusion.ranking.model.TASKS`). Weights: ``proj`` [dt, M·P], ``w1`` [M, D,
    E·H] and ``wg`` with the input norm's scale and shift folded in (:func:`folded`), ``w2``
    [M·E, H, H], ``wide`` [M, 3, T];
    ``E > 1``: ``wg`` [M, D, T·E], ``wt1`` [M·T, H, O], ``wt2`` [M·T, O, 1]; ``E = 1``:
    ``wt1`` [M, H, T·O], ``wt2`` [M, 1, T, O].
    """

    def __init__(self, models: FusionModel | Sequence[FusionModel]) -> None:
        super().__init__()
        models = [models] if isinstance(models, FusionModel) else list(models)
        first = models[0]
        if not stackable(models):
            raise ValueError("FusedFusionModel stacks models of one configuration (shapes, inputs)")
        self.without, self.raw_gnn = first.without, first.raw_gnn
        self.eps = first.input_norm.eps
        e, h = len(first.experts), first.experts[0][0].out_features
        cat, stack = torch.cat, torch.stack

        def per_model(weights) -> torch.Tensor:  # one tensor of a kind per model, stacked: [M, ...]
            return stack([weights(m) for m in models]).contiguous()

        with torch.no_grad():
            self.register_buffer("proj", cat([m.text_proj.weight for m in models]).T.contiguous())  # [dt, M*P]
            self.register_buffer("mean", per_model(lambda m: m.scalar_mean)[:, None, :])             # [M, 1, 3]
            self.register_buffer("std", per_model(lambda m: m.scalar_std)[:, None, :])               # [M, 1, 3]
            # the input norm's scale and shift folded into what reads its output (the first
            # expert layers and the gates): (x̂ γ + β) W + b = x̂ (γ W) + (β W + b)
            w1, b1 = folded(models, lambda m: (cat([x[0].weight for x in m.experts]).T,
                                               cat([x[0].bias for x in m.experts])))
            self.register_buffer("w1", w1)                                                          # [M, D, E*H]
            self.register_buffer("b1", b1)                                                          # [M, 1, E*H]
            self.register_buffer("w2", cat([stack([x[3].weight.T for x in m.experts]) for m in models]).contiguous())
            self.register_buffer("b2", cat([stack([x[3].bias for x in m.experts]) for m in models])[:, None, :].clone())
            if e == 1:  # one expert: every gate is 1 and every tower reads the same h
                self.register_buffer("wt1", per_model(lambda m: cat([m.towers[t][0][0].weight.T for t in TASKS], 1)))
                self.register_buffer("bt1", per_model(lambda m: cat([m.towers[t][0][0].bias for t in TASKS]))[:, None])
                self.register_buffer("wt2", per_model(lambda m: cat([m.towers[t][1].weight for t in TASKS]))[:, None])
                self.register_buffer("bt2", per_model(lambda m: cat([m.towers[t][1].bias for t in TASKS]))[:, None])
            else:
                wg, bg = folded(models, lambda m: (cat([m.gates[t].weight for t in TASKS]).T,
                                                   cat([m.gates[t].bias for t in TASKS])))
                self.register_buffer("wg", wg)                                                      # [M, D, T*E]
                self.register_buffer("bg", bg)                                                      # [M, 1, T*E]
                towers = [m.towers[t] for m in models for t in TASKS]                                 # M*T, m-major
                self.register_buffer("wt1", stack([x[0][0].weight.T for x in towers]).contiguous())   # [M*T, H, O]
                self.register_buffer("bt1", stack([x[0][0].bias for x in towers])[:, None, :].clone())  # [M*T, 1, O]
                self.register_buffer("wt2", stack([x[1].weight.T for x in towers]).contiguous())      # [M*T, O, 1]
                self.register_buffer("bt2", stack([x[1].bias for x in towers])[:, None, :].clone())   # [M*T, 1, 1]
            self.register_buffer("wide", per_model(lambda m: cat([m.wide[t].weight for t in TASKS]).T))  # [M, 3, T]
        self.members, self.num_experts, self.hidden = len(models), e, h
        self.in_dim, self.text_dim = first.input_norm.normalized_shape[0], first.text_proj.out_features

    def forward(self, user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side,
                has_user, has_query) -> dict[str, torch.Tensor]:
        user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side = without_inputs(
            self.without, user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side)
        b, m, e, n_tasks = len(user_gnn), self.members, self.num_experts, len(TASKS)
        product = user_gnn * item_gnn                                                            # [B, dg]
        queries = bool(query_text.any())  # no query (recommend): its text is zero, so are P q and q·i
        raw = torch.stack([product.sum(-1), (user_text * item_text).sum(-1),
                           (query_text * item_text).sum(-1) if queries else product.new_zeros(b)], -1)  # [B, 3]
        present = torch.stack([has_user, has_user, has_query], -1).float()
        # x [M, B, D] written in place, column blocks in FusionModel.inputs' order
        gnn = torch.cat([user_gnn, item_gnn, product] if self.raw_gnn else [product], -1)      # [B, dg']
        x = torch.empty(m, b, self.in_dim, dtype=product.dtype, device=product.device)
        at = gnn.shape[1]
        x[:, :, :at] = gnn
        texts = [item_text, user_text] + ([query_text] if queries else [])
        p3 = 3 * self.text_dim
        block = x[:, :, at: at + p3].unflatten(-1, (3, self.text_dim))                          # [M, B, 3, P]
        block[:, :, :len(texts)] = (torch.cat(texts) @ self.proj).view(len(texts), b, m, -1).permute(2, 1, 0, 3)
        if len(texts) == 2:
            block[:, :, 2] = 0
        scalars = ((raw - self.mean) / self.std).clamp(-5, 5) * present                          # [M, B, 3]
        x[:, :, at + p3: at + p3 + 3] = scalars
        x[:, :, at + p3 + 3:] = torch.cat([user_side, item_side, has_user[:, None].float(),
                                           has_query[:, None].float()], -1)
        x = F.layer_norm(x, x.shape[-1:], eps=self.eps)        # the scale and shift are in w1 / wg
        h1 = torch.baddbmm(self.b1, x, self.w1).relu_()                                          # [M, B, E*H]
        if e > 1:
            h1 = h1.view(m, b, e, self.hidden).permute(0, 2, 1, 3).reshape(m * e, b, self.hidden)  # [M*E, B, H]
        experts = torch.baddbmm(self.b2, h1, self.w2).relu_()                                    # [M*E, B, H]
        wide = torch.bmm(scalars, self.wide)                                                     # [M, B, T]
        if e == 1:  # h_t = the expert for every task: the T towers' first layers as one product
            tower = torch.baddbmm(self.bt1, experts, self.wt1).relu_().view(m, b, n_tasks, -1)  # [M, B, T, O]
            z = (tower * self.wt2).sum(-1) + self.bt2 + wide                                        # [M, B, T]
            return dict(zip(TASKS, z.mean(0).T.unbind(0)))
        experts = experts.view(m, e, b, self.hidden)                                             # [M, E, B, H]
        gates = torch.softmax(torch.baddbmm(self.bg, x, self.wg).view(m, b, n_tasks, e), -1)    # [M, B, T, E]
        # (a [T, E] x [E, H] product per row, as a broadcast: bmm over B tiny matrices is slower)
        h = (gates[..., None] * experts.transpose(1, 2)[:, :, None]).sum(3)                     # [M, B, T, H]
        h = h.permute(0, 2, 1, 3).reshape(m * n_tasks, b, self.hidden)                          # [M*T, B, H]
        tower = torch.baddbmm(self.bt1, h, self.wt1).relu_()                                     # [M*T, B, O]
        z = torch.baddbmm(self.bt2, tower, self.wt2).view(m, n_tasks, b)                         # [M, T, B]
        z = (z + wide.transpose(1, 2)).mean(0)                                                  # [T, B]
        return dict(zip(TASKS, z.unbind(0)))


def stackable(models: Sequence[FusionModel]) -> bool:
    """Whether :class:`FusedFusionModel` can stack ``models``: one configuration (the same
    shapes and inputs)."""
    return all(m.config == models[0].config for m in models)


def folded(models: Sequence[FusionModel], reader) -> tuple[torch.Tensor, torch.Tensor]:
    """Per model, the layer ``reader(model)`` = (``W`` [D, K], ``b`` [K]) that reads the input
    norm's output, with the norm's scale ``γ`` and shift ``β`` folded in: ``(γ W, β W + b)``,
    stacked over the models ([M, D, K], [M, 1, K])."""
    weights, biases = [], []
    for m in models:  # in float64, then rounded once to the model's dtype
        w, b = (t.double() for t in reader(m))
        gamma, beta = m.input_norm.weight.double(), m.input_norm.bias.double()
        weights.append((gamma[:, None] * w).to(m.input_norm.weight.dtype))
        biases.append((beta @ w + b).to(m.input_norm.weight.dtype))
    return torch.stack(weights).contiguous(), torch.stack(biases)[:, None, :].contiguous()


def serving_model(model: FusionModel | FusionEnsemble) -> nn.Module:
    """What the Engine scores with: :class:`FusedFusionModel` of ``model`` or of an
    ensemble's members (members of different shapes: an ensemble of one
    :class:`FusedFusionModel` each, ``M`` members costing ``M`` forward passes)."""
    members = members_of(model)
    if stackable(members):
        return FusedFusionModel(members)
    return FusionEnsemble([FusedFusionModel(m) for m in members]).eval()
