"""The fusion model for serving: the same function with every expert, gate and tower of a
kind run as one batched matrix product."""

from __future__ import annotations

import torch
from torch import nn

from fusion.ranking.ensemble import FusionEnsemble
from fusion.ranking.model import TASKS, FusionModel


class FusedFusionModel(nn.Module):
    r"""A trained :class:`~fusion.ranking.model.FusionModel`, evaluated with its ``E``
    experts, ``T`` gates and ``T`` towers each stacked into one tensor (inference only: no
    dropout, no gradients; build it again if the source model's weights change).

    With ``x`` [B, D] the normalised input row of :class:`FusionModel` (same preamble):

    .. math::
        H_1 = \mathrm{ReLU}(x\,[W^{(1)}_1; \dots; W^{(1)}_E]^\top + b^{(1)})
            \in \mathbb{R}^{B \times E \times H}\ \text{(one linear map)}

        e_{bk} = \mathrm{ReLU}(W^{(2)}_k H_{1,bk} + b^{(2)}_k)
            \qquad \text{(one batched product over } k)

        g_{bt} = \mathrm{softmax}_k\big([W^g_1; \dots; W^g_T]\, x_b + b^g\big)_{t}
            \in \mathbb{R}^{E},\qquad h_{bt} = \textstyle\sum_k g_{btk}\, e_{bk}
            \ \text{(one } [T \times E] \cdot [E \times H] \text{ product per row)}

        z_{bt} = w^{o}_t{}^\top \mathrm{ReLU}(W^{o1}_t h_{bt} + b^{o1}_t) + b^o_t
            + a_t^\top s_b \qquad \text{(towers: two batched products over } t)

    -- the same numbers as :meth:`FusionModel.forward` in eval mode up to float rounding
    (summation order), from ~8 tensor operations instead of ~25 module calls: a serving
    request scores ~100 candidates, where per-call overhead, not arithmetic, is the cost.

    Shapes: as :class:`FusionModel` (inputs ``[B, ·]``, returns a dict of logits [B] per
    task in :data:`~fusion.ranking.model.TASKS`). Weights: ``w1`` [D, E·H], ``w2``
    [E, H, H], ``wg`` [D, T·E], ``wt1`` [T, H, O], ``wt2`` [T, O, 1], ``wide`` [3, T].
    """

    def __init__(self, model: FusionModel) -> None:
        super().__init__()
        self.model = model  # for its input preamble (FusionModel.inputs: no dropout there)
        experts, towers = model.experts, [model.towers[t] for t in TASKS]
        e, h = len(experts), experts[0][0].out_features
        stack = torch.stack
        with torch.no_grad():
            self.register_buffer("w1", torch.cat([x[0].weight for x in experts]).T.contiguous())      # [D, E*H]
            self.register_buffer("b1", torch.cat([x[0].bias for x in experts]))                       # [E*H]
            self.register_buffer("w2", stack([x[3].weight.T for x in experts]).contiguous())          # [E, H, H]
            self.register_buffer("b2", stack([x[3].bias for x in experts])[:, None, :].clone())        # [E, 1, H]
            self.register_buffer("wg", torch.cat([model.gates[t].weight for t in TASKS]).T.contiguous())  # [D, T*E]
            self.register_buffer("bg", torch.cat([model.gates[t].bias for t in TASKS]))               # [T*E]
            self.register_buffer("wt1", stack([x[0][0].weight.T for x in towers]).contiguous())       # [T, H, O]
            self.register_buffer("bt1", stack([x[0][0].bias for x in towers])[:, None, :].clone())    # [T, 1, O]
            self.register_buffer("wt2", stack([x[1].weight.T for x in towers]).contiguous())          # [T, O, 1]
            self.register_buffer("bt2", stack([x[1].bias for x in towers])[:, None, :].clone())       # [T, 1, 1]
            self.register_buffer("wide", torch.cat([model.wide[t].weight for t in TASKS]).T.contiguous())  # [3, T]
        self.num_experts, self.hidden = e, h

    def forward(self, user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side,
                has_user, has_query) -> dict[str, torch.Tensor]:
        x, scalars = self.model.inputs(user_gnn, item_gnn, item_text, user_text, query_text, user_side,
                                       item_side, has_user, has_query)            # [B, D], [B, 3]
        b, e, n_tasks = len(x), self.num_experts, len(TASKS)
        h1 = torch.relu(torch.addmm(self.b1, x, self.w1)).view(b, e, self.hidden).transpose(0, 1)  # [E, B, H]
        experts = torch.relu(torch.baddbmm(self.b2, h1, self.w2)).transpose(0, 1)                 # [B, E, H]
        gates = torch.softmax(torch.addmm(self.bg, x, self.wg).view(b, n_tasks, e), -1)          # [B, T, E]
        # (a [T, E] x [E, H] product per row, as a broadcast: bmm over B tiny matrices is slower)
        h = (gates[..., None] * experts[:, None]).sum(2).transpose(0, 1)                          # [T, B, H]
        tower = torch.relu(torch.baddbmm(self.bt1, h, self.wt1))                                    # [T, B, O]
        z = torch.baddbmm(self.bt2, tower, self.wt2).squeeze(-1) + (scalars @ self.wide).T         # [T, B]
        return dict(zip(TASKS, z.unbind(0)))


def serving_model(model: FusionModel | FusionEnsemble) -> nn.Module:
    """What the Engine scores with: :class:`FusedFusionModel` of ``model``, or of each
    member of an ensemble (averaged as the ensemble does: ``M`` members cost ``M`` forward
    passes)."""
    if isinstance(model, FusionEnsemble):
        return FusionEnsemble([FusedFusionModel(m) for m in model.members]).eval()
    return FusedFusionModel(model)
