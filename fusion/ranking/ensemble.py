"""Several trained fusion models scored as one: their logits averaged."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from fusion.ranking.model import TASKS, FusionModel
from kg.errors import RunFolderError
from kg.run_dir import atomic_directory

#: the file that marks a saved ensemble (its members are ``member-<k>/`` beside it)
ENSEMBLE_FILE = "ensemble.json"


class FusionEnsemble(nn.Module):
    r"""The mean of ``M`` trained :class:`~fusion.ranking.model.FusionModel` s' logits:

    .. math::
        z_t = \frac{1}{M} \sum_{m=1}^{M} z_t^{(m)} \qquad (t \in \text{tasks})

    so ``ctr`` / ``cvr`` become the geometric-mean odds of the members' and the ranking
    score (:func:`~fusion.ranking.scoring.ranking_score`) is computed from those. Members
    trained with seeds ``s .. s+4`` form a *cross-fitted* ensemble when the fusion stage
    fits on the validation period (``train_on``; Gift Cards and the synthetic shop do): it
    holds out a fifth of the users chosen by the seed
    (:func:`~fusion.ranking.train.fit_and_check`), so five consecutive seeds hold out
    disjoint fifths -- every member is fit on four fifths and early-stopped on the fifth it
    did not see, and together they use every user's validation period (fit on the training
    period, the members differ by their seeds only). It lowers the variance a single
    member owes to its seed and ranks better than its members on average
    (``FusionConfig.members``, 5 by default; ``bench/fusion_quality.py --seeds N`` reports
    it). The Engine serves the members stacked into one model
    (:class:`~fusion.ranking.fused.FusedFusionModel`).

    Members must share their feature tables (``end_to_end=False``, the default).
    Persistence: :meth:`save` writes ``ensemble.json`` and each member's
    :meth:`FusionModel.save` folder ``member-<k>/``; :func:`load_fusion_model` reads
    either kind of folder.
    Shapes: as :class:`FusionModel` (inputs ``[B, ·]``, returns a dict of logits [B]
    per task in :data:`~fusion.ranking.model.TASKS`).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:  # FusionModels (or their serving form)
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)

    def forward(self, user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side,
                has_user, has_query) -> dict[str, torch.Tensor]:
        outs = [m(user_gnn, item_gnn, item_text, user_text, query_text, user_side, item_side, has_user, has_query)
                for m in self.members]
        return {t: torch.stack([o[t] for o in outs]).mean(0) for t in TASKS}

    def save(self, directory: str | os.PathLike) -> Path:
        """``ensemble.json`` + ``member-<k>/`` per member into ``directory``, atomically."""
        with atomic_directory(directory) as tmp:
            (tmp / ENSEMBLE_FILE).write_text(json.dumps({"members": len(self.members)}) + "\n")
            for k, member in enumerate(self.members):
                member.save(tmp / f"member-{k}")
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> FusionEnsemble:
        """The ensemble :meth:`save` wrote, in eval mode."""
        directory = Path(directory)
        try:
            count = int(json.loads((directory / ENSEMBLE_FILE).read_text())["members"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunFolderError(f"{directory / ENSEMBLE_FILE}: not a fusion ensemble ({e})") from None
        if count < 1:
            raise RunFolderError(f"{directory / ENSEMBLE_FILE}: an ensemble of {count} members")
        return cls([FusionModel.load(directory / f"member-{k}") for k in range(count)]).eval()


def members_of(model: FusionModel | FusionEnsemble) -> list[FusionModel]:
    """The trained models behind ``model``: an ensemble's members, or the one model."""
    return list(model.members) if isinstance(model, FusionEnsemble) else [model]


def load_fusion_model(directory: str | os.PathLike) -> FusionModel | FusionEnsemble:
    """The fusion model saved in ``directory``: one :class:`FusionModel`, or a
    :class:`FusionEnsemble` (a run trained with ``members > 1``)."""
    directory = Path(directory)
    if (directory / ENSEMBLE_FILE).exists():
        return FusionEnsemble.load(directory)
    return FusionModel.load(directory)
