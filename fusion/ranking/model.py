"""The fusion model: graph + text + side features -> click, conversion, value and relevance."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from kg.errors import ConfigError, RunFolderError
from kg.run_dir import atomic_directory

TASKS = ("ctr", "cvr", "value", "relevance")
INPUT_GROUPS = ("gnn", "text", "side")


def input_groups(names) -> tuple[str, ...]:
    """``names`` (a sequence, or one comma-separated string) checked against :data:`INPUT_GROUPS`."""
    names = tuple(n.strip() for n in names.split(",") if n.strip()) if isinstance(names, str) else tuple(names)
    unknown = set(names) - set(INPUT_GROUPS)
    if unknown:
        raise ConfigError(f"without: unknown input groups {sorted(unknown)} ({', '.join(INPUT_GROUPS)})")
    return names


def without_inputs(without, user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side
                   ) -> tuple[torch.Tensor, ...]:
    """The model inputs (in :meth:`FusionModel.forward`'s order, without the flags) with the
    input groups named in ``without`` (:data:`INPUT_GROUPS`) read as zeros -- an ablation."""
    zero = torch.zeros_like
    if "gnn" in without:
        user_gnn, item_gnn = zero(user_gnn), zero(item_gnn)
    if "text" in without:
        item_text, user_text, query_text = zero(item_text), zero(user_text), zero(query_text)
    if "side" in without:
        user_side, item_side = zero(user_side), zero(item_side)
    return user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class FusionModel(nn.Module):
    r"""Multi-gate mixture of experts (MMoE) over graph, text and side features, with
    ESMM click/conversion heads, an order-value head and a search-relevance head.

    For a batch of ``B`` (user, product, optional query) triples:

    .. math::
        x = \big[\,u_g,\ i_g,\ u_g \odot i_g,\ P i_t,\ P u_t,\ P q_t,\ s,\ f\,\big],\qquad
        s = \big[\langle u_g, i_g\rangle,\ \langle u_t, i_t\rangle,\ \langle q_t, i_t\rangle\big]

        e_k = \mathrm{Expert}_k(x)\ (k = 1..E), \qquad
        h_t = \sum_k \mathrm{softmax}(W_t x)_k\, e_k \quad (t \in \text{tasks})

        z_t = \mathrm{Tower}_t(h_t) + a_t^\top s \qquad \text{(deep + wide)}

        p_\text{CTR} = \sigma(z_\text{ctr}),\quad p_\text{CVR} = \sigma(z_\text{cvr}),\quad
        p_\text{CTCVR} = p_\text{CTR}\, p_\text{CVR}

        \hat v = \mathrm{softplus}(z_\text{value}) \approx \log(1 + \text{order value} \mid \text{purchase}),
        \qquad p_\text{rel} = \sigma(z_\text{relevance})

    Text embeddings come L2-normalised (zero rows for "none"), so the text dot products
    are cosines. ``P`` projects them (one shared linear map, ``dt -> text_proj``);
    ``raw_gnn=False`` leaves :math:`u_g, i_g` out of ``x`` (only their product and dot
    enter), which generalises better when the graph has few interactions per user;
    ``f`` = user side, product side and the flags (has user, has query). ``without``
    names input groups (:data:`INPUT_GROUPS`: ``gnn`` = :math:`u_g, i_g` and so their
    product and dot, ``text`` = every text vector, ``side`` = ``user_side``, ``item_side``)
    that read as zeros -- an ablation, to measure what each group adds. With
    ``num_experts = 1`` the gates are constant and this is a shared-bottom model.
    ESMM (Ma et al., 2018): CVR is never fit on clicked samples alone; the loss on
    :math:`p_\text{CTCVR}` over all impressions trains it (see
    :mod:`fusion.ranking.train`).

    Args:
        gnn_dim: dg; text_dim: dt; user_side: fu; item_side: fi.

    Persistence (the sentence-transformers habit): :meth:`save` writes a directory with
    ``config.json`` (the constructor arguments, :attr:`config`) and ``model.pt`` (the
    state dict, incl. the similarity-scalar statistics); :meth:`load` rebuilds from it.
    Shapes (forward): ``user_gnn``/``item_gnn`` [B, dg]; ``item_text``/``user_text``/
    ``query_text`` [B, dt]; ``user_side`` [B, fu]; ``item_side`` [B, fi]; ``has_user``,
    ``has_query`` [B] (0/1). Returns a dict of logits [B]: ``ctr``, ``cvr``, ``value``
    (pre-softplus), ``relevance``.
    """

    def __init__(self, gnn_dim: int, text_dim: int, user_side: int, item_side: int, *,
                 text_proj: int = 32, hidden: int = 64, num_experts: int = 4, tower: int = 32,
                 dropout: float = 0.1, raw_gnn: bool = True, without: tuple[str, ...] = ()) -> None:
        super().__init__()
        without = input_groups(without)
        self.config = {"gnn_dim": gnn_dim, "text_dim": text_dim, "user_side": user_side, "item_side": item_side,
                       "text_proj": text_proj, "hidden": hidden, "num_experts": num_experts, "tower": tower,
                       "dropout": dropout, "raw_gnn": raw_gnn, "without": list(without)}
        self.raw_gnn = raw_gnn
        self.without = frozenset(without)
        self.text_proj = nn.Linear(text_dim, text_proj, bias=False)
        in_dim = (3 if raw_gnn else 1) * gnn_dim + 3 * text_proj + 3 + user_side + item_side + 2
        self.input_norm = nn.LayerNorm(in_dim)
        self.experts = nn.ModuleList(_mlp([in_dim, hidden, hidden], dropout) for _ in range(num_experts))
        self.gates = nn.ModuleDict({t: nn.Linear(in_dim, num_experts) for t in TASKS})
        self.towers = nn.ModuleDict({t: nn.Sequential(_mlp([hidden, tower], dropout), nn.Linear(tower, 1))
                                     for t in TASKS})
        self.wide = nn.ModuleDict({t: nn.Linear(3, 1, bias=False) for t in TASKS})
        # standardisation of the three similarity scalars (set from training data)
        self.register_buffer("scalar_mean", torch.zeros(3))
        self.register_buffer("scalar_std", torch.ones(3))

    @classmethod
    def for_tables(cls, tables, **options) -> FusionModel:
        """A model sized for :class:`~fusion.ranking.features.FeatureTables` ``tables``;
        ``options`` are the keyword arguments (e.g. ``FusionConfig.model_kwargs()``)."""
        return cls(tables.item_gnn.shape[1], tables.item_text.shape[1], tables.user_side.shape[1],
                   tables.item_side.shape[1], **options)

    def save(self, directory: str | os.PathLike) -> Path:
        """``config.json`` + ``model.pt`` into ``directory``, atomically (a whole new folder)."""
        with atomic_directory(directory) as tmp:
            (tmp / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")
            torch.save(self.state_dict(), tmp / "model.pt")
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> FusionModel:
        """The model :meth:`save` wrote, in eval mode."""
        directory = Path(directory)
        if not (directory / "config.json").exists():
            raise RunFolderError(f"{directory} holds no fusion model (no config.json); run the fusion stage")
        model = cls(**json.loads((directory / "config.json").read_text()))
        model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
        return model.eval()

    def set_scalar_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Centre and scale of :math:`s` (e.g. a small random BERT gives cosines that all
        lie near 0.9; unscaled, their differences would be invisible to the heads)."""
        self.scalar_mean.copy_(mean)
        self.scalar_std.copy_(std.clamp(min=1e-6))

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last layer every task shares (the experts' output layers): GradNorm's W."""
        return [p for e in self.experts for p in e[-3].parameters()]

    def forward(self, user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side,
                has_user, has_query) -> dict[str, torch.Tensor]:
        x, scalars = self.inputs(user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side,
                                 has_user, has_query)
        experts = torch.stack([e(x) for e in self.experts], 1)                   # [B, E, H]
        out = {}
        for t in TASKS:
            gate = torch.softmax(self.gates[t](x), -1)                            # [B, E]
            h = (gate[:, :, None] * experts).sum(1)                               # [B, H]
            out[t] = self.towers[t](h).squeeze(-1) + self.wide[t](scalars).squeeze(-1)
        return out

    def inputs(self, user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side,
               has_user, has_query) -> tuple[torch.Tensor, torch.Tensor]:
        """(the normalised input rows ``x`` [B, D], the standardised similarity scalars ``s``
        [B, 3]) of :meth:`forward`'s arguments."""
        user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side = without_inputs(
            self.without, user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side)
        it, ut, qt = self.text_proj(item_text), self.text_proj(user_text), self.text_proj(query_text)
        product = user_gnn * item_gnn                                            # [B, dg]
        raw = torch.stack([product.sum(-1), (user_text * item_text).sum(-1),
                           (query_text * item_text).sum(-1)], -1)                # [B, 3]
        present = torch.stack([has_user, has_user, has_query], -1).float()       # absent -> 0
        scalars = ((raw - self.scalar_mean) / self.scalar_std).clamp(-5, 5) * present
        gnn = [user_gnn, item_gnn, product] if self.raw_gnn else [product]
        x = torch.cat([*gnn, it, ut, qt, scalars, user_side, item_side,
                       has_user[:, None].float(), has_query[:, None].float()], -1)
        return self.input_norm(x), scalars
