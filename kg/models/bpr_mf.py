"""BPR-MF: matrix factorisation trained with Bayesian personalised ranking."""

from __future__ import annotations

import torch
from torch import nn

from kg.models.base import Ranking


class BPRMF(nn.Module):
    r"""Matrix factorisation with the BPR loss, from `"BPR: Bayesian Personalized Ranking
    from Implicit Feedback" <https://arxiv.org/abs/1205.2618>`_ (Rendle et al., UAI 2009).

    Users and items are free embeddings; a pair scores by the inner product

    .. math::
        \hat y_{ui} = \mathbf e_u^\top \mathbf e_i ,

    trained on triples (user, positive item, sampled negative item) with

    .. math::
        \mathcal L = -\frac{1}{B} \sum \ln \sigma(\hat y_{ui} - \hat y_{uj})
                     + \frac{\lambda}{2B} \sum (\|\mathbf e_u\|^2 + \|\mathbf e_i\|^2 + \|\mathbf e_j\|^2).

    Args:
        num_users (int): number of users U.
        num_items (int): number of items I.
        embedding_dim (int): d. (default: :obj:`64`)
        init_std (float): standard deviation of the normal initialisation. (default: :obj:`0.1`)
        ranking (Ranking, optional): the loss; ``Ranking("softmax")`` trains the sampled
            softmax of :func:`kg.models.base.sampled_softmax_loss` instead and scores by
            cosine (the embeddings are L2-normalised). (default: BPR, as above)

    Shapes:
        - **embeddings()**: ``(user [U, d], item [I, d])``
        - **loss(users [B], pos [B], neg [B] or [B, n]; softmax: shared [M])**: scalar, dict
        - **score(users [B])**: ``[B, I]``
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64, init_std: float = 0.1,
                 ranking: Ranking | None = None):
        super().__init__()
        self.ranking = ranking if ranking is not None else Ranking()
        self.num_users, self.num_items, self.embedding_dim = num_users, num_items, embedding_dim
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.item_embedding = nn.Embedding(num_items, embedding_dim)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ranking.final(self.user_embedding.weight), self.ranking.final(self.item_embedding.weight)

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, *,
             l2: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
        u = self.user_embedding(users)
        p = self.item_embedding(pos)
        n = self.item_embedding(neg)
        return self.ranking(u, p, n, u, p, n, l2, pos, neg)

    def score(self, users: torch.Tensor,
              embeddings: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        user_emb, item_emb = embeddings if embeddings is not None else self.embeddings()
        return user_emb[users] @ item_emb.t()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num_users}, {self.num_items}, embedding_dim={self.embedding_dim})"
