r"""A knowledge graph's content as a recommender: does the KG say anything about what users choose?

A model-free check beside the KG ablation (:func:`kg.models.kg_model.shuffle_tails`): if
ranking items by how much their KG neighbourhood overlaps a user's history finds held-out
items no better with the real KG than with the same KG shuffled, or adds nothing to a trained
model's scores, no KG model can learn much from that graph's content.

**Item profiles.** Item ``i``'s features are the entities one hop from it in the KG, in either
direction and whatever the relation (a film's director, actors, genres, country; a product's
brand, category, linked products), after merging each item with the one external entity it
is linked to 1:1 (:func:`kg.models.kg_model.merged_links`, so a film's Freebase triples are
its own). With :math:`X \in \{0,1\}^{I \times E}` the item--entity incidence, the TF-IDF rows

.. math::
    \tilde X_{ie} = \frac{X_{ie}\, w_e}{\lVert X_{i\cdot} \odot w \rVert_2}, \qquad
    w_e = \log\frac{I + 1}{\mathrm{df}_e + 1},

weigh rare entities (a director) above common ones (a language) and give every item unit
length.

**Content scores.** A user's profile is the sum of their training items' rows,
:math:`p_u = \sum_{i \in \mathcal R_u} \tilde X_{i\cdot}` (``R`` the binary training matrix),
and the score of item ``j`` is :math:`s_{uj} = \langle p_u, \tilde X_{j\cdot} \rangle` -- the
summed cosine similarity of ``j`` with the user's items: item-kNN over the KG.

**Late fusion** with a trained model's scores ``g``: per user, both standardised over the
items (:math:`z(s) = (s - \bar s) / \sigma_s`), :math:`z(g_u) + b\, z(s_u)`, the weight
``b >= 0`` chosen on the validation part from a grid (``b = 0`` is the model alone, so a
content without signal is given no weight rather than forced in).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from kg.evaluation import ScoreFn, evaluate

__all__ = ["item_profiles", "content_scores", "blended_scores", "choose_blend", "per_relation", "BLEND_WEIGHTS",
           "CONTENT", "SHUFFLED_CONTENT"]

#: the rows of a GNN run's report (kg.pipeline) that rank by the KG's content, real and shuffled
CONTENT, SHUFFLED_CONTENT = "KG content", "KG content, shuffled KG"

#: the late-fusion weights tried on the validation part (0: the model alone)
BLEND_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


def _merged(triples, num_items: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(head, relation, tail) with each item merged with the one external entity it is
    linked to 1:1 (:func:`kg.models.kg_model.merged_links`)."""
    from kg.models.kg_model import LINK_RELATION, merged_links

    h, r, t = (torch.as_tensor(x, dtype=torch.long) for x in (triples.head, triples.relation, triples.tail))
    names = list(triples.relation_names)
    if LINK_RELATION in names:
        h, r, t = merged_links(h, r, t, names.index(LINK_RELATION), max(int(triples.num_entities), num_items),
                               num_items)
    return h, r, t


def item_profiles(triples, num_items: int) -> sp.csr_matrix:
    """TF-IDF item rows ``[I, E]`` over the entities one hop from each item (module docstring).

    ``triples``: a :class:`kg.export.KnowledgeTriples` (items are entities ``0 .. I-1``).
    An item with no KG neighbour has an all-zero row (it scores 0 for everyone).
    """
    h, _, t = _merged(triples, num_items)
    num_entities = max(int(triples.num_entities), num_items)
    h, t = h.numpy(), t.numpy()
    item_h, item_t = h < num_items, t < num_items
    # (item, neighbour) in both directions; an item-to-item triple gives each item the other
    items = np.concatenate([h[item_h], t[item_t]])
    others = np.concatenate([t[item_h], h[item_t]])
    x = sp.csr_matrix((np.ones(len(items)), (items, others)), shape=(num_items, num_entities))
    x.data[:] = 1.0  # a repeated (item, entity) pair counts once
    df = np.asarray(x.sum(0)).ravel()
    x = (x @ sp.diags(np.log((num_items + 1) / (df + 1)))).tocsr()
    x.eliminate_zeros()  # entities of every item (weight 0) make no product terms
    norm = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    return (sp.diags(np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)) @ x).tocsr()


def per_relation(triples, num_items: int) -> list[tuple[str, int, int, object]]:
    """The KG one relation at a time, after merging each item with the one external entity
    it is linked to 1:1 (as :func:`item_profiles` does, so a film's Freebase triples are its
    own): per relation with triples left, (name, its triples, the items it reaches -- gives a
    one-hop neighbour that not every item has, so its TF-IDF row is not zero --, the KG of
    that relation alone): to ask which relation's content says what users choose
    (:meth:`kg.pipeline.GnnRun.by_relation`). A relation between entities only (an actor's
    awards), or one whose only entity every item has, reaches no item: its count is 0."""
    from dataclasses import replace

    h, r, t = _merged(triples, num_items)
    out = []
    for k, name in enumerate(triples.relation_names):
        keep = r == k
        if not bool(keep.any()):
            continue
        part = replace(triples, head=h[keep], relation=r[keep], tail=t[keep])
        reached = int((item_profiles(part, num_items).getnnz(axis=1) > 0).sum())
        out.append((name, int(keep.sum()), reached, part))
    return out


def content_scores(triples, train: tuple[np.ndarray, np.ndarray], num_users: int, num_items: int) -> ScoreFn:
    """Score function of the KG content ranker (module docstring): users [B] -> scores [B, I].

    ``train``: (users [N], items [N]) training pairs, whose items make the users' profiles.
    Scores are computed per batch (the user profiles are sparse ``[U, E]``), so memory stays
    ``O(B I)``.
    """
    x = item_profiles(triples, num_items)
    u, i = (np.asarray(a, dtype=np.int64) for a in train)
    r = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(num_users, num_items))
    r.data[:] = 1.0
    profiles = (r @ x).tocsr()  # [U, E]
    xt = x.T.tocsr()  # [E, I]

    def score(users: torch.Tensor) -> torch.Tensor:
        rows = profiles[users.cpu().numpy()]
        return torch.from_numpy((rows @ xt).toarray().astype(np.float32)).to(users.device)

    return score


def _standardised(scores: torch.Tensor) -> torch.Tensor:
    return (scores - scores.mean(1, keepdim=True)) / scores.std(1, keepdim=True).clamp_min(1e-12)


def blended_scores(model: ScoreFn, content: ScoreFn, weight: float) -> ScoreFn:
    """``z(model) + weight * z(content)``, each standardised per user over the items."""
    if weight == 0:
        return model
    return lambda users: _standardised(model(users).float()) + weight * _standardised(content(users))


def choose_blend(model: ScoreFn, content: ScoreFn, split, metric: str,
                 weights: Sequence[float] = BLEND_WEIGHTS) -> tuple[float, dict[float, float]]:
    """The late-fusion weight with the best ``metric`` on ``split.valid`` (train masked; the
    first of equals, so ties go to the smaller weight). Returns (weight, {weight: valid metric})."""
    if not len(split.valid[0]):
        raise ValueError("choosing the blend weight needs a validation part")
    k = int(metric.split("@")[1])
    curve = {}
    for w in weights:
        curve[w] = evaluate(blended_scores(model, content, w), split.num_users, split.num_items, split.valid,
                            [split.train], ks=(k,), candidates=split.items)[metric]
    best = max(curve, key=lambda w: (curve[w], -w))
    return best, curve
